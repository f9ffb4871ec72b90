/* torch_math.c: Sleef 3.5's xlogf_u1, xexpf and xexpm1f as its AVX2 build computes them (fused multiply-adds,
 * ENABLE_FMA_SP), one lane at a time; their AVX-512 builds give the same bits (checked against torch 1.13 over
 * 45,000 values per function under ATEN_CPU_CAPABILITY=avx2 and avx512; validate/make_scheduler_reference.py's
 * chains check them end to end). Written from Sleef's algorithm (src/libm/sleefsimdsp.c, src/libm/df.h): a
 * double-float (hi, lo) pair carries the extra precision, and every fmaf below is one fused operation there.
 * This file is compiled without contraction (-ffp-contract=off), so nothing else is fused. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "float_bits.h"
#include "schedulers/torch_math.h"

typedef struct {
    float x, y; /* the value is x + y, |y| <= ulp(x) / 2 */
} DoubleFloat;

static float pow2i(int q) { return float_from_bits((uint32_t)(q + 0x7f) << 23); } /* vpow2i_vf_vi2 */
static float ldexp2(float d, int e) { return d * pow2i(e >> 1) * pow2i(e - (e >> 1)); } /* vldexp2_vf_vf_vi2 */
static float ldexp3(float d, int q) { return float_from_bits(float_bits(d) + ((uint32_t)q << 23)); } /* vldexp3_vf_vf_vi2 */
static int ilogb2k(float d) { return (int)((float_bits(d) >> 23) & 0xff) - 0x7f; } /* vilogb2k_vi2_vf */

/* df.h with ENABLE_FMA_SP, named by their Sleef counterparts */
static DoubleFloat df_add2_f_f(float x, float y) /* dfadd2_vf2_vf_vf */
{
    const float s = x + y, v = s - x;
    return (DoubleFloat){s, (x - (s - v)) + (y - v)};
}
static DoubleFloat df_add2_df_f(DoubleFloat x, float y) /* dfadd2_vf2_vf2_vf */
{
    const float s = x.x + y, v = s - x.x;
    return (DoubleFloat){s, ((x.x - (s - v)) + (y - v)) + x.y};
}
static DoubleFloat df_add2_df_df(DoubleFloat x, DoubleFloat y) /* dfadd2_vf2_vf2_vf2 */
{
    const float s = x.x + y.x, v = s - x.x;
    return (DoubleFloat){s, ((x.x - (s - v)) + (y.x - v)) + (x.y + y.y)};
}
static DoubleFloat df_add_df_df(DoubleFloat x, DoubleFloat y) /* dfadd_vf2_vf2_vf2, |x| >= |y| */
{
    const float s = x.x + y.x;
    return (DoubleFloat){s, (((x.x - s) + y.x) + x.y) + y.y};
}
static DoubleFloat df_add_df_f(DoubleFloat x, float y) /* dfadd_vf2_vf2_vf */
{
    const float s = x.x + y;
    return (DoubleFloat){s, ((x.x - s) + y) + x.y};
}
static DoubleFloat df_add_f_df(float x, DoubleFloat y) /* dfadd_vf2_vf_vf2 */
{
    const float s = x + y.x;
    return (DoubleFloat){s, ((x - s) + y.x) + y.y};
}
static DoubleFloat df_scale(DoubleFloat d, float s) { return (DoubleFloat){d.x * s, d.y * s}; } /* dfscale_vf2_vf2_vf */
static DoubleFloat df_mul_df_f(DoubleFloat x, float y) /* dfmul_vf2_vf2_vf */
{
    const float s = x.x * y;
    return (DoubleFloat){s, fmaf(x.y, y, fmaf(x.x, y, -s))};
}
static DoubleFloat df_mul_df_df(DoubleFloat x, DoubleFloat y) /* dfmul_vf2_vf2_vf2 */
{
    const float s = x.x * y.x;
    return (DoubleFloat){s, fmaf(x.x, y.y, fmaf(x.y, y.x, fmaf(x.x, y.x, -s)))};
}
static DoubleFloat df_square(DoubleFloat x) /* dfsqu_vf2_vf2 */
{
    const float s = x.x * x.x;
    return (DoubleFloat){s, fmaf(x.x + x.x, x.y, fmaf(x.x, x.x, -s))};
}
static DoubleFloat df_div(DoubleFloat n, DoubleFloat d) /* dfdiv_vf2_vf2_vf2 */
{
    const float t = 1.0f / d.x, s = n.x * t, u = fmaf(t, n.x, -s);
    const float v = fmaf(-d.y, t, fmaf(-d.x, t, 1.0f));
    return (DoubleFloat){s, fmaf(s, v, fmaf(n.y, t, u))};
}

