/* gemm16.cu: the bf16 and fp16 matrix products from 16-bit operands in global memory (cuda_kernels.h,
 * gpu_gemm16). The tile-loading kernel (cuda_kernels.cu) reads fp32 values one by one, rounds them
 * and stores them to shared memory at every k step, and that, not the tensor cores, bounds it. Here
 * the rounding happens once, before the product: A (a model parameter) into a copy kept for the
 * backend's life, B into a workspace (a convolution's B gathered there: im2col), each padded with
 * zeros to whole tiles so that the kernel never tests a bound while loading; the kernel then moves
 * 16-byte pieces straight from global to shared memory with asynchronous copies (cp.async),
 * SOWER_GEMM16_STAGES k steps in flight, one barrier per step.
 *
 * Same bits as the tile loader: the same values (to_tile's rounding), the same fragments (16 x 16 x
 * 16, fp32 accumulators starting at zero), the same k order, zero padding only where the tile
 * loader pads with zeros too (k up to a multiple of 16). */
#include "cuda_kernels.h"

#include <cuda_pipeline_primitives.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "gemm_common.cuh"

#ifndef SOWER_GEMM16_BK
#define SOWER_GEMM16_BK 32 /* k per pipeline stage: 16 or 32 (the same bits) */
#endif
#ifndef SOWER_GEMM16_STAGES
#define SOWER_GEMM16_STAGES 2 /* stages in shared memory (2 to 4; 48 KiB at most in all) */
#endif
#ifndef SOWER_GEMM16_MIN_BLOCKS
#define SOWER_GEMM16_MIN_BLOCKS 2 /* 126 registers, no spill (ptxas -v, sm_90): two blocks per SM */
#endif
enum {
    G16_BK = SOWER_GEMM16_BK,
    G16_STAGES = SOWER_GEMM16_STAGES,
    G16_PAD = 8,      /* halves after each shared row: 16 bytes, keeps rows 16-byte aligned, shifts banks */
    G16_ROWS = 128,   /* A copies' rows are padded to the largest tile */
    G16_COLS = 128,   /* B workspace columns likewise */
    G16_CHUNK = 8,    /* halves per asynchronous copy: 16 bytes */
};
static_assert(G16_BK == 16 || G16_BK == 32, "SOWER_GEMM16_BK: 16 or 32");
static_assert(G16_STAGES >= 2 && G16_STAGES <= 4, "SOWER_GEMM16_STAGES: 2 to 4");

/* ---- the kept copies of A -------------------------------------------------------------------- */

typedef struct {
    const float *src; /* the parameter, as the product views it: (m, k) with strides si, sj */
    long long si, sj;
    int m, k, arith;
    void *data;       /* (m_pad, k_pad) bf16 or fp16, row-major, zero beyond (m, k) */
} Weight16;

struct GpuWeights16 {
    Weight16 *items; /* (n,) */
    int n, cap;
    size_t workspace; /* bytes of B workspace a product may take: wider ones run in column chunks */
};

GpuWeights16 *gpu_weights16_new(size_t workspace_bytes)
{
    GpuWeights16 *w = (GpuWeights16 *)calloc(1, sizeof(GpuWeights16));
    if (w)
        w->workspace = workspace_bytes;
    return w;
}

void gpu_weights16_clear(GpuWeights16 *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        cudaFree(w->items[i].data);
    w->n = 0;
}

void gpu_weights16_free(GpuWeights16 *w)
{
    gpu_weights16_clear(w);
    if (w)
        free(w->items);
    free(w);
}

static int round_up(int v, int to) { return (v + to - 1) / to * to; }

/* copy (m_pad, k_pad) = A (m, k) rounded, zero padded: one thread per element of the copy */
template <class E>
__global__ static void pack_a16_kernel(GpuMatrix a, int m, int k, int k_pad, long long total, E *copy)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total)
        return;
    const int r = (int)(i / k_pad), c = (int)(i % k_pad);
    copy[i] = to_tile<E>(r < m && c < k ? a.base[r * a.si + c * a.sj] : 0.0f);
}

