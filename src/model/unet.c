/* unet.c: UNet2DModel's architecture, parameter binding and forward pass (upstream:
 * diffusers/models/unets/unet_2d.py, unet_2d_blocks.py, resnet.py, attention_processor.py). */
#include "unet.h"

#include "backend.h"
#include "blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- architecture: the parameter list, in diffusers' names ---- */

static int add_conv(UNet *u, ConvParams *c, int cout, int cin, int k, const char *prefix)
{
    return blocks_add_conv(&u->weights, c, cout, cin, k, prefix);
}

static int add_linear(UNet *u, LinearParams *l, int out, int in, const char *prefix)
{
    return weight_list_add_linear(&u->weights, l, out, in, prefix);
}

static int add_norm(UNet *u, GroupNormParams *n, int channels, int groups, float eps, const char *prefix)
{
    return blocks_add_group_norm(&u->weights, n, channels, groups, eps, prefix);
}

static int add_resnet(UNet *u, ResnetParams *r, int cin, int cout, float output_scale, const char *prefix)
{
    const UNetConfig *cfg = &u->cfg;
    return blocks_add_resnet(&u->weights, r, cin, cout, cfg->block_out_channels[0] * 4, cfg->norm_num_groups,
                             cfg->norm_eps, output_scale, prefix);
}

static int add_attention(UNet *u, AttentionParams *a, int channels, int groups, float rescale, const char *prefix)
{
    const UNetConfig *cfg = &u->cfg;
    return blocks_add_attention(&u->weights, a, channels, cfg->attention_head_dim ? cfg->attention_head_dim : channels,
                                groups, cfg->norm_eps, rescale, prefix);
}

/* ---- UNet2DConditionModel's Transformer2DModel ---- */

static int add_layer_norm(UNet *u, LayerNormParams *n, int channels, const char *prefix)
{
    n->channels = channels, n->eps = 1e-5f; /* BasicTransformerBlock's norm_eps default: the UNet never sets it */
    return weight_list_add_norm(&u->weights, &n->gamma, &n->beta, channels, prefix);
}

/* to_q (C, C), to_k and to_v (C, context_dim) without bias, to_out.0 (C, C) with bias. */
static int add_mha(UNet *u, MultiHeadAttentionParams *a, int channels, int context_dim, int heads, const char *prefix)
{
    a->heads = heads, a->dim_head = channels / heads;
    static const char *const proj[3] = {"to_q", "to_k", "to_v"};
    LinearParams *dst[3] = {&a->q, &a->k, &a->v};
    for (int i = 0; i < 3; i++) {
        int in = i == 0 ? channels : context_dim;
        int64_t shape[2] = {channels, in};
        dst[i]->out = channels, dst[i]->in = in, dst[i]->bias = NULL;
        SOWER_TRY(weight_list_add(&u->weights, &dst[i]->weight, 2, shape, "%s.%s.weight", prefix, proj[i]));
    }
    char name[128];
    snprintf(name, sizeof name, "%s.to_out.0", prefix);
    return add_linear(u, &a->out, channels, channels, name);
}

/* proj_in / proj_out: a 1x1 convolution (C, C, 1, 1) or, with use_linear_projection, a Linear (C, C). */
static int add_projection(UNet *u, LinearParams *l, int channels, const char *prefix)
{
    if (u->cfg.use_linear_projection)
        return add_linear(u, l, channels, channels, prefix);
    l->out = l->in = channels;
    int64_t w[4] = {channels, channels, 1, 1}, b[1] = {channels};
    SOWER_TRY(weight_list_add(&u->weights, &l->weight, 4, w, "%s.weight", prefix));
    SOWER_TRY(weight_list_add(&u->weights, &l->bias, 1, b, "%s.bias", prefix));
    return SOWER_OK;
}

