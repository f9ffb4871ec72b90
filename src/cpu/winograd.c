/* winograd.c: 3x3 "same" convolutions as Winograd F(2x2, 3x3) through gemm.h's packed interface
 * (see winograd.h for the arithmetic and why its bits do not depend on the batch).
 *
 * One call: the 16 transformed weight matrices U_t (Cout, Cin) are packed as BLIS A panels; each
 * row of the zero-padded input has its tiles' columns combined (the d B half of B^T d B, made once
 * per row although two tile rows use it), laid out so that the rest reads whole rows. Then tasks,
 * each a block of tiles (columns) and, when there are fewer column blocks than threads, a block of
 * output channels, walk Cin in BLIS's KC panels: transform the block's patches for those channels
 * into 16 packed B panels, multiply each by its U_t into the task's 16 sums M_t, and at the end
 * transform each tile's 16 sums back into its 2x2 outputs and add the bias. */
#include "winograd.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "clones.h"
#include "gemm.h"

enum {
    WG_POSITIONS = 16,  /* a transformed tile is 4x4 */
    WG_BLOCK_COLS = 64, /* tiles per task: its 16 B panels (KC, 64) and 16 sums (Cout, 64) are 1 MiB
                           each at 256 channels, about a core's L2 here */
    WG_MAX_NR = 64,     /* largest microkernel NR handled (the tile buffers are on the stack) */
    WG_ROWS_BUDGET_FLOATS = 4 << 20 /* combined rows made at a time (16 MiB): samples are taken in
                                       groups that fit (at least one sample, about twice its input),
                                       so the extra memory does not grow with the batch */
};

/* Tiles that are neighbours in one tile row of one image, within a micropanel: tile i of the run
 * is 2i pixels right of the first, so its patches are read, and its outputs written, as rows. */
typedef struct {
    int c0, len;      /* columns [c0, c0 + len) of the micropanel */
    ptrdiff_t patch;  /* the first tile's first row in a channel's combined rows (WinogradJob.rows) */
    ptrdiff_t out;    /* the first tile's top-left output in an output channel plane */
    int rows;         /* output rows of the run's tiles inside the image: 2, or 1 on the last tile row */
    int last_cols;    /* output columns of its last tile inside the image: 2, or 1 on the last tile column */
} TileRun;

/* A task's micropanels as runs: micropanel jp's runs at runs + jp * NR, run_count[jp] of them. */
typedef struct {
    TileRun *runs;
    int *run_count;
} TileRuns;

typedef struct {
    const GemmPacking *g;
    const ConvParams *p;
    const Act *in;
    Act *out;
    const float *up;       /* 16 packed U_t, gemm_pack_a_panel layout, u_floats apart */
    size_t u_floats;
    float *rows;           /* (cin, group, hp, 4, tiles_x): row y of each image of the group padded by one
                              zero row and column (y = 0 the zero row above), as (d B)(s) of each tile's
                              4 pixels */
    int hp;                /* 2 * tiles_y + 2 */
    int tiles_y, tiles_x;  /* per image */
    int mpad;              /* cout rounded up to MR */
} WinogradJob;

/* A group of samples [b0, b0 + count) and how its tiles (columns) are split into tasks. */
typedef struct {
    int b0, count;
    size_t n;              /* columns: count * tiles_y * tiles_x */
    int col_block, col_blocks, row_block, tasks;
} TileGroup;

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

/* A packed microkernel this route can use: NR at most WG_MAX_NR, and a multiple of 16 floats so
 * that every B panel it builds starts on 64 bytes, as gemm_tile() requires. */
static const GemmPacking *usable_packing(void)
{
    const GemmPacking *g = gemm_packing();
    return g && g->nr <= WG_MAX_NR && g->nr % 16 == 0 ? g : NULL;
}

int conv2d_winograd_applies(const ConvParams *p, ConvGeometry g, const Act *in)
{
    return usable_packing() && p->k == 3 && g.stride == 1 && g.pad_top == 1 && g.pad_left == 1 &&
           g.pad_bottom == 1 && g.pad_right == 1 && (long)in->h * in->w >= WINOGRAD_MIN_PIXELS &&
           p->cin >= WINOGRAD_MIN_CHANNELS;
}

