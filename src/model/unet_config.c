/* unet_config.c: the config.json of UNet2DModel and UNet2DConditionModel, with diffusers 0.31's __init__
 * defaults. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "json_keys.h"
#include "unet.h"

enum { MAX_CHANNELS = 8192, MAX_SAMPLE = 4096 };

static const char *const known_keys[] = {
    "sample_size", "in_channels", "out_channels", "center_input_sample", "time_embedding_type", "freq_shift",
    "flip_sin_to_cos", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
    "mid_block_scale_factor", "downsample_padding", "downsample_type", "upsample_type", "dropout", "act_fn",
    "attention_head_dim", "norm_num_groups", "attn_norm_num_groups", "norm_eps", "resnet_time_scale_shift",
    "add_attention", "class_embed_type", "num_class_embeds", "num_train_timesteps",
};

static int parse_block_types(const cJSON *obj, const char *path, const char *key, const char *plain,
                             const char *attn, int *has_attention, int *count)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return SOWER_OK; /* defaults already set */
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1 || cJSON_GetArraySize(v) > UNET_MAX_BLOCKS)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected a list of 1..%d block types", path, key,
                          UNET_MAX_BLOCKS);
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, v)
    {
        if (cJSON_IsString(t) && strcmp(t->valuestring, plain) == 0)
            has_attention[i] = 0;
        else if (cJSON_IsString(t) && strcmp(t->valuestring, attn) == 0)
            has_attention[i] = 1;
        else
            return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': block %d is %s%s%s, sower supports '%s' and '%s'", path, key,
                              i, cJSON_IsString(t) ? "'" : "", cJSON_IsString(t) ? t->valuestring : "not a string",
                              cJSON_IsString(t) ? "'" : "", plain, attn);
        i++;
    }
    *count = i;
    return SOWER_OK;
}

/* A whole number of pixels in 1..MAX_SAMPLE (16.5 is refused, as diffusers refuses it, not truncated). */
static int is_sample_side(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= 1 &&
           v->valuedouble <= MAX_SAMPLE;
}

static int parse_sample_size(const cJSON *obj, const char *path, UNetConfig *cfg)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "sample_size");
    if (!v || cJSON_IsNull(v))
        return SOWER_OK;
    if (is_sample_side(v)) {
        cfg->sample_height = cfg->sample_width = (int)v->valuedouble;
        return SOWER_OK;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) {
        const cJSON *h = cJSON_GetArrayItem(v, 0), *w = cJSON_GetArrayItem(v, 1);
        if (is_sample_side(h) && is_sample_side(w)) {
            cfg->sample_height = (int)h->valuedouble;
            cfg->sample_width = (int)w->valuedouble;
            return SOWER_OK;
        }
    }
    return SOWER_FAIL(SOWER_EMODEL, "%s: key 'sample_size': expected an integer in 1..%d or [height, width]", path,
                      MAX_SAMPLE);
}

static void set_defaults(UNetConfig *cfg)
{
    static const int default_channels[] = {224, 448, 672, 896};
    memset(cfg, 0, sizeof *cfg);
    cfg->in_channels = cfg->out_channels = 3;
    cfg->flip_sin_to_cos = 1;
    cfg->n_blocks = 4;
    for (int i = 0; i < 4; i++)
        cfg->block_out_channels[i] = default_channels[i];
    int down_attn[] = {0, 1, 1, 1}, up_attn[] = {1, 1, 1, 0};
    memcpy(cfg->down_has_attention, down_attn, sizeof down_attn);
    memcpy(cfg->up_has_attention, up_attn, sizeof up_attn);
    cfg->layers_per_block = 2;
    cfg->mid_block_scale_factor = 1.0f;
    cfg->downsample_padding = 1;
    cfg->attention_head_dim = 8;
    cfg->norm_num_groups = 32;
    cfg->norm_eps = 1e-5f;
    cfg->add_attention = 1;
}

