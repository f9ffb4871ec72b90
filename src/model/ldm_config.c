/* ldm_config.c: see ldm_config.h. The rules are those of diffusers' loaders/single_file_utils.py
 * (create_unet_diffusers_config, create_vae_diffusers_config, infer_diffusers_model_type) for the LDM
 * configs of SD 1.x and 2.x, with the shapes read from the tensors instead of a YAML file. */
#include "ldm_config.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LEVELS = 8, HEAD_CHANNELS = 64, NORM_GROUPS = 32, SD1_UNET_HEADS = 8,
       SD2_TEXT_LAYERS = 23, SD2_TEXT_WIDTH = 1024 }; /* SD 2.x: the OpenCLIP ViT-H/14 layers its text encoder runs */
static const char UNET[] = "model.diffusion_model.", VAE[] = "first_stage_model.";
static const char CLIP[] = "cond_stage_model.transformer.", OPEN_CLIP[] = "cond_stage_model.model.";

/* The tensor named by the format, or NULL. */
static const StTensor *tensor(const StFile *f, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return safetensors_find(f, name);
}

/* 1 + the largest N of the tensors named PREFIX N.*; 0 when none. */
static int count_indexed(const StFile *f, const char *prefix)
{
    const size_t n = strlen(prefix);
    int count = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        char *end;
        if (strncmp(name, prefix, n) != 0 || name[n] < '0' || name[n] > '9') continue;
        const long k = strtol(name + n, &end, 10);
        if (*end == '.' && k < 10000 && k + 1 > count) count = (int)k + 1;
    }
    return count;
}

static int missing(const StFile *f, const char *what, const char *name)
{
    return SOWER_FAIL(SOWER_EMODEL, "%s: no tensor '%s' (%s): cannot infer its config; give --config a diffusers "
                                    "folder of its architecture", f->path, name, what);
}

static cJSON *int_list(const int *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *name_list(const char *const *names, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(names[i]));
    return a;
}

/* Takes o: its text (cJSON_Print), or NULL when out of memory. */
static char *print_and_delete(cJSON *o)
{
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return text;
}

/* ---- the UNet: LDM numbers its blocks flat, input_blocks.0 the conv_in, then per level lpb resnets
 * (with a transformer at .1 where the level attends) and, but for the last level, a downsampler. ---- */