const char *conv2d_winograd_identity(void)
{
    static char identity[128];
    if (!usable_packing())
        return NULL;
    if (!identity[0])
        snprintf(identity, sizeof identity, "3x3 same convs of >= %d pixels and >= %d input channels: Winograd F(2x2,3x3)",
                 WINOGRAD_MIN_PIXELS, WINOGRAD_MIN_CHANNELS);
    return identity;
}

/* u (4x4) = G g G^T for one 3x3 filter g, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. */
static void transform_filter(const float *g, float u[WG_POSITIONS])
{
    float t[4][3]; /* G g */
    for (int c = 0; c < 3; c++) {
        const float g0 = g[c], g1 = g[3 + c], g2 = g[6 + c];
        t[0][c] = g0;
        t[1][c] = 0.5f * ((g0 + g1) + g2);
        t[2][c] = 0.5f * ((g0 - g1) + g2);
        t[3][c] = g2;
    }
    for (int r = 0; r < 4; r++) {
        const float a = t[r][0], b = t[r][1], c = t[r][2];
        u[r * 4 + 0] = a;
        u[r * 4 + 1] = 0.5f * ((a + b) + c);
        u[r * 4 + 2] = 0.5f * ((a - b) + c);
        u[r * 4 + 3] = c;
    }
}

/* Distance between the 16 arrays of one kind (U_t, V_t, M_t) that a loop walks side by side: whole 4 KB
 * pages plus one cache line, so the t-th stream starts t lines into a page. A multiple of 4 KB (what
 * power-of-two channel counts gave) put all 16 streams in one L1 set, over its 8 ways: CIN 512 ran at
 * a quarter of CIN 256's speed per FLOP. Placement only: the arithmetic is the same. */
static size_t stream_stride(size_t floats) { return round_up(floats, 1024) + 16; }

/* Row panel ip (output channels ip * MR ..) of all 16 U_t, into their packed A panels
 * (gemm_pack_a_panel's layout: KC panel p0 at p0 * mpad, row panel at + ip * MR * kc, element at
 * + kk * MR + r; rows past Cout zero). Written in that order: 16 sequential streams. */
static void pack_filters(const WinogradJob *job, int ip, float *up)
{
    const GemmPacking *g = job->g;
    const int cin = job->p->cin, cout = job->p->cout, mr = g->mr;
    for (int p0 = 0; p0 < cin; p0 += gemm_kc_panel(g, p0, cin)) {
        const int kc = gemm_kc_panel(g, p0, cin);
        float *panel = up + (size_t)p0 * job->mpad + (size_t)ip * mr * kc; /* (kc, MR) of U_0 */
        for (int kk = 0; kk < kc; kk++)
            for (int r = 0; r < mr; r++) {
                const int co = ip * mr + r;
                float u[WG_POSITIONS] = {0};
                if (co < cout)
                    transform_filter(job->p->weight + ((size_t)co * cin + p0 + kk) * 9, u);
                for (int t = 0; t < WG_POSITIONS; t++)
                    panel[t * job->u_floats + (size_t)kk * mr + r] = u[t];
            }
    }
}

/* d B for the 4 pixels x of one tile row: B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
#define COMBINE_COLUMNS(x, h0, h1, h2, h3, tx)                                                                   \
    do {                                                                                                       \
        h0[tx] = x[0] - x[2], h1[tx] = x[1] + x[2], h2[tx] = x[2] - x[1], h3[tx] = x[1] - x[3];               \
    } while (0)

/* Tile tx of an image row whose pixels 2 tx - 1 .. 2 tx + 2 are not all inside (zero outside). */
static void edge_tile(const float *row, int w, int tx, float *h0, float *h1, float *h2, float *h3)
{
    float x[4];
    for (int k = 0; k < 4; k++) {
        const int ix = 2 * tx - 1 + k;
        x[k] = ix >= 0 && ix < w ? row[ix] : 0.0f;
    }
    COMBINE_COLUMNS(x, h0, h1, h2, h3, tx);
}

