/* ops.h: the CPU backend's operations for UNet2DModel, float32, on layers.h's tensors.
 *
 * Activations are (C, B, H, W): channel-major with the batch inside each channel, so a
 * convolution over the whole batch is ONE matrix multiply, W (Cout, Cin*k*k) . cols
 * (Cin*k*k, B*H*W), whose per-element reduction order does not depend on B (gemm.h); the columns
 * are packed straight from the activation into the microkernel's panels, never stored as an
 * im2col matrix, with the bits of im2col + gemm_f32 (conv.h). 3x3 "same" convolutions on large
 * enough images are 16 such products over the batch's 2x2 tiles instead (Winograd F(2x2, 3x3),
 * winograd.h), chosen by the layer and image size, never the batch. Every
 * other operation computes each output element from its own sample only, in a fixed order, so a
 * sample's bits never depend on the batch or the thread count. Weights are the diffusers tensors
 * as stored (row-major), used in place. */
#ifndef SOWER_OPS_H
#define SOWER_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "layers.h"
#include "scratch.h"

int act_alloc(Act *a, int c, int b, int h, int w) SOWER_MUST_CHECK;
void act_free(Act *a); /* safe on a zeroed Act */


/* out = conv(in) + bias; allocates out (cout, B, Ho, Wo). 1x1 convolutions too (k = 1, no padding). */
int op_conv2d(const ConvParams *p, ConvGeometry g, const Act *in, Act *out, Scratch *scratch) SOWER_MUST_CHECK;
/* out = group_norm(in) (then SiLU if silu); out may be in. */
void op_group_norm(const GroupNormParams *p, const Act *in, Act *out, int silu);
/* x = x / (1 + exp(-x)), element-wise, in place. */
void op_silu(float *x, size_t n);
/* y (batch, out) = x (batch, in) W^T + b. */
void op_linear(const LinearParams *p, const float *x, int batch, float *y);
/* out (C, B, out_h, out_w) = torch's nearest upsampling of in (model/upsample_index.h); allocates out. */
int op_upsample_nearest(const Act *in, int out_h, int out_w, Act *out) SOWER_MUST_CHECK;
/* out = (attention(group_norm(x)) + x) / rescale_output; allocates out. */
int op_attention(const AttentionParams *p, const Act *x, Act *out, Scratch *scratch) SOWER_MUST_CHECK;

/* Per-operation time, for bench/ (off unless enabled; adds two clock reads per operation). */
typedef enum {
    PROF_IM2COL,
    PROF_CONV_GEMM,
    PROF_POINTWISE_GEMM,
    PROF_GROUP_NORM,
    PROF_ATTENTION,
    PROF_UPSAMPLE,
    PROF_ELEMENTWISE,
    PROF_COUNT
} ProfCategory;
void ops_profile_enable(int on);
void ops_profile_add(ProfCategory c, double since); /* since: ops_profile_now() at the start */
double ops_profile_now(void); /* 0 when profiling is off */
/* Prints seconds and share per category, then resets. */
void ops_profile_report(FILE *stream);

#endif /* SOWER_OPS_H */
