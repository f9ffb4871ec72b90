/* vae.h: the decoder of diffusers' AutoencoderKL, as StableDiffusionPipeline runs it for output_type
 * "pil"/"np"/"pt": images = vae.decode(latents / scaling_factor).sample, float32 (B, 3, H, W) in about
 * [-1, 1] (upstream: diffusers/models/autoencoders/autoencoder_kl.py, vae.py's Decoder,
 * unet_2d_blocks.py's UNetMidBlock2D and UpDecoderBlock2D).
 *
 * Decoder: post_quant_conv (1x1), conv_in (3x3), mid block (resnet, one-head attention over the pixels,
 * resnet), up blocks in reversed channel order (layers_per_block + 1 resnets without time embedding,
 * nearest x2 + 3x3 conv except the last), GroupNorm + SiLU, conv_out. Every GroupNorm eps 1e-6.
 * Only the decoder's tensors are bound; the encoder's (encoder.*, quant_conv.*) are left unread.
 *
 * Each sample is decoded on its own, so a sample's bits never depend on the batch it came in and the
 * working memory is one sample's (512x512, SD's 128..512 channels: about 1.4 GB with the CPU's
 * convolution scratch; the mid attention holds one block of queries' scores at a time). */
#ifndef SOWER_VAE_H
#define SOWER_VAE_H

#include <stddef.h>

#include "digest.h"
#include "err.h"
#include "layers.h"
#include "safetensors.h"
#include "unet.h"
#include "weights.h"

enum { VAE_MAX_BLOCKS = 8, VAE_MAX_LAYERS = 8 };

typedef struct {
    int latent_channels, out_channels;
    int n_blocks;
    int block_out_channels[VAE_MAX_BLOCKS];
    int layers_per_block;
    int norm_num_groups;
    int mid_attention;        /* mid_block_add_attention */
    int post_quant_conv;      /* use_post_quant_conv */
    float scaling_factor;     /* latents are divided by it before decoding (SD 1.x/2.x: 0.18215) */
    int scale_factor;         /* pixels per latent: 2^(n_blocks - 1) */
} VaeConfig;

/* Parses an AutoencoderKL config.json with diffusers' defaults for missing keys; unsupported values
 * fail with SOWER_EMODEL naming the file and key. */
int vae_config_parse(const char *json_text, size_t len, const char *path, VaeConfig *cfg) SOWER_MUST_CHECK;

typedef struct {
    ResnetParams resnets[VAE_MAX_LAYERS];
    int has_upsampler;
    ConvParams upsampler; /* after nearest x2 */
} VaeUpBlock;

typedef struct {
    VaeConfig cfg;
    char config_path[4200], weights_path[4200];
    unsigned char weights_sha256[DIGEST_BYTES];
    unsigned char config_sha256[DIGEST_BYTES]; /* config.json's bytes */
    unsigned char sha256[DIGEST_BYTES];        /* the VAE's digest, what provenance names: SHA-256 of the two above
                                                * (scaling_factor decides the pixels as much as the weights do) */
    ConvParams post_quant_conv, conv_in, conv_out;
    ResnetParams mid_resnets[2];
    AttentionParams mid_attention;
    VaeUpBlock up[VAE_MAX_BLOCKS];
    GroupNormParams norm_out;
    WeightList weights_list; /* the decoder's tensors, in construction order */
    StFile weights;
} Vae;

/* Reads MODEL_DIR/vae/ (config.json, diffusion_pytorch_model.safetensors), checks it and binds the
 * decoder's tensors; digests the weight file. SOWER_EMODEL naming the file (and key or tensor). */
int vae_load(Vae *v, const char *model_dir) SOWER_MUST_CHECK;
void vae_free(Vae *v); /* safe on a zeroed Vae */

typedef struct ComputeBackend ComputeBackend; /* backend.h */

/* latents (batch, latent_channels, h, w) host -> images (batch, out_channels, h * scale_factor,
 * w * scale_factor) host: vae.decode(latents / scaling_factor).sample, one sample at a time on be. */
int vae_decode(const ComputeBackend *be, const Vae *v, const float *latents, int batch, int h, int w,
               float *images) SOWER_MUST_CHECK;

/* A pixel-space value to a byte as diffusers' postprocess makes it (output_type "np"/"pil"):
 * (x / 2 + 0.5).clamp(0, 1) * 255, rounded half to even. */
unsigned char vae_pixel_byte(float x);

#endif /* SOWER_VAE_H */