/* d B for n tiles whose pixels are all inside: tile i's 4 pixels at x + 2 i. */
static inline void combine_columns(const float *restrict x, float *restrict h0, float *restrict h1,
                                   float *restrict h2, float *restrict h3, int n)
{
    for (int i = 0; i < n; i++, x += 2)
        COMBINE_COLUMNS(x, h0, h1, h2, h3, i);
}

/* Plane (ci, group->b0 + b) of the input into job->rows, plane = ci * group->count + b: padded row y
 * (image row y - 1, zero outside), tile tx (pixels 2 tx - 1 .. 2 tx + 2, zero outside): (d B)(s) at
 * ((y * 4) + s) * tiles_x + tx. */
SOWER_CLONES static void transform_rows(const WinogradJob *job, const TileGroup *group, int plane)
{
    const int h = job->in->h, w = job->in->w, tiles_x = job->tiles_x;
    const int ci = plane / group->count, b = group->b0 + plane % group->count;
    const float *src = job->in->data + ((size_t)ci * job->in->b + b) * h * w;
    float *dst = job->rows + (size_t)plane * job->hp * 4 * tiles_x;
    const int inner_end = (w - 1) / 2; /* tiles 1 .. inner_end - 1 have all 4 pixels inside */
    for (int y = 0; y < job->hp; y++) {
        float *h0 = dst + (size_t)y * 4 * tiles_x, *h1 = h0 + tiles_x, *h2 = h1 + tiles_x, *h3 = h2 + tiles_x;
        if (y < 1 || y > h) {
            memset(h0, 0, sizeof(float) * 4 * tiles_x);
            continue;
        }
        const float *row = src + (size_t)(y - 1) * w;
        edge_tile(row, w, 0, h0, h1, h2, h3);
        if (inner_end > 1)
            combine_columns(row + 1, h0 + 1, h1 + 1, h2 + 1, h3 + 1, inner_end - 1);
        for (int tx = inner_end > 1 ? inner_end : 1; tx < tiles_x; tx++)
            edge_tile(row, w, tx, h0, h1, h2, h3);
    }
}

/* B^T applied down the 4 rows d0..d3 of len tiles (restrict parameters: the loop becomes vector code). */
static inline void combine_rows(const float *restrict d0, const float *restrict d1, const float *restrict d2,
                                const float *restrict d3, float *restrict v0, float *restrict v1, float *restrict v2,
                                float *restrict v3, int len)
{
    for (int i = 0; i < len; i++) {
        v0[i] = d0[i] - d2[i];
        v1[i] = d1[i] + d2[i];
        v2[i] = d2[i] - d1[i];
        v3[i] = d1[i] - d3[i];
    }
}

/* v_t (one channel, nr tiles) = B^T (d B) for each tile's patch d: the rows of (d B) combined,
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]; position t = 4 r + s of column c at
 * v[t * vstride + c]; columns past the runs (past the last tile) are zero: their sums are
 * discarded, but stale scratch there could hold denormals that slow the microkernel down. rows:
 * the channel's combined rows (job->rows), row stride 4 * tiles_x. */
SOWER_CLONES static void transform_micropanel(const float *rows, int tiles_x, const TileRun *runs, int nruns,
                                           float *v, size_t vstride, int nr)
{
    const ptrdiff_t row_stride = 4 * (ptrdiff_t)tiles_x;
    int filled = 0;
    for (int q = 0; q < nruns; q++) {
        const TileRun *u = &runs[q];
        for (int s = 0; s < 4; s++) {
            const float *d0 = rows + u->patch + s * (ptrdiff_t)tiles_x;
            float *v0 = v + (size_t)s * vstride + u->c0;
            combine_rows(d0, d0 + row_stride, d0 + 2 * row_stride, d0 + 3 * row_stride, v0, v0 + 4 * vstride,
                         v0 + 8 * vstride, v0 + 12 * vstride, u->len);
        }
        filled = u->c0 + u->len;
    }
    for (int t = 0; t < WG_POSITIONS; t++)
        for (int c = filled; c < nr; c++)
            v[(size_t)t * vstride + c] = 0.0f;
}