static int check_consistency(const UNetConfig *cfg, const char *path, int n_down, int n_up, int n_channels)
{
    if (n_down != n_up || n_down != n_channels)
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: down_block_types (%d), up_block_types (%d) and block_out_channels (%d) must have the "
                          "same length",
                          path, n_down, n_up, n_channels);
    for (int i = 0; i < cfg->n_blocks; i++) {
        int c = cfg->block_out_channels[i];
        if (c % cfg->norm_num_groups)
            return SOWER_FAIL(SOWER_EMODEL, "%s: key 'norm_num_groups': %d does not divide block_out_channels[%d] = %d",
                              path, cfg->norm_num_groups, i, c);
        if (cfg->attention_head_dim && c % cfg->attention_head_dim &&
            (cfg->down_has_attention[i] || cfg->up_has_attention[cfg->n_blocks - 1 - i] ||
             (i == cfg->n_blocks - 1 && cfg->add_attention)))
            return SOWER_FAIL(SOWER_EMODEL, "%s: key 'attention_head_dim': %d does not divide the %d channels of block %d",
                              path, cfg->attention_head_dim, c, i);
    }
    int attn_groups = cfg->attn_norm_num_groups ? cfg->attn_norm_num_groups : cfg->norm_num_groups;
    if (cfg->add_attention && cfg->block_out_channels[cfg->n_blocks - 1] % attn_groups)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key 'attn_norm_num_groups': %d does not divide %d channels", path,
                          attn_groups, cfg->block_out_channels[cfg->n_blocks - 1]);
    return SOWER_OK;
}

static int parse_block_out_channels(const cJSON *obj, const char *path, UNetConfig *cfg, int *n_channels)
{
    const cJSON *boc = cJSON_GetObjectItemCaseSensitive(obj, "block_out_channels");
    if (!boc)
        return SOWER_OK;
    if (!cJSON_IsArray(boc) || cJSON_GetArraySize(boc) < 1 || cJSON_GetArraySize(boc) > UNET_MAX_BLOCKS)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key 'block_out_channels': expected a list of 1..%d integers", path,
                          UNET_MAX_BLOCKS);
    *n_channels = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, boc)
    {
        if (!cJSON_IsNumber(c) || c->valuedouble != floor(c->valuedouble) || c->valuedouble < 1 ||
            c->valuedouble > MAX_CHANNELS)
            return SOWER_FAIL(SOWER_EMODEL, "%s: key 'block_out_channels': entries must be integers in 1..%d", path,
                              MAX_CHANNELS);
        cfg->block_out_channels[(*n_channels)++] = (int)c->valuedouble;
    }
    return SOWER_OK;
}