static int infer_unet(const StFile *f, int sd2, LdmConfigs *out)
{
    const StTensor *conv_in = tensor(f, "%sinput_blocks.0.0.weight", UNET), *conv_out = tensor(f, "%sout.2.weight", UNET);
    if (!conv_in || conv_in->ndim != 4) return missing(f, "the UNet's conv_in", "model.diffusion_model.input_blocks.0.0.weight");
    if (!conv_out || conv_out->ndim != 4) return missing(f, "the UNet's conv_out", "model.diffusion_model.out.2.weight");
    if (conv_in->shape[1] != conv_out->shape[0]) /* inpainting (9: latents, mask, masked image) or depth models */
        return SOWER_FAIL(SOWER_EMODEL, "%s: the UNet's conv_in takes %lld channels and its conv_out gives %lld: an "
                                        "inpainting (or depth) checkpoint, which StableDiffusionPipeline does not run: "
                                        "not converted", f->path, (long long)conv_in->shape[1],
                          (long long)conv_out->shape[0]);
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%sinput_blocks.", UNET);
    const int blocks = count_indexed(f, prefix); /* 1 + levels * lpb + (levels - 1) */
    int first_down = 0;
    for (int k = 1; k < blocks && !first_down; k++)
        if (tensor(f, "%sinput_blocks.%d.0.op.weight", UNET, k)) first_down = k;
    const int lpb = first_down ? first_down - 1 : blocks - 1, levels = first_down ? blocks / (lpb + 1) : 1;
    if (lpb < 1 || levels > MAX_LEVELS || 1 + levels * lpb + levels - 1 != blocks)
        return SOWER_FAIL(SOWER_EMODEL, "%s: %d UNet input blocks do not make levels of equal depth (as SD 1.x/2.x's): "
                                        "give --config", f->path, blocks);
    int channels[MAX_LEVELS], attends[MAX_LEVELS], heads[MAX_LEVELS];
    const StTensor *proj_in = NULL, *context = NULL;
    int depth = 0;
    for (int l = 0; l < levels; l++) {
        const int b = 1 + l * (lpb + 1);
        const StTensor *res = tensor(f, "%sinput_blocks.%d.0.out_layers.3.weight", UNET, b);
        if (!res) return missing(f, "a level's first resnet", "model.diffusion_model.input_blocks.N.0.out_layers.3.weight");
        if (l + 1 < levels && !tensor(f, "%sinput_blocks.%d.0.op.weight", UNET, b + lpb))
            return missing(f, "a level's downsampler", "model.diffusion_model.input_blocks.N.0.op.weight");
        channels[l] = (int)res->shape[0];
        const StTensor *p = tensor(f, "%sinput_blocks.%d.1.proj_in.weight", UNET, b);
        attends[l] = p != NULL;
        if (p && !proj_in) {
            proj_in = p;
            context = tensor(f, "%sinput_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight", UNET, b);
            snprintf(prefix, sizeof prefix, "%sinput_blocks.%d.1.transformer_blocks.", UNET, b);
            depth = count_indexed(f, prefix);
        }
        heads[l] = channels[l] / HEAD_CHANNELS;
        if (sd2 && channels[l] % HEAD_CHANNELS)
            return SOWER_FAIL(SOWER_EMODEL, "%s: UNet level %d has %d channels, not heads of %d as SD 2.x's: give --config",
                              f->path, l, channels[l], HEAD_CHANNELS);
    }
    if (!proj_in || !context || context->ndim != 2)
        return missing(f, "cross-attention", "model.diffusion_model.input_blocks.N.1.transformer_blocks.0.attn2.to_k.weight");
    if (!tensor(f, "%smiddle_block.1.proj_in.weight", UNET))
        return missing(f, "the mid block's cross-attention", "model.diffusion_model.middle_block.1.proj_in.weight");
    const char *down[MAX_LEVELS], *up[MAX_LEVELS];
    for (int l = 0; l < levels; l++) {
        down[l] = attends[l] ? "CrossAttnDownBlock2D" : "DownBlock2D";
        up[levels - 1 - l] = attends[l] ? "CrossAttnUpBlock2D" : "UpBlock2D";
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "UNet2DConditionModel");
    cJSON_AddStringToObject(o, "act_fn", "silu");
    if (sd2)
        cJSON_AddItemToObject(o, "attention_head_dim", int_list(heads, levels));
    else
        cJSON_AddNumberToObject(o, "attention_head_dim", SD1_UNET_HEADS);
    cJSON_AddItemToObject(o, "block_out_channels", int_list(channels, levels));
    cJSON_AddBoolToObject(o, "center_input_sample", 0);
    cJSON_AddNumberToObject(o, "cross_attention_dim", (double)context->shape[1]);
    cJSON_AddItemToObject(o, "down_block_types", name_list(down, levels));
    cJSON_AddNumberToObject(o, "downsample_padding", 1);
    cJSON_AddBoolToObject(o, "flip_sin_to_cos", 1);
    cJSON_AddNumberToObject(o, "freq_shift", 0);
    cJSON_AddNumberToObject(o, "in_channels", (double)conv_in->shape[1]); /* == out_channels: checked above */
    cJSON_AddNumberToObject(o, "layers_per_block", lpb);
    cJSON_AddNumberToObject(o, "mid_block_scale_factor", 1);
    cJSON_AddStringToObject(o, "mid_block_type", "UNetMidBlock2DCrossAttn");
    cJSON_AddNumberToObject(o, "norm_eps", 1e-5);
    cJSON_AddNumberToObject(o, "norm_num_groups", NORM_GROUPS);
    cJSON_AddNumberToObject(o, "out_channels", (double)conv_out->shape[0]);
    cJSON_AddNumberToObject(o, "sample_size", sd2 ? 96 : 64);
    cJSON_AddNumberToObject(o, "transformer_layers_per_block", depth);
    cJSON_AddItemToObject(o, "up_block_types", name_list(up, levels));
    cJSON_AddBoolToObject(o, "upcast_attention", sd2);
    cJSON_AddBoolToObject(o, "use_linear_projection", proj_in->ndim == 2);
    out->layout.unet_layers_per_block = lpb;
    out->unet = print_and_delete(o);
    return out->unet ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
}