/* One output channel's 2x2 tiles for one micropanel: Y = A^T m A + bias, A^T = [1 1 1 0;
 * 0 1 -1 -1]; m_t of column c at m[t * mstride + c]; y: the channel's output plane. */
SOWER_CLONES static void transform_outputs(const float *restrict m, size_t mstride, const TileRun *runs, int nruns,
                                        float bias, int w, float *restrict y)
{
    const int n = runs[nruns - 1].c0 + runs[nruns - 1].len;
    float t[2][4][WG_MAX_NR]; /* A^T m: rows combined */
    for (int s = 0; s < 4; s++)
        for (int c = 0; c < n; c++) {
            const float m0 = m[(size_t)s * mstride + c], m1 = m[(size_t)(4 + s) * mstride + c],
                        m2 = m[(size_t)(8 + s) * mstride + c], m3 = m[(size_t)(12 + s) * mstride + c];
            t[0][s][c] = (m0 + m1) + m2;
            t[1][s][c] = (m1 - m2) - m3;
        }
    float out[2][2][WG_MAX_NR]; /* out[r][x][c]: output (r, x) of column c's tile */
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < n; c++) {
            out[r][0][c] = ((t[r][0][c] + t[r][1][c]) + t[r][2][c]) + bias;
            out[r][1][c] = ((t[r][1][c] - t[r][2][c]) - t[r][3][c]) + bias;
        }
    for (int q = 0; q < nruns; q++) {
        const TileRun *u = &runs[q];
        for (int r = 0; r < u->rows; r++) {
            float *row = y + u->out + (ptrdiff_t)r * w;
            const float *left = out[r][0] + u->c0, *right = out[r][1] + u->c0;
            for (int i = 0; i < u->len - 1; i++) {
                row[2 * i] = left[i];
                row[2 * i + 1] = right[i];
            }
            row[2 * (u->len - 1)] = left[u->len - 1];
            if (u->last_cols == 2)
                row[2 * (u->len - 1) + 1] = right[u->len - 1];
        }
    }
}

/* The runs of micropanel jp (the group's columns j0 + jp * NR onwards, ncols in the task). */
static int plan_runs(const WinogradJob *job, const TileGroup *group, size_t j0, int ncols, int jp, TileRun *runs)
{
    const int nr = job->g->nr, per_image = job->tiles_y * job->tiles_x, h = job->out->h, w = job->out->w;
    const int c_end = ncols - jp * nr < nr ? ncols - jp * nr : nr;
    int nruns = 0;
    for (int c = 0; c < c_end; c++) {
        const size_t j = j0 + (size_t)jp * nr + c;
        const int b = (int)(j / per_image), ty = (int)(j / job->tiles_x % job->tiles_y), tx = (int)(j % job->tiles_x);
        if (c > 0 && tx > 0) { /* the tile left of it is the previous column: same run */
            runs[nruns - 1].len++;
        } else {
            TileRun *u = &runs[nruns++];
            u->c0 = c, u->len = 1;
            u->patch = ((ptrdiff_t)b * job->hp + 2 * ty) * 4 * job->tiles_x + tx;
            u->out = ((ptrdiff_t)(group->b0 + b) * h + 2 * ty) * w + 2 * tx;
            u->rows = 2 * ty + 1 < h ? 2 : 1;
        }
        runs[nruns - 1].last_cols = 2 * tx + 1 < w ? 2 : 1;
    }
    return nruns;
}

/* One task: output channels [m0, m1) x tiles [j0, j1). vbuf: 16 B panels (KC, col_block); mbuf:
 * 16 sums (row_block, col_block); runs: col_block runs and col_block / NR counts: all the thread's. */
