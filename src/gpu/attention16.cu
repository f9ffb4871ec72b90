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

#include <cuda_pipeline_primitives.h>
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

/* out (nb * heads, D, n_pad) = x's samples b0 .. b0 + nb - 1 rounded to E, per (sample, head) its dh dims
 * by its n tokens, zero past them: what the attention kernel copies its tiles from, 16 bytes at a time.
 * x: (heads * dh, B, n). One thread per element of out. */
template <class E>
__global__ static void round_heads_kernel(const float *x, long long plane, int n, int dh, int heads, int b0, int d_pad,
                                          int n_pad, long long total, E *out)
{
    const long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= total)
        return;
    const int j = (int)(e % n_pad), d = (int)(e / n_pad % d_pad);
    const long long sh = e / ((long long)n_pad * d_pad); /* sample (from b0) * heads + head */
    const int head = (int)(sh % heads), sample = b0 + (int)(sh / heads);
    out[e] = to_tile<E>(d < dh && j < n ? x[(long long)(head * dh + d) * plane + (long long)sample * n + j] : 0.0f);
}

/* Copies rows 0 .. D - 1, columns first .. first + W - 1 of src (rows `pitch` halves apart) into dst
 * (asynchronously, 16 bytes a copy, one commit group); every thread of the block takes part. */