/* Rounds g's A into a new (m_pad, k_pad) copy, on stream s; NULL if there is no memory for it.
 * Kept (cudaMalloc) or for this product only (from the stream's pool, freed after it). */
template <class E> static E *pack_a16(const GpuGemm *g, int kept, cudaStream_t s)
{
    const int m_pad = round_up(g->m, G16_ROWS), k_pad = round_up(g->k, G16_BK);
    const long long total = (long long)m_pad * k_pad;
    E *copy = NULL;
    cudaError_t e = kept ? cudaMalloc((void **)&copy, (size_t)total * sizeof(E))
                         : cudaMallocAsync((void **)&copy, (size_t)total * sizeof(E), s);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* not sticky: the tile loader runs instead */
        return NULL;
    }
    GPU_LAUNCH(pack_a16_kernel<E>, (unsigned)((total + EW_THREADS - 1) / EW_THREADS), EW_THREADS, s, g->a, g->m,
               g->k, k_pad, total, copy);
    return copy;
}

/* g's A (a parameter) as E, from the kept copies (made on first use, on stream s); NULL if no memory. */
template <class E> static const E *weight16(GpuWeights16 *w, const GpuGemm *g, cudaStream_t s)
{
    for (int i = 0; i < w->n; i++) {
        const Weight16 *it = &w->items[i];
        if (it->src == g->a.base && it->si == g->a.si && it->sj == g->a.sj && it->m == g->m && it->k == g->k &&
            it->arith == g->arith)
            return (const E *)it->data;
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        Weight16 *items = (Weight16 *)realloc(w->items, (size_t)cap * sizeof *items);
        if (!items)
            return NULL;
        w->items = items, w->cap = cap;
    }
    E *copy = pack_a16<E>(g, 1, s);
    if (!copy)
        return NULL;
    w->items[w->n++] = (Weight16){g->a.base, g->a.si, g->a.sj, g->m, g->k, g->arith, copy};
    return copy;
}

/* ---- B into the workspace -------------------------------------------------------------------- */

/* B(r, col) as the tile loader reads it: a plain strided matrix, or a convolution's input at
 * r = (ci, ky, kx), col = (sample, oy, ox), zero outside the image. */
__device__ static inline float b_value(const GpuGemm &g, int r, int col)
{
    if (!g.conv.in)
        return g.b.base[r * g.b.si + col * g.b.sj];
    const GpuConvInput &cv = g.conv;
    const int taps = cv.k * cv.k, ci = r / taps, tap = r % taps;
    const int ox = col % cv.wo, rest = col / cv.wo, oy = rest % cv.ho, sample = rest / cv.ho;
    const int iy = oy * cv.stride - cv.pad_top + tap / cv.k, ix = ox * cv.stride - cv.pad_left + tap % cv.k;
    if (iy < 0 || iy >= cv.h || ix < 0 || ix >= cv.w)
        return 0.0f;
    return cv.in[((long long)ci * cv.batch + sample) * cv.h * cv.w + (long long)iy * cv.w + ix];
}

/* out (k_pad, width_pad) = B's rows 0 .. k_pad - 1 and columns n0 .. n0 + width_pad - 1, rounded, zero
 * beyond B: grid (width_pad / EW_THREADS, k_pad), one thread per element, consecutive threads along a row. */
template <class E> __global__ static void gather_b16_kernel(GpuGemm g, int n0, int width_pad, E *out)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y, col = n0 + j;
    if (j >= width_pad)
        return;
    out[(long long)r * width_pad + j] = to_tile<E>(r < g.k && col < g.n ? b_value(g, r, col) : 0.0f);
}

/* ---- the product ----------------------------------------------------------------------------- */

/* One block's shared memory: G16_STAGES k steps of A (TILE, BK) and B (BK, TILE), padded rows;
 * after the k walk, the same bytes are the warps' staging tiles for C. */