static void run_task(const WinogradJob *job, const TileGroup *group, int task, float *vbuf, float *mbuf, TileRuns runs)
{
    const GemmPacking *g = job->g;
    const int mr = g->mr, nr = g->nr, cout = job->p->cout, cin = job->p->cin;
    const int col_block = group->col_block, row_block = group->row_block;
    const int m0 = task / group->col_blocks * row_block, m1 = m0 + row_block < cout ? m0 + row_block : cout;
    const size_t j0 = (size_t)(task % group->col_blocks) * col_block;
    const int ncols = (int)(j0 + col_block < group->n ? (size_t)col_block : group->n - j0);
    const int panels = (ncols + nr - 1) / nr;
    for (int jp = 0; jp < panels; jp++)
        runs.run_count[jp] = plan_runs(job, group, j0, ncols, jp, runs.runs + jp * nr);
    const size_t pplane = (size_t)group->count * job->hp * 4 * job->tiles_x; /* floats per channel of rows */
    const size_t mstride = stream_stride((size_t)row_block * col_block); /* floats between the sums M_t */
    for (int p0 = 0; p0 < cin; p0 += gemm_kc_panel(g, p0, cin)) {
        const int kc = gemm_kc_panel(g, p0, cin);
        const size_t vstride = stream_stride((size_t)kc * col_block); /* floats between the B panels V_t */
        for (int kk = 0; kk < kc; kk++)
            for (int jp = 0; jp < panels; jp++) /* micropanel jp of V_t: (kc, NR) at t * vstride + jp * kc * NR */
                transform_micropanel(job->rows + (size_t)(p0 + kk) * pplane, job->tiles_x, runs.runs + jp * nr,
                                     runs.run_count[jp], vbuf + (size_t)jp * kc * nr + (size_t)kk * nr, vstride, nr);
        for (int t = 0; t < WG_POSITIONS; t++) {
            const float *a_panel = job->up + t * job->u_floats + (size_t)p0 * job->mpad; /* (mpad, kc) */
            for (int jp = 0; jp < panels; jp++) {
                const int n = ncols - jp * nr < nr ? ncols - jp * nr : nr;
                const float *bp = vbuf + t * vstride + (size_t)jp * kc * nr; /* (kc, NR) */
                for (int r = m0; r < m1; r += mr)
                    gemm_tile(m1 - r < mr ? m1 - r : mr, n, kc, a_panel + (size_t)r * kc, bp,
                              mbuf + t * mstride + (size_t)(r - m0) * col_block + (size_t)jp * nr, col_block,
                              p0 > 0);
            }
        }
    }
    const size_t plane = act_plane(job->out);
    for (int r = m0; r < m1; r++)
        for (int jp = 0; jp < panels; jp++)
            transform_outputs(mbuf + (size_t)(r - m0) * col_block + (size_t)jp * nr, mstride,
                              runs.runs + jp * nr, runs.run_count[jp], job->p->bias[r], job->out->w,
                              job->out->data + (size_t)r * plane);
}

/* Samples [b0, b0 + count): column blocks a multiple of the thread count, at most max_cols wide;
 * when there are fewer than threads, the output channels are split too (as in conv.c). */
static TileGroup plan_group(const WinogradJob *job, int b0, int count, int threads, size_t max_cols)
{
    const int mr = job->g->mr, nr = job->g->nr, cout = job->p->cout;
    TileGroup grp = {.b0 = b0, .count = count, .n = (size_t)count * job->tiles_y * job->tiles_x};
    const size_t micropanels = (grp.n + nr - 1) / nr;
    size_t blocks = threads * ((grp.n + (size_t)threads * max_cols - 1) / ((size_t)threads * max_cols));
    if (blocks > micropanels)
        blocks = micropanels;
    grp.col_block = (int)round_up((grp.n + blocks - 1) / blocks, (size_t)nr);
    grp.col_blocks = (int)((grp.n + grp.col_block - 1) / grp.col_block);
    int row_blocks = grp.col_blocks < threads ? threads : 1;
    grp.row_block = (int)round_up((size_t)(cout + row_blocks - 1) / row_blocks, (size_t)mr);
    row_blocks = (cout + grp.row_block - 1) / grp.row_block;
    grp.tasks = grp.col_blocks * row_blocks;
    return grp;
}

