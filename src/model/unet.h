/* unet.h: diffusers' UNet2DModel (unconditional) and UNet2DConditionModel (Stable Diffusion 1.x/2.x),
 * float32, on any backend (backend.h).
 *
 * UNet2DConditionModel: CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D,
 * CrossAttnUpBlock2D; Transformer2DModel with one BasicTransformerBlock (self-attention,
 * cross-attention on the text embeddings, GEGLU), conv or linear projections.
 * UNet2DModel: DownBlock2D, AttnDownBlock2D, UpBlock2D, AttnUpBlock2D, UNetMidBlock2D (with or
 * without attention), ResnetBlock2D with 1x1 shortcut, one- and multi-head attention, positional
 * time embedding, conv down/upsampling. Weights are bound by their diffusers state-dict names
 * (legacy attention names query/key/value/proj_attn are accepted too) and used in place. */
#ifndef SOWER_UNET_H
#define SOWER_UNET_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "layers.h"
#include "safetensors.h"
#include "weights.h"

enum { UNET_MAX_BLOCKS = 8, UNET_MAX_LAYERS = 8 };

typedef struct {
    int in_channels, out_channels;
    int sample_height, sample_width;     /* sample_size: int or [h, w] */
    int center_input_sample;
    int flip_sin_to_cos;
    float freq_shift;
    int n_blocks;
    int block_out_channels[UNET_MAX_BLOCKS];
    int down_has_attention[UNET_MAX_BLOCKS]; /* AttnDownBlock2D vs DownBlock2D */
    int up_has_attention[UNET_MAX_BLOCKS];   /* AttnUpBlock2D vs UpBlock2D */
    int layers_per_block;
    float mid_block_scale_factor;
    int downsample_padding;
    int attention_head_dim;              /* 0: null (one head of all channels) */
    int norm_num_groups;
    int attn_norm_num_groups;            /* 0: null (the resnets' groups) */
    float norm_eps;
    int add_attention;                   /* the mid block's attention (conditional: UNetMidBlock2DCrossAttn) */
    /* UNet2DConditionModel (conditional = 1): down/up_has_attention then mean CrossAttnDownBlock2D /
     * CrossAttnUpBlock2D, whose attentions are Transformer2DModels over the text embeddings. */
    int conditional;
    int cross_attention_dim;             /* the text embeddings' width */
    int heads[UNET_MAX_BLOCKS];          /* heads of down block i's transformers (diffusers' attention_head_dim) */
    int use_linear_projection;           /* proj_in/proj_out are Linear (SD 2.x), not 1x1 conv: same product */
    int upcast_attention;                /* float32 everywhere already: recorded, no effect */
} UNetConfig;

/* Parses a UNet2DModel or UNet2DConditionModel (by its _class_name) config.json with diffusers' defaults
 * for missing keys. Unsupported values
 * fail with SOWER_EMODEL naming the key and the supported values. */
int unet_config_parse(const char *json_text, size_t len, const char *path, UNetConfig *cfg) SOWER_MUST_CHECK;

typedef struct {
    GroupNormParams norm1, norm2;
    ConvParams conv1, conv2, shortcut; /* shortcut.weight NULL when cin == cout */
    LinearParams time_proj;
    float output_scale;
} ResnetParams;

typedef struct {
    int n_layers;
    ResnetParams resnets[UNET_MAX_LAYERS];
    int has_attention;
    AttentionParams attentions[UNET_MAX_LAYERS];     /* UNet2DModel */
    TransformerParams transformers[UNET_MAX_LAYERS]; /* UNet2DConditionModel */
    int has_sampler;                   /* downsampler or upsampler */
    ConvParams sampler;
} BlockParams;

typedef struct {
    UNetConfig cfg;
    ConvParams conv_in, conv_out;
    LinearParams time_linear_1, time_linear_2;
    BlockParams down[UNET_MAX_BLOCKS], up[UNET_MAX_BLOCKS];
    ResnetParams mid_resnets[2];
    int mid_has_attention;
    AttentionParams mid_attention;
    TransformerParams mid_transformer;
    GroupNormParams norm_out;
    WeightList weights; /* every tensor the model needs, in construction order */
} UNet;

/* Builds the architecture for cfg (checking it is consistent) and lists its parameters. */
int unet_init(UNet *u, const UNetConfig *cfg) SOWER_MUST_CHECK;
/* Points every parameter at its tensor in weights: every expected tensor must be present with the
 * expected shape, and no other tensor may be. The weights must outlive u. */
int unet_bind(UNet *u, const StFile *weights) SOWER_MUST_CHECK;
/* Whether the UNet takes samples of height x width as diffusers' does: 0 if so, else 1 with why (what is
 * wrong, to follow "latents of HxW are" or "sample size HxW is"). A UNet2DModel's must halve evenly at
 * each downsampling (its up blocks concatenate skips of exactly twice their size); a UNet2DConditionModel's
 * may be any size, each odd level upsampled back to its skip's (forward_upsample_size), but a downsampling
 * without padding (downsample_padding 0: pad (0, 1, 0, 1), then 3x3 stride 2) needs 2 rows and columns:
 * torch refuses a padded input smaller than the kernel. */
int unet_size_problem(const UNetConfig *cfg, int height, int width, char *why, size_t why_size);
void unet_free(UNet *u);

typedef struct ComputeBackend ComputeBackend; /* backend.h */

/* One forward pass of the backend's model: x (batch, in_channels, H, W) NCHW and timesteps
 * (batch,), both in host memory -> out (batch, out_channels, H, W) in host memory. A UNet2DModel's
 * H and W must be multiples of unet_size_multiple (diffusers' UNet2DModel cannot concatenate a rounded
 * level either); a UNet2DConditionModel takes any size, as diffusers' does (forward_upsample_size). */
int unet_forward_on(const ComputeBackend *be, const float *x, const float *timesteps, int batch, int height,
                    int width, float *out) SOWER_MUST_CHECK;
/* The same with x and out in the backend's memory (ops->buffer_alloc): what the pipeline runs, so
 * that samples stay on the device between steps. */
int unet_forward_resident(const ComputeBackend *be, const float *x, const float *timesteps, int batch, int height,
                          int width, float *out) SOWER_MUST_CHECK;

/* UNet2DConditionModel: the same with the text embeddings, (batch, tokens, cross_attention_dim) in host
 * memory (the _on form), or already in backend memory as unet_context_upload lays them out. */
int unet_forward_on_cond(const ComputeBackend *be, const float *x, const float *timesteps, const float *embeddings,
                         int tokens, int batch, int height, int width, float *out) SOWER_MUST_CHECK;
int unet_forward_resident_cond(const ComputeBackend *be, const float *x, const float *timesteps, const Act *context,
                               int batch, int height, int width, float *out) SOWER_MUST_CHECK;
/* embeddings (batch, tokens, cross_attention_dim) host -> context (cross_attention_dim, batch, 1, tokens) in
 * backend memory (allocated; free with ops->act_free). */
int unet_context_upload(const ComputeBackend *be, const float *embeddings, int batch, int tokens,
                        Act *context) SOWER_MUST_CHECK;

#endif /* SOWER_UNET_H */
