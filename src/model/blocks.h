/* blocks.h: the building blocks diffusers' UNets and VAE share (upstream: diffusers/models/resnet.py,
 * attention_processor.py, upsampling.py): their parameter lists in state-dict names, and their forward
 * passes through a backend's operation table (backend.h). Private to the model layer. */
#ifndef SOWER_BLOCKS_H
#define SOWER_BLOCKS_H

#include "backend.h"
#include "layers.h"
#include "unet.h"
#include "weights.h"

/* What a forward pass carries from block to block. */
typedef struct {
    const UNetOps *ops;
    void *be;              /* the backend's context */
    const float *emb_silu; /* (B, temb): SiLU of the time embedding, shared by every resnet; NULL: no
                            * time embedding (the VAE's resnets) */
    float *time_proj;      /* (B, max cout) scratch for a resnet's time projection */
    const Act *context;    /* (cross_attention_dim, B, 1, tokens): the text embeddings; NULL if unconditional */
} ForwardCtx;

/* ---- parameter lists ---- */
/* PREFIX.weight (cout, cin, k, k) and PREFIX.bias (cout,). */
int blocks_add_conv(WeightList *l, ConvParams *c, int cout, int cin, int k, const char *prefix) SOWER_MUST_CHECK;
int blocks_add_group_norm(WeightList *l, GroupNormParams *n, int channels, int groups, float eps,
                          const char *prefix) SOWER_MUST_CHECK;
/* ResnetBlock2D: norm1, conv1, time_emb_proj (when temb > 0), norm2, conv2, conv_shortcut (1x1, when
 * cin != cout). */
int blocks_add_resnet(WeightList *l, ResnetParams *r, int cin, int cout, int temb, int groups, float eps,
                      float output_scale, const char *prefix) SOWER_MUST_CHECK;
/* Attention with one or more heads of width dim_head over the pixels, its own GroupNorm, q/k/v/out with
 * biases (group_norm, to_q, to_k, to_v, to_out.0). */
int blocks_add_attention(WeightList *l, AttentionParams *a, int channels, int dim_head, int groups, float eps,
                         float rescale, const char *prefix) SOWER_MUST_CHECK;
/* The pre-0.17 name of an attention tensor (query, key, value, proj_attn, as SD 1.5-era files and old
 * UNet2DModel checkpoints have them), or "" if none: WeightBindRules.legacy_name. */
void blocks_legacy_attention_name(const char *name, char *legacy, size_t size);

/* ---- forward ---- */
/* out = (shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + time_proj(emb))))) / output_scale;
 * allocates out. */
int blocks_resnet_forward(const ResnetParams *r, const Act *x, Act *out, ForwardCtx *ctx) SOWER_MUST_CHECK;
/* out = l(in) at every token: a 1x1 convolution (bias may be NULL); allocates out. */
int blocks_pointwise(ForwardCtx *ctx, const LinearParams *l, const Act *in, Act *out) SOWER_MUST_CHECK;
/* Attention over the pixels, memory-bounded: out = (x + to_out(attention(q, k, v of group_norm(x)))) /
 * rescale, the scores of one block of queries at a time (attention_heads); allocates out. */
int blocks_attention_bounded(const AttentionParams *a, const Act *x, Act *out, ForwardCtx *ctx) SOWER_MUST_CHECK;

#endif /* SOWER_BLOCKS_H */
