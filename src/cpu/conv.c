/* conv.c: k x k convolutions through gemm.h's packed product, B packed from the activation (conv.h).
 *
 * Work is split into tasks, each a block of output columns (pixels of the batch) and, when there
 * are fewer column blocks than threads, a block of output channels. A task walks k in BLIS's KC
 * panels; for each panel it packs its columns (KC, block) from the activation, then runs the
 * microkernel over every MR x NR tile of its block. Only who computes a tile depends on the task
 * split, never how, so the bits are those of im2col + gemm_f32. */
#include "conv.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "gemm.h"

/* Columns per task: its packed B panel is (KC, 512), 512 KiB, about a core's L2 here (the A panel,
 * (Cout, KC), streams past it). 128, 256 and 512 measured alike (within noise) on this machine;
 * the wider block packs each plan once for more columns. */
enum { CONV_BLOCK_COLS = 512 };

/* How one micropanel of NR columns reads one tap (ky, kx) of every input channel. */
enum { TAP_ZERO, TAP_COPY, TAP_MASKED, TAP_GATHER };

typedef struct {
    const float *in;    /* (Cin, plane): the activation, one plane = B*H*W per channel */
    size_t plane;       /* floats per input channel */
    int taps;           /* k*k */
    int nr;             /* columns per micropanel */
} Source;

/* Per micropanel and tap: kind, base, then off[nr] = plane offset read by each column, or -1 for
 * zero padding (and columns past N). COPY: off[c] = base + c for all c; MASKED: the same where
 * off[c] >= 0, and base .. base+nr all inside the plane; GATHER: anything else. */
static size_t plan_ints(const Source *s) { return (size_t)s->taps * (2 + s->nr); }

static void plan_micropanel(const Source *s, const ConvParams *p, ConvGeometry g, const Act *in, int ho, int wo,
                            size_t n, size_t j0, int32_t *plan)
{
    const int k = p->k, nr = s->nr;
    for (int t = 0; t < s->taps; t++) {
        int32_t *kind = plan, *base = plan + 1, *off = plan + 2;
        int ky = t / k, kx = t % k, valid = 0, contiguous = 1;
        *base = -1;
        for (int c = 0; c < nr; c++) {
            size_t q = j0 + (size_t)c; /* output column: (b, oy, ox) */
            off[c] = -1;
            if (q < n) {
                int b = (int)(q / ((size_t)ho * wo)), oy = (int)(q / wo % ho), ox = (int)(q % wo);
                int iy = oy * g.stride + ky - g.pad_top, ix = ox * g.stride + kx - g.pad_left;
                if (iy >= 0 && iy < in->h && ix >= 0 && ix < in->w)
                    off[c] = (int32_t)(((size_t)b * in->h + iy) * in->w + ix);
            }
            if (off[c] < 0)
                continue;
            if (!valid++)
                *base = off[c] - c;
            contiguous &= off[c] == *base + c;
        }
        if (!valid)
            *kind = TAP_ZERO;
        else if (contiguous && valid == nr)
            *kind = TAP_COPY;
        else if (contiguous && *base >= 0 && (size_t)*base + nr <= s->plane)
            *kind = TAP_MASKED;
        else
            *kind = TAP_GATHER;
        plan += 2 + nr;
    }
}

/* dst (kc, nr) = rows [p0, p0+kc) of the micropanel's columns; row r is (ci, tap) = (r / taps, r % taps).
 * Inlined twice: with nr a constant 16 (this kernel family's NR; the loops become vector moves) and
 * with nr at run time. MASKED loads every column (all inside the plane) and keeps the valid ones. */
static inline __attribute__((always_inline)) void pack_rows(const Source *s, const int32_t *plan, int p0, int kc,
                                                            float *restrict dst, const int nr)
{
    int ci = p0 / s->taps, t = p0 % s->taps;
    for (int kk = 0; kk < kc; kk++, dst += nr) {
        const int32_t *tp = plan + (size_t)t * (2 + nr), *off = tp + 2;
        const float *restrict src = s->in + (size_t)ci * s->plane;
        switch (tp[0]) {
        case TAP_ZERO:
            for (int c = 0; c < nr; c++)
                dst[c] = 0.0f;
            break;
        case TAP_COPY:
            for (int c = 0; c < nr; c++)
                dst[c] = src[tp[1] + c];
            break;
        case TAP_MASKED:
            for (int c = 0; c < nr; c++) {
                float v = src[tp[1] + c];
                dst[c] = off[c] >= 0 ? v : 0.0f;
            }
            break;
        default:
            for (int c = 0; c < nr; c++)
                dst[c] = off[c] >= 0 ? src[off[c]] : 0.0f;
        }
        if (++t == s->taps)
            t = 0, ci++;
    }
}

static void pack_micropanel(const Source *s, const int32_t *plan, int p0, int kc, float *dst)
{
    if (s->nr == 16)
        pack_rows(s, plan, p0, kc, dst, 16);
    else
        pack_rows(s, plan, p0, kc, dst, s->nr);
}

typedef struct {
    const GemmPacking *g;
    const ConvParams *p;
    ConvGeometry geo;
    const Act *in;
    Act *out;
    Source src;
    const float *ap;  /* packed weights (gemm_pack_a_panel layout) */
    int kdim, mpad;   /* Cin*k*k; Cout rounded up to MR */
    int col_block;    /* columns per task (a multiple of NR) */
    int row_block;    /* output channels per task (a multiple of MR) */
    int col_blocks;
} ConvJob;

/* One task: output channels [m0, m1) x columns [j0, j1). bbuf (KC_max, col_block) and plan
 * (col_block / NR micropanels x plan_ints) are the thread's. */
