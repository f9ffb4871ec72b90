/* rng.c: the MT19937 engine, uniforms and the state image of torch's CPU generator.
 * Upstream: aten/src/ATen/core/MT19937RNGEngine.h, CPUGeneratorImpl.{h,cpp},
 * core/TransformationHelper.h (uniform_real). The normal paths live in randn.c. */
#include "rng.h"

#include <string.h>

enum { MT_SHIFT = 397 };
#define MT_MATRIX_A 0x9908B0DFu
#define MT_UPPER_MASK 0x80000000u
#define MT_LOWER_MASK 0x7FFFFFFFu

void rng_seed(TorchRng *g, uint64_t seed)
{
    int radius_log1p = g->radius_log1p;
    memset(g, 0, sizeof *g);
    g->radius_log1p = radius_log1p;
    g->seed = seed;
    g->mt[0] = rng_seed_key(seed);
    for (uint32_t j = 1; j < RNG_MT_WORDS; j++)
        g->mt[j] = 1812433253u * (g->mt[j - 1] ^ (g->mt[j - 1] >> 30)) + j;
    g->left = 1; /* so the first draw twists, as torch does */
    g->next = 0;
}

static inline uint32_t twist_word(uint32_t current, uint32_t following, uint32_t far)
{
    uint32_t mix = (current & MT_UPPER_MASK) | (following & MT_LOWER_MASK);
    return far ^ (mix >> 1) ^ ((following & 1u) ? MT_MATRIX_A : 0u);
}

/* The standard MT19937 recurrence, split at the wrap-arounds so the loops have no modulo
 * (and vectorise); word i reads words i+1 and i+397 as already updated where they wrapped. */
static void twist(TorchRng *g)
{
    uint32_t *mt = g->mt;
    int i = 0;
    g->left = RNG_MT_WORDS;
    g->next = 0;
    for (; i < RNG_MT_WORDS - MT_SHIFT; i++)
        mt[i] = twist_word(mt[i], mt[i + 1], mt[i + MT_SHIFT]);
    for (; i < RNG_MT_WORDS - 1; i++)
        mt[i] = twist_word(mt[i], mt[i + 1], mt[i + MT_SHIFT - RNG_MT_WORDS]);
    mt[i] = twist_word(mt[i], mt[0], mt[MT_SHIFT - 1]);
}

static inline uint32_t temper(uint32_t y)
{
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680u;
    y ^= (y << 15) & 0xEFC60000u;
    y ^= y >> 18;
    return y;
}

uint32_t rng_random(TorchRng *g)
{
    if (--g->left == 0)
        twist(g);
    return temper(g->mt[g->next++]);
}

uint64_t rng_random64(TorchRng *g)
{
    uint64_t hi = rng_random(g);
    uint64_t lo = rng_random(g);
    return (hi << 32) | lo;
}

/* Masked (not shifted) low bits, scaled exactly: torch's uniform_real for (0, 1). */
float rng_uniform_f32(TorchRng *g) { return (float)(rng_random(g) & 0x00FFFFFFu) * 0x1p-24f; }

double rng_uniform_f64(TorchRng *g)
{
    return (double)(rng_random64(g) & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
}

/* n calls of rng_uniform_f64, pairs of words at a time between twists. */
void rng_fill_uniform_f64(TorchRng *g, double *out, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t before_twist = (size_t)g->left - 1; /* draws possible without twisting */
        if (before_twist < 2) {
            out[i++] = rng_uniform_f64(g);
            continue;
        }
        size_t run = before_twist / 2;
        if (run > n - i)
            run = n - i;
        const uint32_t *words = g->mt + g->next;
        for (size_t k = 0; k < run; k++) {
            uint64_t bits = ((uint64_t)temper(words[2 * k]) << 32) | temper(words[2 * k + 1]);
            out[i + k] = (double)(bits & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
        }
        g->next += (uint32_t)(2 * run);
        g->left -= (int32_t)(2 * run);
        i += run;
    }
}

/* n calls of rng_uniform_f32, a run of words at a time between twists. */
void rng_fill_uniform_f32(TorchRng *g, float *out, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (g->left == 1) { /* the next draw twists */
            out[i++] = rng_uniform_f32(g);
            continue;
        }
        /* Draws possible before the next twist: left - 1 (the draw that makes left 0 twists). */
        size_t run = (size_t)g->left - 1;
        if (run > n - i)
            run = n - i;
        const uint32_t *words = g->mt + g->next;
        for (size_t k = 0; k < run; k++)
            out[i + k] = (float)(temper(words[k]) & 0x00FFFFFFu) * 0x1p-24f;
        g->next += (uint32_t)run;
        g->left -= (int32_t)run;
        i += run;
    }
}

/* ---- state image (torch's CPUGeneratorImplState, x86-64 layout, little-endian) ---- */

