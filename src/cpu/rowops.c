/* rowops.c: see rowops.h. */
#include "rowops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "clones.h"

#define ROW_INLINE static inline __attribute__((always_inline))

/* Cephes expf: x = n ln2 + r, |r| <= ln2/2 (n = x log2(e) rounded to nearest), degree-5 polynomial, scaled by 2^n through the
 * exponent bits. Inputs are clamped to [-87.3, 88.7] so 2^n stays a normal float. */
ROW_INLINE float exp_core(float x)
{
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    x = x > 88.7f ? 88.7f : x; /* ternaries, not fminf/fmaxf: those do not vectorise */
    x = x < -87.3f ? -87.3f : x;
    const float round_magic = 0x1.8p23f; /* (t + M) - M rounds t to the nearest integer, |t| < 2^22 */
    float n = (x * log2e + round_magic) - round_magic;
    float r = fmaf(n, -ln2_hi, x);
    r = fmaf(n, -ln2_lo, r);
    float p = 1.9875691500E-4f;
    p = fmaf(p, r, 1.3981999507E-3f);
    p = fmaf(p, r, 8.3334519073E-3f);
    p = fmaf(p, r, 4.1665795894E-2f);
    p = fmaf(p, r, 1.6666665459E-1f);
    p = fmaf(p, r, 5.0000001201E-1f);
    float r2 = r * r;
    float y = fmaf(p, r2, r) + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

ROW_INLINE float silu_core(float v) { return v / (1.0f + exp_core(-v)); }

/* erf(v) as 1 - erfc(|v|) (sign restored), erfc by the Chebyshev fit t exp(-v^2 + P(t)),
 * t = 1 / (1 + |v|/2) (Press et al., Numerical Recipes 6.2: relative error below 1.2e-7 everywhere),
 * through exp_core: no libm, the same bits on every machine. */
ROW_INLINE float erf_core(float v)
{
    float z = v < 0.0f ? -v : v;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = fmaf(p, t, -0.82215223f);
    p = fmaf(p, t, 1.48851587f);
    p = fmaf(p, t, -1.13520398f);
    p = fmaf(p, t, 0.27886807f);
    p = fmaf(p, t, -0.18628806f);
    p = fmaf(p, t, 0.09678418f);
    p = fmaf(p, t, 0.37409196f);
    p = fmaf(p, t, 1.00002368f);
    p = fmaf(p, t, -1.26551223f);
    float erfc = t * exp_core(p - z * z);
    float e = 1.0f - erfc;
    return v < 0.0f ? -e : e;
}


SOWER_CLONES void row_affine_silu(float *y, const float *x, size_t n, float scale, float shift)
{
    for (size_t i = 0; i < n; i++)
        y[i] = silu_core(scale * x[i] + shift);
}

SOWER_CLONES void row_affine(float *y, const float *x, size_t n, float scale, float shift)
{
    for (size_t i = 0; i < n; i++)
        y[i] = scale * x[i] + shift;
}

SOWER_CLONES void row_silu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = silu_core(x[i]);
}

SOWER_CLONES void row_quick_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + exp_core(-1.702f * x[i]));
}

SOWER_CLONES void row_gelu_erf(float *x, size_t n)
{
    const float rsqrt2 = 0.70710678118654752f;
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erf_core(x[i] * rsqrt2));
}

enum { LANES = 8 };

SOWER_CLONES double row_sum(const float *x, size_t n)
{
    double acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += (double)x[i + j];
    for (int j = 0; i < n; i++, j++)
        acc[j] += (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

SOWER_CLONES double row_sum_sq_dev(const float *x, size_t n, double mean)
{
    double acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double d = (double)x[i + j] - mean;
            acc[j] += d * d;
        }
    for (int j = 0; i < n; i++, j++) {
        double d = (double)x[i] - mean;
        acc[j] += d * d;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

SOWER_CLONES void row_softmax_scaled(float *x, size_t n, float scale)
{
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        x[i] *= scale;
        max = x[i] > max ? x[i] : max;
    }
    for (size_t i = 0; i < n; i++)
        x[i] = exp_core(x[i] - max);
    float inv = (float)(1.0 / row_sum(x, n));
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

SOWER_CLONES void row_layer_norm(float *y, const float *x, size_t n, const float *gamma, const float *beta, float eps)
{
    double mean = row_sum(x, n) / (double)n;
    double var = row_sum_sq_dev(x, n, mean) / (double)n;
    float m = (float)mean, rstd = (float)(1.0 / sqrt(var + (double)eps));
    for (size_t i = 0; i < n; i++)
        y[i] = fmaf((x[i] - m) * rstd, gamma[i], beta[i]);
}

SOWER_CLONES void tokens_layer_norm(float *y, const float *x, size_t stride, size_t count, int c, const float *gamma,
                                    const float *beta, float eps)
{
    double sum[ROW_TOKEN_BLOCK] = {0}, sq[ROW_TOKEN_BLOCK] = {0}; /* per token, over channels in order */
    for (int ch = 0; ch < c; ch++) {
        const float *xc = x + (size_t)ch * stride;
        for (size_t t = 0; t < count; t++)
            sum[t] += (double)xc[t];
    }
    for (size_t t = 0; t < count; t++)
        sum[t] /= (double)c; /* now the mean */
    for (int ch = 0; ch < c; ch++) {
        const float *xc = x + (size_t)ch * stride;
        for (size_t t = 0; t < count; t++) {
            const double d = (double)xc[t] - sum[t];
            sq[t] += d * d;
        }
    }
    float mean[ROW_TOKEN_BLOCK], rstd[ROW_TOKEN_BLOCK];
    for (size_t t = 0; t < count; t++) {
        mean[t] = (float)sum[t];
        rstd[t] = (float)(1.0 / sqrt(sq[t] / (double)c + (double)eps));
    }
    for (int ch = 0; ch < c; ch++) {
        const float *xc = x + (size_t)ch * stride;
        float *yc = y + (size_t)ch * stride;
        for (size_t t = 0; t < count; t++)
            yc[t] = fmaf((xc[t] - mean[t]) * rstd[t], gamma[ch], beta[ch]);
    }
}
