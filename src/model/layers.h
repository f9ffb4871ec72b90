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
    const float *bias;   /* (cout,) */
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

/* Sinusoidal timestep embedding (diffusers get_timestep_embedding), on the host for every backend:
 * emb (batch, dim). */
void timestep_embedding(const int64_t *timesteps, int batch, int dim, int flip_sin_to_cos, float freq_shift,
                           float *emb);

#endif /* SOWER_LAYERS_H */
