/* cuda_kernels.cu: the CUDA backend's kernels (see cuda_kernels.h for the determinism rules). */
#include "cuda_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <mma.h>
#include <stdint.h>
#include <string.h>

#include "cuda_check.h"
#include "gemm_common.cuh"

namespace wmma = nvcuda::wmma;

/* ---- matrix multiply ------------------------------------------------------------------------ */

/* A block computes a TILE x TILE tile of C (TILE 128 or 64) with 256 threads; the reduction walks
 * k in GEMM_TK-wide steps through shared memory, always from k = 0 upwards, and each element of C
 * has one accumulator for the whole walk (a thread's register in fp32, a tensor-core fragment
 * element in tf32). So the tile size, which gpu_gemm picks from the shape to fill the GPU, changes
 * which thread computes an element, never how: no bit depends on it. */
#ifndef SOWER_GEMM_TK
#define SOWER_GEMM_TK 8 /* k per shared-memory step: 8, 16 or 32 (the bits are the same for each) */
#endif
#ifndef SOWER_GEMM_FP32_MIN_BLOCKS
#define SOWER_GEMM_FP32_MIN_BLOCKS 1
#endif
#ifndef SOWER_GEMM_TF32_MIN_BLOCKS
#define SOWER_GEMM_TF32_MIN_BLOCKS 2
#endif
#ifndef SOWER_GEMM_TK16
#define SOWER_GEMM_TK16 16 /* bf16 and fp16: k per shared-memory step, 16 or 32 (the same bits) */
#endif
#ifndef SOWER_GEMM_STAGES
#define SOWER_GEMM_STAGES 1 /* shared-memory tiles: 1, or 2 (the next step's put while this one computes) */
#endif
static_assert(SOWER_GEMM_STAGES == 1 || SOWER_GEMM_STAGES == 2, "SOWER_GEMM_STAGES: 1 or 2");
#ifndef SOWER_GEMM_VEC
#define SOWER_GEMM_VEC 0 /* 1: float4 tile loads for plain, aligned operands (VecTileLoader; the same bits) */
#endif
enum { GEMM_TK = SOWER_GEMM_TK, GEMM_MAX_TAPS = 64 };
static_assert(GEMM_TK % 8 == 0 && GEMM_TK <= 32, "GEMM_TK: a multiple of the tensor cores' k of 8, at most 32");

/* The B column a thread loads is the same at every k step (its index mod TILE is fixed, as
 * GEMM_THREADS is a multiple of TILE), so where it starts is worked out once, before the k loop. */
struct BColumn {
    const float *base; /* generic B: column col's start; conv: the column's sample plane */
    int iy0, ix0;      /* conv: the input pixel of tap (0, 0) */
    int valid;         /* col < n */
};

__device__ static inline BColumn b_column(const GpuGemm &g, const float *b, int col)
{
    BColumn c;
    c.valid = col < g.n;
    c.iy0 = c.ix0 = 0;
    c.base = NULL;
    if (!c.valid)
        return c;
    if (!g.conv.in) {
        c.base = b + (long long)col * g.b.sj;
        return c;
    }
    const GpuConvInput &cv = g.conv;
    const int ox = col % cv.wo, rest = col / cv.wo, oy = rest % cv.ho, sample = rest / cv.ho;
    c.iy0 = oy * cv.stride - cv.pad_top;
    c.ix0 = ox * cv.stride - cv.pad_left;
    c.base = cv.in + (long long)sample * cv.h * cv.w;
    return c;
}

/* The B rows of a convolution one thread reads, N of them `stride` rows apart from `first`, as
 * (input channel, tap), advanced TK rows per k step (step_ci channels and step_tap taps) so that the
 * k loop never divides. */
template <int N, int TK> struct ConvRows {
    int ci[N], tap[N], taps, step_ci, step_tap;
    long long plane; /* floats between input channels: batch * h * w */

    __device__ void init(const GpuConvInput &cv, int first, int stride)
    {
        taps = cv.k * cv.k;
        step_ci = TK / taps, step_tap = TK % taps;
        plane = (long long)cv.batch * cv.h * cv.w;
#pragma unroll
        for (int l = 0; l < N; l++) {
            const int row = first + l * stride;
            ci[l] = row / taps, tap[l] = row % taps;
        }
    }

    __device__ void advance(int l)
    {
        tap[l] += step_tap, ci[l] += step_ci;
        if (tap[l] >= taps)
            tap[l] -= taps, ci[l]++;
    }
};

/* One k step's tiles in shared memory, of element E (float; or the 16-bit type the bf16 and fp16
 * products take, the values rounded on the way in): a (TK, TILE + PAD) is the A tile transposed (A
 * column-major), its rows padded so the transposing stores spread over the banks; b (TK, TILE).
 * 32-byte aligned (both arrays' sizes are multiples of 32 bytes, rows multiples of 16) for float4 reads
 * and tensor-core fragment loads. */
template <int TILE, int TK, class E> struct GemmShared {
    static constexpr int PAD = sizeof(E) == 4 ? 4 : 8;
    E a[TK][TILE + PAD];
    E b[TK][TILE];
    int tap_y[GEMM_MAX_TAPS], tap_x[GEMM_MAX_TAPS]; /* conv: tap = ky * k + kx -> ky, kx */
};

/* Moves one k step of A and B from global memory into registers (fetch: issued before the previous
 * step's arithmetic, so the loads are in flight during it) and from there into shared memory (put).
 * Each thread moves LOADS elements of each: A's at rows a_row + A_ROW_STRIDE l, column a_k (k fastest: rows of
 * the weights); B's at rows b_row + B_ROW_STRIDE l, column b_n (n fastest: pixels). */