template <int TILE, class E> struct Gemm16Stages {
    E a[G16_STAGES][TILE][G16_BK + G16_PAD];
    E b[G16_STAGES][G16_BK][TILE + G16_PAD];
};
template <int TILE, class E> struct Gemm16Shared {
    static constexpr size_t STAGING = GEMM_THREADS / 32 * 16 * 16 * sizeof(float);
    static constexpr size_t BYTES =
        sizeof(Gemm16Stages<TILE, E>) > STAGING ? sizeof(Gemm16Stages<TILE, E>) : STAGING;
    static_assert(BYTES <= 48 * 1024, "static shared memory is 48 KiB at most: fewer stages or a smaller BK");
};

/* Issues the asynchronous copies of k step k0's tiles into stage st: 16 bytes each, rows of A
 * (lda = k_pad halves) and B (ldb = the workspace's width), every address in bounds and aligned. */
template <int TILE, class E>
__device__ static inline void issue_stage(Gemm16Stages<TILE, E> &sh, int st, const E *a16, int lda, const E *b16,
                                          int ldb, int m0, int n0, int k0)
{
    constexpr int A_PER_ROW = G16_BK / G16_CHUNK, B_PER_ROW = TILE / G16_CHUNK;
    for (int v = threadIdx.x; v < TILE * A_PER_ROW; v += GEMM_THREADS) {
        const int row = v / A_PER_ROW, c = v % A_PER_ROW * G16_CHUNK;
        __pipeline_memcpy_async(&sh.a[st][row][c], a16 + (long long)(m0 + row) * lda + k0 + c, 16);
    }
    for (int v = threadIdx.x; v < G16_BK * B_PER_ROW; v += GEMM_THREADS) {
        const int row = v / B_PER_ROW, c = v % B_PER_ROW * G16_CHUNK;
        __pipeline_memcpy_async(&sh.b[st][row][c], b16 + (long long)(k0 + row) * ldb + n0 + c, 16);
    }
}

/* C (g.m, g.n) at c = A16 (k16 of its k_pad columns) . B16 (ldb wide): the 8 warps tile the block 2 x 4
 * (as the tile loader's), each FM x FN fragments. k16: k rounded up to the fragments' 16. */
template <int TILE, class E>
__global__ static void __launch_bounds__(GEMM_THREADS, SOWER_GEMM16_MIN_BLOCKS)
    gemm16_kernel(GpuGemm g, const E *a16, int lda, const E *b16, int ldb, int k16, float *c)
{
    namespace wmma = nvcuda::wmma;
    constexpr int WARP_M = TILE / 2, WARP_N = TILE / 4, FM = WARP_M / 16, FN = WARP_N / 16;
    typedef Gemm16Stages<TILE, E> Stages;
    __shared__ __align__(128) unsigned char raw[Gemm16Shared<TILE, E>::BYTES];
    Stages &sh = *reinterpret_cast<Stages *>(raw);
    const int warp = threadIdx.x / 32, wm = warp / 4, wn = warp % 4;
    const int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    const int steps = (k16 + G16_BK - 1) / G16_BK;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FM][FN];
#pragma unroll
    for (int i = 0; i < FM; i++)
#pragma unroll
        for (int j = 0; j < FN; j++)
            wmma::fill_fragment(acc[i][j], 0.0f);

    /* Every step commits one group (empty past the end), so "all but the newest STAGES - 2 groups"
     * is always "up to this step's". */
    for (int st = 0; st < G16_STAGES - 1; st++) {
        if (st < steps)
            issue_stage(sh, st, a16, lda, b16, ldb, m0, n0, st * G16_BK);
        __pipeline_commit();
    }
    for (int step = 0; step < steps; step++) {
        __pipeline_wait_prior(G16_STAGES - 2);
        __syncthreads(); /* everyone's copies of this step landed; everyone is done with step - 1's stage */
        const int ahead = step + G16_STAGES - 1;
        if (ahead < steps) /* into the stage step - 1 read */
            issue_stage(sh, ahead % G16_STAGES, a16, lda, b16, ldb, m0, n0, ahead * G16_BK);
        __pipeline_commit();
        const int st = step % G16_STAGES;
#pragma unroll
        for (int kf = 0; kf < G16_BK; kf += 16) {
            if (step * G16_BK + kf >= k16) /* the tile loader's k ends here too */
                break;
            wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> fa[FM];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> fb[FN];
#pragma unroll
            for (int i = 0; i < FM; i++)
                wmma::load_matrix_sync(fa[i], &sh.a[st][wm * WARP_M + i * 16][kf], G16_BK + G16_PAD);
#pragma unroll
            for (int j = 0; j < FN; j++)
                wmma::load_matrix_sync(fb[j], &sh.b[st][kf][wn * WARP_N + j * 16], TILE + G16_PAD);
#pragma unroll
            for (int i = 0; i < FM; i++)
#pragma unroll
                for (int j = 0; j < FN; j++)
                    wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
    }
    __pipeline_wait_prior(0); /* only empty groups are left */
    __syncthreads();          /* the stages become staging tiles */
    float *stage = reinterpret_cast<float *>(raw) + warp * 16 * 16;
    store_warp_tile(g, c, m0 + wm * WARP_M, n0 + wn * WARP_N, acc, stage);
}

