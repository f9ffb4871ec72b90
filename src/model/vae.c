/* vae.c: AutoencoderKL's config, decoder parameters and decode pass (see vae.h). */
#define _POSIX_C_SOURCE 200809L
#include "vae.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "blocks.h"
#include "config_file.h"
#include "json_keys.h"

enum { VAE_CONFIG_MAX_BYTES = 1 << 20, VAE_MAX_CHANNELS = 8192 };
static const float VAE_EPS = 1e-6f; /* every GroupNorm of the decoder (Decoder passes resnet_eps=1e-6) */

/* ---- config.json ---- */

static int parse_object(const cJSON *obj, const char *path, VaeConfig *cfg)
{
    static const char *const classes[] = {"AutoencoderKL", NULL};
    static const char *const silu[] = {"silu", "swish", NULL}; /* diffusers' get_activation: both nn.SiLU */
    SOWER_TRY(json_key_one_of(obj, path, "_class_name", classes, 0));
    SOWER_TRY(json_key_one_of(obj, path, "act_fn", silu, 0));
    SOWER_TRY(json_key_int(obj, path, "latent_channels", 1, 64, &cfg->latent_channels, 0, NULL));
    SOWER_TRY(json_key_int(obj, path, "out_channels", 1, 64, &cfg->out_channels, 0, NULL));
    SOWER_TRY(json_key_int(obj, path, "layers_per_block", 1, VAE_MAX_LAYERS - 1, &cfg->layers_per_block, 0, NULL));
    SOWER_TRY(json_key_int(obj, path, "norm_num_groups", 1, VAE_MAX_CHANNELS, &cfg->norm_num_groups, 0, NULL));
    SOWER_TRY(json_key_bool(obj, path, "mid_block_add_attention", &cfg->mid_attention));
    SOWER_TRY(json_key_bool(obj, path, "use_post_quant_conv", &cfg->post_quant_conv));
    SOWER_TRY(json_key_float(obj, path, "scaling_factor", 1e-6, 1e6, &cfg->scaling_factor));
    SOWER_TRY(json_key_int_list(obj, path, "block_out_channels", 1, VAE_MAX_CHANNELS, VAE_MAX_BLOCKS,
                                cfg->block_out_channels, &cfg->n_blocks));
    int n_up = cfg->n_blocks;
    SOWER_TRY(json_key_string_list_is(obj, path, "up_block_types", "UpDecoderBlock2D", VAE_MAX_BLOCKS, &n_up));
    if (n_up != cfg->n_blocks)
        return SOWER_FAIL(SOWER_EMODEL, "%s: up_block_types (%d) and block_out_channels (%d) must have the same length",
                          path, n_up, cfg->n_blocks);
    for (int i = 0; i < cfg->n_blocks; i++)
        if (cfg->block_out_channels[i] % cfg->norm_num_groups)
            return SOWER_FAIL(SOWER_EMODEL, "%s: key 'norm_num_groups': %d does not divide block_out_channels[%d] = %d",
                              path, cfg->norm_num_groups, i, cfg->block_out_channels[i]);
    cfg->scale_factor = 1 << (cfg->n_blocks - 1);
    return SOWER_OK;
}

int vae_config_parse(const char *json_text, size_t len, const char *path, VaeConfig *cfg)
{
    /* AutoencoderKL.__init__'s defaults (diffusers 0.31) */
    *cfg = (VaeConfig){.latent_channels = 4,
                       .out_channels = 3,
                       .n_blocks = 1,
                       .block_out_channels = {64},
                       .layers_per_block = 1,
                       .norm_num_groups = 32,
                       .mid_attention = 1,
                       .post_quant_conv = 1,
                       .scaling_factor = 0.18215f};
    cJSON *obj;
    SOWER_TRY(json_parse_config(json_text, len, path, SOWER_EMODEL, &obj));
    int status = json_drop_default_keys(obj, path);
    if (status == SOWER_OK) status = parse_object(obj, path, cfg);
    cJSON_Delete(obj);
    return status;
}

/* ---- the decoder's parameters, in diffusers' names ---- */