static int parse_unconditional(const cJSON *obj, const char *path, UNetConfig *cfg)
{
    set_defaults(cfg);
    int status = SOWER_OK, is_null = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        int known = item->string[0] == '_';
        for (size_t i = 0; !known && i < sizeof known_keys / sizeof known_keys[0]; i++)
            known = strcmp(item->string, known_keys[i]) == 0;
        if (!known) /* diffusers ignores unknown keys (with a warning); so does sower */
            fprintf(stderr, "sower: warning: %s: ignoring unknown UNet2DModel key '%s'\n", path, item->string);
    }
    static const char *const positional[] = {"positional", NULL}, *const conv[] = {"conv", NULL};
    static const char *const silu[] = {"silu", "swish", NULL}, *const shift_default[] = {"default", NULL};
    static const char *const none[] = {NULL};
    int n_down = cfg->n_blocks, n_up = cfg->n_blocks, n_channels = cfg->n_blocks;
    SOWER_TRY_GOTO(parse_sample_size(obj, path, cfg), status, done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "in_channels", 1, 1024, &cfg->in_channels, 0, NULL), status, done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "out_channels", 1, 1024, &cfg->out_channels, 0, NULL), status, done);
    SOWER_TRY_GOTO(json_key_bool(obj, path, "center_input_sample", &cfg->center_input_sample), status, done);
    SOWER_TRY_GOTO(json_key_one_of(obj, path, "time_embedding_type", positional, 0), status, done);
    SOWER_TRY_GOTO(json_key_float(obj, path, "freq_shift", -1e6, 1e6, &cfg->freq_shift), status, done);
    SOWER_TRY_GOTO(json_key_bool(obj, path, "flip_sin_to_cos", &cfg->flip_sin_to_cos), status, done);
    SOWER_TRY_GOTO(parse_block_types(obj, path, "down_block_types", "DownBlock2D", "AttnDownBlock2D",
                                     cfg->down_has_attention, &n_down),
                   status, done);
    SOWER_TRY_GOTO(
        parse_block_types(obj, path, "up_block_types", "UpBlock2D", "AttnUpBlock2D", cfg->up_has_attention, &n_up),
        status, done);
    SOWER_TRY_GOTO(parse_block_out_channels(obj, path, cfg, &n_channels), status, done);
    cfg->n_blocks = n_channels;
    SOWER_TRY_GOTO(json_key_int(obj, path, "layers_per_block", 1, UNET_MAX_LAYERS - 1, &cfg->layers_per_block, 0, NULL),
                   status, done);
    SOWER_TRY_GOTO(json_key_float(obj, path, "mid_block_scale_factor", 1e-6, 1e6, &cfg->mid_block_scale_factor), status,
                   done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "downsample_padding", 0, 1, &cfg->downsample_padding, 0, NULL), status, done);
    SOWER_TRY_GOTO(json_key_one_of(obj, path, "downsample_type", conv, 0), status, done);
    SOWER_TRY_GOTO(json_key_one_of(obj, path, "upsample_type", conv, 0), status, done);
    SOWER_TRY_GOTO(json_key_one_of(obj, path, "act_fn", silu, 0), status, done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "attention_head_dim", 1, MAX_CHANNELS, &cfg->attention_head_dim, 1, &is_null),
                   status, done);
    if (is_null)
        cfg->attention_head_dim = 0;
    SOWER_TRY_GOTO(json_key_int(obj, path, "norm_num_groups", 1, MAX_CHANNELS, &cfg->norm_num_groups, 0, NULL), status,
                   done);
    SOWER_TRY_GOTO(
        json_key_int(obj, path, "attn_norm_num_groups", 1, MAX_CHANNELS, &cfg->attn_norm_num_groups, 1, &is_null), status,
        done);
    if (is_null)
        cfg->attn_norm_num_groups = 0;
    SOWER_TRY_GOTO(json_key_float(obj, path, "norm_eps", 0.0, 1.0, &cfg->norm_eps), status, done);
    SOWER_TRY_GOTO(json_key_one_of(obj, path, "resnet_time_scale_shift", shift_default, 0), status, done);
    SOWER_TRY_GOTO(json_key_bool(obj, path, "add_attention", &cfg->add_attention), status, done);
    SOWER_TRY_GOTO(json_key_one_of(obj, path, "class_embed_type", none, 1), status, done);
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(obj, "num_class_embeds");
    if (classes && !cJSON_IsNull(classes)) {
        status = SOWER_FAIL(SOWER_EMODEL, "%s: key 'num_class_embeds': class-conditional models are not supported "
                                          "(sower supports null)", path);
        goto done;
    }
    SOWER_TRY_GOTO(check_consistency(cfg, path, n_down, n_up, n_channels), status, done);
done:
    return status;
}

/* ---- UNet2DConditionModel ---- */

static const char *const conditional_keys[] = {
    "sample_size", "in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos", "freq_shift",
    "down_block_types", "mid_block_type", "up_block_types", "only_cross_attention", "block_out_channels",
    "layers_per_block", "downsample_padding", "mid_block_scale_factor", "dropout", "act_fn", "norm_num_groups",
    "norm_eps", "cross_attention_dim", "transformer_layers_per_block", "reverse_transformer_layers_per_block",
    "encoder_hid_dim", "encoder_hid_dim_type", "attention_head_dim", "num_attention_heads", "dual_cross_attention",
    "use_linear_projection", "class_embed_type", "addition_embed_type", "addition_time_embed_dim",
    "num_class_embeds", "upcast_attention", "resnet_time_scale_shift", "resnet_skip_time_act",
    "resnet_out_scale_factor", "time_embedding_type", "time_embedding_dim", "time_embedding_act_fn",
    "timestep_post_act", "time_cond_proj_dim", "conv_in_kernel", "conv_out_kernel",
    "projection_class_embeddings_input_dim", "attention_type", "class_embeddings_concat",
    "mid_block_only_cross_attention", "cross_attention_norm", "addition_embed_type_num_heads",
};

