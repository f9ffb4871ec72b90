/* ops.c: CPU operations for UNet2DModel (see ops.h for the layout and the determinism rules).
 * Parallel loops (OpenMP) give each output element to one thread, computed in a fixed order, so
 * the thread count never changes a bit; the matrix multiplies are BLIS's (gemm.h). */
#include "ops.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "gemm.h"
#include "rowops.h"
#include "upsample_index.h"
#include "winograd.h"

enum { IM2COL_BUDGET_FLOATS = 8 << 20 }; /* 32 MiB of columns at a time */

static int profile_on;
static double profile_seconds[PROF_COUNT];
static const char *const profile_names[PROF_COUNT] = {
    "im2col (3x3 conv columns)", "3x3 convs (GEMM, packing)", "1x1 convs, attn projections", "group norm (+ SiLU)",
    "attention (scores, softmax)", "upsample", "bias, residual, time embedding"};

void ops_profile_enable(int on) { profile_on = on; }

double ops_profile_now(void) { return profile_on ? omp_get_wtime() : 0.0; }

void ops_profile_add(ProfCategory c, double since)
{
    if (profile_on)
        profile_seconds[c] += omp_get_wtime() - since;
}

void ops_profile_report(FILE *stream)
{
    double total = 0;
    for (int i = 0; i < PROF_COUNT; i++)
        total += profile_seconds[i];
    for (int i = 0; i < PROF_COUNT; i++) {
        fprintf(stream, "  %-32s %9.4f s  %5.1f%%\n", profile_names[i], profile_seconds[i],
                total > 0 ? 100.0 * profile_seconds[i] / total : 0.0);
        profile_seconds[i] = 0;
    }
}

int act_alloc(Act *a, int c, int b, int h, int w)
{
    size_t n = (size_t)c * (size_t)b * (size_t)h * (size_t)w;
    a->data = malloc((n ? n : 1) * sizeof(float));
    a->c = c, a->b = b, a->h = h, a->w = w;
    if (!a->data)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for an activation of %d x %d x %d x %d floats", c, b, h, w);
    return SOWER_OK;
}

void act_free(Act *a)
{
    free(a->data);
    memset(a, 0, sizeof *a);
}

static void add_row_bias(float *y, const float *bias, int rows, size_t cols)
{
    if (!bias) /* a projection without bias (the transformers' to_q, to_k, to_v) */
        return;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float b = bias[r];
        float *row = y + (size_t)r * cols;
        for (size_t j = 0; j < cols; j++)
            row[j] += b;
    }
}

/* cols (K, n_rows*Wo): the im2col matrix for output rows [q0, q0+n_rows) of all (b, oy) pairs. */
static void im2col(const ConvParams *p, ConvGeometry g, const Act *in, int ho, int wo, int q0, int n_rows,
                   float *cols)
{
    const int k = p->k, kk = k * k;
    const size_t nc = (size_t)n_rows * wo;
    const int rows_k = p->cin * kk;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows_k; r++) {
        int ci = r / kk, ky = (r / k) % k, kx = r % k;
        float *dst_row = cols + (size_t)r * nc;
        for (int q = 0; q < n_rows; q++) {
            int b = (q0 + q) / ho, oy = (q0 + q) % ho;
            float *dst = dst_row + (size_t)q * wo;
            int iy = oy * g.stride + ky - g.pad_top;
            if (iy < 0 || iy >= in->h) {
                memset(dst, 0, (size_t)wo * sizeof(float));
                continue;
            }
            const float *src = in->data + (((size_t)ci * in->b + b) * in->h + iy) * in->w;
            int ix0 = kx - g.pad_left;
            if (g.stride == 1) {
                int lo = ix0 < 0 ? -ix0 : 0;                         /* first ox inside */
                int hi = in->w - ix0 < wo ? in->w - ix0 : wo;        /* one past the last */
                if (hi < lo)
                    hi = lo;
                memset(dst, 0, (size_t)lo * sizeof(float));
                memcpy(dst + lo, src + ix0 + lo, (size_t)(hi - lo) * sizeof(float));
                memset(dst + hi, 0, (size_t)(wo - hi) * sizeof(float));
            } else {
                for (int ox = 0; ox < wo; ox++) {
                    int ix = ox * g.stride + ix0;
                    dst[ox] = (ix >= 0 && ix < in->w) ? src[ix] : 0.0f;
                }
            }
        }
    }
}