template <class E, int D, int W>
__device__ static inline void copy_slice(E (*dst)[W + A16_PAD], const E *src, int pitch, int first)
{
    constexpr int PER_ROW = W * (int)sizeof(E) / 16;
    for (int e = threadIdx.x; e < D * PER_ROW; e += A16_THREADS) {
        const int d = e / PER_ROW, c = e % PER_ROW * (16 / (int)sizeof(E));
        __pipeline_memcpy_async(&dst[d][c], src + (long long)d * pitch + first + c, 16);
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

/* q16 (heads, D, nq_pad), k16 and v16 (heads, D, nk_pad): the block's sample's heads as round_heads_kernel
 * leaves them (blockIdx.z: the sample within them); o: the output's sample b0 + blockIdx.z, o_plane apart. */
template <int DF, class E>
__global__ static void __launch_bounds__(A16_THREADS)
    attention16_kernel(const E *q16, const E *k16, const E *v16, float *o, int dh, int nq, int nk, int nq_pad,
                       int nk_pad, int b0, long long o_plane, float scale)
{
    namespace wmma = nvcuda::wmma;
    typedef Attention16Shared<DF, E> Shared;
    constexpr int K = Shared::K, D = Shared::D, HALF = K / 2;
    __shared__ __align__(32) Shared sh;
    const int t = threadIdx.x, warp = t / 32, lane = t % 32, head = blockIdx.y, heads = gridDim.y;
    const int i0 = blockIdx.x * A16_Q;
    const int r = lane % 16, half = lane / 16, row = warp * 16 + r; /* this lane's row and half of a tile's keys */
    const long long sh_index = (long long)blockIdx.z * heads + head;
    const E *qh = q16 + sh_index * D * nq_pad, *kh = k16 + sh_index * D * nk_pad, *vh = v16 + sh_index * D * nk_pad;
    copy_slice<E, D, A16_Q>(sh.q, qh, nq_pad, i0);
    __pipeline_commit();

    /* Walk 1: each lane's maximum over its halves of every tile. */
    float mx = -INFINITY;
    for (int j0 = 0; j0 < nk; j0 += K) {
        copy_slice<E, D, K>(sh.k, kh, nk_pad, j0);
        __pipeline_commit();
        __pipeline_wait_prior(0);
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
        copy_slice<E, D, K>(sh.k, kh, nk_pad, j0);
        copy_slice<E, D, K>(sh.v, vh, nk_pad, j0);
        __pipeline_commit();
        __pipeline_wait_prior(0);
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
    __pipeline_wait_prior(0); /* (nothing is left in flight, but for the queries when nk is 0) */
    float *stage = &sh.s[warp][0][0];
    float *oh = o + (long long)head * dh * o_plane + (long long)(b0 + blockIdx.z) * nq + i0;
#pragma unroll
    for (int f = 0; f < DF; f++) {
        wmma::store_matrix_sync(stage, acc[f], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 16 * 16; e += 32) {
            const int i = warp * 16 + e / 16, d = f * 16 + e % 16;
            if (d < dh && i0 + i < nq)
                oh[(long long)d * o_plane + i] = stage[e] * (float)(1.0 / sh.l[i]);
        }
        __syncwarp();
    }
}

/* The rounded copies of one chunk of samples (round_heads_kernel's layout) and what the kernel needs of them. */
template <class E> struct Heads16 {
    const E *q, *k, *v;
    int dh, nq, nk, nq_pad, nk_pad, b0;
};

template <int DF, class E>
static void launch_attention16(dim3 grid, const Heads16<E> &h, Act *o, float scale, cudaStream_t s)
{
    static_assert(sizeof(Attention16Shared<DF, E>) <= 48 * 1024, "static shared memory is 48 KiB at most");
    void (*kernel)(const E *, const E *, const E *, float *, int, int, int, int, int, int, long long, float) =
        attention16_kernel<DF, E>;
    GPU_LAUNCH(kernel, grid, A16_THREADS, s, h.q, h.k, h.v, o->data, h.dh, h.nq, h.nk, h.nq_pad, h.nk_pad, h.b0,
               (long long)act_plane(o), scale);
}

/* The instantiation for heads of dh dims: the fewest 16-dim fragments instantiated that cover them.
 * Zero dims add nothing, but they are other tensor-core steps, so it is part of the arithmetic (it
 * follows dh alone, never the batch). */
static int instantiated_df(int dh)
{
    const int df = (dh + 15) / 16;
    return df <= 5 ? df : df <= 8 ? 8 : 10;
}

template <class E>
static void dispatch_attention16(int df, dim3 grid, const Heads16<E> &h, Act *o, float scale, cudaStream_t s)
{
    switch (df) {
    case 1: launch_attention16<1, E>(grid, h, o, scale, s); break;
    case 2: launch_attention16<2, E>(grid, h, o, scale, s); break;
    case 3: launch_attention16<3, E>(grid, h, o, scale, s); break;
    case 4: launch_attention16<4, E>(grid, h, o, scale, s); break;
    case 5: launch_attention16<5, E>(grid, h, o, scale, s); break;
    case 8: launch_attention16<8, E>(grid, h, o, scale, s); break;
    default: launch_attention16<10, E>(grid, h, o, scale, s);
    }
}

template <class E>
static int run_attention16(int heads, const Act *q, const Act *k, const Act *v, Act *out, size_t workspace,
                           cudaStream_t s)
{
    const int dh = q->c / heads, nq = q->h * q->w, nk = k->h * k->w;
    const int df = instantiated_df(dh), d_pad = 16 * df, keys = a16_keys(df);
    const int nq_pad = (nq + A16_Q - 1) / A16_Q * A16_Q, nk_pad = (nk + keys - 1) / keys * keys;
    const long long per_sample = (long long)heads * d_pad * (nq_pad + 2LL * nk_pad); /* elements */
    long long chunk = (long long)(workspace / ((size_t)sizeof(E) * (size_t)per_sample)); /* samples at a time */
    chunk = chunk < 1 ? 1 : chunk > q->b ? q->b : chunk > 65535 ? 65535 : chunk; /* (grid z) */
    E *work = NULL; /* q (chunk * heads, d_pad, nq_pad), then k and v (chunk * heads, d_pad, nk_pad) */
    GPU_CUDA_TRY(cudaMallocAsync((void **)&work, (size_t)(chunk * per_sample) * sizeof(E), s));
    const float scale = 1.0f / sqrtf((float)dh); /* the CPU's op_attention_heads' */
    for (int b0 = 0; b0 < q->b; b0 += (int)chunk) {
        const int nb = q->b - b0 < chunk ? q->b - b0 : (int)chunk;
        E *wq = work, *wk = wq + (long long)nb * heads * d_pad * nq_pad, *wv = wk + (long long)nb * heads * d_pad * nk_pad;
        const struct { const Act *x; E *to; int n, n_pad; } parts[3] = {
            {q, wq, nq, nq_pad}, {k, wk, nk, nk_pad}, {v, wv, nk, nk_pad}};
        for (int i = 0; i < 3; i++) {
            const long long total = (long long)nb * heads * d_pad * parts[i].n_pad;
            GPU_LAUNCH(round_heads_kernel<E>, (unsigned)((total + EW_THREADS - 1) / EW_THREADS), EW_THREADS, s,
                       parts[i].x->data, (long long)act_plane(parts[i].x), parts[i].n, dh, heads, b0, d_pad,
                       parts[i].n_pad, total, parts[i].to);
        }
        const Heads16<E> h = {wq, wk, wv, dh, nq, nk, nq_pad, nk_pad, b0};
        dispatch_attention16<E>(df, dim3((unsigned)(nq_pad / A16_Q), (unsigned)heads, (unsigned)nb), h, out, scale, s);
    }
    cudaFreeAsync(work, s);
    GPU_LAUNCH_TRY();
    return SOWER_OK;
}

int gpu_attention16(int arith, int heads, const Act *q, const Act *k, const Act *v, Act *out, size_t workspace,
                    cudaStream_t s, int *done)
{
    *done = 0;
    const int dh = q->c / heads, nq = q->h * q->w;
    if ((arith != GPU_ARITH_BF16 && arith != GPU_ARITH_FP16) || dh > 16 * A16_MAX_DF || heads > 65535)
        return SOWER_OK;
    *done = 1;
    if (nq == 0 || q->b == 0)
        return SOWER_OK;
    if (arith == GPU_ARITH_BF16)
        return run_attention16<__nv_bfloat16>(heads, q, k, v, out, workspace, s);
    return run_attention16<__half>(heads, q, k, v, out, workspace, s);
}