template <int TILE, int TK, class E> struct TileLoader {
    typedef GemmShared<TILE, TK, E> Shared;
    static constexpr int LOADS = TILE * TK / GEMM_THREADS;
    static constexpr int A_ROW_STRIDE = GEMM_THREADS / TK, B_ROW_STRIDE = GEMM_THREADS / TILE;
    static_assert(GEMM_THREADS % TILE == 0, "a thread's B column must be the same at every k step");
    BColumn col;
    int a_row, a_k, b_row, b_n;
    ConvRows<LOADS, TK> rows; /* conv: the B rows of the next fetch */
    float ra[LOADS], rb[LOADS];

    __device__ void init(const GpuGemm &g, const float *b, int n0)
    {
        const int t = threadIdx.x;
        a_row = t / TK, a_k = t % TK, b_row = t / TILE, b_n = t % TILE;
        col = b_column(g, b, n0 + b_n);
        if (g.conv.in)
            rows.init(g.conv, b_row, B_ROW_STRIDE);
    }

    __device__ float conv_b(const GpuConvInput &cv, const Shared &sh, int l) const
    {
        if (!col.valid || rows.ci[l] >= cv.cin)
            return 0.0f;
        const int iy = col.iy0 + sh.tap_y[rows.tap[l]], ix = col.ix0 + sh.tap_x[rows.tap[l]];
        if (iy < 0 || iy >= cv.h || ix < 0 || ix >= cv.w)
            return 0.0f;
        return col.base[rows.ci[l] * rows.plane + iy * cv.w + ix];
    }

    __device__ void fetch(const GpuGemm &g, const float *a, int m0, int k0, const Shared &sh)
    {
        const int gk = k0 + a_k;
#pragma unroll
        for (int l = 0; l < LOADS; l++) {
            const int gm = m0 + a_row + l * A_ROW_STRIDE;
            ra[l] = gm < g.m && gk < g.k ? a[gm * g.a.si + gk * g.a.sj] : 0.0f;
        }
        if (!g.conv.in) {
#pragma unroll
            for (int l = 0; l < LOADS; l++) {
                const int kk = k0 + b_row + l * B_ROW_STRIDE;
                rb[l] = col.valid && kk < g.k ? col.base[kk * g.b.si] : 0.0f;
            }
            return;
        }
#pragma unroll
        for (int l = 0; l < LOADS; l++) {
            rb[l] = conv_b(g.conv, sh, l);
            rows.advance(l);
        }
    }

    __device__ void put(Shared &sh) const
    {
#pragma unroll
        for (int l = 0; l < LOADS; l++) {
            sh.a[a_k][a_row + l * A_ROW_STRIDE] = to_tile<E>(ra[l]);
            sh.b[b_row + l * B_ROW_STRIDE][b_n] = to_tile<E>(rb[l]);
        }
    }
};

/* TileLoader's tiles, each thread moving 4 neighbours at a time: A's as one float4 along k (A's rows
 * 16-byte aligned runs: a.sj == 1, strides and base multiples of 4 floats, k a multiple of 4); B's
 * along n, as one float4 for a plain operand (likewise aligned, n a multiple of 4) or, for a
 * convolution whose output rows are multiples of 4 wide (CONV), as the 4 neighbouring output pixels
 * of one row, whose input pixels share one address computation. They land in the same places of the
 * same shared tiles as TileLoader's: the same values meet in the same order, so the same bits, for
 * fewer instructions. gemm_vectors says when it applies. */
template <int TILE, int TK, class E, bool CONV> struct VecTileLoader {
    typedef GemmShared<TILE, TK, E> Shared;
    static constexpr int VECS = TILE * TK / 4;                              /* float4s per tile */
    static constexpr int PASSES = (VECS + GEMM_THREADS - 1) / GEMM_THREADS; /* per thread */
    static constexpr int B_ROWS_PER_PASS = GEMM_THREADS / (TILE / 4);
    static_assert(GEMM_THREADS % (TILE / 4) == 0, "a thread's 4 B columns must be the same at every pass");
    const float *b_base;
    int n0, n4;  /* this thread's B columns: n0 + n4 .. + 3 */
    BColumn col;                /* CONV: the first of them */
    ConvRows<PASSES, TK> rows;  /* CONV: the B rows of the next fetch, one per pass */
    float4 ra[PASSES], rb[PASSES];

    __device__ void init(const GpuGemm &g, const float *b, int n0_)
    {
        b_base = b, n0 = n0_, n4 = threadIdx.x % (TILE / 4) * 4;
        if (!CONV)
            return;
        col = b_column(g, b, n0 + n4);
        rows.init(g.conv, threadIdx.x / (TILE / 4), B_ROWS_PER_PASS);
    }

    __device__ float4 conv_b4(const GpuConvInput &cv, const Shared &sh, int l) const
    {
        float4 r;
        r.x = r.y = r.z = r.w = 0.0f;
        if (!col.valid || rows.ci[l] >= cv.cin)
            return r;
        const int iy = col.iy0 + sh.tap_y[rows.tap[l]], ix = col.ix0 + sh.tap_x[rows.tap[l]];
        if (iy < 0 || iy >= cv.h)
            return r;
        const float *p = col.base + rows.ci[l] * rows.plane + iy * cv.w;
        const int s = cv.stride;
        r.x = ix >= 0 && ix < cv.w ? p[ix] : 0.0f;
        r.y = ix + s >= 0 && ix + s < cv.w ? p[ix + s] : 0.0f;
        r.z = ix + 2 * s >= 0 && ix + 2 * s < cv.w ? p[ix + 2 * s] : 0.0f;
        r.w = ix + 3 * s >= 0 && ix + 3 * s < cv.w ? p[ix + 3 * s] : 0.0f;
        return r;
    }

    __device__ void fetch(const GpuGemm &g, const float *a, int m0, int k0, const Shared &sh)
    {
        float4 zero;
        zero.x = zero.y = zero.z = zero.w = 0.0f;
#pragma unroll
        for (int l = 0; l < PASSES; l++) {
            const int v = threadIdx.x + l * GEMM_THREADS;
            const int row = v / (TK / 4), k4 = v % (TK / 4) * 4; /* A: (row, k4..k4+3) */
            const int gm = m0 + row, gk = k0 + k4;
            ra[l] = v < VECS && gm < g.m && gk < g.k ? *(const float4 *)(a + gm * g.a.si + gk) : zero;
            if (CONV) {
                rb[l] = v < VECS ? conv_b4(g.conv, sh, l) : zero;
                rows.advance(l);
            } else {
                const int kk = k0 + v / (TILE / 4), gn = n0 + n4; /* B: (kk, n4..n4+3) */
                rb[l] = v < VECS && kk < g.k && gn < g.n ? *(const float4 *)(b_base + kk * g.b.si + gn) : zero;
            }
        }
    }

    __device__ void put(Shared &sh) const
    {
#pragma unroll
        for (int l = 0; l < PASSES; l++) {
            const int v = threadIdx.x + l * GEMM_THREADS;
            if (v >= VECS)
                break;
            const int row = v / (TK / 4), k4 = v % (TK / 4) * 4;
            sh.a[k4][row] = to_tile<E>(ra[l].x), sh.a[k4 + 1][row] = to_tile<E>(ra[l].y);
            sh.a[k4 + 2][row] = to_tile<E>(ra[l].z), sh.a[k4 + 3][row] = to_tile<E>(ra[l].w);
            const int kr = v / (TILE / 4);
            sh.b[kr][n4] = to_tile<E>(rb[l].x), sh.b[kr][n4 + 1] = to_tile<E>(rb[l].y);
            sh.b[kr][n4 + 2] = to_tile<E>(rb[l].z), sh.b[kr][n4 + 3] = to_tile<E>(rb[l].w);
        }
    }
};