template <class E> static int run_gemm16(const GpuGemm *g, int tile, cudaStream_t s, int *done)
{
    E *a_once = NULL; /* (m_pad, k_pad): A's copy for this product alone, when A is not a parameter */
    const E *a16 = g->a_constant ? weight16<E>(g->weights16, g, s) : (a_once = pack_a16<E>(g, 0, s));
    if (!a16)
        return SOWER_OK;
    const int k_pad = round_up(g->k, G16_BK), k16 = round_up(g->k, 16);
    /* Columns per chunk: as many whole 128s as the budget holds, at least one. */
    const long long budget = (long long)g->weights16->workspace;
    const long long all = round_up(g->n, G16_COLS);
    long long fit = budget / ((long long)k_pad * (long long)sizeof(E)) / G16_COLS * G16_COLS;
    fit = fit < (long long)G16_COLS ? (long long)G16_COLS : fit;
    const int chunk = (int)(fit < all ? fit : all);
    E *b16 = NULL; /* (k_pad, chunk) */
    if (cudaMallocAsync((void **)&b16, (size_t)k_pad * chunk * sizeof(E), s) != cudaSuccess) {
        cudaGetLastError();
        if (a_once)
            cudaFreeAsync(a_once, s);
        return SOWER_OK;
    }
    *done = 1;
    const dim3 grid_m(1, (unsigned)((g->m + tile - 1) / tile));
    for (int n0 = 0; n0 < g->n; n0 += chunk) {
        const int width = g->n - n0 < chunk ? g->n - n0 : chunk, width_pad = round_up(width, G16_COLS);
        GPU_LAUNCH(gather_b16_kernel<E>, dim3((unsigned)(width_pad / EW_THREADS + (width_pad % EW_THREADS != 0)),
                                               (unsigned)k_pad),
                   EW_THREADS, s, *g, n0, width_pad, b16);
        GpuGemm part = *g; /* the chunk's columns of C */
        part.n = width;
        float *c = g->c + n0 * g->c_sj;
        const dim3 grid((unsigned)((width + tile - 1) / tile), grid_m.y);
        void (*kernel)(GpuGemm, const E *, int, const E *, int, int, float *) =
            tile == 128 ? gemm16_kernel<128, E> : gemm16_kernel<64, E>;
        GPU_LAUNCH(kernel, grid, GEMM_THREADS, s, part, a16, k_pad, b16, width_pad, k16, c);
    }
    cudaFreeAsync(b16, s);
    if (a_once)
        cudaFreeAsync(a_once, s);
    GPU_LAUNCH_TRY();
    return SOWER_OK;
}

int gpu_gemm16(const GpuGemm *g, int tile, cudaStream_t s, int *done)
{
    *done = 0;
    if (!g->weights16 || g->batches != 1 || g->k <= 0 || round_up(g->k, G16_BK) > 65535 ||
        (tile != 64 && tile != 128))
        return SOWER_OK;
    if (g->arith == GPU_ARITH_BF16)
        return run_gemm16<__nv_bfloat16>(g, tile, s, done);
    if (g->arith == GPU_ARITH_FP16)
        return run_gemm16<__half>(g, tile, s, done);
    return SOWER_OK;
}