/* The same columns as im2col for a stride-1 "same" convolution (output size = input size), built
 * with one bulk copy per row of the column matrix: output rows (b, oy) are consecutive in the
 * input plane of each channel, so row r = (ci, ky, kx) is the plane shifted by (ky - pad_top) rows
 * and (kx - pad_left) columns; what the shift brings in from outside the sample's image (the
 * neighbouring row or sample) is then zeroed. The values are exactly im2col's. */
static void im2col_same(const ConvParams *p, ConvGeometry g, const Act *in, int q0, int n_rows, float *cols)
{
    const int k = p->k, kk = k * k, h = in->h, w = in->w;
    const ptrdiff_t plane = (ptrdiff_t)in->b * h * w;
    const ptrdiff_t nc = (ptrdiff_t)n_rows * w;
    const int rows_k = p->cin * kk;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows_k; r++) {
        int ci = r / kk, dy = (r / k) % k - g.pad_top, dx = r % k - g.pad_left;
        const float *src = in->data + (size_t)ci * plane;
        float *dst = cols + (size_t)r * nc;
        ptrdiff_t off = (ptrdiff_t)q0 * w + (ptrdiff_t)dy * w + dx; /* source index of dst[0] */
        ptrdiff_t lo = off < 0 ? -off : 0, hi = off + nc > plane ? plane - off : nc;
        if (hi < lo)
            hi = lo;
        memset(dst, 0, (size_t)lo * sizeof(float));
        memcpy(dst + lo, src + off + lo, (size_t)(hi - lo) * sizeof(float));
        memset(dst + hi, 0, (size_t)(nc - hi) * sizeof(float));
        for (int q = 0; q < n_rows; q++) {
            float *d = dst + (size_t)q * w;
            int iy = (q0 + q) % h + dy;
            if (iy < 0 || iy >= h) {
                memset(d, 0, (size_t)w * sizeof(float));
                continue;
            }
            for (int ox = 0; ox < -dx && ox < w; ox++)
                d[ox] = 0.0f;
            for (int ox = w - dx; ox < w; ox++)
                if (ox >= 0)
                    d[ox] = 0.0f;
        }
    }
}

/* The route where gemm_packing() is NULL: a pointwise convolution is the product itself; otherwise
 * im2col chunks of at most IM2COL_BUDGET_FLOATS columns, one gemm_f32 each; then the bias. */
static int conv2d_im2col(const ConvParams *p, ConvGeometry g, const Act *in, Act *out, Scratch *scratch)
{
    const int ho = out->h, wo = out->w;
    const size_t n = act_plane(out);
    const int kdim = p->cin * p->k * p->k;
    int pointwise = p->k == 1 && g.stride == 1 && !g.pad_top && !g.pad_left && !g.pad_bottom && !g.pad_right;
    double t0 = ops_profile_now();
    if (pointwise) {
        gemm_f32(p->cout, (int)n, kdim, p->weight, kdim, in->data, (int)n, out->data, (int)n, 0);
        ops_profile_add(PROF_POINTWISE_GEMM, t0);
    } else {
        int total_rows = in->b * ho; /* (b, oy) pairs */
        int rows_per_chunk = (int)(IM2COL_BUDGET_FLOATS / ((size_t)kdim * wo));
        if (rows_per_chunk < 1)
            rows_per_chunk = 1;
        if (rows_per_chunk > total_rows)
            rows_per_chunk = total_rows;
        SOWER_TRY(scratch_reserve(scratch, (size_t)kdim * rows_per_chunk * wo));
        for (int q0 = 0; q0 < total_rows; q0 += rows_per_chunk) {
            int n_rows = total_rows - q0 < rows_per_chunk ? total_rows - q0 : rows_per_chunk;
            int nc = n_rows * wo;
            if (g.stride == 1 && ho == in->h && wo == in->w)
                im2col_same(p, g, in, q0, n_rows, scratch->buf);
            else
                im2col(p, g, in, ho, wo, q0, n_rows, scratch->buf);
            ops_profile_add(PROF_IM2COL, t0);
            t0 = ops_profile_now();
            gemm_f32(p->cout, nc, kdim, p->weight, kdim, scratch->buf, nc, out->data + (size_t)q0 * wo, (int)n, 0);
            ops_profile_add(PROF_CONV_GEMM, t0);
            t0 = ops_profile_now();
        }
    }
    t0 = ops_profile_now();
    add_row_bias(out->data, p->bias, p->cout, n);
    ops_profile_add(PROF_ELEMENTWISE, t0);
    return SOWER_OK;
}

