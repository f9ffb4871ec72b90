/* attention16.cu: attention over heads on tensor cores, for the bf16 and fp16 arithmetics (cuda_kernels.h,
 * gpu_attention16). The fp32 flash attention (cuda_kernels.cu) does its q.k and p.v sums with fmaf on the
 * CUDA cores: a quarter of an SD 1.5 forward in tf32, more once the products run from 16-bit operands.
 *
 * A block holds 64 queries of one (sample, head): 4 warps of 16 query rows each, the queries rounded to E
 * (bf16 or fp16) and kept in shared memory for the whole walk. Two walks over the keys, tile by tile, in
 * order, each tile's scores s(i, j) = scale * (q_i . k_j) made by tensor cores (16 x 16 x 16 fragments
 * over the head's dims in order, fp32 accumulation) and staged through shared memory:
 *   1. the maximum m_i over every key (exact in any order), kept by 2 lanes per row (a half of each
 *      tile's keys each), combined at the end;
 *   2. p(i, j) = exp(s(i, j) - m_i): each lane sums its half tile's p in key order (double), the row's
 *      sum grows by (half 0 + half 1) per tile; p, rounded to E, times the tile's values (E) accumulates
 *      in the warp's output fragments (fp32, keys in order);
 * then o / l. Knowing m before the second walk spares the output's rescaling, which the fragments'
 * unspecified layout would not allow. Every order is set by the key count, the head width and constant
 * tiles, never the batch or the grid: a sample's bits are the same in any batch. Heads up to 160 dims
 * (SD's widest); wider ones keep the fp32 kernel. */
#include "cuda_kernels.h"

#include <math.h>

#include "cuda_check.h"
#include "gemm_common.cuh"

enum { A16_Q = 64, A16_WARPS = 4, A16_THREADS = A16_WARPS * 32, A16_PAD = 8, A16_MAX_DF = 10 };

/* Keys per tile for heads of DF x 16 dims: as many as keep the block in 48 KiB of static shared memory. */
constexpr int a16_keys(int df) { return df <= 3 ? 64 : df <= 5 ? 32 : 16; }

template <int DF, class E> struct Attention16Shared {
    static constexpr int K = a16_keys(DF), D = DF * 16;
    E q[D][A16_Q + A16_PAD];                  /* the block's queries, dims-major (zero past dh and nq) */
    E k[D][K + A16_PAD];                      /* the tile's keys (zero past dh and nk) */
    E v[D][K + A16_PAD];                      /* the tile's values, likewise */
    E p[A16_WARPS][16][K + A16_PAD];          /* each warp's probabilities, row-major */
    float s[A16_WARPS][16][K];                /* each warp's scores; at the end its staging tile for o */
    float m[A16_Q], half_max[2][A16_Q];       /* rows' maxima; the two lanes' shares of them */
    double l[A16_Q], half_sum[2][A16_Q];      /* rows' sums; a tile's two halves */
};

/* Rounds a (dims, count) slice of a (C, B, N) activation into dst (D, width + PAD): element (d, c) is
 * src[d * plane + first + c], zero past dh or count. Called by every thread of the block. */
template <class E, int D, int W>
__device__ static inline void load_slice(E (*dst)[W + A16_PAD], const float *src, long long plane, int dh, int first,
                                         int count)
{
    for (int e = threadIdx.x; e < D * W; e += A16_THREADS) {
        const int d = e / W, c = e % W;
        dst[d][c] = to_tile<E>(d < dh && first + c < count ? src[(long long)d * plane + first + c] : 0.0f);
    }
}

/* The warp's 16 x K scores of the tile in sh.k into sh.s[warp], unscaled: q (col-major: dims down,
 * queries across) times k, dims in order. */
template <int DF, class E>
__device__ static inline void tile_scores(Attention16Shared<DF, E> &sh, int warp)
{
    namespace wmma = nvcuda::wmma;
    constexpr int K = Attention16Shared<DF, E>::K;
#pragma unroll
    for (int c = 0; c < K / 16; c++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int f = 0; f < DF; f++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::col_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> b;
            wmma::load_matrix_sync(a, &sh.q[f * 16][warp * 16], A16_Q + A16_PAD);
            wmma::load_matrix_sync(b, &sh.k[f * 16][c * 16], K + A16_PAD);
            wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(&sh.s[warp][0][c * 16], acc, K, wmma::mem_row_major);
    }
    __syncwarp();
}

