/* randn.c: torch.randn on the CPU generator, bit for bit.
 * Upstream: aten/src/ATen/native/cpu/DistributionTemplates.h (normal_kernel, normal_fill,
 * normal_fill_16, normal_fill_16_AVX2), native/cpu/avx_mathfun.h (log256_ps, sincos256_ps),
 * core/DistributionsHelper.h (normal_distribution<double>).
 *
 * Floating-point discipline: this file must be compiled with -ffp-contract=off and without
 * -ffast-math (CMake sets both). The fmaf() calls below are the fusions GCC makes inside torch's
 * AVX2 kernel; they must be the ONLY fused operations, which is what makes the AVX2 bits portable. */
#include "float_bits.h"
#include "randn_kernels.h"
#include "rng.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if FLT_EVAL_METHOD != 0
#error "randn.c needs FLT_EVAL_METHOD == 0 (float arithmetic rounded to float, e.g. SSE2 or AArch64)"
#endif

/* torch's normal parameters for randn, kept literal: they decide the sign of zeros. */
#define RANDN_MEAN 0.0
#define RANDN_STD 1.0
#define PI_D 3.14159265358979323846

enum { FILL_BLOCK = 16, FILL_HALF = 8 };

/* ---- Path S: numel < 16, one normal_distribution<double> draw per element ---- */

static double normal_double_sample(TorchRng *g)
{
    if (g->has_double_normal) {
        g->has_double_normal = 0;
        return g->double_normal * RANDN_STD + RANDN_MEAN;
    }
    double u_angle = rng_uniform_f64(g);  /* first uniform -> angle */
    double u_radius = rng_uniform_f64(g); /* second -> radius */
    /* torch <= 1.13: log(1 - u); torch >= 2.0 (DistributionsHelper.h): log1p(-u), which changes
     * the last bit of ~3% of float64 values. */
    double r = sqrt(-2.0 * (g->radius_log1p ? log1p(-u_radius) : log(1.0 - u_radius)));
    double theta = 2.0 * PI_D * u_angle;
    g->double_normal = r * sin(theta);
    g->has_double_normal = 1;
    return r * cos(theta) * RANDN_STD + RANDN_MEAN;
}

/* ---- Path F, AVX2 kernel: Cephes polynomials of avx_mathfun.h with GCC's FMA placement ---- */

/* log256_ps for one lane, for x in [2^-24, 1]. */
static float avx2_logf(float x)
{
    const float sqrthf = 0.707106781186547524f;
    const float p0 = 7.0376836292E-2f, p1 = -1.1514610310E-1f, p2 = 1.1676998740E-1f;
    const float p3 = -1.2420140846E-1f, p4 = 1.4249322787E-1f, p5 = -1.6668057665E-1f;
    const float p6 = 2.0000714765E-1f, p7 = -2.4999993993E-1f, p8 = 3.3333331174E-1f;
    const float q1 = -2.12194440e-4f, q2 = 0.693359375f;

    if (x < 0x1p-126f)
        x = 0x1p-126f; /* max(x, min_norm_pos): never taken for randn inputs */
    uint32_t bits = float_bits(x);
    int32_t exponent = (int32_t)(bits >> 23) - 127;
    float m = float_from_bits((bits & 0x807FFFFFu) | 0x3F000000u); /* mantissa in [0.5, 1) */
    float e = (float)exponent + 1.0f;
    if (m < sqrthf) {
        e = e - 1.0f;
        x = (m - 1.0f) + m;
    } else {
        x = (m - 1.0f) + 0.0f;
    }
    float z = x * x;
    float y = p0;
    y = fmaf(y, x, p1);
    y = fmaf(y, x, p2);
    y = fmaf(y, x, p3);
    y = fmaf(y, x, p4);
    y = fmaf(y, x, p5);
    y = fmaf(y, x, p6);
    y = fmaf(y, x, p7);
    y = fmaf(y, x, p8);
    y = y * x;
    y = fmaf(y, z, e * q1);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    return fmaf(e, q2, x);
}

/* sincos256_ps for one lane, theta >= 0. */
static void avx2_sincosf(float theta, float *sin_out, float *cos_out)
{
    const float fopi = 1.27323954473516f;
    const float dp1 = -0.78515625f, dp2 = -2.4187564849853515625e-4f, dp3 = -3.77489497744594108e-8f;
    const float s0 = -1.9515295891E-4f, s1 = 8.3321608736E-3f, s2 = -1.6666654611E-1f;
    const float c0 = 2.443315711809948E-005f, c1 = -1.388731625493765E-003f, c2 = 4.166664568298827E-002f;

    float ax = fabsf(theta);
    int sign_sin = signbit(theta) != 0;
    float scaled = ax * fopi;
    int32_t j = (int32_t)scaled; /* cvttps: truncation */
    j = (j + 1) & ~1;
    float yq = (float)j;
    sign_sin ^= (j & 4) != 0;
    int poly_is_sin = (j & 2) == 0;
    int sign_cos = ((~(j - 2)) & 4) != 0;

    float xr = fmaf(yq, dp1, ax);
    xr = fmaf(yq, dp2, xr);
    xr = fmaf(yq, dp3, xr);
    float z = xr * xr;

    float c = fmaf(c0, z, c1);
    c = fmaf(c, z, c2);
    c = c * z;
    c = fmaf(c, z, -(z * 0.5f)); /* vfmsub: c*z - z*0.5 */
    c = c + 1.0f;

    float s = fmaf(s0, z, s1);
    s = fmaf(s, z, s2);
    s = s * z;
    s = fmaf(s, xr, xr);

    float sin_v = poly_is_sin ? s : c;
    float cos_v = poly_is_sin ? c : s;
    *sin_out = sign_sin ? -sin_v : sin_v;
    *cos_out = sign_cos ? -cos_v : cos_v;
}

