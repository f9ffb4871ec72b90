/* ldm_names.c: LDM checkpoint names -> diffusers names (ldm_names.h). Each part's rules follow
 * diffusers' convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint and
 * convert_open_clip_checkpoint; numbers are parsed, not matched as substrings. */
#include "ldm_names.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *from, *to;
} Rename;

/* "PREFIX" + rest, with rest's leading component renamed by the first rule that matches it (rules
 * end with {NULL, NULL}; rest unchanged when none does). Returns 0 when the name does not fit. */
static int put(LdmTarget *t, LdmPart part, const char *prefix, const char *rest, const Rename *rules)
{
    const char *to = "";
    for (int i = 0; rules && rules[i].from; i++) {
        const size_t n = strlen(rules[i].from);
        if (strncmp(rest, rules[i].from, n) == 0) {
            to = rules[i].to, rest += n;
            break;
        }
    }
    t->part = part, t->view = LDM_WHOLE;
    return snprintf(t->name, sizeof t->name, "%s%s%s", prefix, to, rest) < (int)sizeof t->name;
}

/* Consumes `text` at *p; 0 (and *p unmoved) when it is not there. */
static int lit(const char **p, const char *text)
{
    const size_t n = strlen(text);
    if (strncmp(*p, text, n) != 0) return 0;
    *p += n;
    return 1;
}

/* Consumes a block number (1 to 5 digits) at *p. */
static int number(const char **p, int *out)
{
    int v = 0, digits = 0;
    while (**p >= '0' && **p <= '9' && digits < 6)
        v = v * 10 + (*(*p)++ - '0'), digits++;
    *out = v;
    return digits >= 1 && digits <= 5;
}

/* "HEAD3.1.rest": reads 3 and 1, points *rest at "rest"; 0 when the name is not so. */
static int two_numbers(const char *name, const char *head, int *a, int *b, const char **rest)
{
    const char *p = name;
    if (!(lit(&p, head) && number(&p, a) && lit(&p, ".") && number(&p, b) && lit(&p, "."))) return 0;
    *rest = p;
    return 1;
}

/* "HEAD3TAIL" (TAIL may be ""): reads 3, points *rest after TAIL. */
static int one_number(const char *name, const char *head, const char *tail, int *a, const char **rest)
{
    const char *p = name;
    if (!(lit(&p, head) && number(&p, a) && lit(&p, tail))) return 0;
    *rest = p;
    return 1;
}

static const Rename unet_resnet[] = {{"in_layers.0.", "norm1."},       {"in_layers.2.", "conv1."},
                                     {"out_layers.0.", "norm2."},      {"out_layers.3.", "conv2."},
                                     {"emb_layers.1.", "time_emb_proj."}, {"skip_connection.", "conv_shortcut."},
                                     {NULL, NULL}};

static int map_unet(const LdmLayout *l, const char *name, LdmTarget *t)
{
    static const Rename top[] = {{"time_embed.0.", "time_embedding.linear_1."},
                                 {"time_embed.2.", "time_embedding.linear_2."},
                                 {"input_blocks.0.0.", "conv_in."},
                                 {"out.0.", "conv_norm_out."},
                                 {"out.2.", "conv_out."},
                                 {NULL, NULL}};
    for (int i = 0; top[i].from; i++)
        if (strncmp(name, top[i].from, strlen(top[i].from)) == 0) return put(t, LDM_UNET, "", name, top);
    const int per = l->unet_layers_per_block + 1; /* LDM: the resnets of a level, then its sampler */
    int i, sub;
    const char *rest;
    char prefix[96];
    if (two_numbers(name, "input_blocks.", &i, &sub, &rest) && i >= 1) {
        const int block = (i - 1) / per, layer = (i - 1) % per;
        if (sub == 0 && strncmp(rest, "op.", 3) == 0) {
            snprintf(prefix, sizeof prefix, "down_blocks.%d.downsamplers.0.conv.", block);
            return put(t, LDM_UNET, prefix, rest + 3, NULL);
        }
        snprintf(prefix, sizeof prefix, "down_blocks.%d.%s.%d.", block, sub == 0 ? "resnets" : "attentions", layer);
        return sub <= 1 && put(t, LDM_UNET, prefix, rest, sub == 0 ? unet_resnet : NULL);
    }
    if (one_number(name, "middle_block.", ".", &sub, &rest) && sub <= 2) {
        snprintf(prefix, sizeof prefix, "mid_block.%s.%d.", sub == 1 ? "attentions" : "resnets", sub / 2);
        return put(t, LDM_UNET, prefix, rest, sub == 1 ? NULL : unet_resnet);
    }
    if (two_numbers(name, "output_blocks.", &i, &sub, &rest)) {
        const int block = i / per, layer = i % per;
        if (sub >= 1 && strncmp(rest, "conv.", 5) == 0) { /* .1.conv without attentions, .2.conv with */
            snprintf(prefix, sizeof prefix, "up_blocks.%d.upsamplers.0.conv.", block);
            return put(t, LDM_UNET, prefix, rest + 5, NULL);
        }
        snprintf(prefix, sizeof prefix, "up_blocks.%d.%s.%d.", block, sub == 0 ? "resnets" : "attentions", layer);
        return sub <= 1 && put(t, LDM_UNET, prefix, rest, sub == 0 ? unet_resnet : NULL);
    }
    return 0;
}