static int add_transformer(UNet *u, TransformerParams *t, int channels, int heads, const char *prefix)
{
    char name[128];
    snprintf(name, sizeof name, "%s.norm", prefix);
    SOWER_TRY(add_norm(u, &t->norm, channels, u->cfg.norm_num_groups, 1e-6f, name)); /* Transformer2DModel's eps */
    snprintf(name, sizeof name, "%s.proj_in", prefix);
    SOWER_TRY(add_projection(u, &t->proj_in, channels, name));
    t->depth = 1;
    for (int d = 0; d < t->depth; d++) {
        TransformerBlockParams *b = &t->blocks[d];
#define BLOCK(suffix) (snprintf(name, sizeof name, "%s.transformer_blocks.%d.%s", prefix, d, suffix), name)
        SOWER_TRY(add_layer_norm(u, &b->norm1, channels, BLOCK("norm1")));
        SOWER_TRY(add_mha(u, &b->attn1, channels, channels, heads, BLOCK("attn1")));
        SOWER_TRY(add_layer_norm(u, &b->norm2, channels, BLOCK("norm2")));
        SOWER_TRY(add_mha(u, &b->attn2, channels, u->cfg.cross_attention_dim, heads, BLOCK("attn2")));
        SOWER_TRY(add_layer_norm(u, &b->norm3, channels, BLOCK("norm3")));
        SOWER_TRY(add_linear(u, &b->ff_in, 8 * channels, channels, BLOCK("ff.net.0.proj"))); /* GEGLU: 2 x 4C */
        SOWER_TRY(add_linear(u, &b->ff_out, channels, 4 * channels, BLOCK("ff.net.2")));
#undef BLOCK
    }
    snprintf(name, sizeof name, "%s.proj_out", prefix);
    return add_projection(u, &t->proj_out, channels, name);
}

/* A block's attention j: Attention (UNet2DModel) or Transformer2DModel (UNet2DConditionModel). */
static int add_block_attention(UNet *u, BlockParams *blk, int j, int channels, int heads, const char *prefix)
{
    if (u->cfg.conditional)
        return add_transformer(u, &blk->transformers[j], channels, heads, prefix);
    return add_attention(u, &blk->attentions[j], channels, u->cfg.norm_num_groups, 1.0f, prefix);
}