#define R_LN2F 1.442695040888963407359924681001892137426645954152985934135449406931f
#define L2UF 0.693145751953125f
#define L2LF 1.428606765330187045e-06f

/* xlogf_u1 (Sleef_logf8_u10) */
static float sleef_logf(float d)
{
    if (isnan(d) || d < 0.0f)
        return NAN;
    if (d == 0.0f)
        return -INFINITY;
    if (isinf(d))
        return INFINITY;
    const int tiny = d < FLT_MIN;
    if (tiny)
        d = d * ((float)(INT64_C(1) << 32) * (float)(INT64_C(1) << 32));
    int e = ilogb2k(d * (1.0f / 0.75f));
    const float m = ldexp3(d, -e); /* d / 2^e in [0.75, 1.5) */
    if (tiny)
        e -= 64;
    DoubleFloat s = df_mul_df_f((DoubleFloat){0.69314718246459960938f, -1.904654323148236017e-09f}, (float)e);
    const DoubleFloat x = df_div(df_add2_f_f(-1.0f, m), df_add2_f_f(1.0f, m));
    const float x2 = x.x * x.x;
    float t = 0.3027294874f;
    t = fmaf(t, x2, 0.3996108174f);
    t = fmaf(t, x2, 0.6666694880f);
    s = df_add_df_df(s, df_scale(x, 2.0f));
    s = df_add_df_f(s, x2 * x.x * t);
    return s.x + s.y;
}