/* ---- the VAE: decoder.up.N is level N from the full resolution down (diffusers' up_blocks reversed) ---- */
static int infer_vae(const StFile *f, int sd2, LdmConfigs *out)
{
    const StTensor *conv_in = tensor(f, "%sdecoder.conv_in.weight", VAE), *conv_out = tensor(f, "%sdecoder.conv_out.weight", VAE);
    if (!conv_in || conv_in->ndim != 4) return missing(f, "the VAE decoder's conv_in", "first_stage_model.decoder.conv_in.weight");
    if (!conv_out || conv_out->ndim != 4) return missing(f, "the VAE decoder's conv_out", "first_stage_model.decoder.conv_out.weight");
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%sdecoder.up.", VAE);
    const int levels = count_indexed(f, prefix);
    snprintf(prefix, sizeof prefix, "%sdecoder.up.0.block.", VAE);
    const int resnets = count_indexed(f, prefix); /* layers_per_block + 1 in the decoder */
    if (levels < 1 || levels > MAX_LEVELS || resnets < 2)
        return missing(f, "the VAE decoder's levels", "first_stage_model.decoder.up.0.block.1.conv2.weight");
    int channels[MAX_LEVELS];
    const char *down[MAX_LEVELS], *up[MAX_LEVELS];
    for (int l = 0; l < levels; l++) {
        const StTensor *conv = tensor(f, "%sdecoder.up.%d.block.0.conv2.weight", VAE, l);
        if (!conv) return missing(f, "a VAE level's first resnet", "first_stage_model.decoder.up.N.block.0.conv2.weight");
        channels[l] = (int)conv->shape[0];
        down[l] = "DownEncoderBlock2D", up[l] = "UpDecoderBlock2D";
    }
    const StTensor *encoder_in = tensor(f, "%sencoder.conv_in.weight", VAE);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "AutoencoderKL");
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddItemToObject(o, "block_out_channels", int_list(channels, levels));
    cJSON_AddItemToObject(o, "down_block_types", name_list(down, levels));
    cJSON_AddNumberToObject(o, "in_channels", encoder_in && encoder_in->ndim == 4 ? (double)encoder_in->shape[1] : 3);
    cJSON_AddNumberToObject(o, "latent_channels", (double)conv_in->shape[1]);
    cJSON_AddNumberToObject(o, "layers_per_block", resnets - 1);
    cJSON_AddNumberToObject(o, "norm_num_groups", NORM_GROUPS);
    cJSON_AddNumberToObject(o, "out_channels", (double)conv_out->shape[0]);
    cJSON_AddNumberToObject(o, "sample_size", sd2 ? 768 : 512);
    cJSON_AddNumberToObject(o, "scaling_factor", 0.18215);
    cJSON_AddItemToObject(o, "up_block_types", name_list(up, levels));
    out->layout.vae_up_blocks = levels;
    out->vae = print_and_delete(o);
    return out->vae ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
}