/* diffusers 0.31 UNet2DConditionModel.__init__ defaults (SD 1.x's shape, sample_size None). */
static void set_conditional_defaults(UNetConfig *cfg)
{
    static const int channels[] = {320, 640, 1280, 1280};
    memset(cfg, 0, sizeof *cfg);
    cfg->conditional = 1;
    cfg->in_channels = cfg->out_channels = 4;
    cfg->flip_sin_to_cos = 1;
    cfg->n_blocks = 4;
    for (int i = 0; i < 4; i++) {
        cfg->block_out_channels[i] = channels[i];
        cfg->heads[i] = 8;
    }
    int down_attn[] = {1, 1, 1, 0}, up_attn[] = {0, 1, 1, 1};
    memcpy(cfg->down_has_attention, down_attn, sizeof down_attn);
    memcpy(cfg->up_has_attention, up_attn, sizeof up_attn);
    cfg->layers_per_block = 2;
    cfg->mid_block_scale_factor = 1.0f;
    cfg->downsample_padding = 1;
    cfg->norm_num_groups = 32;
    cfg->norm_eps = 1e-5f;
    cfg->add_attention = 1;
    cfg->cross_attention_dim = 1280;
}

/* attention_head_dim: one head count for every block, or one per block (diffusers' naming: in
 * UNet2DConditionModel it is the number of heads; num_attention_heads must stay null). */
static int parse_heads(const cJSON *obj, const char *path, UNetConfig *cfg, int n_blocks)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "attention_head_dim");
    if (!v)
        return SOWER_OK;
    if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= 1 &&
        v->valuedouble <= MAX_CHANNELS) {
        for (int i = 0; i < UNET_MAX_BLOCKS; i++)
            cfg->heads[i] = (int)v->valuedouble;
        return SOWER_OK;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == n_blocks) {
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 1 ||
                e->valuedouble > MAX_CHANNELS)
                break;
            cfg->heads[i++] = (int)e->valuedouble;
        }
        if (i == n_blocks)
            return SOWER_OK;
    }
    return SOWER_FAIL(SOWER_EMODEL, "%s: key 'attention_head_dim': expected an integer or a list of %d integers (the "
                                    "heads of each block)", path, n_blocks);
}

static int parse_false(const cJSON *obj, const char *path, const char *key, const char *what_else)
{
    int on = 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v && cJSON_IsArray(v)) { /* only_cross_attention may be a list */
        const cJSON *e;
        cJSON_ArrayForEach(e, v) on |= !cJSON_IsFalse(e);
    } else {
        SOWER_TRY(json_key_bool(obj, path, key, &on));
    }
    if (on)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': sower supports false (true means %s)", path, key, what_else);
    return SOWER_OK;
}

static int check_conditional(const UNetConfig *cfg, const char *path)
{
    for (int i = 0; i < cfg->n_blocks; i++) {
        int c = cfg->block_out_channels[i];
        if (c % cfg->norm_num_groups)
            return SOWER_FAIL(SOWER_EMODEL, "%s: key 'norm_num_groups': %d does not divide block_out_channels[%d] = %d",
                              path, cfg->norm_num_groups, i, c);
        if (c % cfg->heads[i])
            return SOWER_FAIL(SOWER_EMODEL, "%s: key 'attention_head_dim': %d heads do not divide the %d channels of "
                                            "block %d", path, cfg->heads[i], c, i);
    }
    return SOWER_OK;
}

/* A key diffusers' UNet2DConditionModel takes as an int or a list of one per block (n_blocks entries, its own
 * length check): a list of one value is that value; values that differ per block are refused by name. */
static int parse_per_block_int(const cJSON *obj, const char *path, const char *key, int lo, int hi, int n_blocks, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || !cJSON_IsArray(v)) return json_key_int(obj, path, key, lo, hi, out, 0, NULL);
    if (cJSON_GetArraySize(v) != n_blocks)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': a list of %d values (one per block) or an integer, found %d values",
                          path, key, n_blocks, cJSON_GetArraySize(v));
    const cJSON *e;
    int first = 0, k = 0;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < lo || e->valuedouble > hi)
            return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': entry %d: expected an integer in %d..%d", path, key, k, lo, hi);
        if (k++ == 0) first = (int)e->valuedouble;
        else if ((int)e->valuedouble != first)
            return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': a different value per block is not supported (sower runs one "
                                            "for every block)", path, key);
    }
    *out = first;
    return SOWER_OK;
}