template <int DF, class E>
__global__ static void __launch_bounds__(A16_THREADS)
    attention16_kernel(const float *q, const float *k, const float *v, float *o, int dh, int nq, int nk,
                       long long q_plane, long long k_plane, float scale)
{
    namespace wmma = nvcuda::wmma;
    typedef Attention16Shared<DF, E> Shared;
    constexpr int K = Shared::K, D = Shared::D, HALF = K / 2;
    __shared__ __align__(32) Shared sh;
    const int t = threadIdx.x, warp = t / 32, lane = t % 32, head = blockIdx.y, sample = blockIdx.z;
    const int i0 = blockIdx.x * A16_Q;
    const int r = lane % 16, half = lane / 16, row = warp * 16 + r; /* this lane's row and half of a tile's keys */
    const long long q_first = (long long)head * dh * q_plane + (long long)sample * nq;
    const long long k_first = (long long)head * dh * k_plane + (long long)sample * nk;
    load_slice<E, D, A16_Q>(sh.q, q + q_first, q_plane, dh, i0, nq);

    /* Walk 1: each lane's maximum over its halves of every tile. */
    float mx = -INFINITY;
    for (int j0 = 0; j0 < nk; j0 += K) {
        load_slice<E, D, K>(sh.k, k + k_first, k_plane, dh, j0, nk);
        __syncthreads(); /* the keys (and, the first time, the queries) */
        tile_scores(sh, warp);
        for (int j = half * HALF; j < (half + 1) * HALF && j0 + j < nk; j++)
            mx = fmaxf(mx, sh.s[warp][r][j] * scale);
        __syncthreads(); /* sh.k is rewritten by the next tile */
    }
    sh.half_max[half][row] = mx;
    if (half == 0)
        sh.l[row] = 0.0;
    __syncthreads();
    const float m = fmaxf(sh.half_max[0][row], sh.half_max[1][row]);

    /* Walk 2: probabilities, their sums and the outputs. Warp w's outputs: rows 16 w.., all D dims. */
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[DF];
#pragma unroll
    for (int f = 0; f < DF; f++)
        wmma::fill_fragment(acc[f], 0.0f);
    for (int j0 = 0; j0 < nk; j0 += K) {
        load_slice<E, D, K>(sh.k, k + k_first, k_plane, dh, j0, nk);
        load_slice<E, D, K>(sh.v, v + k_first, k_plane, dh, j0, nk);
        __syncthreads();
        tile_scores(sh, warp);
        double sum = 0.0;
        for (int j = half * HALF; j < (half + 1) * HALF; j++) {
            const float p = j0 + j < nk ? expf(sh.s[warp][r][j] * scale - m) : 0.0f;
            sh.p[warp][r][j] = to_tile<E>(p);
            sum += (double)p;
        }
        sh.half_sum[half][row] = sum;
        __syncthreads(); /* every lane's p (the fragments below read whole rows) and half sums */
        if (half == 0)
            sh.l[row] += sh.half_sum[0][row] + sh.half_sum[1][row];
#pragma unroll
        for (int c = 0; c < K / 16; c++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> a;
            wmma::load_matrix_sync(a, &sh.p[warp][0][c * 16], K + A16_PAD);
#pragma unroll
            for (int f = 0; f < DF; f++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major> b; /* (key, dim) = v[dim][key] */
                wmma::load_matrix_sync(b, &sh.v[f * 16][c * 16], K + A16_PAD);
                wmma::mma_sync(acc[f], a, b, acc[f]);
            }
        }
        __syncthreads(); /* keys, values, p and the half sums are rewritten by the next tile */
    }

    /* o = acc / l, through the warp's score tile (16 x 16 floats of it) */
    float *stage = &sh.s[warp][0][0];
    float *oh = o + q_first + i0;
#pragma unroll
    for (int f = 0; f < DF; f++) {
        wmma::store_matrix_sync(stage, acc[f], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 16 * 16; e += 32) {
            const int i = warp * 16 + e / 16, d = f * 16 + e % 16;
            if (d < dh && i0 + i < nq)
                oh[(long long)d * q_plane + i] = stage[e] * (float)(1.0 / sh.l[i]);
        }
        __syncwarp();
    }
}

template <int DF, class E>
static void launch_attention16(dim3 grid, const Act *q, const Act *k, const Act *v, Act *o, int dh, float scale,
                               cudaStream_t s)
{
    static_assert(sizeof(Attention16Shared<DF, E>) <= 48 * 1024, "static shared memory is 48 KiB at most");
    void (*kernel)(const float *, const float *, const float *, float *, int, int, int, long long, long long, float) =
        attention16_kernel<DF, E>;
    GPU_LAUNCH(kernel, grid, A16_THREADS, s, q->data, k->data, v->data, o->data, dh, q->h * q->w, k->h * k->w,
               (long long)act_plane(q), (long long)act_plane(k), scale);
}

template <class E> static void dispatch_attention16(int df, dim3 grid, const Act *q, const Act *k, const Act *v,
                                                    Act *o, int dh, float scale, cudaStream_t s)
{
    /* The fewest dims instantiated that cover dh: zero dims add nothing, but they are other tensor-core
     * steps, so the instantiation is part of the arithmetic (it follows dh alone, never the batch). */
    if (df <= 1) launch_attention16<1, E>(grid, q, k, v, o, dh, scale, s);
    else if (df <= 2) launch_attention16<2, E>(grid, q, k, v, o, dh, scale, s);
    else if (df <= 3) launch_attention16<3, E>(grid, q, k, v, o, dh, scale, s);
    else if (df <= 4) launch_attention16<4, E>(grid, q, k, v, o, dh, scale, s);
    else if (df <= 5) launch_attention16<5, E>(grid, q, k, v, o, dh, scale, s);
    else if (df <= 8) launch_attention16<8, E>(grid, q, k, v, o, dh, scale, s);
    else launch_attention16<10, E>(grid, q, k, v, o, dh, scale, s);
}

int gpu_attention16(int arith, int heads, const Act *q, const Act *k, const Act *v, Act *out, cudaStream_t s,
                    int *done)
{
    *done = 0;
    const int dh = q->c / heads, nq = q->h * q->w, df = (dh + 15) / 16;
    if ((arith != GPU_ARITH_BF16 && arith != GPU_ARITH_FP16) || df > A16_MAX_DF || q->b > 65535 || heads > 65535)
        return SOWER_OK;
    *done = 1;
    if (nq == 0 || q->b == 0)
        return SOWER_OK;
    const dim3 grid((nq + A16_Q - 1) / A16_Q, heads, q->b);
    const float scale = 1.0f / sqrtf((float)dh); /* the CPU's op_attention_heads' */
    if (arith == GPU_ARITH_BF16)
        dispatch_attention16<__nv_bfloat16>(df, grid, q, k, v, out, dh, scale, s);
    else
        dispatch_attention16<__half>(df, grid, q, k, v, out, dh, scale, s);
    GPU_LAUNCH_TRY();
    return SOWER_OK;
}