enum {
    IMG_SEED = 0,          /* uint64 the_initial_seed */
    IMG_LEFT = 8,          /* int32 left */
    IMG_SEEDED = 12,       /* int32 seeded (1) */
    IMG_NEXT = 16,         /* uint64 next */
    IMG_STATE = 24,        /* uint64[624]: each MT word zero-extended */
    IMG_NORMAL_X = 5016,   /* double, always 0 */
    IMG_NORMAL_Y = 5024,   /* double: cached double normal, or 0 */
    IMG_NORMAL_RHO = 5032, /* double, always 0 */
    IMG_NORMAL_VALID = 5040, /* int32 0/1 */
    IMG_FLOAT_NORMAL = 5048, /* float */
    IMG_FLOAT_VALID = 5052,  /* bool */
};

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

void rng_get_state(const TorchRng *g, unsigned char *image)
{
    memset(image, 0, RNG_STATE_IMAGE_BYTES);
    put_le(image + IMG_SEED, g->seed, 8);
    put_le(image + IMG_LEFT, (uint32_t)g->left, 4);
    put_le(image + IMG_SEEDED, 1, 4);
    put_le(image + IMG_NEXT, g->next, 8);
    for (int i = 0; i < RNG_MT_WORDS; i++)
        put_le(image + IMG_STATE + 8 * i, g->mt[i], 8);
    if (g->has_double_normal) {
        put_le(image + IMG_NORMAL_Y, double_bits(g->double_normal), 8);
        put_le(image + IMG_NORMAL_VALID, 1, 4);
    }
    if (g->has_float_normal) {
        uint32_t fb;
        memcpy(&fb, &g->float_normal, sizeof fb);
        put_le(image + IMG_FLOAT_NORMAL, fb, 4);
        image[IMG_FLOAT_VALID] = 1;
    }
}

int rng_set_state(TorchRng *g, const unsigned char *image, size_t image_bytes)
{
    if (image_bytes != RNG_STATE_IMAGE_BYTES)
        return SOWER_FAIL(SOWER_EINPUT, "generator state image: expected %d bytes, found %zu",
                          RNG_STATE_IMAGE_BYTES, image_bytes);
    int32_t seeded = (int32_t)get_le(image + IMG_SEEDED, 4);
    int32_t left = (int32_t)get_le(image + IMG_LEFT, 4);
    uint64_t next = get_le(image + IMG_NEXT, 8);
    if (!seeded)
        return SOWER_FAIL(SOWER_EINPUT, "generator state image: 'seeded' flag is 0 (not a seeded generator)");
    if (left <= 0 || left > RNG_MT_WORDS)
        return SOWER_FAIL(SOWER_EINPUT, "generator state image: 'left' must be in 1..%d, found %d",
                          RNG_MT_WORDS, (int)left);
    if (next > RNG_MT_WORDS)
        return SOWER_FAIL(SOWER_EINPUT, "generator state image: 'next' must be in 0..%d, found %llu",
                          RNG_MT_WORDS, (unsigned long long)next);
    /* torch checks only the two ranges, then reads state[next] past the end if they disagree; every
     * image a real generator gives has left + next = 625, or left 1 and next 0 when just seeded. */
    if ((uint64_t)left + next != RNG_MT_WORDS + 1 && !(left == 1 && next == 0))
        return SOWER_FAIL(SOWER_EINPUT,
                          "generator state image: 'left' %d and 'next' %llu disagree (a generator has left + "
                          "next = %d, or left 1 and next 0 when just seeded)",
                          (int)left, (unsigned long long)next, RNG_MT_WORDS + 1);

    TorchRng restored;
    memset(&restored, 0, sizeof restored);
    restored.seed = get_le(image + IMG_SEED, 8);
    restored.left = left;
    restored.next = (uint32_t)next;
    for (int i = 0; i < RNG_MT_WORDS; i++)
        restored.mt[i] = (uint32_t)get_le(image + IMG_STATE + 8 * i, 8); /* truncated, as torch does */
    if (get_le(image + IMG_NORMAL_VALID, 4)) {
        uint64_t bits = get_le(image + IMG_NORMAL_Y, 8);
        restored.has_double_normal = 1;
        memcpy(&restored.double_normal, &bits, sizeof bits);
    }
    if (image[IMG_FLOAT_VALID]) {
        uint32_t bits = (uint32_t)get_le(image + IMG_FLOAT_NORMAL, 4);
        restored.has_float_normal = 1;
        memcpy(&restored.float_normal, &bits, sizeof bits);
    }
    restored.radius_log1p = g->radius_log1p;
    *g = restored;
    return SOWER_OK;
}

static const char *const kernel_names[] = {
    [RNG_KERNEL_TORCH_CPU] = "torch-cpu",
    [RNG_KERNEL_TORCH_CPU_SCALAR] = "torch-cpu-scalar",
    [RNG_KERNEL_TORCH_CUDA] = "torch-cuda",
};

const char *rng_kernel_name(RngKernel kernel) { return kernel_names[kernel]; }

int rng_kernel_parse(const char *name, RngKernel *kernel)
{
    for (size_t i = 0; i < sizeof kernel_names / sizeof kernel_names[0]; i++) {
        if (strcmp(name, kernel_names[i]) == 0) {
            *kernel = (RngKernel)i;
            return SOWER_OK;
        }
    }
    return SOWER_FAIL(SOWER_EINPUT, "unknown generator '%s': expected " RNG_GENERATOR_CHOICES, name);
}