int unet_init(UNet *u, const UNetConfig *cfg)
{
    memset(u, 0, sizeof *u);
    u->cfg = *cfg;
    const int n = cfg->n_blocks, c0 = cfg->block_out_channels[0], temb = c0 * 4;
    char name[96];
    SOWER_TRY(add_conv(u, &u->conv_in, c0, cfg->in_channels, 3, "conv_in"));
    SOWER_TRY(add_linear(u, &u->time_linear_1, temb, c0, "time_embedding.linear_1"));
    SOWER_TRY(add_linear(u, &u->time_linear_2, temb, temb, "time_embedding.linear_2"));

    int out_ch = c0;
    for (int i = 0; i < n; i++) {
        BlockParams *blk = &u->down[i];
        int in_ch = out_ch;
        out_ch = cfg->block_out_channels[i];
        blk->n_layers = cfg->layers_per_block;
        blk->has_attention = cfg->down_has_attention[i];
        for (int j = 0; j < blk->n_layers; j++) {
            snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
            SOWER_TRY(add_resnet(u, &blk->resnets[j], j == 0 ? in_ch : out_ch, out_ch, 1.0f, name));
            if (blk->has_attention) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
                SOWER_TRY(add_block_attention(u, blk, j, out_ch, cfg->heads[i], name));
            }
        }
        blk->has_sampler = i != n - 1;
        if (blk->has_sampler) {
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            SOWER_TRY(add_conv(u, &blk->sampler, out_ch, out_ch, 3, name));
        }
    }

    const int mid_ch = cfg->block_out_channels[n - 1];
    const float mid_scale = cfg->mid_block_scale_factor;
    SOWER_TRY(add_resnet(u, &u->mid_resnets[0], mid_ch, mid_ch, mid_scale, "mid_block.resnets.0"));
    u->mid_has_attention = cfg->add_attention;
    if (u->mid_has_attention && cfg->conditional) {
        SOWER_TRY(add_transformer(u, &u->mid_transformer, mid_ch, cfg->heads[n - 1], "mid_block.attentions.0"));
    } else if (u->mid_has_attention) {
        int groups = cfg->attn_norm_num_groups ? cfg->attn_norm_num_groups : cfg->norm_num_groups;
        SOWER_TRY(add_attention(u, &u->mid_attention, mid_ch, groups, mid_scale, "mid_block.attentions.0"));
    }
    SOWER_TRY(add_resnet(u, &u->mid_resnets[1], mid_ch, mid_ch, mid_scale, "mid_block.resnets.1"));

    out_ch = cfg->block_out_channels[n - 1];
    for (int i = 0; i < n; i++) {
        BlockParams *blk = &u->up[i];
        int prev_out = out_ch;
        out_ch = cfg->block_out_channels[n - 1 - i];
        int in_ch = cfg->block_out_channels[(n - 2 - i) < 0 ? 0 : n - 2 - i];
        blk->n_layers = cfg->layers_per_block + 1;
        blk->has_attention = cfg->up_has_attention[i];
        for (int j = 0; j < blk->n_layers; j++) {
            int skip_ch = j == blk->n_layers - 1 ? in_ch : out_ch;
            int resnet_in = j == 0 ? prev_out : out_ch;
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            SOWER_TRY(add_resnet(u, &blk->resnets[j], resnet_in + skip_ch, out_ch, 1.0f, name));
            if (blk->has_attention) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
                SOWER_TRY(add_block_attention(u, blk, j, out_ch, cfg->heads[n - 1 - i], name));
            }
        }
        blk->has_sampler = i != n - 1;
        if (blk->has_sampler) {
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
            SOWER_TRY(add_conv(u, &blk->sampler, out_ch, out_ch, 3, name));
        }
    }
    SOWER_TRY(add_norm(u, &u->norm_out, c0, cfg->norm_num_groups, cfg->norm_eps, "conv_norm_out"));
    SOWER_TRY(add_conv(u, &u->conv_out, cfg->out_channels, c0, 3, "conv_out"));
    return SOWER_OK;
}

void unet_free(UNet *u)
{
    weight_list_free(&u->weights);
    memset(u, 0, sizeof *u);
}

int unet_size_problem(const UNetConfig *cfg, int height, int width, char *why, size_t why_size)
{
    const int downsamplings = cfg->n_blocks - 1, multiple = 1 << downsamplings;
    if (!cfg->conditional) {
        if (height % multiple == 0 && width % multiple == 0) return 0;
        snprintf(why, why_size, "not divisible by %d, as this UNet's %d blocks need", multiple, cfg->n_blocks);
        return 1;
    }
    int h = height, w = width;
    for (int level = 0; level < downsamplings; level++) {
        if (!cfg->downsample_padding && (h < 2 || w < 2)) {
            snprintf(why, why_size, "too small for this UNet: %dx%d at level %d, where a downsampling without "
                     "padding (downsample_padding 0) needs 2 rows and columns (diffusers' convolution refuses it too)",
                     h, w, level);
            return 1;
        }
        const int pad = cfg->downsample_padding ? 2 : 1; /* rows added: (1, 1), or (0, 1) */
        h = (h + pad - 3) / 2 + 1, w = (w + pad - 3) / 2 + 1;
    }
    return 0;
}

/* ---- binding weights by name ---- */

int unet_bind(UNet *u, const StFile *weights)
{
    const WeightBindRules rules = {.model = u->cfg.conditional ? "UNet2DConditionModel" : "UNet2DModel",
                                   .legacy_name = u->cfg.conditional ? NULL : blocks_legacy_attention_name};
    return weight_list_bind(&u->weights, weights, &rules);
}

/* ---- forward: one walk of the architecture, every operation through the backend's table ---- */