static int vae_init(Vae *v)
{
    const VaeConfig *cfg = &v->cfg;
    WeightList *l = &v->weights_list;
    const int n = cfg->n_blocks, groups = cfg->norm_num_groups, top = cfg->block_out_channels[n - 1];
    char name[128];
    if (cfg->post_quant_conv)
        SOWER_TRY(blocks_add_conv(l, &v->post_quant_conv, cfg->latent_channels, cfg->latent_channels, 1,
                                  "post_quant_conv"));
    SOWER_TRY(blocks_add_conv(l, &v->conv_in, top, cfg->latent_channels, 3, "decoder.conv_in"));
    SOWER_TRY(blocks_add_resnet(l, &v->mid_resnets[0], top, top, 0, groups, VAE_EPS, 1.0f,
                                "decoder.mid_block.resnets.0"));
    if (cfg->mid_attention) /* one head of all channels: attention_head_dim = channels */
        SOWER_TRY(blocks_add_attention(l, &v->mid_attention, top, top, groups, VAE_EPS, 1.0f,
                                       "decoder.mid_block.attentions.0"));
    SOWER_TRY(blocks_add_resnet(l, &v->mid_resnets[1], top, top, 0, groups, VAE_EPS, 1.0f,
                                "decoder.mid_block.resnets.1"));
    int out_ch = top;
    for (int i = 0; i < n; i++) {
        VaeUpBlock *blk = &v->up[i];
        const int prev = out_ch;
        out_ch = cfg->block_out_channels[n - 1 - i];
        for (int j = 0; j < cfg->layers_per_block + 1; j++) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.%d", i, j);
            SOWER_TRY(blocks_add_resnet(l, &blk->resnets[j], j == 0 ? prev : out_ch, out_ch, 0, groups, VAE_EPS, 1.0f,
                                        name));
        }
        blk->has_upsampler = i != n - 1;
        if (blk->has_upsampler) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            SOWER_TRY(blocks_add_conv(l, &blk->upsampler, out_ch, out_ch, 3, name));
        }
    }
    SOWER_TRY(blocks_add_group_norm(l, &v->norm_out, cfg->block_out_channels[0], groups, VAE_EPS,
                                    "decoder.conv_norm_out"));
    SOWER_TRY(blocks_add_conv(l, &v->conv_out, cfg->out_channels, cfg->block_out_channels[0], 3, "decoder.conv_out"));
    return SOWER_OK;
}

/* The encoder's tensors: in every AutoencoderKL file, never used to decode. */
static int is_encoder_tensor(const char *name)
{
    return strncmp(name, "encoder.", 8) == 0 || strncmp(name, "quant_conv.", 11) == 0;
}

static int load(Vae *v, const char *model_dir)
{
    snprintf(v->config_path, sizeof v->config_path, "%s/vae/config.json", model_dir);
    snprintf(v->weights_path, sizeof v->weights_path, "%s/vae/diffusion_pytorch_model.safetensors", model_dir);
    char *text = NULL; /* (bytes + 1,) */
    size_t bytes = 0;
    SOWER_TRY(config_file_read(v->config_path, "VAE config", VAE_CONFIG_MAX_BYTES, SOWER_EMODEL, &text, &bytes));
    int status = vae_config_parse(text, bytes, v->config_path, &v->cfg);
    if (status == SOWER_OK) status = digest_buffer(text, bytes, v->config_sha256);
    free(text);
    SOWER_TRY(status);
    SOWER_TRY(vae_init(v));
    struct stat st;
    if (stat(v->weights_path, &st) != 0)
        return SOWER_FAIL(SOWER_EMODEL, "%s: no such file (the VAE weights, in safetensors format)", v->weights_path);
    SOWER_TRY(safetensors_open_except(&v->weights, v->weights_path, is_encoder_tensor));
    const WeightBindRules rules = {.model = "AutoencoderKL decoder",
                                   .legacy_name = blocks_legacy_attention_name,
                                   .ignored_if = is_encoder_tensor};
    SOWER_TRY(weight_list_bind(&v->weights_list, &v->weights, &rules));
    SOWER_TRY(safetensors_check_finite(&v->weights));
    SOWER_TRY(safetensors_digest(&v->weights, v->weights_sha256));
    unsigned char both[2 * DIGEST_BYTES]; /* (config digest, weights digest) */
    memcpy(both, v->config_sha256, DIGEST_BYTES);
    memcpy(both + DIGEST_BYTES, v->weights_sha256, DIGEST_BYTES);
    return digest_buffer(both, sizeof both, v->sha256);
}

int vae_load(Vae *v, const char *model_dir)
{
    memset(v, 0, sizeof *v);
    int status = load(v, model_dir);
    if (status != SOWER_OK) vae_free(v);
    return status;
}

void vae_free(Vae *v)
{
    weight_list_free(&v->weights_list);
    safetensors_close(&v->weights);
    memset(v, 0, sizeof *v);
}

unsigned char vae_pixel_byte(float x)
{
    float v = x / 2.0f + 0.5f;
    v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    return (unsigned char)lrintf(v * 255.0f);
}

/* ---- decode ---- */

/* h <- next, freeing the old h. */
static void replace(ForwardCtx *ctx, Act *h, Act *next)
{
    ctx->ops->act_free(ctx->be, h);
    *h = *next;
    *next = (Act){0};
}

