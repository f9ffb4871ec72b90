/* rowops.h: the element-wise and reduction inner loops of the CPU backend.
 *
 * Each is written in portable C whose result does not depend on how the compiler vectorises it:
 * element-wise loops have no reductions, and the reductions use a fixed set of 8 partial sums
 * combined in a fixed order. Explicit fmaf() is the only fusion. On x86-64 they are compiled twice
 * (baseline and x86-64-v3, chosen at load time by the CPU); both clones give the same bits, since
 * fmaf is exactly rounded whether done in hardware or by libm. */
#ifndef SOWER_ROWOPS_H
#define SOWER_ROWOPS_H

#include <stddef.h>

/* y[i] = silu(scale * x[i] + shift) (silu(v) = v / (1 + exp(-v))); y may be x. */
void row_affine_silu(float *y, const float *x, size_t n, float scale, float shift);
/* y[i] = scale * x[i] + shift; y may be x. */
void row_affine(float *y, const float *x, size_t n, float scale, float shift);
/* x[i] = silu(x[i]). */
void row_silu(float *x, size_t n);
/* x[i] = x[i] * sigmoid(1.702 x[i]) (CLIP's quick_gelu). */
void row_quick_gelu(float *x, size_t n);
/* x[i] = x[i] / 2 * (1 + erf(x[i] / sqrt 2)) (torch's exact gelu; erf to about 1e-7). */
void row_gelu_erf(float *x, size_t n);
/* Sum of x in double, and sum of (x - mean)^2 in double (fixed 8-way partial sums). exp is a
 * Cephes-style expf (about 1 ulp) with explicit fmaf: the same bits on every machine, no libm. */
double row_sum(const float *x, size_t n);
double row_sum_sq_dev(const float *x, size_t n, double mean);
/* x[i] = softmax(scale * x)[i] over the row, max-subtracted; the sum in double (8 partial sums). */
void row_softmax_scaled(float *x, size_t n, float scale);

/* y (n,) = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta: one LayerNorm row (biased variance,
 * both moments in double); y may be x. */
void row_layer_norm(float *y, const float *x, size_t n, const float *gamma, const float *beta, float eps);

/* The same LayerNorm for `count` <= ROW_TOKEN_BLOCK tokens whose c features lie `stride` floats apart
 * (channel-major activations, ops.h): y[ch * stride + t] from x[ch * stride + t]. Each token's moments
 * sum its channels in order, in double (vectorised across tokens, so the order is the token's own,
 * whatever the block). y may be x. */
enum { ROW_TOKEN_BLOCK = 256 };
void tokens_layer_norm(float *y, const float *x, size_t stride, size_t count, int c, const float *gamma,
                       const float *beta, float eps);

#endif /* SOWER_ROWOPS_H */