/* out = attention of x's tokens over context's (x's own when context is NULL); allocates out. */
static int mha_forward(const MultiHeadAttentionParams *a, const Act *x, const Act *context, Act *out, ForwardCtx *ctx)
{
    const Act *c = context ? context : x;
    Act q = {0}, k = {0}, v = {0}, o = {0};
    int status = SOWER_OK;
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &a->q, x, &q), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &a->k, c, &k), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &a->v, c, &v), status, done);
    SOWER_TRY_GOTO(ctx->ops->attention_heads(ctx->be, a->heads, &q, &k, &v, &o), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &a->out, &o, out), status, done);
done:
    ctx->ops->act_free(ctx->be, &q);
    ctx->ops->act_free(ctx->be, &k);
    ctx->ops->act_free(ctx->be, &v);
    ctx->ops->act_free(ctx->be, &o);
    return status;
}

/* x += f(norm(x)) for one of a BasicTransformerBlock's three sub-layers (which: 0 self-attention,
 * 1 cross-attention, 2 GEGLU feed-forward). */
static int transformer_sublayer(const TransformerBlockParams *b, int which, Act *x, ForwardCtx *ctx)
{
    const UNetOps *ops = ctx->ops;
    const LayerNormParams *norms[3] = {&b->norm1, &b->norm2, &b->norm3};
    Act n = {0}, f = {0}, g = {0}, y = {0};
    int status = SOWER_OK;
    SOWER_TRY_GOTO(ops->act_alloc(ctx->be, &n, x->c, x->b, x->h, x->w), status, done);
    SOWER_TRY_GOTO(ops->layer_norm(ctx->be, norms[which], x, &n), status, done);
    if (which == 0) {
        SOWER_TRY_GOTO(mha_forward(&b->attn1, &n, NULL, &y, ctx), status, done);
    } else if (which == 1) {
        SOWER_TRY_GOTO(mha_forward(&b->attn2, &n, ctx->context, &y, ctx), status, done);
    } else {
        SOWER_TRY_GOTO(blocks_pointwise(ctx, &b->ff_in, &n, &f), status, done);
        SOWER_TRY_GOTO(ops->geglu(ctx->be, &f, &g), status, done);
        SOWER_TRY_GOTO(blocks_pointwise(ctx, &b->ff_out, &g, &y), status, done);
    }
    SOWER_TRY_GOTO(ops->residual(ctx->be, &y, x, 1.0f), status, done); /* x = y + x, diffusers' order */
done:
    ops->act_free(ctx->be, &n);
    ops->act_free(ctx->be, &f);
    ops->act_free(ctx->be, &g);
    ops->act_free(ctx->be, &y);
    return status;
}

/* out = proj_out(blocks(proj_in(group_norm(h)))) + h; allocates out. */
static int transformer_forward(const TransformerParams *t, const Act *h, Act *out, ForwardCtx *ctx)
{
    const UNetOps *ops = ctx->ops;
    Act g = {0}, x = {0};
    int status = SOWER_OK;
    SOWER_TRY_GOTO(ops->act_alloc(ctx->be, &g, h->c, h->b, h->h, h->w), status, done);
    SOWER_TRY_GOTO(ops->group_norm(ctx->be, &t->norm, h, &g, 0), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &t->proj_in, &g, &x), status, done);
    for (int d = 0; d < t->depth; d++)
        for (int which = 0; which < 3; which++)
            SOWER_TRY_GOTO(transformer_sublayer(&t->blocks[d], which, &x, ctx), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &t->proj_out, &x, out), status, done);
    SOWER_TRY_GOTO(ops->residual(ctx->be, h, out, 1.0f), status, done);
done:
    if (status != SOWER_OK)
        ops->act_free(ctx->be, out);
    ops->act_free(ctx->be, &g);
    ops->act_free(ctx->be, &x);
    return status;
}

