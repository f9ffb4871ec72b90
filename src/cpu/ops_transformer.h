/* ops_transformer.h: the CPU backend's operations for UNet2DConditionModel's transformers
 * (backend.h's layer_norm, attention_heads, geglu), float32 on (C, B, H, W) activations (ops.h). */
#ifndef SOWER_OPS_TRANSFORMER_H
#define SOWER_OPS_TRANSFORMER_H

#include "err.h"
#include "layers.h"
#include "ops.h"
#include "scratch.h"

/* out = LayerNorm over channels of every token of in (both moments in double); out may be in. */
void op_layer_norm_channels(const LayerNormParams *p, const Act *in, Act *out);
/* backend.h's attention_heads: queries in blocks whose scores fit 16 MB; allocates out. */
int op_attention_heads(int heads, const Act *q, const Act *k, const Act *v, Act *out,
                       Scratch *scratch) SOWER_MUST_CHECK;
/* out (C/2, ...) = in[:C/2] * gelu(in[C/2:]); allocates out. */
int op_geglu(const Act *in, Act *out) SOWER_MUST_CHECK;

#endif /* SOWER_OPS_TRANSFORMER_H */