int op_conv2d(const ConvParams *p, ConvGeometry g, const Act *in, Act *out, Scratch *scratch)
{
    int ho = (in->h + g.pad_top + g.pad_bottom - p->k) / g.stride + 1;
    int wo = (in->w + g.pad_left + g.pad_right - p->k) / g.stride + 1;
    SOWER_TRY(act_alloc(out, p->cout, in->b, ho, wo));
    double t0 = ops_profile_now();
    /* 3x3 "same" convolutions on large enough images: Winograd F(2x2, 3x3) (winograd.h). The rest:
     * columns packed straight from the activation, bias included (conv.h), im2col's bits. */
    int packed = gemm_packing() != NULL, status;
    if (conv2d_winograd_applies(p, g, in))
        status = conv2d_winograd(p, in, out, scratch);
    else
        status = packed ? conv2d_packed(p, g, in, out, scratch) : conv2d_im2col(p, g, in, out, scratch);
    if (status != SOWER_OK) {
        act_free(out);
        return sower_trace(status, __FILE__, __LINE__, __func__);
    }
    if (packed)
        ops_profile_add(p->k == 1 ? PROF_POINTWISE_GEMM : PROF_CONV_GEMM, t0);
    return SOWER_OK;
}

void op_silu(float *x, size_t n) { row_silu(x, n); }

void op_group_norm(const GroupNormParams *p, const Act *in, Act *out, int silu)
{
    double t0 = ops_profile_now();
    const int cpg = p->channels / p->groups;
    const size_t hw = (size_t)in->h * in->w;
    const int pairs = in->b * p->groups;
#pragma omp parallel for schedule(static)
    for (int pg = 0; pg < pairs; pg++) {
        int b = pg / p->groups, grp = pg % p->groups;
        /* Two-pass moments in double over the group's channels of sample b, in a fixed order. */
        double sum = 0.0;
        for (int c = grp * cpg; c < (grp + 1) * cpg; c++)
            sum += row_sum(in->data + ((size_t)c * in->b + b) * hw, hw);
        double count = (double)cpg * (double)hw;
        double mean = sum / count, sq = 0.0;
        for (int c = grp * cpg; c < (grp + 1) * cpg; c++)
            sq += row_sum_sq_dev(in->data + ((size_t)c * in->b + b) * hw, hw, mean);
        float mean_f = (float)mean;
        float rstd = (float)(1.0 / sqrt(sq / count + (double)p->eps));
        for (int c = grp * cpg; c < (grp + 1) * cpg; c++) {
            const float *x = in->data + ((size_t)c * in->b + b) * hw;
            float *y = out->data + ((size_t)c * in->b + b) * hw;
            float scale = rstd * p->gamma[c];
            float shift = -scale * mean_f + p->beta[c];
            if (silu)
                row_affine_silu(y, x, hw, scale, shift);
            else
                row_affine(y, x, hw, scale, shift);
        }
    }
    ops_profile_add(PROF_GROUP_NORM, t0);
}