/* xexpf (Sleef_expf8_u10) */
static float sleef_expf(float d)
{
    if (isnan(d))
        return d;
    if (d < -104.0f)
        return 0.0f;
    if (100.0f < d)
        return INFINITY;
    const int q = (int)nearbyintf(d * R_LN2F); /* vrint_vi2_vf: to nearest, ties to even */
    float s = fmaf((float)q, -L2UF, d);
    s = fmaf((float)q, -L2LF, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    u = 1.0f + fmaf(s * s, u, s);
    return ldexp2(u, q);
}

/* expk2f: exp of a double-float, as a double-float (d.x >= -104 here) */
static DoubleFloat sleef_expk2f(DoubleFloat d)
{
    const int q = (int)nearbyintf((d.x + d.y) * R_LN2F);
    DoubleFloat s = df_add2_df_f(d, (float)q * -L2UF);
    s = df_add2_df_f(s, (float)q * -L2LF);
    float u = 0.1980960224e-3f;
    u = fmaf(u, s.x, 0.1394256484e-2f);
    u = fmaf(u, s.x, 0.8333456703e-2f);
    u = fmaf(u, s.x, 0.4166637361e-1f);
    DoubleFloat t = df_add2_df_f(df_mul_df_f(s, u), 0.166666659414234244790680580464e+0f);
    t = df_add2_df_f(df_mul_df_df(s, t), 0.5f);
    t = df_add2_df_df(s, df_mul_df_df(df_square(s), t));
    t = df_add_f_df(1.0f, t);
    return (DoubleFloat){ldexp2(t.x, q), ldexp2(t.y, q)};
}

/* xexpm1f (Sleef_expm1f8_u10) */
static float sleef_expm1f(float a)
{
    if (isnan(a))
        return a;
    if (a > 88.72283172607421875f)
        return INFINITY;
    if (a < -16.635532333438687426013570f)
        return -1.0f;
    if (a == 0.0f && signbit(a))
        return -0.0f;
    const DoubleFloat d = df_add2_df_f(sleef_expk2f((DoubleFloat){a, 0.0f}), -1.0f);
    return d.x + d.y;
}

/* numpy's simd_log_FLOAT (loops_exponent_log.dispatch.c.src, NPY_COEFF_*_LOGf), one lane */
static float numpy_simd_logf(float x)
{
    if (isnan(x))
        return NAN;
    if (x < 0.0f)
        return -NAN;
    if (x == 0.0f)
        return -INFINITY;
    if (isinf(x))
        return INFINITY;
    static const float p[6] = {0.000000000000000000000e+00f, 9.999999999999998702752e-01f, 2.112677543073053063722e+00f,
                               1.480000633576506585156e+00f, 3.808837741388407920751e-01f, 2.589979117907922693523e-02f};
    static const float q[6] = {1.000000000000000000000e+00f, 2.612677543073109236779e+00f, 2.453006071784736363091e+00f,
                               9.864942958519418960339e-01f, 1.546476374983906719538e-01f, 5.875095403124574342950e-03f};
    int shift = 0;
    if (x < FLT_MIN) /* a subnormal: numpy's exponent and mantissa see it scaled by 2^100 */
        x = x * 0x1p100f, shift = 100;
    const uint32_t bits = float_bits(x);
    float exponent = (float)((int)((bits >> 23) & 0xff) - 126 - shift);
    float m = float_from_bits((bits & 0x007fffffu) | 0x3f000000u); /* [0.5, 1) */
    if (m <= 0.707106781186547524400844362104849039f)
        m = m + m, exponent = exponent - 1.0f;
    const float t = m - 1.0f;
    float num = fmaf(p[5], t, p[4]), den = fmaf(q[5], t, q[4]);
    for (int k = 3; k >= 0; k--)
        num = fmaf(num, t, p[k]), den = fmaf(den, t, q[k]);
    return fmaf(exponent, 0.693147180559945309417232121458176568f, num / den);
}

float numpy_logf(float x, RngKernel kernel) { return kernel == RNG_KERNEL_TORCH_CPU_SCALAR ? logf(x) : numpy_simd_logf(x); }

/* numpy's simd_exp_FLOAT (loops_exponent_log.dispatch.c.src, NPY_COEFF_*_EXPf), one lane: Cody-Waite reduction by
 * k = rint(x * log2(e)), a 5/2 rational, scaled by 2^k (scalef on AVX-512, an exponent add on AVX2: the same bits,
 * ldexpf's for a normal result and its one rounding for a subnormal one) */
static float numpy_simd_expf(float x)
{
    if (isnan(x))
        return NAN;
    if (x >= 88.72283935546875f)
        return INFINITY;
    if (x <= -103.97208404541015625f)
        return 0.0f;
    static const float p[6] = {9.999999999980870924916e-01f, 7.257664613233124478488e-01f, 2.473615434895520810817e-01f,
                               5.114512081637298353406e-02f, 6.757896990527504603057e-03f, 5.082762527590693718096e-04f};
    static const float q[3] = {1.000000000000000000000e+00f, -2.742335390411667452936e-01f, 2.159509375685829852307e-02f};
    const float magic = 0x1.8p23f; /* NPY_RINT_CVT_MAGICf: adding and subtracting it rounds to nearest even */
    volatile float scaled = x * 1.442695040888963407359924681001892137f; /* NPY_LOG2Ef */
    volatile float shifted = scaled + magic;
    const float k = shifted - magic;
    float y = fmaf(k, -6.93145752e-1f, x); /* NPY_CODY_WAITE_LOGE_2_HIGHf, then _LOWf (the third part is 0) */
    y = fmaf(k, -1.42860677e-6f, y);
    float num = fmaf(p[5], y, p[4]);
    for (int i = 3; i >= 0; i--)
        num = fmaf(num, y, p[i]);
    const float den = fmaf(fmaf(q[2], y, q[1]), y, q[0]);
    return ldexpf(num / den, (int)k);
}

float numpy_expf(float x, RngKernel kernel) { return kernel == RNG_KERNEL_TORCH_CPU_SCALAR ? expf(x) : numpy_simd_expf(x); }

float torch_logf(float x, RngKernel kernel) { return kernel == RNG_KERNEL_TORCH_CPU_SCALAR ? logf(x) : sleef_logf(x); }
float torch_expf(float x, RngKernel kernel) { return kernel == RNG_KERNEL_TORCH_CPU_SCALAR ? expf(x) : sleef_expf(x); }
float torch_expm1f(float x, RngKernel kernel)
{
    return kernel == RNG_KERNEL_TORCH_CPU_SCALAR ? expm1f(x) : sleef_expm1f(x);
}