/* next = a block's attention j of h: Attention (UNet2DModel) or Transformer2DModel. */
static int block_attention(const UNet *u, const BlockParams *blk, int j, const Act *h, Act *next, ForwardCtx *ctx)
{
    if (u->cfg.conditional)
        return transformer_forward(&blk->transformers[j], h, next, ctx);
    return ctx->ops->attention(ctx->be, &blk->attentions[j], h, next);
}

/* h <- next, freeing the old h if this function owned it. next is emptied: a later op that fails
 * frees its half-made output, and a stale copy of h there would be freed twice (once by that op,
 * once by the caller's cleanup). */
static void replace(ForwardCtx *ctx, Act *h, int *owned, Act *next)
{
    if (*owned)
        ctx->ops->act_free(ctx->be, h);
    *h = *next;
    *next = (Act){0};
    *owned = 1;
}

enum { MAX_SKIPS = 1 + UNET_MAX_BLOCKS * UNET_MAX_LAYERS + UNET_MAX_BLOCKS };

static int forward_body(const UNet *u, Act *h, int *h_owned, ForwardCtx *ctx, Act *skips, int *n_skips)
{
    const UNetConfig *cfg = &u->cfg;
    const UNetOps *ops = ctx->ops;
    const ConvGeometry same = {1, 1, 1, 1, 1};
    Act next = {0};
    skips[(*n_skips)++] = *h; /* conv_in's output: the stack owns it now */
    *h_owned = 0;
    for (int i = 0; i < cfg->n_blocks; i++) {
        const BlockParams *blk = &u->down[i];
        for (int j = 0; j < blk->n_layers; j++) {
            SOWER_TRY(blocks_resnet_forward(&blk->resnets[j], h, &next, ctx));
            replace(ctx, h, h_owned, &next);
            if (blk->has_attention) {
                SOWER_TRY(block_attention(u, blk, j, h, &next, ctx));
                replace(ctx, h, h_owned, &next);
            }
            skips[(*n_skips)++] = *h;
            *h_owned = 0;
        }
        if (blk->has_sampler) {
            ConvGeometry down = cfg->downsample_padding ? (ConvGeometry){2, 1, 1, 1, 1} : (ConvGeometry){2, 0, 0, 1, 1};
            SOWER_TRY(ops->conv2d(ctx->be, &blk->sampler, down, h, &next));
            replace(ctx, h, h_owned, &next);
            skips[(*n_skips)++] = *h;
            *h_owned = 0;
        }
    }
    SOWER_TRY(blocks_resnet_forward(&u->mid_resnets[0], h, &next, ctx));
    replace(ctx, h, h_owned, &next);
    if (u->mid_has_attention) {
        if (cfg->conditional)
            SOWER_TRY(transformer_forward(&u->mid_transformer, h, &next, ctx));
        else
            SOWER_TRY(ops->attention(ctx->be, &u->mid_attention, h, &next));
        replace(ctx, h, h_owned, &next);
    }
    SOWER_TRY(blocks_resnet_forward(&u->mid_resnets[1], h, &next, ctx));
    replace(ctx, h, h_owned, &next);
    for (int i = 0; i < cfg->n_blocks; i++) {
        const BlockParams *blk = &u->up[i];
        for (int j = 0; j < blk->n_layers; j++) {
            Act skip = skips[--(*n_skips)];
            Act cat = {0};
            int status = ops->concat_channels(ctx->be, h, &skip, &cat);
            ops->act_free(ctx->be, &skip);
            SOWER_TRY(status);
            replace(ctx, h, h_owned, &cat);
            SOWER_TRY(blocks_resnet_forward(&blk->resnets[j], h, &next, ctx));
            replace(ctx, h, h_owned, &next);
            if (blk->has_attention) {
                SOWER_TRY(block_attention(u, blk, j, h, &next, ctx));
                replace(ctx, h, h_owned, &next);
            }
        }
        if (blk->has_sampler) {
            /* Up to the next skip connection's size: twice this level's, or, where a downsampling
             * rounded an odd size up, that odd size (diffusers' forward_upsample_size). */
            const Act *to = &skips[*n_skips - 1];
            SOWER_TRY(ops->upsample_nearest(ctx->be, h, to->h, to->w, &next));
            replace(ctx, h, h_owned, &next);
            SOWER_TRY(ops->conv2d(ctx->be, &blk->sampler, same, h, &next));
            replace(ctx, h, h_owned, &next);
        }
    }
    SOWER_TRY(ops->group_norm(ctx->be, &u->norm_out, h, h, 1));
    SOWER_TRY(ops->conv2d(ctx->be, &u->conv_out, same, h, &next));
    replace(ctx, h, h_owned, &next);
    return SOWER_OK;
}