void op_linear(const LinearParams *p, const float *x, int batch, float *y)
{
    gemm_f32_bt(batch, p->out, p->in, x, p->in, p->weight, p->in, y, p->out, 0);
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < p->out; o++)
            y[(size_t)b * p->out + o] += p->bias[o];
}

int op_upsample_nearest(const Act *in, int out_h, int out_w, Act *out)
{
    SOWER_TRY(act_alloc(out, in->c, in->b, out_h, out_w));
    double t0 = ops_profile_now();
    const int planes = in->c * in->b;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *src = in->data + (size_t)pl * in->h * in->w;
        float *dst = out->data + (size_t)pl * out->h * out->w;
        for (int y = 0; y < out->h; y++) {
            const float *row = src + (size_t)nearest_source_index(y, in->h, out->h) * in->w;
            for (int x = 0; x < out->w; x++)
                dst[(size_t)y * out->w + x] = row[nearest_source_index(x, in->w, out->w)];
        }
    }
    ops_profile_add(PROF_UPSAMPLE, t0);
    return SOWER_OK;
}

/* Row-wise softmax of s (rows, cols) after multiplying by scale, in place. */
static void softmax_rows(float *s, int rows, int cols, float scale)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        row_softmax_scaled(s + (size_t)r * cols, (size_t)cols, scale);
}

/* A Linear at every pixel of the batch, y (out, B, H, W) = W x + b: a 1x1 convolution, one product
 * over the whole batch. Allocates y. */
static int op_project(const LinearParams *l, const Act *x, Act *y, Scratch *scratch)
{
    const ConvParams conv = {l->weight, l->bias, l->out, l->in, 1};
    return op_conv2d(&conv, (ConvGeometry){1, 0, 0, 0, 0}, x, y, scratch);
}

int op_attention(const AttentionParams *p, const Act *x, Act *out, Scratch *scratch)
{
    const int c = p->channels, dh = p->dim_head;
    const int hw = x->h * x->w;
    const size_t n = act_plane(x);
    Act g = {0}, q = {0}, k = {0}, v = {0};
    int status = SOWER_OK;
    SOWER_TRY_GOTO(act_alloc(&g, c, x->b, x->h, x->w), status, done);
    op_group_norm(&p->norm, x, &g, 0);
    /* Projections over the whole batch: (C, C) . (C, B*HW) + bias. */
    SOWER_TRY_GOTO(op_project(&p->q, &g, &q, scratch), status, done);
    SOWER_TRY_GOTO(op_project(&p->k, &g, &k, scratch), status, done);
    SOWER_TRY_GOTO(op_project(&p->v, &g, &v, scratch), status, done);
    SOWER_TRY_GOTO(scratch_reserve(scratch, (size_t)hw * hw), status, done);
    /* Per sample and head: scores (HW, HW) = scale * q^T k, softmax, o (dh, HW) = v . P^T.
     * The output overwrites g, which is no longer needed. */
    double t0 = ops_profile_now();
    const float scale = 1.0f / sqrtf((float)dh);
    float *scores = scratch->buf;
    for (int b = 0; b < x->b; b++) {
        for (int h = 0; h < p->heads; h++) {
            size_t off = (size_t)h * dh * n + (size_t)b * hw;
            gemm_f32_at(hw, hw, dh, q.data + off, (int)n, k.data + off, (int)n, scores, hw, 0);
            softmax_rows(scores, hw, hw, scale);
            gemm_f32_bt(dh, hw, hw, v.data + off, (int)n, scores, hw, g.data + off, (int)n, 0);
        }
    }
    ops_profile_add(PROF_ATTENTION, t0);
    SOWER_TRY_GOTO(op_project(&p->out, &g, out, scratch), status, done); /* out = W o + bias */
    const float rescale = p->rescale_output;
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        float *o = out->data + (size_t)ch * n;
        const float *res = x->data + (size_t)ch * n;
        for (size_t i = 0; i < n; i++)
            o[i] = (o[i] + res[i]) / rescale;
    }
done:
    act_free(&g);
    act_free(&q);
    act_free(&k);
    act_free(&v);
    return status;
}

