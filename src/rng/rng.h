/* rng.h: torch's CPU generator, bit for bit.
 *
 * TorchRng is at::CPUGeneratorImpl: an MT19937 engine seeded from the LOW 32 BITS of a uint64
 * seed, plus the cached Box-Muller spare that torch keeps in the generator. rng_randn_* reproduce
 * torch.randn(n, generator=g) on the CPU exactly, including the consumption of draws, so that a
 * sequence of calls on one generator matches the same sequence in torch.
 *
 * Two kernels exist because torch has two float32 code paths for numel >= 16:
 *   RNG_KERNEL_TORCH_CPU        torch's AVX2 kernel (every x86-64 build with AVX2+FMA, AVX-512 too),
 *                               reproduced here in portable C with explicit fmaf(): same bits on
 *                               every machine and optimisation level.
 *   RNG_KERNEL_TORCH_CPU_SCALAR torch's non-AVX2 kernel (aarch64, old x86, ATEN_CPU_CAPABILITY=default):
 *                               libm logf/sinf/cosf, so its bits are those of the libm it runs on
 *                               (glibc >= 2.28 on x86-64 matches torch on the same glibc).
 * float64 and numel < 16 use one path in torch, shared by both kernels here.
 *
 * Seeds: torch seeds MT19937 with (uint32)seed, so seeds s and s + k*2^32 give identical noise
 * (only initial_seed in the state image differs). Negative Python seeds are two's complement:
 * -1 is 2^64-1. See docs in README.md and docs/reference/torch-rng.md. */
#ifndef SOWER_RNG_H
#define SOWER_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum {
    RNG_MT_WORDS = 624,
    RNG_STATE_IMAGE_BYTES = 5056, /* torch.Generator.get_state() size on 64-bit little-endian */
};

typedef enum {
    RNG_KERNEL_TORCH_CPU = 0,
    RNG_KERNEL_TORCH_CPU_SCALAR = 1,
    /* torch.Generator("cuda"): Philox on the GPU (philox.h), made by a CUDA backend
     * (ComputeBackend.randn_torch_cuda), never by rng_randn_f32. */
    RNG_KERNEL_TORCH_CUDA = 2,
} RngKernel;
#define RNG_GENERATOR_CHOICES "torch-cpu, torch-cpu-scalar or torch-cuda"

typedef struct {
    uint64_t seed;                 /* full 64-bit seed, kept for the state image only */
    uint32_t mt[RNG_MT_WORDS];     /* MT19937 state words */
    int32_t left;                  /* draws left before the next twist, 1..624 */
    uint32_t next;                 /* index of the next word to temper, 0..624 */
    int has_double_normal;         /* Box-Muller spare of the double path (numel < 16) */
    double double_normal;
    int has_float_normal;          /* never set by randn; kept so state images round-trip */
    float float_normal;
    /* Not part of torch's state: which torch release's double Box-Muller to emulate (numel < 16).
     * 0 = log(1 - u) as in torch <= 1.13 (the default), 1 = log1p(-u) as in torch >= 2.0.
     * float32 output is practically never affected; float64 output differs in ~3% of values.
     * rng_seed and rng_set_state keep it. */
    int radius_log1p;
} TorchRng;

/* manual_seed(seed): seeds the engine with (uint32)seed and clears both cached normals.
 * g->radius_log1p is kept, so set it once after zero-initialising g. */
void rng_seed(TorchRng *g, uint64_t seed);
/* The 32-bit key torch actually seeds MT19937 with: two seeds collide iff their keys are equal. */
static inline uint32_t rng_seed_key(uint64_t seed) { return (uint32_t)seed; }

uint32_t rng_random(TorchRng *g);   /* one tempered MT19937 word */
uint64_t rng_random64(TorchRng *g); /* first draw is the high word */
float rng_uniform_f32(TorchRng *g); /* (random() & 2^24-1) * 2^-24, in [0, 1) */
double rng_uniform_f64(TorchRng *g); /* (random64() & 2^53-1) * 2^-53, in [0, 1) */
void rng_fill_uniform_f32(TorchRng *g, float *out, size_t n); /* n x rng_uniform_f32, fast */
void rng_fill_uniform_f64(TorchRng *g, double *out, size_t n); /* n x rng_uniform_f64 */

/* torch.randn(n, dtype=float32, generator=g) into out (n,). */
void rng_randn_f32(TorchRng *g, RngKernel kernel, float *out, size_t n);
/* torch.randn(n, dtype=float64, generator=g) into out (n,). */
void rng_randn_f64(TorchRng *g, double *out, size_t n);

/* g.get_state() bytes into image (RNG_STATE_IMAGE_BYTES,). */
void rng_get_state(const TorchRng *g, unsigned char *image);
/* g.set_state(image): SOWER_EINPUT (message names what is wrong) if the image is not one torch
 * would accept; g is unchanged then. */
int rng_set_state(TorchRng *g, const unsigned char *image, size_t image_bytes) SOWER_MUST_CHECK;

/* "torch-cpu" / "torch-cpu-scalar" / "torch-cuda" <-> kernel. rng_kernel_parse returns SOWER_EINPUT if unknown. */
const char *rng_kernel_name(RngKernel kernel);
int rng_kernel_parse(const char *name, RngKernel *kernel) SOWER_MUST_CHECK;

#endif /* SOWER_RNG_H */