/* fp32: each thread owns an R x R block of C (R = TILE / 16), rows q * 64 + ty * 4 + {0..3} for
 * q < R / 4 and columns likewise with tx; C(i, j) = fmaf(A(i, k), B(k, j), C(i, j)) for k in order. */
template <int TILE> struct Fp32Accumulator {
    typedef float Elem;
    static constexpr int TK = GEMM_TK;
    static constexpr int R = TILE / 16;
    /* Blocks per SM to fit the registers for: at TILE 128 two would spill (ptxas -v, sm_80/90). */
    static constexpr int MIN_BLOCKS = SOWER_GEMM_FP32_MIN_BLOCKS;
    float acc[R][R];

    /* The tile row (or column) of this thread's i-th accumulator row (column); t16 = ty (tx). */
    __device__ static int owned(int i, int t16) { return i / 4 * 64 + t16 * 4 + i % 4; }

    __device__ void zero()
    {
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int j = 0; j < R; j++)
                acc[i][j] = 0.0f;
    }

    __device__ void step(const GemmShared<TILE, TK, Elem> &sh)
    {
        const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
        for (int kk = 0; kk < GEMM_TK; kk++) {
            float ra[R], rb[R];
#pragma unroll
            for (int q = 0; q < R / 4; q++) {
                const float4 va = *(const float4 *)&sh.a[kk][q * 64 + ty * 4];
                const float4 vb = *(const float4 *)&sh.b[kk][q * 64 + tx * 4];
                ra[4 * q] = va.x, ra[4 * q + 1] = va.y, ra[4 * q + 2] = va.z, ra[4 * q + 3] = va.w;
                rb[4 * q] = vb.x, rb[4 * q + 1] = vb.y, rb[4 * q + 2] = vb.z, rb[4 * q + 3] = vb.w;
            }
#pragma unroll
            for (int i = 0; i < R; i++)
#pragma unroll
                for (int j = 0; j < R; j++)
                    acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
        }
    }

    __device__ void store(const GpuGemm &g, float *c, int m0, int n0) const
    {
        const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int j = 0; j < R; j++)
                store_c(g, c, m0 + owned(i, ty), n0 + owned(j, tx), acc[i][j]);
    }
};

/* The tensor-core arithmetics (opt-in), as wmma fragment types: tf32 (m16n16k8; fp32 tiles, each
 * fragment element rounded to TF32 as it is loaded), bf16 and fp16 (m16n16k16; the tiles hold the
 * rounded 16-bit values). Products accumulate in fp32 fragments. */
struct Tf32Arith {
    typedef float Elem;
    typedef wmma::precision::tf32 Frag;
    /* 2 blocks (128 registers): no spill on sm_90 at GEMM_TK 8, 32 bytes on sm_80; spills at 16 and 32 (ptxas -v) */
    static constexpr int KF = 8, TK = GEMM_TK, MIN_BLOCKS = SOWER_GEMM_TF32_MIN_BLOCKS;
};
struct Bf16Arith {
    typedef __nv_bfloat16 Elem;
    typedef __nv_bfloat16 Frag;
    static constexpr int KF = 16, TK = SOWER_GEMM_TK16, MIN_BLOCKS = 1; /* 2 would spill ~100 bytes (ptxas -v, sm_90) */
};
struct Fp16Arith {
    typedef __half Elem;
    typedef __half Frag;
    static constexpr int KF = 16, TK = SOWER_GEMM_TK16, MIN_BLOCKS = 1; /* 2 would spill ~100 bytes (ptxas -v, sm_90) */
};

/* Tensor cores: the 8 warps tile the block 2 x 4, each warp (TILE/2) x (TILE/4) as FM x FN
 * fragments; each k step is walked in fragment steps of KF, in order, every fragment element
 * accumulating over k = 0, 1, ... in fp32. */