static int map_vae(const LdmLayout *l, const char *name, LdmTarget *t)
{
    static const Rename same[] = {{"quant_conv.", "quant_conv."}, {"post_quant_conv.", "post_quant_conv."}, {NULL, NULL}};
    static const Rename shortcut[] = {{"nin_shortcut.", "conv_shortcut."}, {NULL, NULL}};
    static const Rename attention[] = {{"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."},
                                       {"v.", "to_v."},          {"proj_out.", "to_out.0."}, {NULL, NULL}};
    for (int i = 0; same[i].from; i++)
        if (strncmp(name, same[i].from, strlen(same[i].from)) == 0) return put(t, LDM_VAE, "", name, NULL);
    const char *coder = strncmp(name, "encoder.", 8) == 0 ? "encoder." : strncmp(name, "decoder.", 8) == 0 ? "decoder." : NULL;
    if (!coder) return 0;
    const char *rest = name + 8;
    static const Rename ends[] = {{"conv_in.", "conv_in."}, {"conv_out.", "conv_out."}, {"norm_out.", "conv_norm_out."},
                                  {NULL, NULL}};
    for (int i = 0; ends[i].from; i++)
        if (strncmp(rest, ends[i].from, strlen(ends[i].from)) == 0) return put(t, LDM_VAE, coder, rest, ends);
    char prefix[96];
    int i, j;
    const char *tail;
    if (one_number(rest, "mid.block_", ".", &i, &tail) && (i == 1 || i == 2)) {
        snprintf(prefix, sizeof prefix, "%smid_block.resnets.%d.", coder, i - 1);
        return put(t, LDM_VAE, prefix, tail, shortcut);
    }
    if (strncmp(rest, "mid.attn_1.", 11) == 0) {
        snprintf(prefix, sizeof prefix, "%smid_block.attentions.0.", coder);
        if (!put(t, LDM_VAE, prefix, rest + 11, attention)) return 0;
        const size_t n = strlen(t->name);
        if (strncmp(rest + 11, "norm.", 5) != 0 && n > 7 && strcmp(t->name + n - 7, ".weight") == 0)
            t->view = LDM_SQUEEZE; /* q, k, v, proj_out: 1x1 convolutions in LDM, linears in diffusers */
        return 1;
    }
    /* The decoder's levels count up from the bottom in LDM, from the top in diffusers. */
    const int encoder = coder[0] == 'e';
    const char *level = encoder ? "down." : "up.";
    const char *p = rest;
    if (lit(&p, level) && number(&p, &i) && (encoder || i < l->vae_up_blocks)) {
        const int to = encoder ? i : l->vae_up_blocks - 1 - i;
        const char *after = p;
        if (lit(&p, ".block.") && number(&p, &j) && lit(&p, ".")) {
            snprintf(prefix, sizeof prefix, "%s%s.%d.resnets.%d.", coder, encoder ? "down_blocks" : "up_blocks", to, j);
            return put(t, LDM_VAE, prefix, p, shortcut);
        }
        p = after;
        if (lit(&p, encoder ? ".downsample.conv." : ".upsample.conv.")) {
            snprintf(prefix, sizeof prefix, "%s%s.%d.%s.0.conv.", coder, encoder ? "down_blocks" : "up_blocks", to,
                     encoder ? "downsamplers" : "upsamplers");
            return put(t, LDM_VAE, prefix, p, NULL);
        }
    }
    return 0;
}

/* SD 1.x: transformers' CLIPTextModel under a prefix (older files lack the "text_model." level). */
static LdmResult map_clip(const char *rest, LdmTarget *t, int *n)
{
    if (strcmp(rest, "text_model.embeddings.position_ids") == 0 || strcmp(rest, "embeddings.position_ids") == 0)
        return LDM_IGNORED; /* a buffer: 0..76 */
    *n = 1;
    return put(t, LDM_TEXT, strncmp(rest, "text_model.", 11) == 0 ? "" : "text_model.", rest, NULL) ? LDM_MAPPED
                                                                                                     : LDM_UNKNOWN;
}

