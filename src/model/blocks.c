/* blocks.c: see blocks.h. */
#include "blocks.h"

#include <stdio.h>
#include <string.h>

/* ---- parameter lists ---- */

int blocks_add_conv(WeightList *l, ConvParams *c, int cout, int cin, int k, const char *prefix)
{
    c->cout = cout, c->cin = cin, c->k = k;
    int64_t w[4] = {cout, cin, k, k}, b[1] = {cout};
    SOWER_TRY(weight_list_add(l, &c->weight, 4, w, "%s.weight", prefix));
    SOWER_TRY(weight_list_add(l, &c->bias, 1, b, "%s.bias", prefix));
    return SOWER_OK;
}

int blocks_add_group_norm(WeightList *l, GroupNormParams *n, int channels, int groups, float eps, const char *prefix)
{
    n->channels = channels, n->groups = groups, n->eps = eps;
    return weight_list_add_norm(l, &n->gamma, &n->beta, channels, prefix);
}

int blocks_add_resnet(WeightList *l, ResnetParams *r, int cin, int cout, int temb, int groups, float eps,
                      float output_scale, const char *prefix)
{
    char name[160];
    r->output_scale = output_scale;
    snprintf(name, sizeof name, "%s.norm1", prefix);
    SOWER_TRY(blocks_add_group_norm(l, &r->norm1, cin, groups, eps, name));
    snprintf(name, sizeof name, "%s.conv1", prefix);
    SOWER_TRY(blocks_add_conv(l, &r->conv1, cout, cin, 3, name));
    if (temb > 0) {
        snprintf(name, sizeof name, "%s.time_emb_proj", prefix);
        SOWER_TRY(weight_list_add_linear(l, &r->time_proj, cout, temb, name));
    }
    snprintf(name, sizeof name, "%s.norm2", prefix);
    SOWER_TRY(blocks_add_group_norm(l, &r->norm2, cout, groups, eps, name));
    snprintf(name, sizeof name, "%s.conv2", prefix);
    SOWER_TRY(blocks_add_conv(l, &r->conv2, cout, cout, 3, name));
    if (cin != cout) {
        snprintf(name, sizeof name, "%s.conv_shortcut", prefix);
        SOWER_TRY(blocks_add_conv(l, &r->shortcut, cout, cin, 1, name));
    }
    return SOWER_OK;
}

int blocks_add_attention(WeightList *l, AttentionParams *a, int channels, int dim_head, int groups, float eps,
                         float rescale, const char *prefix)
{
    char name[160];
    a->channels = channels;
    a->dim_head = dim_head;
    a->heads = channels / dim_head;
    a->rescale_output = rescale;
    snprintf(name, sizeof name, "%s.group_norm", prefix);
    SOWER_TRY(blocks_add_group_norm(l, &a->norm, channels, groups, eps, name));
    static const char *const proj[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    LinearParams *dst[4] = {&a->q, &a->k, &a->v, &a->out};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, proj[i]);
        SOWER_TRY(weight_list_add_linear(l, dst[i], channels, channels, name));
    }
    return SOWER_OK;
}

void blocks_legacy_attention_name(const char *name, char *legacy, size_t size)
{
    static const char *const from[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    static const char *const to[] = {".query.", ".key.", ".value.", ".proj_attn."};
    legacy[0] = '\0';
    for (int i = 0; i < 4; i++) {
        const char *hit = strstr(name, from[i]);
        if (hit && strstr(name, ".attentions.")) {
            snprintf(legacy, size, "%.*s%s%s", (int)(hit - name), name, to[i], hit + strlen(from[i]));
            return;
        }
    }
}

/* ---- forward ---- */

int blocks_resnet_forward(const ResnetParams *r, const Act *x, Act *out, ForwardCtx *ctx)
{
    const UNetOps *ops = ctx->ops;
    Act a = {0}, b = {0}, s = {0};
    int status = SOWER_OK;
    const ConvGeometry same = {1, 1, 1, 1, 1};
    SOWER_TRY_GOTO(ops->act_alloc(ctx->be, &a, x->c, x->b, x->h, x->w), status, done);
    SOWER_TRY_GOTO(ops->group_norm(ctx->be, &r->norm1, x, &a, 1), status, done);
    SOWER_TRY_GOTO(ops->conv2d(ctx->be, &r->conv1, same, &a, &b), status, done);
    ops->act_free(ctx->be, &a);
    if (r->time_proj.weight) {
        SOWER_TRY_GOTO(ops->linear(ctx->be, &r->time_proj, ctx->emb_silu, x->b, ctx->time_proj), status, done);
        SOWER_TRY_GOTO(ops->add_channel_bias(ctx->be, &b, ctx->time_proj), status, done);
    }
    SOWER_TRY_GOTO(ops->group_norm(ctx->be, &r->norm2, &b, &b, 1), status, done);
    SOWER_TRY_GOTO(ops->conv2d(ctx->be, &r->conv2, same, &b, out), status, done);
    const Act *shortcut = x;
    if (r->shortcut.weight) {
        const ConvGeometry pointwise = {1, 0, 0, 0, 0};
        SOWER_TRY_GOTO(ops->conv2d(ctx->be, &r->shortcut, pointwise, x, &s), status, done);
        shortcut = &s;
    }
    SOWER_TRY_GOTO(ops->residual(ctx->be, shortcut, out, r->output_scale), status, done);
done:
    if (status != SOWER_OK)
        ops->act_free(ctx->be, out);
    ops->act_free(ctx->be, &a);
    ops->act_free(ctx->be, &b);
    ops->act_free(ctx->be, &s);
    return status;
}

int blocks_pointwise(ForwardCtx *ctx, const LinearParams *l, const Act *in, Act *out)
{
    const ConvParams p = {l->weight, l->bias, l->out, l->in, 1};
    return ctx->ops->conv2d(ctx->be, &p, (ConvGeometry){1, 0, 0, 0, 0}, in, out);
}

int blocks_attention_bounded(const AttentionParams *a, const Act *x, Act *out, ForwardCtx *ctx)
{
    const UNetOps *ops = ctx->ops;
    Act g = {0}, q = {0}, k = {0}, v = {0}, o = {0};
    int status = SOWER_OK;
    SOWER_TRY_GOTO(ops->act_alloc(ctx->be, &g, x->c, x->b, x->h, x->w), status, done);
    SOWER_TRY_GOTO(ops->group_norm(ctx->be, &a->norm, x, &g, 0), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &a->q, &g, &q), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &a->k, &g, &k), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &a->v, &g, &v), status, done);
    ops->act_free(ctx->be, &g);
    SOWER_TRY_GOTO(ops->attention_heads(ctx->be, a->heads, &q, &k, &v, &o), status, done);
    SOWER_TRY_GOTO(blocks_pointwise(ctx, &a->out, &o, out), status, done);
    SOWER_TRY_GOTO(ops->residual(ctx->be, x, out, a->rescale_output), status, done); /* (out + x) / rescale */
done:
    if (status != SOWER_OK)
        ops->act_free(ctx->be, out);
    ops->act_free(ctx->be, &g);
    ops->act_free(ctx->be, &q);
    ops->act_free(ctx->be, &k);
    ops->act_free(ctx->be, &v);
    ops->act_free(ctx->be, &o);
    return status;
}