int conv2d_winograd(const ConvParams *p, const Act *in, Act *out, Scratch *scratch)
{
    const GemmPacking *g = usable_packing();
    if (!g || p->k != 3) /* callers ask conv2d_winograd_applies() first */
        return SOWER_FAIL(SOWER_EINTERNAL, "conv2d_winograd called for a %dx%d convolution on a kernel family "
                                           "without a usable packed microkernel", p->k, p->k);
    const int threads = gemm_threads(), mr = g->mr, nr = g->nr;
    WinogradJob job = {.g = g, .p = p, .in = in, .out = out};
    job.tiles_y = (in->h + 1) / 2, job.tiles_x = (in->w + 1) / 2;
    job.hp = 2 * job.tiles_y + 2;
    job.mpad = (int)round_up((size_t)p->cout, (size_t)mr);
    const size_t rows_per_sample = (size_t)p->cin * job.hp * 4 * job.tiles_x;
    const size_t fit = WG_ROWS_BUDGET_FLOATS / rows_per_sample; /* samples whose rows fit the budget */
    const int group = fit < 1 ? 1 : fit < (size_t)in->b ? (int)fit : in->b;
    const size_t max_cols = round_up(WG_BLOCK_COLS, (size_t)nr);

    /* Scratch, each part rounded to 64 bytes: the 16 packed U_t, one group's combined rows, then
     * per thread 16 B panels (KC_max, max_cols), 16 sums (mpad, max_cols) and a task's runs. */
    job.u_floats = stream_stride(gemm_packed_a_floats(g, p->cout, p->cin));
    const size_t rows_floats = round_up(rows_per_sample * group, 16);
    const size_t v_floats = WG_POSITIONS * stream_stride((size_t)g->kc_max * max_cols);
    const size_t m_floats = WG_POSITIONS * stream_stride((size_t)job.mpad * max_cols);
    const size_t run_bytes = sizeof(TileRun) * max_cols + sizeof(int) * (max_cols / nr);
    const size_t run_floats = round_up((run_bytes + sizeof(float) - 1) / sizeof(float), 16);
    const size_t thread_floats = v_floats + m_floats + run_floats;
    /* The 16 U_t: kept from an earlier call, or made now into a kept pack, or (past the budget) into scratch. */
    const PackSlot slot = weight_pack_slot(&scratch->packs, p->weight, g, PACK_WINOGRAD_U, p->cout, p->cin,
                                           WG_POSITIONS * job.u_floats);
    const size_t u_scratch = slot.kept || slot.fresh ? 0 : WG_POSITIONS * job.u_floats;
    const int reserved = scratch_reserve(scratch, u_scratch + rows_floats + threads * thread_floats + 16);
    if (reserved != SOWER_OK)
        weight_pack_abandon(&scratch->packs, slot.fresh);
    SOWER_TRY(reserved);
    float *base = (float *)round_up((size_t)(uintptr_t)scratch->buf, 64);
    float *up = slot.fresh ? slot.fresh : base; /* 16 U_t, u_floats apart, when made here */
    const int kept = slot.kept != NULL;
    job.up = kept ? slot.kept : up, job.rows = base + u_scratch;

#pragma omp parallel num_threads(threads)
    {
        float *mine = job.rows + rows_floats + (size_t)omp_get_thread_num() * thread_floats;
        TileRun *runs = (TileRun *)(mine + v_floats + m_floats);
        const TileRuns task_runs = {runs, (int *)(runs + max_cols)};
#pragma omp for schedule(static)
        for (int ip = 0; ip < (kept ? 0 : job.mpad / mr); ip++)
            pack_filters(&job, ip, up);
        for (int b0 = 0; b0 < in->b; b0 += group) { /* every thread walks the groups; the loops share the work */
            const TileGroup grp = plan_group(&job, b0, in->b - b0 < group ? in->b - b0 : group, threads, max_cols);
#pragma omp for schedule(static)
            for (int plane = 0; plane < p->cin * grp.count; plane++)
                transform_rows(&job, &grp, plane);
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < grp.tasks; t++)
                run_task(&job, &grp, t, mine, mine + v_floats, task_runs);
        }
    }
    return SOWER_OK;
}