static int parse_conditional(const cJSON *obj, const char *path, UNetConfig *cfg)
{
    set_conditional_defaults(cfg);
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        int known = item->string[0] == '_';
        for (size_t i = 0; !known && i < sizeof conditional_keys / sizeof conditional_keys[0]; i++)
            known = strcmp(item->string, conditional_keys[i]) == 0;
        if (!known)
            fprintf(stderr, "sower: warning: %s: ignoring unknown UNet2DConditionModel key '%s'\n", path, item->string);
    }
    static const char *const positional[] = {"positional", NULL}, *const silu[] = {"silu", "swish", NULL};
    static const char *const shift_default[] = {"default", NULL}, *const mid[] = {"UNetMidBlock2DCrossAttn", NULL};
    static const char *const attention_default[] = {"default", NULL};
    int n_down = cfg->n_blocks, n_up = cfg->n_blocks, n_channels = cfg->n_blocks;
    SOWER_TRY(parse_sample_size(obj, path, cfg));
    SOWER_TRY(json_key_int(obj, path, "in_channels", 1, 1024, &cfg->in_channels, 0, NULL));
    SOWER_TRY(json_key_int(obj, path, "out_channels", 1, 1024, &cfg->out_channels, 0, NULL));
    SOWER_TRY(json_key_bool(obj, path, "center_input_sample", &cfg->center_input_sample));
    SOWER_TRY(json_key_bool(obj, path, "flip_sin_to_cos", &cfg->flip_sin_to_cos));
    SOWER_TRY(json_key_float(obj, path, "freq_shift", -1e6, 1e6, &cfg->freq_shift));
    SOWER_TRY(parse_block_types(obj, path, "down_block_types", "DownBlock2D", "CrossAttnDownBlock2D",
                                cfg->down_has_attention, &n_down));
    SOWER_TRY(json_key_one_of(obj, path, "mid_block_type", mid, 0));
    SOWER_TRY(parse_block_types(obj, path, "up_block_types", "UpBlock2D", "CrossAttnUpBlock2D", cfg->up_has_attention,
                                &n_up));
    SOWER_TRY(parse_false(obj, path, "only_cross_attention", "attention without self-attention"));
    SOWER_TRY(parse_block_out_channels(obj, path, cfg, &n_channels));
    cfg->n_blocks = n_channels;
    if (n_down != n_up || n_down != n_channels)
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: down_block_types (%d), up_block_types (%d) and block_out_channels (%d) must have the "
                          "same length", path, n_down, n_up, n_channels);
    SOWER_TRY(parse_per_block_int(obj, path, "layers_per_block", 1, UNET_MAX_LAYERS - 1, n_channels,
                                  &cfg->layers_per_block));
    SOWER_TRY(json_key_int(obj, path, "downsample_padding", 0, 1, &cfg->downsample_padding, 0, NULL));
    SOWER_TRY(json_key_float(obj, path, "mid_block_scale_factor", 1e-6, 1e6, &cfg->mid_block_scale_factor));
    SOWER_TRY(json_key_one_of(obj, path, "act_fn", silu, 0));
    SOWER_TRY(json_key_int(obj, path, "norm_num_groups", 1, MAX_CHANNELS, &cfg->norm_num_groups, 0, NULL));
    SOWER_TRY(json_key_float(obj, path, "norm_eps", 0.0, 1.0, &cfg->norm_eps));
    SOWER_TRY(parse_per_block_int(obj, path, "cross_attention_dim", 1, MAX_CHANNELS, n_channels,
                                  &cfg->cross_attention_dim));
    SOWER_TRY(json_key_int_is(obj, path, "transformer_layers_per_block", 1, 1, "deeper transformers, as SDXL has"));
    SOWER_TRY(json_key_null(obj, path, "reverse_transformer_layers_per_block", "other transformer depths"));
    SOWER_TRY(json_key_null(obj, path, "encoder_hid_dim", "a projection of the text embeddings"));
    SOWER_TRY(json_key_null(obj, path, "encoder_hid_dim_type", "a projection of the text embeddings"));
    SOWER_TRY(parse_heads(obj, path, cfg, n_channels));
    SOWER_TRY(json_key_null(obj, path, "num_attention_heads", "diffusers itself refuses this key"));
    SOWER_TRY(parse_false(obj, path, "dual_cross_attention", "two text encoders' attentions"));
    SOWER_TRY(json_key_bool(obj, path, "use_linear_projection", &cfg->use_linear_projection));
    SOWER_TRY(json_key_null(obj, path, "class_embed_type", "class conditioning"));
    SOWER_TRY(json_key_null(obj, path, "addition_embed_type", "added conditioning, as SDXL's text_time"));
    SOWER_TRY(json_key_null(obj, path, "addition_time_embed_dim", "SDXL's added time ids"));
    SOWER_TRY(json_key_null(obj, path, "num_class_embeds", "class conditioning"));
    SOWER_TRY(json_key_bool(obj, path, "upcast_attention", &cfg->upcast_attention));
    SOWER_TRY(json_key_one_of(obj, path, "resnet_time_scale_shift", shift_default, 0));
    SOWER_TRY(parse_false(obj, path, "resnet_skip_time_act", "another resnet time path"));
    const cJSON *out_scale = cJSON_GetObjectItemCaseSensitive(obj, "resnet_out_scale_factor");
    if (out_scale && !(cJSON_IsNumber(out_scale) && out_scale->valuedouble == 1.0))
        return SOWER_FAIL(SOWER_EMODEL, "%s: key 'resnet_out_scale_factor': sower supports 1.0", path);
    SOWER_TRY(json_key_one_of(obj, path, "time_embedding_type", positional, 0));
    SOWER_TRY(json_key_null(obj, path, "time_embedding_dim", "a time embedding of another width"));
    SOWER_TRY(json_key_null(obj, path, "time_embedding_act_fn", "an activation after the time embedding"));
    SOWER_TRY(json_key_null(obj, path, "timestep_post_act", "an activation inside the time embedding"));
    SOWER_TRY(json_key_null(obj, path, "time_cond_proj_dim", "guidance embedded in the time (LCM)"));
    SOWER_TRY(json_key_int_is(obj, path, "conv_in_kernel", 3, 0, "another conv_in"));
    SOWER_TRY(json_key_int_is(obj, path, "conv_out_kernel", 3, 0, "another conv_out"));
    SOWER_TRY(json_key_null(obj, path, "projection_class_embeddings_input_dim", "class conditioning"));
    SOWER_TRY(json_key_one_of(obj, path, "attention_type", attention_default, 0));
    SOWER_TRY(parse_false(obj, path, "class_embeddings_concat", "class conditioning"));
    /* read only by UNetMidBlock2DSimpleCrossAttn: UNetMidBlock2DCrossAttn (sower's) ignores it, true or false */
    const cJSON *mid_only = cJSON_GetObjectItemCaseSensitive(obj, "mid_block_only_cross_attention");
    if (mid_only && !cJSON_IsNull(mid_only) && !cJSON_IsBool(mid_only))
        return SOWER_FAIL(SOWER_EMODEL, "%s: key 'mid_block_only_cross_attention': expected true, false or null", path);
    SOWER_TRY(json_key_null(obj, path, "cross_attention_norm", "a norm on the text embeddings"));
    return check_conditional(cfg, path);
}

int unet_config_parse(const char *json_text, size_t len, const char *path, UNetConfig *cfg)
{
    cJSON *obj;
    SOWER_TRY(json_parse_config(json_text, len, path, SOWER_EMODEL, &obj));
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(obj, "_class_name");
    const int conditional = cls && cJSON_IsString(cls) && strcmp(cls->valuestring, "UNet2DConditionModel") == 0;
    int status = json_drop_default_keys(obj, path);
    if (status == SOWER_OK) status = conditional ? parse_conditional(obj, path, cfg) : parse_unconditional(obj, path, cfg);
    /* the sinusoids' exponents divide by half - freq_shift (half = block_out_channels[0] / 2): 0 gives NaN, and
     * past it the frequencies run to 1e15, where a ulp of exp() changes sin(): no model has one */
    const int half = cfg->block_out_channels[0] / 2;
    if (status == SOWER_OK && !(cfg->freq_shift < (float)half))
        status = SOWER_FAIL(SOWER_EMODEL, "%s: key 'freq_shift': %g is not below half the time embedding's %d channels "
                                          "(%d): its sinusoids would be NaN or beyond float32",
                            path, cfg->freq_shift, 2 * half, half);
    cJSON_Delete(obj);
    return status;
}
