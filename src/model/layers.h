/* layers.h: the tensors and layer parameters every backend computes on (backend.h).
 *
 * Activations are (C, B, H, W): channel-major with the batch inside each channel, so a
 * convolution over the whole batch is ONE matrix multiply whose per-element reduction order does
 * not depend on B. Weights are the diffusers tensors as stored (row-major), used in place on the
 * CPU, mirrored on a device by the CUDA backend. */
#ifndef SOWER_LAYERS_H
#define SOWER_LAYERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float *data; /* (c, b, h, w) */
    int c, b, h, w;
} Act;

static inline size_t act_plane(const Act *a) { return (size_t)a->b * a->h * a->w; }
static inline size_t act_numel(const Act *a) { return (size_t)a->c * act_plane(a); }
typedef struct {
    const float *weight; /* (cout, cin, k, k) */
    const float *bias;   /* (cout,), or NULL: no bias (the transformers' to_q/k/v) */
    int cout, cin, k;
} ConvParams;

typedef struct {
    int stride;
    int pad_top, pad_left, pad_bottom, pad_right;
} ConvGeometry;

typedef struct {
    const float *weight; /* (out, in) */
    const float *bias;   /* (out,) */
    int out, in;
} LinearParams;

typedef struct {
    const float *gamma, *beta; /* (channels,) */
    int channels, groups;
    float eps;
} GroupNormParams;

typedef struct {
    GroupNormParams norm;
    LinearParams q, k, v, out; /* (C, C) each */
    int channels, heads, dim_head;
    float rescale_output; /* the output is divided by it (1 in practice) */
} AttentionParams;

/* LayerNorm over channels: for every token (each pixel of each sample) of a (C, B, H, W) activation,
 * or every row of a (tokens, C) matrix. */
typedef struct {
    const float *gamma, *beta; /* (channels,) */
    int channels;
    float eps;
} LayerNormParams;

/* diffusers' Attention inside a BasicTransformerBlock: out = to_out(softmax(q k^T / sqrt(dim_head)) v)
 * per head, q = to_q(x), k = to_k(c), v = to_v(c), c = x (self-attention) or the text embeddings
 * (cross-attention). No bias on q, k, v (bias NULL); to_out has one. */
typedef struct {
    LinearParams q, k, v; /* (heads * dim_head, query or context dim) */
    LinearParams out;     /* (query dim, heads * dim_head) */
    int heads, dim_head;
} MultiHeadAttentionParams;

/* BasicTransformerBlock (norm_type layer_norm, GEGLU feed-forward):
 *   x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff_out(geglu(ff_in(norm3(x)))). */
typedef struct {
    LayerNormParams norm1, norm2, norm3;
    MultiHeadAttentionParams attn1, attn2;
    LinearParams ff_in;  /* (2 * inner, C): GEGLU's proj, value half then gate half */
    LinearParams ff_out; /* (C, inner) */
} TransformerBlockParams;

enum { UNET_MAX_TRANSFORMER_DEPTH = 1 }; /* transformer_layers_per_block: SD 1.x and 2.x have 1 */

/* Transformer2DModel (continuous input): out = proj_out(blocks(proj_in(group_norm(x)))) + x, proj_in and
 * proj_out 1x1 convolutions or Linear layers (use_linear_projection): the same (C, C) product here. */
typedef struct {
    GroupNormParams norm; /* eps 1e-6 */
    LinearParams proj_in, proj_out;
    TransformerBlockParams blocks[UNET_MAX_TRANSFORMER_DEPTH];
    int depth;
} TransformerParams;

/* Sinusoidal timestep embedding (diffusers get_timestep_embedding), on the host for every backend:
 * emb (batch, dim). */
void timestep_embedding(const float *timesteps, int batch, int dim, int flip_sin_to_cos, float freq_shift,
                           float *emb);

#endif /* SOWER_LAYERS_H */