/* z (latent_channels, 1, h, w) in backend memory (consumed) -> image (out_channels, 1, H, W). */
static int decoder_forward(const Vae *v, ForwardCtx *ctx, Act *z, Act *image)
{
    const UNetOps *ops = ctx->ops;
    const ConvGeometry same = {1, 1, 1, 1, 1}, pointwise = {1, 0, 0, 0, 0};
    Act h = *z, next = {0};
    *z = (Act){0};
    int status = SOWER_OK;
    if (v->cfg.post_quant_conv) {
        SOWER_TRY_GOTO(ops->conv2d(ctx->be, &v->post_quant_conv, pointwise, &h, &next), status, done);
        replace(ctx, &h, &next);
    }
    SOWER_TRY_GOTO(ops->conv2d(ctx->be, &v->conv_in, same, &h, &next), status, done);
    replace(ctx, &h, &next);
    SOWER_TRY_GOTO(blocks_resnet_forward(&v->mid_resnets[0], &h, &next, ctx), status, done);
    replace(ctx, &h, &next);
    if (v->cfg.mid_attention) {
        SOWER_TRY_GOTO(blocks_attention_bounded(&v->mid_attention, &h, &next, ctx), status, done);
        replace(ctx, &h, &next);
    }
    SOWER_TRY_GOTO(blocks_resnet_forward(&v->mid_resnets[1], &h, &next, ctx), status, done);
    replace(ctx, &h, &next);
    for (int i = 0; i < v->cfg.n_blocks; i++) {
        const VaeUpBlock *blk = &v->up[i];
        for (int j = 0; j < v->cfg.layers_per_block + 1; j++) {
            SOWER_TRY_GOTO(blocks_resnet_forward(&blk->resnets[j], &h, &next, ctx), status, done);
            replace(ctx, &h, &next);
        }
        if (blk->has_upsampler) {
            SOWER_TRY_GOTO(ops->upsample_nearest(ctx->be, &h, 2 * h.h, 2 * h.w, &next), status, done);
            replace(ctx, &h, &next);
            SOWER_TRY_GOTO(ops->conv2d(ctx->be, &blk->upsampler, same, &h, &next), status, done);
            replace(ctx, &h, &next);
        }
    }
    SOWER_TRY_GOTO(ops->group_norm(ctx->be, &v->norm_out, &h, &h, 1), status, done);
    SOWER_TRY_GOTO(ops->conv2d(ctx->be, &v->conv_out, same, &h, image), status, done);
done:
    ops->act_free(ctx->be, &h);
    ops->act_free(ctx->be, &next);
    return status;
}

int vae_decode(const ComputeBackend *be, const Vae *v, const float *latents, int batch, int h, int w, float *images)
{
    const UNetOps *ops = be->ops;
    const VaeConfig *cfg = &v->cfg;
    const size_t in_values = (size_t)cfg->latent_channels * h * w;
    const size_t out_values = (size_t)cfg->out_channels * h * cfg->scale_factor * w * cfg->scale_factor;
    if (!be->mirror_weights)
        return SOWER_FAIL(SOWER_EINTERNAL, "vae_decode: the backend cannot hold the VAE's weights");
    ForwardCtx ctx = {ops, be->ctx, NULL, NULL, NULL};
    Vae *on_be = malloc(sizeof *on_be); /* v with its decoder's weights where the backend reads them */
    if (!on_be)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    float *z = NULL;     /* (1, latent_channels, h, w) in backend memory */
    float *image = NULL; /* (1, out_channels, H, W) in backend memory */
    Act zin = {0}, out = {0};
    int status = SOWER_OK;
    SOWER_TRY_GOTO(be->mirror_weights(be->ctx, v->weights_sha256, &v->weights_list, v, sizeof *v, on_be), status,
                   done);
    SOWER_TRY_GOTO(ops->buffer_alloc(be->ctx, &z, in_values), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(be->ctx, &image, out_values), status, done);
    for (int b = 0; b < batch; b++) {
        SOWER_TRY_GOTO(ops->upload(be->ctx, z, latents + (size_t)b * in_values, in_values), status, done);
        /* latents / scaling_factor: float32 division, as torch divides a float32 tensor by a Python float */
        SOWER_TRY_GOTO(ops->divide_scalar(be->ctx, z, cfg->scaling_factor, z, in_values), status, done);
        SOWER_TRY_GOTO(ops->act_alloc(be->ctx, &zin, cfg->latent_channels, 1, h, w), status, done);
        SOWER_TRY_GOTO(ops->from_nchw(be->ctx, z, 1, 0, &zin), status, done);
        SOWER_TRY_GOTO(decoder_forward(on_be, &ctx, &zin, &out), status, done);
        SOWER_TRY_GOTO(ops->to_nchw(be->ctx, &out, image), status, done);
        ops->act_free(be->ctx, &out);
        SOWER_TRY_GOTO(ops->download(be->ctx, images + (size_t)b * out_values, image, out_values), status, done);
    }
done:
    ops->act_free(be->ctx, &zin);
    ops->act_free(be->ctx, &out);
    ops->buffer_free(be->ctx, z);
    ops->buffer_free(be->ctx, image);
    free(on_be);
    return status;
}