static void run_task(const ConvJob *job, int task, float *bbuf, int32_t *plan)
{
    const GemmPacking *g = job->g;
    const int mr = g->mr, nr = g->nr, m = job->p->cout;
    const size_t n = act_plane(job->out);
    const int m0 = task / job->col_blocks * job->row_block, m1 = m0 + job->row_block < m ? m0 + job->row_block : m;
    const size_t j0 = (size_t)(task % job->col_blocks) * job->col_block;
    const size_t j1 = j0 + job->col_block < n ? j0 + job->col_block : n;
    const int panels = (int)((j1 - j0 + nr - 1) / nr);
    const size_t per_plan = plan_ints(&job->src);
    const int ho = job->out->h, wo = job->out->w;
    for (int jp = 0; jp < panels; jp++)
        plan_micropanel(&job->src, job->p, job->geo, job->in, ho, wo, n, j0 + (size_t)jp * nr, plan + jp * per_plan);
    for (int p0 = 0; p0 < job->kdim; p0 += gemm_kc_panel(g, p0, job->kdim)) {
        const int kc = gemm_kc_panel(g, p0, job->kdim);
        for (int jp = 0; jp < panels; jp++)
            pack_micropanel(&job->src, plan + jp * per_plan, p0, kc, bbuf + (size_t)jp * kc * nr);
        const float *a_panel = job->ap + (size_t)p0 * job->mpad; /* (mpad, kc) in MR-row panels */
        for (int jp = 0; jp < panels; jp++) {
            size_t j = j0 + (size_t)jp * nr;
            int cols = j1 - j < (size_t)nr ? (int)(j1 - j) : nr;
            const float *bp = bbuf + (size_t)jp * kc * nr; /* (kc, NR) */
            for (int r = m0; r < m1; r += mr)
                gemm_tile(m1 - r < mr ? m1 - r : mr, cols, kc, a_panel + (size_t)r * kc,
                          bp, job->out->data + (size_t)r * n + j, (int)n, p0 > 0);
        }
    }
    for (int r = m0; r < m1 && job->p->bias; r++) { /* the bias, added to the finished sum (as add_row_bias did) */
        float b = job->p->bias[r], *row = job->out->data + (size_t)r * n;
        for (size_t j = j0; j < j1; j++)
            row[j] += b;
    }
}

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

int conv2d_packed(const ConvParams *p, ConvGeometry geo, const Act *in, Act *out, Scratch *scratch)
{
    const GemmPacking *g = gemm_packing();
    const int threads = gemm_threads(), mr = g->mr, nr = g->nr;
    const size_t n = act_plane(out);
    ConvJob job = {.g = g, .p = p, .geo = geo, .in = in, .out = out, .kdim = p->cin * p->k * p->k};
    job.src = (Source){.in = in->data, .plane = act_plane(in), .taps = p->k * p->k, .nr = nr};
    job.mpad = (int)round_up((size_t)p->cout, (size_t)mr);

    /* Column blocks: a multiple of the thread count, at most CONV_BLOCK_COLS wide; when there are
     * fewer (tiny images, batch 1) than threads, the output channels are split too. */
    size_t micropanels = (n + nr - 1) / nr;
    size_t blocks = threads * ((n + (size_t)threads * CONV_BLOCK_COLS - 1) / ((size_t)threads * CONV_BLOCK_COLS));
    if (blocks > micropanels)
        blocks = micropanels;
    job.col_block = (int)round_up((n + blocks - 1) / blocks, (size_t)nr);
    job.col_blocks = (int)((n + job.col_block - 1) / job.col_block);
    int row_blocks = job.col_blocks < threads ? threads : 1;
    job.row_block = (int)round_up((size_t)(p->cout + row_blocks - 1) / row_blocks, (size_t)mr);
    row_blocks = (p->cout + job.row_block - 1) / job.row_block;
    const int tasks = job.col_blocks * row_blocks;

    /* Scratch: packed A (mpad, kdim), then per thread a packed B panel (KC_max, col_block) and the
     * micropanels' plans, each rounded to 64 bytes. */
    const size_t a_floats = round_up(gemm_packed_a_floats(g, p->cout, job.kdim), 16);
    const size_t b_floats = round_up((size_t)g->kc_max * job.col_block, 16);
    const size_t plan_floats = round_up((size_t)(job.col_block / nr) * plan_ints(&job.src), 16);
    const size_t thread_floats = b_floats + plan_floats;
    /* Packed A: kept from an earlier call, or made now into a kept pack, or (past the budget) into scratch. */
    const PackSlot slot = weight_pack_slot(&scratch->packs, p->weight, g, PACK_CONV_A, p->cout, job.kdim, a_floats);
    const size_t a_scratch = slot.kept || slot.fresh ? 0 : a_floats;
    const int reserved = scratch_reserve(scratch, a_scratch + threads * thread_floats + 16);
    if (reserved != SOWER_OK)
        weight_pack_abandon(&scratch->packs, slot.fresh);
    SOWER_TRY(reserved);
    float *base = (float *)round_up((size_t)(uintptr_t)scratch->buf, 64);
    float *ap = slot.fresh ? slot.fresh : base; /* (mpad, kdim) packed, when made here */
    job.ap = slot.kept ? slot.kept : ap;

    const int a_panels = slot.kept ? 0 : job.mpad / mr;
#pragma omp parallel num_threads(threads)
    {
        float *mine = base + a_scratch + (size_t)omp_get_thread_num() * thread_floats;
#pragma omp for schedule(static)
        for (int ip = 0; ip < a_panels; ip++)
            gemm_pack_a_panel(g, p->cout, job.kdim, p->weight, job.kdim, ip, ap);
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < tasks; t++)
            run_task(&job, t, mine, (int32_t *)(mine + b_floats));
    }
    return SOWER_OK;
}