int unet_context_upload(const ComputeBackend *be, const float *embeddings, int batch, int tokens, Act *context)
{
    const int dim = be->unet->cfg.cross_attention_dim;
    const size_t n = (size_t)batch * tokens * dim;
    float *host = malloc(n * sizeof *host); /* (dim, B, 1, tokens) */
    if (!host)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the text embeddings");
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < tokens; t++)
            for (int d = 0; d < dim; d++)
                host[((size_t)d * batch + b) * tokens + t] = embeddings[((size_t)b * tokens + t) * dim + d];
    int status = be->ops->act_alloc(be->ctx, context, dim, batch, 1, tokens);
    if (status == SOWER_OK)
        status = be->ops->upload(be->ctx, context->data, host, n);
    if (status != SOWER_OK)
        be->ops->act_free(be->ctx, context);
    free(host);
    return status;
}

int unet_forward_resident(const ComputeBackend *be, const float *x, const float *timesteps, int batch, int height,
                          int width, float *out)
{
    return unet_forward_resident_cond(be, x, timesteps, NULL, batch, height, width, out);
}

int unet_forward_resident_cond(const ComputeBackend *be, const float *x, const float *timesteps, const Act *context,
                               int batch, int height, int width, float *out)
{
    const UNet *u = be->unet;
    const UNetOps *ops = be->ops;
    void *bc = be->ctx;
    const UNetConfig *cfg = &u->cfg;
    if (cfg->conditional && (!context || context->c != cfg->cross_attention_dim || context->b != batch))
        return SOWER_FAIL(SOWER_EINTERNAL, "UNet2DConditionModel forward without text embeddings of width %d for "
                                           "%d samples", cfg->cross_attention_dim, batch);
    if (!cfg->conditional && context)
        return SOWER_FAIL(SOWER_EINTERNAL, "text embeddings given to an unconditional UNet2DModel");
    if (cfg->conditional && !backend_runs_conditional(ops))
        return SOWER_FAIL(SOWER_EUSAGE, "the %s backend does not run UNet2DConditionModel yet (use the cpu backend)",
                          be->kind == BACKEND_CUDA ? "cuda" : "chosen");
    char why[256];
    if (unet_size_problem(cfg, height, width, why, sizeof why))
        return SOWER_FAIL(SOWER_EINPUT, "sample size %dx%d is %s", height, width, why);
    const int c0 = cfg->block_out_channels[0], temb = 4 * c0;
    int status = SOWER_OK, h_owned = 1, n_skips = 0;
    Act in = {0}, h = {0};
    Act skips[MAX_SKIPS];
    int max_c = 0;
    for (int i = 0; i < cfg->n_blocks; i++)
        max_c = cfg->block_out_channels[i] > max_c ? cfg->block_out_channels[i] : max_c;
    float *t_host = malloc(sizeof(float) * (size_t)batch * c0); /* (B, c0) host: the sinusoids */
    float *t_sin = NULL;     /* (B, c0) */
    float *t_hidden = NULL;  /* (B, temb) */
    float *emb = NULL;       /* (B, temb) */
    float *time_proj = NULL; /* (B, max cout) */
    if (!t_host) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for the time embedding");
        goto done;
    }
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &t_sin, (size_t)batch * c0), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &t_hidden, (size_t)batch * temb), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &emb, (size_t)batch * temb), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &time_proj, (size_t)batch * max_c), status, done);

    /* Time embedding: sinusoids (on the host, the same bits everywhere) -> linear_1 -> SiLU ->
     * linear_2; every resnet uses SiLU of it. */
    timestep_embedding(timesteps, batch, c0, cfg->flip_sin_to_cos, cfg->freq_shift, t_host);
    SOWER_TRY_GOTO(ops->upload(bc, t_sin, t_host, (size_t)batch * c0), status, done);
    SOWER_TRY_GOTO(ops->linear(bc, &u->time_linear_1, t_sin, batch, t_hidden), status, done);
    SOWER_TRY_GOTO(ops->silu(bc, t_hidden, (size_t)batch * temb), status, done);
    SOWER_TRY_GOTO(ops->linear(bc, &u->time_linear_2, t_hidden, batch, emb), status, done);
    SOWER_TRY_GOTO(ops->silu(bc, emb, (size_t)batch * temb), status, done);
    ForwardCtx ctx = {ops, bc, emb, time_proj, context};

    SOWER_TRY_GOTO(ops->act_alloc(bc, &in, cfg->in_channels, batch, height, width), status, done);
    SOWER_TRY_GOTO(ops->from_nchw(bc, x, batch, cfg->center_input_sample, &in), status, done);
    const ConvGeometry same = {1, 1, 1, 1, 1};
    SOWER_TRY_GOTO(ops->conv2d(bc, &u->conv_in, same, &in, &h), status, done);
    ops->act_free(bc, &in);
    SOWER_TRY_GOTO(forward_body(u, &h, &h_owned, &ctx, skips, &n_skips), status, done);
    SOWER_TRY_GOTO(ops->to_nchw(bc, &h, out), status, done);
