/* ops_transformer.c: the CPU operations of UNet2DConditionModel's transformers (ops_transformer.h), on
 * (C, B, H, W) activations, where a token is one pixel of one sample and its features run down the
 * channels. Each token's result depends on its own sample only, in a fixed order, so a sample's bits
 * never depend on the batch or the thread count (the products through gemm.h, whose element bits
 * depend on neither m nor n: query blocks do not change them either). */
#include "ops_transformer.h"

#include <math.h>
#include <string.h>

#include "gemm.h"
#include "rowops.h"

enum {
    TOKEN_BLOCK = ROW_TOKEN_BLOCK, /* tokens normalised together (vectorises across tokens) */
    SCORE_BUDGET_FLOATS = 1 << 22, /* one query block's scores: at most 16 MB */
};

void op_layer_norm_channels(const LayerNormParams *p, const Act *in, Act *out)
{
    const size_t n = act_plane(in); /* tokens */
    const int blocks = (int)((n + TOKEN_BLOCK - 1) / TOKEN_BLOCK);
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < blocks; blk++) {
        const size_t t0 = (size_t)blk * TOKEN_BLOCK, count = n - t0 < TOKEN_BLOCK ? n - t0 : TOKEN_BLOCK;
        tokens_layer_norm(out->data + t0, in->data + t0, n, count, in->c, p->gamma, p->beta, p->eps);
    }
}

int op_attention_heads(int heads, const Act *q, const Act *k, const Act *v, Act *out, Scratch *scratch)
{
    const int c = q->c, dh = c / heads;
    const int nq = q->h * q->w, nk = k->h * k->w; /* tokens per sample */
    const size_t q_plane = act_plane(q), k_plane = act_plane(k);
    SOWER_TRY(act_alloc(out, c, q->b, q->h, q->w));
    int rows = SCORE_BUDGET_FLOATS / nk;
    rows = rows < 1 ? 1 : rows > nq ? nq : rows;
    const int transposed = gemm_attention_order(dh, nk);
    SOWER_TRY(scratch_reserve(scratch, (size_t)rows * nk + (transposed ? (size_t)rows * dh : 0)));
    float *scores = scratch->buf; /* (rows, nk): one block of queries against every key */
    float *values_t = scores + (size_t)rows * nk; /* (rows, dh): the block's output, token-major */
    const float scale = 1.0f / sqrtf((float)dh);
    for (int b = 0; b < q->b; b++)
        for (int h = 0; h < heads; h++) {
            const float *qh =
                q->data + (size_t)h * dh * q_plane + (size_t)b * nq; /* (dh, nq), stride q_plane */
            const float *kh =
                k->data + (size_t)h * dh * k_plane + (size_t)b * nk; /* (dh, nk), stride k_plane */
            const float *vh = v->data + (size_t)h * dh * k_plane + (size_t)b * nk;
            float *oh = out->data + (size_t)h * dh * q_plane + (size_t)b * nq; /* (dh, nq) */
            for (int r0 = 0; r0 < nq; r0 += rows) {
                const int m = nq - r0 < rows ? nq - r0 : rows;
                gemm_f32_at(m, nk, dh, qh + r0, (int)q_plane, kh, (int)k_plane, scores, nk, 0);
#pragma omp parallel for schedule(static)
                for (int r = 0; r < m; r++)
                    row_softmax_scaled(scores + (size_t)r * nk, (size_t)nk, scale);
                if (transposed)
                    gemm_f32_bt_transposed(dh, m, nk, vh, (int)k_plane, scores, nk, oh + r0, (int)q_plane, values_t);
                else
                    gemm_f32_bt(dh, m, nk, vh, (int)k_plane, scores, nk, oh + r0, (int)q_plane, 0);
            }
        }
    return SOWER_OK;
}

int op_geglu(const Act *in, Act *out)
{
    const int half = in->c / 2;
    const size_t n = act_plane(in);
    SOWER_TRY(act_alloc(out, half, in->b, in->h, in->w));
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < half; ch++) {
        const float *value = in->data + (size_t)ch * n, *gate = in->data + (size_t)(half + ch) * n;
        float *y = out->data + (size_t)ch * n;
        memcpy(y, gate, n * sizeof *y);
        row_gelu_erf(y, n);
        for (size_t i = 0; i < n; i++)
            y[i] = value[i] * y[i];
    }
    return SOWER_OK;
}