/* ---- the text encoder: CLIP ViT-L's names (SD 1.x, with or without the text_model. level) or OpenCLIP's ---- */
static int infer_text(const StFile *f, int sd2, const LdmTokenIds *ids, LdmConfigs *out)
{
    const StTensor *tokens, *positions, *fc1;
    int layers;
    char prefix[96];
    if (sd2) {
        tokens = tensor(f, "%stoken_embedding.weight", OPEN_CLIP);
        positions = tensor(f, "%spositional_embedding", OPEN_CLIP);
        fc1 = tensor(f, "%stransformer.resblocks.0.mlp.c_fc.weight", OPEN_CLIP);
        snprintf(prefix, sizeof prefix, "%stransformer.resblocks.", OPEN_CLIP);
        /* SD 2.x runs OpenCLIP's penultimate layer: the LDM file carries all its blocks (ViT-H/14: 24) and the
         * diffusers text encoder the first 23. A file written from a diffusers folder carries only those 23; at
         * other sizes the spare block is taken as there (what the LDM training writes: --config for others). */
        const int blocks = count_indexed(f, prefix);
        layers = blocks == SD2_TEXT_LAYERS && fc1 && fc1->ndim == 2 && fc1->shape[1] == SD2_TEXT_WIDTH ? blocks : blocks - 1;
    } else {
        const char *level = tensor(f, "%stext_model.embeddings.token_embedding.weight", CLIP) ? "text_model." : "";
        tokens = tensor(f, "%s%sembeddings.token_embedding.weight", CLIP, level);
        positions = tensor(f, "%s%sembeddings.position_embedding.weight", CLIP, level);
        fc1 = tensor(f, "%s%sencoder.layers.0.mlp.fc1.weight", CLIP, level);
        snprintf(prefix, sizeof prefix, "%s%sencoder.layers.", CLIP, level);
        layers = count_indexed(f, prefix);
    }
    const char *const where = sd2 ? "cond_stage_model.model.token_embedding.weight, positional_embedding, "
                                    "transformer.resblocks.0.mlp.c_fc.weight"
                                  : "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight, "
                                    "position_embedding.weight, encoder.layers.0.mlp.fc1.weight";
    if (!tokens || tokens->ndim != 2 || !positions || positions->ndim != 2 || !fc1 || fc1->ndim != 2 || layers < 1)
        return missing(f, "the text encoder's embeddings, layers and MLP", where);
    const int hidden = (int)tokens->shape[1];
    if (hidden % HEAD_CHANNELS)
        return SOWER_FAIL(SOWER_EMODEL, "%s: the text encoder's width %d is not heads of %d as CLIP's: give --config",
                          f->path, hidden, HEAD_CHANNELS);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "architectures", name_list((const char *const[]){"CLIPTextModel"}, 1));
    cJSON_AddNumberToObject(o, "attention_dropout", 0);
    cJSON_AddNumberToObject(o, "bos_token_id", ids->bos);
    cJSON_AddNumberToObject(o, "eos_token_id", ids->eos);
    cJSON_AddStringToObject(o, "hidden_act", sd2 ? "gelu" : "quick_gelu");
    cJSON_AddNumberToObject(o, "hidden_size", hidden);
    cJSON_AddNumberToObject(o, "intermediate_size", (double)fc1->shape[0]);
    cJSON_AddNumberToObject(o, "layer_norm_eps", 1e-5);
    cJSON_AddNumberToObject(o, "max_position_embeddings", (double)positions->shape[0]);
    cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(o, "num_attention_heads", hidden / HEAD_CHANNELS);
    cJSON_AddNumberToObject(o, "num_hidden_layers", layers);
    cJSON_AddNumberToObject(o, "pad_token_id", ids->pad);
    cJSON_AddNumberToObject(o, "vocab_size", (double)tokens->shape[0]);
    out->layout.text_layers = layers;
    out->text_encoder = print_and_delete(o);
    return out->text_encoder ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
}