done:
    while (n_skips > 0)
        ops->act_free(bc, &skips[--n_skips]);
    if (h_owned)
        ops->act_free(bc, &h);
    ops->act_free(bc, &in);
    free(t_host);
    ops->buffer_free(bc, t_sin);
    ops->buffer_free(bc, t_hidden);
    ops->buffer_free(bc, emb);
    ops->buffer_free(bc, time_proj);
    return status;
}

int unet_forward_on(const ComputeBackend *be, const float *x, const float *timesteps, int batch, int height,
                    int width, float *out)
{
    return unet_forward_on_cond(be, x, timesteps, NULL, 0, batch, height, width, out);
}

int unet_forward_on_cond(const ComputeBackend *be, const float *x, const float *timesteps, const float *embeddings,
                         int tokens, int batch, int height, int width, float *out)
{
    const UNetConfig *cfg = &be->unet->cfg;
    const size_t in_values = (size_t)batch * cfg->in_channels * height * width;
    const size_t out_values = (size_t)batch * cfg->out_channels * height * width;
    float *x_be = NULL, *out_be = NULL; /* (B, in / out channels, H, W) in backend memory */
    Act context = {0};                  /* (cross_attention_dim, B, 1, tokens) in backend memory */
    int status = SOWER_OK;
    if (embeddings)
        SOWER_TRY_GOTO(unet_context_upload(be, embeddings, batch, tokens, &context), status, done);
    SOWER_TRY_GOTO(be->ops->buffer_alloc(be->ctx, &x_be, in_values), status, done);
    SOWER_TRY_GOTO(be->ops->buffer_alloc(be->ctx, &out_be, out_values), status, done);
    SOWER_TRY_GOTO(be->ops->upload(be->ctx, x_be, x, in_values), status, done);
    SOWER_TRY_GOTO(unet_forward_resident_cond(be, x_be, timesteps, embeddings ? &context : NULL, batch, height, width,
                                              out_be),
                   status, done);
    SOWER_TRY_GOTO(be->ops->download(be->ctx, out, out_be, out_values), status, done);
done:
    be->ops->act_free(be->ctx, &context);
    be->ops->buffer_free(be->ctx, x_be);
    be->ops->buffer_free(be->ctx, out_be);
    return status;
}