template <int TILE, class Arith> struct WmmaAccumulator {
    typedef typename Arith::Elem Elem;
    static constexpr int TK = Arith::TK, KF = Arith::KF;
    static constexpr int WARP_M = TILE / 2, WARP_N = TILE / 4, FM = WARP_M / 16, FN = WARP_N / 16;
    static_assert(GEMM_THREADS == 8 * 32, "8 warps, 2 x 4");
    static_assert(TK % KF == 0, "a k step is whole fragment steps");
    static constexpr int MIN_BLOCKS = Arith::MIN_BLOCKS;
    wmma::fragment<wmma::accumulator, 16, 16, KF, float> acc[FM][FN];

    __device__ void zero()
    {
#pragma unroll
        for (int i = 0; i < FM; i++)
#pragma unroll
            for (int j = 0; j < FN; j++)
                wmma::fill_fragment(acc[i][j], 0.0f);
    }

    __device__ void step(const GemmShared<TILE, TK, Elem> &sh)
    {
        typedef GemmShared<TILE, TK, Elem> Shared;
        const int warp = threadIdx.x / 32, wm = warp / 4, wn = warp % 4;
#pragma unroll
        for (int kf = 0; kf < TK; kf += KF) {
            wmma::fragment<wmma::matrix_a, 16, 16, KF, typename Arith::Frag, wmma::col_major> fa[FM];
            wmma::fragment<wmma::matrix_b, 16, 16, KF, typename Arith::Frag, wmma::row_major> fb[FN];
#pragma unroll
            for (int i = 0; i < FM; i++) {
                wmma::load_matrix_sync(fa[i], &sh.a[kf][wm * WARP_M + i * 16], TILE + Shared::PAD);
                if constexpr (KF == 8) /* tf32: round as the element enters the fragment */
#pragma unroll
                    for (int e = 0; e < fa[i].num_elements; e++)
                        fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
            }
#pragma unroll
            for (int j = 0; j < FN; j++) {
                wmma::load_matrix_sync(fb[j], &sh.b[kf][wn * WARP_N + j * 16], TILE);
                if constexpr (KF == 8)
#pragma unroll
                    for (int e = 0; e < fb[j].num_elements; e++)
                        fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
            }
#pragma unroll
            for (int i = 0; i < FM; i++)
#pragma unroll
                for (int j = 0; j < FN; j++)
                    wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
    }

    __device__ void store(const GpuGemm &g, float *c, int m0, int n0)
    {
        __shared__ __align__(32) float stage[GEMM_THREADS / 32][16 * 16];
        const int warp = threadIdx.x / 32, wm = warp / 4, wn = warp % 4;
        store_warp_tile(g, c, m0 + wm * WARP_M, n0 + wn * WARP_N, acc, stage[warp]);
    }
};

template <int TILE, class Accumulator, class Loader>
__global__ static void __launch_bounds__(GEMM_THREADS, Accumulator::MIN_BLOCKS) gemm_kernel(GpuGemm g)
{
    typedef typename Accumulator::Elem Elem;
    constexpr int TK = Accumulator::TK;
    /* sh[0] also holds the conv tap table; with 2 stages step k0 reads sh[s] while k0 + TK's tiles go
     * into sh[1 - s], one barrier per step instead of two (the arithmetic, and so the bits, the same). */
    __shared__ __align__(32) GemmShared<TILE, TK, Elem> sh[SOWER_GEMM_STAGES];
    const int z = blockIdx.z, z1 = z / g.zdiv, z2 = z % g.zdiv;
    const float *a = g.a.base + z1 * g.a.s1 + z2 * g.a.s2;
    const float *b = g.conv.in ? NULL : g.b.base + z1 * g.b.s1 + z2 * g.b.s2;
    float *c = g.c + z1 * g.c_s1 + z2 * g.c_s2;
    const int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    if (g.conv.in)
        for (int i = threadIdx.x; i < g.conv.k * g.conv.k; i += GEMM_THREADS)
            sh[0].tap_y[i] = i / g.conv.k, sh[0].tap_x[i] = i % g.conv.k;
    Loader load;
    load.init(g, b, n0);
    Accumulator acc;
    acc.zero();
    __syncthreads(); /* the tap table */
    if (g.k > 0)
        load.fetch(g, a, m0, 0, sh[0]);
    if (SOWER_GEMM_STAGES == 1) {
        for (int k0 = 0; k0 < g.k; k0 += TK) {
            load.put(sh[0]);
            __syncthreads();
            if (k0 + TK < g.k)
                load.fetch(g, a, m0, k0 + TK, sh[0]);
            acc.step(sh[0]);
            __syncthreads();
        }
    } else if (g.k > 0) {
        load.put(sh[0]);
        __syncthreads();
        for (int k0 = 0, stage = 0; k0 < g.k; k0 += TK, stage ^= 1) {
            const int more = k0 + TK < g.k;
            if (more)
                load.fetch(g, a, m0, k0 + TK, sh[0]);
            acc.step(sh[stage]);
            if (more) /* sh[1 - stage] was last read in the previous step, before its barrier */
                load.put(sh[(stage ^ 1) % SOWER_GEMM_STAGES]);
            __syncthreads();
        }
    }
    acc.store(g, c, m0, n0);
}

#if SOWER_GEMM_VEC
/* Which tile loader g's operands allow: 0 TileLoader, 1 VecTileLoader (plain B), 2 VecTileLoader
 * (convolution B). */
static int gemm_vectors(const GpuGemm *g)
{
    const auto aligned = [](const float *p, long long s1, long long s2, long long si) {
        return (uintptr_t)p % 16 == 0 && s1 % 4 == 0 && s2 % 4 == 0 && si % 4 == 0;
    };
    if (g->a.sj != 1 || g->k % 4 != 0 || !aligned(g->a.base, g->a.s1, g->a.s2, g->a.si))
        return 0;
    if (g->conv.in)
        return g->conv.wo % 4 == 0 ? 2 : 0;
    return g->b.sj == 1 && g->n % 4 == 0 && aligned(g->b.base, g->b.s1, g->b.s2, g->b.si) ? 1 : 0;
}
#endif

template <int TILE, class Accumulator> static void launch_gemm(const GpuGemm *g, cudaStream_t s)
{
    typedef typename Accumulator::Elem Elem;
    dim3 grid((g->n + TILE - 1) / TILE, (g->m + TILE - 1) / TILE, g->batches);
    void (*kernel)(GpuGemm) = gemm_kernel<TILE, Accumulator, TileLoader<TILE, Accumulator::TK, Elem> >;
#if SOWER_GEMM_VEC
    const int vectors = gemm_vectors(g);
    if (vectors == 1)
        kernel = gemm_kernel<TILE, Accumulator, VecTileLoader<TILE, Accumulator::TK, Elem, false> >;
    else if (vectors == 2)
        kernel = gemm_kernel<TILE, Accumulator, VecTileLoader<TILE, Accumulator::TK, Elem, true> >;
#endif
    GPU_LAUNCH(kernel, grid, GEMM_THREADS, s, *g);
}

/* The 128 tile does twice the arithmetic per shared-memory read of the 64 one, but a grid of fewer
 * blocks than the GPU has SMs leaves most of it idle (4x4 and 8x8 activations, batch 1, conv_out's
 * 3 rows): then 64. Bits never depend on the choice (see the top of this section). */
#ifndef SOWER_GEMM_SMALL_TILE_BELOW
#define SOWER_GEMM_SMALL_TILE_BELOW 1 /* 64 when the 128 tiles' grid has fewer blocks than this many x SMs */
#endif
static int gemm_tile(const GpuGemm *g)
{
    long long blocks = (long long)((g->n + 127) / 128) * ((g->m + 127) / 128) * g->batches;
    return g->m <= 64 || blocks < (long long)(SOWER_GEMM_SMALL_TILE_BELOW * g->sms) ? 64 : 128;
}

int gpu_gemm(const GpuGemm *g_in, cudaStream_t s)
{
    GpuGemm plain;
    const GpuGemm *g = g_in;
    const GpuConvInput *cv = &g_in->conv;
    if (cv->in && cv->k == 1 && cv->stride == 1 && cv->pad_top == 0 && cv->pad_left == 0 && cv->ho == cv->h &&
        cv->wo == cv->w) {
        /* A 1x1 convolution's B is its input as it lies, (cin, batch * h * w): the same values as the
         * gather would read (so the same bits), without its index arithmetic. */
        plain = *g_in;
        memset(&plain.conv, 0, sizeof plain.conv);
        plain.b = (GpuMatrix){cv->in, (long long)cv->batch * cv->h * cv->w, 1, 0, 0};
        g = &plain;
    }
    if (g->m <= 0 || g->n <= 0 || g->batches <= 0)
        return SOWER_OK;
    if (g->conv.in && g->conv.k * g->conv.k > GEMM_MAX_TAPS)
        return SOWER_FAIL(SOWER_EINTERNAL, "gpu_gemm: a %dx%d kernel has more than %d taps", g->conv.k, g->conv.k,
                          GEMM_MAX_TAPS);
    const int tile = gemm_tile(g);
    if (g->batches > 65535 || (g->m + tile - 1) / tile > 65535)
        return SOWER_FAIL(SOWER_EINTERNAL, "gpu_gemm: %d products of %d rows exceed the launch grid", g->batches,
                          g->m);
    if (g->weights16) {
        int done = 0;
        SOWER_TRY(gpu_gemm16(g, tile, s, &done));
        if (done)
            return SOWER_OK;
    }
    switch (g->arith) {
    case GPU_ARITH_TF32:
        tile == 128 ? launch_gemm<128, WmmaAccumulator<128, Tf32Arith> >(g, s)
                    : launch_gemm<64, WmmaAccumulator<64, Tf32Arith> >(g, s);
        break;
    case GPU_ARITH_BF16:
        tile == 128 ? launch_gemm<128, WmmaAccumulator<128, Bf16Arith> >(g, s)
                    : launch_gemm<64, WmmaAccumulator<64, Bf16Arith> >(g, s);
        break;
    case GPU_ARITH_FP16:
        tile == 128 ? launch_gemm<128, WmmaAccumulator<128, Fp16Arith> >(g, s)
                    : launch_gemm<64, WmmaAccumulator<64, Fp16Arith> >(g, s);
        break;
    default:
        tile == 128 ? launch_gemm<128, Fp32Accumulator<128> >(g, s) : launch_gemm<64, Fp32Accumulator<64> >(g, s);
    }
    GPU_LAUNCH_TRY();
    return SOWER_OK;
}

/* ---- reductions: one block, a fixed tree ---------------------------------------------------- */

enum { REDUCE_THREADS = 256 };

/* Sum of v over the block's threads in a fixed order (a binary tree over thread indices); every
 * thread gets the result. shared: REDUCE_THREADS doubles. */
__device__ static double block_sum(double v, double *shared)
{
    const int t = threadIdx.x;
    __syncthreads(); /* shared may still be read from the previous call */
    shared[t] = v;
    __syncthreads();
    for (int half = REDUCE_THREADS / 2; half > 0; half /= 2) {
        if (t < half)
            shared[t] += shared[t + half];
        __syncthreads();
    }
    return shared[0];
}

__device__ static float block_max(float v, float *shared)
{
    const int t = threadIdx.x;
    __syncthreads();
    shared[t] = v;
    __syncthreads();
    for (int half = REDUCE_THREADS / 2; half > 0; half /= 2) {
        if (t < half)
            shared[t] = fmaxf(shared[t], shared[t + half]);
        __syncthreads();
    }
    return shared[0];
}

__device__ static inline float silu_f(float v) { return v / (1.0f + expf(-v)); }

/* One block per (group, sample): two-pass moments in double, then the affine map (and SiLU). The
 * group's elements (cpg channels of hw pixels of one sample) go to threads by index, each
 * thread summing its own in order, then the tree. */
__global__ static void __launch_bounds__(REDUCE_THREADS)
    group_norm_kernel(const float *x, float *y, const float *gamma, const float *beta, int batch, int cpg, int hw,
                      float eps, int silu)
{
    __shared__ double partial[REDUCE_THREADS];
    const int grp = blockIdx.x, sample = blockIdx.y, t = threadIdx.x;
    const int count = cpg * hw; /* < 2^31: one sample's channels of a group */
    /* element e of the group: channel grp*cpg + e/hw, pixel e%hw */
#define GN_INDEX(e) ((((long long)grp * cpg + (e) / hw) * batch + sample) * hw + (e) % hw)
    double sum = 0.0;
    for (int e = t; e < count; e += REDUCE_THREADS)
        sum += (double)x[GN_INDEX(e)];
    const double mean = block_sum(sum, partial) / (double)count;
    double sq = 0.0;
    for (int e = t; e < count; e += REDUCE_THREADS) {
        double d = (double)x[GN_INDEX(e)] - mean;
        sq += d * d;
    }
    const double var = block_sum(sq, partial) / (double)count;
    const float mean_f = (float)mean, rstd = (float)(1.0 / sqrt(var + (double)eps));
    for (int e = t; e < count; e += REDUCE_THREADS) {
        int ch = grp * cpg + e / hw;
        float scale = rstd * gamma[ch], shift = -scale * mean_f + beta[ch];
        float v = scale * x[GN_INDEX(e)] + shift;
        y[GN_INDEX(e)] = silu ? silu_f(v) : v;
    }
#undef GN_INDEX
}

int gpu_group_norm(const GroupNormParams *p, const Act *x, Act *y, int silu, cudaStream_t s)
{
    dim3 grid(p->groups, x->b);
    GPU_LAUNCH(group_norm_kernel, grid, REDUCE_THREADS, s, x->data, y->data, p->gamma, p->beta, x->b,
               p->channels / p->groups, x->h * x->w, p->eps, silu);
    GPU_LAUNCH_TRY();
    return SOWER_OK;
}

/* One block per row: v = scale * x; x = exp(v - max v) / sum, the sum in double. */
__global__ static void __launch_bounds__(REDUCE_THREADS) softmax_kernel(float *s, int cols, float scale)
{
    __shared__ double partial[REDUCE_THREADS];
    __shared__ float partial_max[REDUCE_THREADS];
    float *row = s + (long long)blockIdx.x * cols;
    const int t = threadIdx.x;
    float mx = -INFINITY;
    for (int j = t; j < cols; j += REDUCE_THREADS)
        mx = fmaxf(mx, scale * row[j]);
    mx = block_max(mx, partial_max);
    double sum = 0.0;
    for (int j = t; j < cols; j += REDUCE_THREADS) {
        float e = expf(scale * row[j] - mx);
        row[j] = e;
        sum += (double)e;
    }
    const float inv_sum = (float)(1.0 / block_sum(sum, partial));
    for (int j = t; j < cols; j += REDUCE_THREADS)
        row[j] = row[j] * inv_sum;
}

int gpu_softmax_rows(float *s, long long rows, int cols, float scale, cudaStream_t st)
{
    if (rows > 0x7fffffffLL)
        return SOWER_FAIL(SOWER_EINTERNAL, "gpu_softmax_rows: %lld rows exceed the launch grid", rows);
    if (rows > 0) {
        GPU_LAUNCH(softmax_kernel, (unsigned)rows, REDUCE_THREADS, st, s, cols, scale);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

/* ---- element-wise --------------------------------------------------------------------------- */

__global__ static void silu_kernel(float *x, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = silu_f(x[i]);
}

int gpu_silu(float *x, size_t n, cudaStream_t s)
{
    if (n) {
        GPU_LAUNCH(silu_kernel, ew_blocks(n), EW_THREADS, s, x, n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

__global__ static void upsample_kernel(const float *in, float *out, int h, int w, int ho, int wo, size_t n_out)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_out)
        return;
    int x = (int)(i % wo), y = (int)(i / wo % ho);
    size_t plane = i / ((size_t)wo * ho);
    out[i] = in[(plane * h + nearest_source_index(y, h, ho)) * w + nearest_source_index(x, w, wo)];
}

int gpu_upsample_nearest(const Act *in, Act *out, cudaStream_t s)
{
    size_t n = act_numel(out);
    if (n) {
        GPU_LAUNCH(upsample_kernel, ew_blocks(n), EW_THREADS, s, in->data, out->data, in->h, in->w, out->h, out->w,
                   n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

__global__ static void channel_bias_kernel(float *x, const float *t, int channels, int batch, int hw, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    size_t plane = i / hw; /* = c * batch + b */
    int c = (int)(plane / batch), b = (int)(plane % batch);
    x[i] += t[(size_t)b * channels + c];
}

int gpu_add_channel_bias(Act *x, const float *t, cudaStream_t s)
{
    size_t n = act_numel(x);
    if (n) {
        GPU_LAUNCH(channel_bias_kernel, ew_blocks(n), EW_THREADS, s, x->data, t, x->c, x->b, x->h * x->w, n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

__global__ static void residual_kernel(const float *shortcut, float *out, size_t n, float scale)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = (shortcut[i] + out[i]) / scale;
}

int gpu_residual(const float *shortcut, float *out, size_t n, float scale, cudaStream_t s)
{
    if (n) {
        GPU_LAUNCH(residual_kernel, ew_blocks(n), EW_THREADS, s, shortcut, out, n, scale);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

/* to_cbhw: x (B, C, HW) -> y (C, B, HW) (center: 2x - 1); else the reverse. i indexes y. */
__global__ static void layout_kernel(const float *x, float *y, int batch, int channels, int hw, int center,
                                     int to_cbhw, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    size_t p = i % hw, plane = i / hw;
    if (to_cbhw) { /* plane = c * batch + b */
        int c = (int)(plane / batch), b = (int)(plane % batch);
        float v = x[((size_t)b * channels + c) * hw + p];
        y[i] = center ? 2.0f * v - 1.0f : v;
    } else { /* plane = b * channels + c */
        int b = (int)(plane / channels), c = (int)(plane % channels);
        y[i] = x[((size_t)c * batch + b) * hw + p];
    }
}

int gpu_from_nchw(const float *x, int center, Act *out, cudaStream_t s)
{
    size_t n = act_numel(out);
    if (n) {
        GPU_LAUNCH(layout_kernel, ew_blocks(n), EW_THREADS, s, x, out->data, out->b, out->c, out->h * out->w, center,
                   1, n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

int gpu_to_nchw(const Act *in, float *x, cudaStream_t s)
{
    size_t n = act_numel(in);
    if (n) {
        GPU_LAUNCH(layout_kernel, ew_blocks(n), EW_THREADS, s, in->data, x, in->b, in->c, in->h * in->w, 0, 0, n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

__global__ static void scheduler_step_kernel(StepCoefficients k, const float *m, float *x, const float *z, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = scheduler_step_value(&k, m[i], x[i], z ? z[i] : 0.0f);
}

int gpu_scheduler_step(const StepCoefficients *k, const float *m, float *x, const float *z, size_t n, cudaStream_t s)
{
    if (n) {
        GPU_LAUNCH(scheduler_step_kernel, ew_blocks(n), EW_THREADS, s, *k, m, x, z, n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

/* ---- UNet2DConditionModel's transformer operations ------------------------------------------ */

/* One thread per token (pixel of a sample): the CPU's arithmetic exactly (op_layer_norm_channels:
 * both moments in double over the channels in order, then fmaf), so the bits are the CPU's too.
 * Neighbouring threads read neighbouring tokens of a channel: coalesced. y may be x. */
__global__ static void layer_norm_kernel(const float *x, float *y, const float *gamma, const float *beta, int c,
                                         size_t n, float eps)
{
    const size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n)
        return;
    double sum = 0.0;
    for (int ch = 0; ch < c; ch++)
        sum += (double)x[(size_t)ch * n + t];
    const double mean = sum / (double)c;
    double sq = 0.0;
    for (int ch = 0; ch < c; ch++) {
        const double d = (double)x[(size_t)ch * n + t] - mean;
        sq += d * d;
    }
    const float mean_f = (float)mean, rstd = (float)(1.0 / sqrt(sq / (double)c + (double)eps));
    for (int ch = 0; ch < c; ch++) {
        const size_t i = (size_t)ch * n + t;
        y[i] = fmaf((x[i] - mean_f) * rstd, gamma[ch], beta[ch]);
    }
}

int gpu_layer_norm(const LayerNormParams *p, const Act *x, Act *y, cudaStream_t s)
{
    const size_t n = act_plane(x);
    if (n) {
        GPU_LAUNCH(layer_norm_kernel, ew_blocks(n), EW_THREADS, s, x->data, y->data, p->gamma, p->beta, x->c, n,
                   p->eps);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

/* out[ch] = in[ch] * gelu(in[half + ch]), erf gelu as the CPU's row_gelu_erf writes it. */
__global__ static void geglu_kernel(const float *in, float *out, size_t half_values)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= half_values)
        return;
    const float gate = in[half_values + i];
    out[i] = in[i] * (0.5f * gate * (1.0f + erff(gate * 0.70710678118654752f)));
}

int gpu_geglu(const Act *in, Act *out, cudaStream_t s)
{
    const size_t n = act_numel(out); /* (C / 2, B, H, W): the value half is in's first n values */
    if (n) {
        GPU_LAUNCH(geglu_kernel, ew_blocks(n), EW_THREADS, s, in->data, out->data, n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

__global__ static void guidance_kernel(const float *uncond, const float *cond, float scale, float *out, size_t n)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = uncond[i] + scale * (cond[i] - uncond[i]); /* --fmad=false: the CPU's two roundings */
}

int gpu_guidance(const float *uncond, const float *cond, float scale, float *out, size_t n, cudaStream_t s)
{
    if (n) {
        GPU_LAUNCH(guidance_kernel, ew_blocks(n), EW_THREADS, s, uncond, cond, scale, out, n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

/* Attention over heads, flash-style: a block holds FA_Q queries of one (sample, head) and walks the
 * keys in tiles of FA_K, from the first to the last, keeping per query a running maximum m, a running
 * sum l (double) and the output accumulators; a tile's scores never leave shared memory. For each tile:
 *   s(i, j) = (sum_d q(d, i) k(d, j), fmaf over d in order) * scale      (keys past the end: -inf)
 *   m' = max(m, max_j s(i, j)); alpha = exp(m - m'); p(i, j) = exp(s(i, j) - m')
 *   l = l alpha + sum_j p(i, j) (4 partial sums of 8 keys each, in key order, then (s0 + s1) + (s2 + s3));
 *   o(d, i) = o(d, i) alpha, then fmaf(v(d, j), p(i, j), .) over j in order
 * and at the end o / l. Every step's order is set by the key count and the tile sizes, which are
 * constants: never by the batch, the grid or the device, so a sample's bits are the same in any batch.
 * Work per thread: scores of 4 queries x 2 keys; outputs of 4 queries x DR dims (dims t/16 + 16 r). */
enum { FA_Q = 64, FA_K = 32, FA_D = 16, FA_THREADS = 256, FA_MAX_DR = 16 };

static_assert(FA_THREADS == 4 * FA_Q && FA_K % 4 == 0, "4 threads per query row share a tile's keys");
/* SOWER_FA_RESIDENT=1 (a variant, off until timed on a GPU): heads of at most FA_RESIDENT_MAX_DR x FA_D dims
 * (SD 1.5's 40 at 64x64) keep the block's queries in shared memory for the whole key walk and load each
 * key tile at its full depth, so a tile's scores take one barrier instead of two per FA_D dims and the
 * queries are read once instead of once per tile. The same fmaf over d in the same order: the same bits. */
#ifndef SOWER_FA_RESIDENT
#define SOWER_FA_RESIDENT 0
#endif
enum { FA_RESIDENT_MAX_DR = 3 };
/* SOWER_FA_SOFTMAX_64=1 (a variant, for timing only: other bits): the softmax as it was before 8ec0236, one
 * thread per query row summing its 32 keys in order while the other 192 wait, so the two can be timed in
 * one device call (a plug-in of that older revision no longer loads). */
#ifndef SOWER_FA_SOFTMAX_64
#define SOWER_FA_SOFTMAX_64 0
#endif
static_assert(FA_D * FA_Q * sizeof(float) >= 4 * FA_Q * (sizeof(float) + sizeof(double)),
              "the softmax's partial maxima and sums fit in the query chunk's space");

template <int DR, bool RESIDENT> struct AttentionResident {
    float q_all[DR * FA_D][FA_Q]; /* every dim of the block's queries */
    float k_all[DR * FA_D][FA_K]; /* every dim of the tile's keys */
};
template <int DR> struct AttentionResident<DR, false> {}; /* (an empty base: no bytes) */

template <int DR, bool RESIDENT> struct AttentionShared : AttentionResident<DR, RESIDENT> {
    float q[FA_D][FA_Q];       /* a chunk of FA_D dims of the block's queries */
    float k[FA_D][FA_K];       /* the same dims of the tile's keys */
    float v[DR * FA_D][FA_K];  /* every dim of the tile's values */
    float p[FA_K][FA_Q];       /* scores, then probabilities, key-major: float4 reads along queries */
    float m[FA_Q], alpha[FA_Q];
    double l[FA_Q];
};

/* One dim d of a thread's 4 x 2 scores: s(a, c) = fmaf(q(d, si + a), k(d, sj + c), s(a, c)). q: 4 queries'
 * values of dim d (16-byte aligned), k: 2 keys'. */
__device__ static inline void score_step(const float *q, const float *k, float s[4][2])
{
    const float4 qa = *(const float4 *)q;
    const float qv[4] = {qa.x, qa.y, qa.z, qa.w};
#pragma unroll
    for (int a = 0; a < 4; a++)
        s[a][0] = fmaf(qv[a], k[0], s[a][0]), s[a][1] = fmaf(qv[a], k[1], s[a][1]);
}

template <int DR, bool RESIDENT>
__global__ static void __launch_bounds__(FA_THREADS)
    attention_heads_kernel(const float *q, const float *k, const float *v, float *o, int dh, int nq, int nk,
                           long long q_plane, long long k_plane, float scale)
{
    __shared__ __align__(16) AttentionShared<DR, RESIDENT> sh;
    const int t = threadIdx.x, head = blockIdx.y, sample = blockIdx.z, i0 = blockIdx.x * FA_Q;
    const float *qh = q + (long long)head * dh * q_plane + (long long)sample * nq + i0; /* (dh, nq - i0) */
    const float *kh = k + (long long)head * dh * k_plane + (long long)sample * nk;      /* (dh, nk) */
    const float *vh = v + (long long)head * dh * k_plane + (long long)sample * nk;
    const int si = (t / 16) * 4, sj = (t % 16) * 2; /* this thread's scores: queries si.., keys sj.. */
    const int oi = (t % 16) * 4, od = t / 16;       /* its outputs: queries oi.., dims od + 16 r */
    float acc[DR][4];
#pragma unroll
    for (int r = 0; r < DR; r++)
#pragma unroll
        for (int a = 0; a < 4; a++)
            acc[r][a] = 0.0f;
    if (t < FA_Q)
        sh.m[t] = -INFINITY, sh.l[t] = 0.0;
    if constexpr (RESIDENT)
        for (int e = t; e < DR * FA_D * FA_Q; e += FA_THREADS) {
            const int d = e / FA_Q, i = e % FA_Q;
            sh.q_all[d][i] = d < dh && i0 + i < nq ? qh[(long long)d * q_plane + i] : 0.0f;
        }
    for (int j0 = 0; j0 < nk; j0 += FA_K) {
        float s[4][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}, {0.0f, 0.0f}, {0.0f, 0.0f}};
        if constexpr (RESIDENT) {
            for (int e = t; e < DR * FA_D * FA_K; e += FA_THREADS) {
                const int d = e / FA_K, j = e % FA_K;
                sh.k_all[d][j] = d < dh && j0 + j < nk ? kh[(long long)d * k_plane + j0 + j] : 0.0f;
            }
            __syncthreads(); /* (k_all is rewritten only after the tile's last barrier) */
            const int d_end = (dh + FA_D - 1) / FA_D * FA_D; /* the dims the chunked walk takes: dh, then zeros */
#pragma unroll 4
            for (int d = 0; d < d_end; d++)
                score_step(&sh.q_all[d][si], &sh.k_all[d][sj], s);
        }
        for (int d0 = 0; d0 < (RESIDENT ? 0 : dh); d0 += FA_D) {
            for (int e = t; e < FA_D * FA_Q; e += FA_THREADS) {
                const int d = e / FA_Q, i = e % FA_Q;
                sh.q[d][i] = d0 + d < dh && i0 + i < nq ? qh[(long long)(d0 + d) * q_plane + i] : 0.0f;
            }
            for (int e = t; e < FA_D * FA_K; e += FA_THREADS) {
                const int d = e / FA_K, j = e % FA_K;
                sh.k[d][j] = d0 + d < dh && j0 + j < nk ? kh[(long long)(d0 + d) * k_plane + j0 + j] : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int d = 0; d < FA_D; d++)
                score_step(&sh.q[d][si], &sh.k[d][sj], s);
            __syncthreads();
        }
#pragma unroll
        for (int a = 0; a < 4; a++)
#pragma unroll
            for (int c = 0; c < 2; c++)
                sh.p[sj + c][si + a] = j0 + sj + c < nk ? s[a][c] * scale : -INFINITY;
        /* the tile's values, every dim (zero past the keys' end) */
        for (int e = t; e < DR * FA_D * FA_K; e += FA_THREADS) {
            const int d = e / FA_K, j = e % FA_K;
            sh.v[d][j] = d < dh && j0 + j < nk ? vh[(long long)d * k_plane + j0 + j] : 0.0f;
        }
        __syncthreads();
        if (SOWER_FA_SOFTMAX_64 && t < FA_Q) { /* one thread per query row, in key order (the variant) */
            float mt = sh.m[t];
            for (int j = 0; j < FA_K; j++)
                mt = fmaxf(mt, sh.p[j][t]);
            double sum = 0.0;
            for (int j = 0; j < FA_K; j++) {
                const float e = expf(sh.p[j][t] - mt);
                sh.p[j][t] = e;
                sum += (double)e;
            }
            const float alpha = expf(sh.m[t] - mt);
            sh.alpha[t] = alpha;
            sh.l[t] = sh.l[t] * (double)alpha + sum;
            sh.m[t] = mt;
        }
        /* The running maximum and sum, 4 threads per query row (FA_K / 4 keys each): the maximum is
         * exact in any order; each thread sums its exponentials in key order and a row's 4 partial
         * sums combine as (s0 + s1) + (s2 + s3), a fixed order. sh.q is free until the next tile. */
        if (!SOWER_FA_SOFTMAX_64) {
            float *part_max = &sh.q[0][0];                       /* (4, FA_Q) */
            double *part_sum = (double *)(void *)&sh.q[4][0];    /* (4, FA_Q), from byte 1024 */
            const int row = t % FA_Q, part = t / FA_Q, first = part * (FA_K / 4);
            float mx = -INFINITY;
            for (int j = first; j < first + FA_K / 4; j++)
                mx = fmaxf(mx, sh.p[j][row]);
            part_max[part * FA_Q + row] = mx;
            __syncthreads();
            float mt = sh.m[row];
            for (int q4 = 0; q4 < 4; q4++)
                mt = fmaxf(mt, part_max[q4 * FA_Q + row]);
            double sum = 0.0;
            for (int j = first; j < first + FA_K / 4; j++) {
                const float e = expf(sh.p[j][row] - mt);
                sh.p[j][row] = e;
                sum += (double)e;
            }
            part_sum[part * FA_Q + row] = sum;
            __syncthreads();
            if (part == 0) {
                const float alpha = expf(sh.m[row] - mt); /* 0 on the first tile (m = -inf) */
                sh.alpha[row] = alpha;
                sh.l[row] = sh.l[row] * (double)alpha + ((part_sum[row] + part_sum[FA_Q + row]) +
                                                         (part_sum[2 * FA_Q + row] + part_sum[3 * FA_Q + row]));
                sh.m[row] = mt;
            }
        }
        __syncthreads();
        const float4 al = *(const float4 *)&sh.alpha[oi];
#pragma unroll
        for (int r = 0; r < DR; r++)
            acc[r][0] *= al.x, acc[r][1] *= al.y, acc[r][2] *= al.z, acc[r][3] *= al.w;
        for (int j = 0; j < FA_K; j++) {
            const float4 pj = *(const float4 *)&sh.p[j][oi];
#pragma unroll
            for (int r = 0; r < DR; r++) {
                const float vv = sh.v[od + FA_D * r][j];
                acc[r][0] = fmaf(vv, pj.x, acc[r][0]), acc[r][1] = fmaf(vv, pj.y, acc[r][1]);
                acc[r][2] = fmaf(vv, pj.z, acc[r][2]), acc[r][3] = fmaf(vv, pj.w, acc[r][3]);
            }
        }
        __syncthreads(); /* p, v and the row state are rewritten by the next tile */
    }
    float *oh = o + (long long)head * dh * q_plane + (long long)sample * nq + i0;
#pragma unroll
    for (int a = 0; a < 4; a++) {
        const int i = oi + a;
        if (i0 + i >= nq)
            continue;
        const float inv = (float)(1.0 / sh.l[i]);
#pragma unroll
        for (int r = 0; r < DR; r++) {
            const int d = od + FA_D * r;
            if (d < dh)
                oh[(long long)d * q_plane + i] = acc[r][a] * inv;
        }
    }
}

template <int DR>
static void launch_attention_heads(dim3 grid, const Act *q, const Act *k, const Act *v, Act *o, int dh, float scale,
                                   cudaStream_t s)
{
    void (*kernel)(const float *, const float *, const float *, float *, int, int, int, long long, long long, float) =
        attention_heads_kernel<DR, SOWER_FA_RESIDENT && DR <= FA_RESIDENT_MAX_DR>;
    GPU_LAUNCH(kernel, grid, FA_THREADS, s, q->data, k->data, v->data, o->data, dh, q->h * q->w, k->h * k->w,
               (long long)act_plane(q), (long long)act_plane(k), scale);
}

int gpu_attention_heads(int heads, const Act *q, const Act *k, const Act *v, Act *out, cudaStream_t s)
{
    const int dh = q->c / heads, nq = q->h * q->w;
    if (dh > FA_MAX_DR * FA_D)
        return SOWER_FAIL(SOWER_EMODEL, "backend cuda: attention heads of %d channels (at most %d)", dh,
                          FA_MAX_DR * FA_D);
    if (q->b > 65535 || heads > 65535)
        return SOWER_FAIL(SOWER_EINTERNAL, "gpu_attention_heads: %d samples of %d heads exceed the launch grid", q->b,
                          heads);
    if (nq == 0 || q->b == 0)
        return SOWER_OK;
    const dim3 grid((nq + FA_Q - 1) / FA_Q, heads, q->b);
    const float scale = 1.0f / sqrtf((float)dh); /* the CPU's op_attention_heads' */
    /* Accumulator rows per thread: the fewest instantiated that cover dh (bits do not depend on it: a
     * dim's sum is the same whichever thread holds it). */
    const int dr = (dh + FA_D - 1) / FA_D;
    if (dr <= 1) launch_attention_heads<1>(grid, q, k, v, out, dh, scale, s);
    else if (dr <= 2) launch_attention_heads<2>(grid, q, k, v, out, dh, scale, s);
    else if (dr <= 3) launch_attention_heads<3>(grid, q, k, v, out, dh, scale, s);
    else if (dr <= 4) launch_attention_heads<4>(grid, q, k, v, out, dh, scale, s);
    else if (dr <= 5) launch_attention_heads<5>(grid, q, k, v, out, dh, scale, s);
    else if (dr <= 8) launch_attention_heads<8>(grid, q, k, v, out, dh, scale, s);
    else if (dr <= 10) launch_attention_heads<10>(grid, q, k, v, out, dh, scale, s);
    else launch_attention_heads<16>(grid, q, k, v, out, dh, scale, s);
    GPU_LAUNCH_TRY();
    return SOWER_OK;
}