/* SD 2.x: OpenCLIP's text tower. */
static LdmResult map_open_clip(const LdmLayout *l, const char *rest, LdmTarget *t, int *n)
{
    static const Rename top[] = {{"token_embedding.", "text_model.embeddings.token_embedding."},
                                 {"ln_final.", "text_model.final_layer_norm."},
                                 {NULL, NULL}};
    static const Rename block[] = {{"ln_1.", "layer_norm1."},
                                   {"ln_2.", "layer_norm2."},
                                   {"mlp.c_fc.", "mlp.fc1."},
                                   {"mlp.c_proj.", "mlp.fc2."},
                                   {"attn.out_proj.", "self_attn.out_proj."},
                                   {NULL, NULL}};
    *n = 1;
    if (strcmp(rest, "text_projection") == 0 || strcmp(rest, "logit_scale") == 0 || strcmp(rest, "attn_mask") == 0)
        return LDM_IGNORED; /* CLIP's image-text head, and a causal mask the encoder builds itself */
    if (strcmp(rest, "positional_embedding") == 0)
        return put(t, LDM_TEXT, "", "text_model.embeddings.position_embedding.weight", NULL) ? LDM_MAPPED : LDM_UNKNOWN;
    for (int i = 0; top[i].from; i++)
        if (strncmp(rest, top[i].from, strlen(top[i].from)) == 0)
            return put(t, LDM_TEXT, "", rest, top) ? LDM_MAPPED : LDM_UNKNOWN;
    int layer;
    const char *tail;
    if (!one_number(rest, "transformer.resblocks.", ".", &layer, &tail)) return LDM_UNKNOWN;
    if (layer >= l->text_layers) return LDM_IGNORED; /* SD 2.x stops at the penultimate layer */
    char prefix[96];
    snprintf(prefix, sizeof prefix, "text_model.encoder.layers.%d.", layer);
    const char *fused = strcmp(tail, "attn.in_proj_weight") == 0 ? "weight" : strcmp(tail, "attn.in_proj_bias") == 0 ? "bias" : NULL;
    if (fused) { /* one (3 D, ...) tensor: q, k, v in thirds */
        static const char *const qkv[3] = {"q", "k", "v"};
        static const LdmView views[3] = {LDM_THIRD_Q, LDM_THIRD_K, LDM_THIRD_V};
        for (int k = 0; k < 3; k++) {
            t[k].part = LDM_TEXT, t[k].view = views[k];
            snprintf(t[k].name, sizeof t[k].name, "%sself_attn.%s_proj.%s", prefix, qkv[k], fused);
        }
        *n = 3;
        return LDM_MAPPED;
    }
    return put(t, LDM_TEXT, prefix, tail, block) ? LDM_MAPPED : LDM_UNKNOWN;
}

/* The LDM training schedule's buffers and EMA bookkeeping: in checkpoints, unused by a pipeline. */
static int is_training_buffer(const char *name)
{
    static const char *const names[] = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                                        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
                                        "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
                                        "posterior_variance", "posterior_log_variance_clipped",
                                        "posterior_mean_coef1", "posterior_mean_coef2", "logvar",
                                        "v_pred", /* ComfyUI marks a v-prediction checkpoint it saves so */
                                        NULL};
    for (int i = 0; names[i]; i++)
        if (strcmp(name, names[i]) == 0) return 1;
    return strncmp(name, "model_ema.", 10) == 0;
}

LdmResult ldm_map_name(const LdmLayout *layout, const char *name, LdmTarget *targets, int *n, const char **family)
{
    static const char unet[] = "model.diffusion_model.", vae[] = "first_stage_model.",
                      clip[] = "cond_stage_model.transformer.", open_clip[] = "cond_stage_model.model.";
    *n = 1;
    if (strncmp(name, unet, sizeof unet - 1) == 0)
        return map_unet(layout, name + sizeof unet - 1, targets) ? LDM_MAPPED : LDM_UNKNOWN;
    if (strncmp(name, vae, sizeof vae - 1) == 0)
        return map_vae(layout, name + sizeof vae - 1, targets) ? LDM_MAPPED : LDM_UNKNOWN;
    if (strncmp(name, clip, sizeof clip - 1) == 0) {
        *family = "SD 1.x";
        return map_clip(name + sizeof clip - 1, targets, n);
    }
    if (strncmp(name, open_clip, sizeof open_clip - 1) == 0) {
        *family = "SD 2.x";
        return map_open_clip(layout, name + sizeof open_clip - 1, targets, n);
    }
    return is_training_buffer(name) ? LDM_IGNORED : LDM_UNKNOWN;
}