/* SD 1.5's scheduler (PNDM) or SD 2.1's (DDIM, v-prediction), as their folders hold them. */
static char *scheduler_config(int sd2)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", sd2 ? "DDIMScheduler" : "PNDMScheduler");
    cJSON_AddNumberToObject(o, "beta_end", 0.012);
    cJSON_AddStringToObject(o, "beta_schedule", "scaled_linear");
    cJSON_AddNumberToObject(o, "beta_start", 0.00085);
    cJSON_AddBoolToObject(o, "clip_sample", 0);
    cJSON_AddNumberToObject(o, "num_train_timesteps", 1000);
    if (sd2) cJSON_AddStringToObject(o, "prediction_type", "v_prediction");
    cJSON_AddBoolToObject(o, "set_alpha_to_one", 0);
    cJSON_AddBoolToObject(o, "skip_prk_steps", 1);
    cJSON_AddNumberToObject(o, "steps_offset", 1);
    cJSON_AddNullToObject(o, "trained_betas");
    return print_and_delete(o);
}

static char *model_index(int sd2)
{
    static const char *const parts[][3] = {{"scheduler", "diffusers", NULL},
                                           {"text_encoder", "transformers", "CLIPTextModel"},
                                           {"tokenizer", "transformers", "CLIPTokenizer"},
                                           {"unet", "diffusers", "UNet2DConditionModel"},
                                           {"vae", "diffusers", "AutoencoderKL"}};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "StableDiffusionPipeline");
    for (int i = 0; i < 2; i++) { /* no safety checker: sower renders latents and images only */
        cJSON *none = cJSON_CreateArray();
        cJSON_AddItemToArray(none, cJSON_CreateNull()), cJSON_AddItemToArray(none, cJSON_CreateNull());
        cJSON_AddItemToObject(o, i ? "safety_checker" : "feature_extractor", none);
    }
    cJSON_AddBoolToObject(o, "requires_safety_checker", 0);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        const char *cls = parts[i][2] ? parts[i][2] : sd2 ? "DDIMScheduler" : "PNDMScheduler";
        cJSON_AddItemToObject(o, parts[i][0], name_list((const char *const[]){parts[i][1], cls}, 2));
    }
    return print_and_delete(o);
}

int ldm_infer_configs(const StFile *ckpt, const LdmTokenIds *ids, LdmConfigs *out)
{
    memset(out, 0, sizeof *out);
    int clip = 0, open_clip = 0;
    for (int i = 0; i < ckpt->n_tensors; i++) {
        clip |= strncmp(ckpt->tensors[i].name, CLIP, sizeof CLIP - 1) == 0;
        open_clip |= strncmp(ckpt->tensors[i].name, OPEN_CLIP, sizeof OPEN_CLIP - 1) == 0;
    }
    if (clip == open_clip)
        return SOWER_FAIL(SOWER_EMODEL, "%s: %s: cannot tell SD 1.x from SD 2.x; give --config a diffusers folder of its "
                                        "architecture", ckpt->path,
                          clip ? "it holds both CLIP (cond_stage_model.transformer.*) and OpenCLIP text encoder tensors"
                               : "no text encoder tensors (cond_stage_model.*)");
    const int sd2 = open_clip;
    out->family = sd2 ? "SD 2.x" : "SD 1.x";
    int status = infer_unet(ckpt, sd2, out);
    if (status == SOWER_OK) status = infer_vae(ckpt, sd2, out);
    if (status == SOWER_OK) status = infer_text(ckpt, sd2, ids, out);
    if (status == SOWER_OK) {
        out->scheduler = scheduler_config(sd2);
        out->model_index = model_index(sd2);
        if (!out->scheduler || !out->model_index) status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    }
    if (status != SOWER_OK) ldm_configs_free(out);
    return status;
}

void ldm_configs_free(LdmConfigs *c)
{
    cJSON_free(c->model_index), cJSON_free(c->unet), cJSON_free(c->vae), cJSON_free(c->text_encoder);
    cJSON_free(c->scheduler);
    memset(c, 0, sizeof *c);
}