/* normal_fill_16_AVX2: lane j pairs with lane j+8; d is (16,) uniforms in, normals out.
 * This portable version defines the bits; randn_simd.c has an AVX2 twin that a test proves
 * identical over every possible input. */
void randn_fill16_avx2_portable(float *d)
{
    for (int j = 0; j < FILL_HALF; j++) {
        float u_radius = 1.0f - d[j];
        float theta = 6.2831854820251465f * d[j + FILL_HALF]; /* (float)(2*pi) */
        float radius = sqrtf(-2.0f * avx2_logf(u_radius));
        float sin_v, cos_v;
        avx2_sincosf(theta, &sin_v, &cos_v);
        d[j] = fmaf(radius * cos_v, (float)RANDN_STD, (float)RANDN_MEAN);
        d[j + FILL_HALF] = fmaf(radius * sin_v, (float)RANDN_STD, (float)RANDN_MEAN);
    }
}

/* ---- Path F, scalar kernel: normal_fill_16<float> and <double> with libm ---- */

static void fill16_scalar_f32(float *d)
{
    for (int j = 0; j < FILL_HALF; j++) {
        float u_radius = 1.0f - d[j];
        float u_angle = d[j + FILL_HALF];
        float radius = sqrtf(-2.0f * logf(u_radius));
        float theta = (float)(2.0 * PI_D * (double)u_angle); /* computed in double in torch */
        d[j] = radius * cosf(theta) * (float)RANDN_STD + (float)RANDN_MEAN;
        d[j + FILL_HALF] = radius * sinf(theta) * (float)RANDN_STD + (float)RANDN_MEAN;
    }
}

static void fill16_f64(double *d)
{
    for (int j = 0; j < FILL_HALF; j++) {
        double u_radius = 1.0 - d[j];
        double u_angle = d[j + FILL_HALF];
        double radius = sqrt(-2.0 * log(u_radius));
        double theta = 2.0 * PI_D * u_angle;
        d[j] = radius * cos(theta) * RANDN_STD + RANDN_MEAN;
        d[j + FILL_HALF] = radius * sin(theta) * RANDN_STD + RANDN_MEAN;
    }
}

/* normal_fill skeleton: all uniforms in index order, every full block of 16, then, if n is not a
 * multiple of 16, 16 FRESH uniforms over the last 16 slots and one more (overlapping) block. */
void rng_randn_f32(TorchRng *g, RngKernel kernel, float *out, size_t n)
{
    if (kernel == RNG_KERNEL_TORCH_CUDA) { /* callers route it to the CUDA backend: a bug if it gets here */
        fprintf(stderr, "sower: internal error: rng_randn_f32 asked for torch-cuda noise\n");
        abort();
    }
    if (n < FILL_BLOCK) {
        for (size_t i = 0; i < n; i++)
            out[i] = (float)normal_double_sample(g);
        return;
    }
    RandnFill16 fill16 = kernel == RNG_KERNEL_TORCH_CPU ? randn_fill16_avx2_best() : fill16_scalar_f32;
    rng_fill_uniform_f32(g, out, n);
    for (size_t b = 0; b + FILL_BLOCK <= n; b += FILL_BLOCK)
        fill16(out + b);
    if (n % FILL_BLOCK != 0) {
        float *tail = out + n - FILL_BLOCK;
        rng_fill_uniform_f32(g, tail, FILL_BLOCK);
        fill16(tail);
    }
}

void rng_randn_f64(TorchRng *g, double *out, size_t n)
{
    if (n < FILL_BLOCK) {
        for (size_t i = 0; i < n; i++)
            out[i] = normal_double_sample(g);
        return;
    }
    rng_fill_uniform_f64(g, out, n);
    for (size_t b = 0; b + FILL_BLOCK <= n; b += FILL_BLOCK)
        fill16_f64(out + b);
    if (n % FILL_BLOCK != 0) {
        double *tail = out + n - FILL_BLOCK;
        rng_fill_uniform_f64(g, tail, FILL_BLOCK);
        fill16_f64(tail);
    }
}
