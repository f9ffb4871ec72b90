/* cuda_kernels.cu: the CUDA backend's kernels (see cuda_kernels.h for the determinism rules). */
#include "cuda_kernels.h"

#include <math.h>

#include "cuda_check.h"

/* The launch, as a macro so tests/cuda_emu can run these kernels on the host (it defines its own). */
#ifndef GPU_LAUNCH
#define GPU_LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#endif

/* ---- matrix multiply ------------------------------------------------------------------------ */

/* One block computes a GEMM_TM x GEMM_TN tile of C with 256 threads, 8 x 8 elements each; the
 * reduction walks k in GEMM_TK-wide steps through shared memory, always from k = 0 upwards. */
enum { GEMM_TM = 128, GEMM_TN = 128, GEMM_TK = 8, GEMM_THREADS = 256 };
static_assert(GEMM_THREADS % GEMM_TN == 0, "a thread's B column must be the same at every k step");

/* The B column a thread loads is the same at every k step (its index mod GEMM_TN is fixed, as
 * GEMM_THREADS is a multiple of GEMM_TN), so where it starts is worked out once, before the k loop. */
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

/* B(kk, col): for a convolution kk = (ci, ky, kx) reads in(ci, sample, iy0 + ky, ix0 + kx), zero
 * outside the image. */
__device__ static inline float load_b(const GpuGemm &g, const BColumn &c, int kk)
{
    if (!c.valid || kk >= g.k)
        return 0.0f;
    if (!g.conv.in)
        return c.base[kk * g.b.si];
    const GpuConvInput &cv = g.conv;
    const int taps = cv.k * cv.k, ci = kk / taps, tap = kk - ci * taps, ky = tap / cv.k, kx = tap - ky * cv.k;
    const int iy = c.iy0 + ky, ix = c.ix0 + kx;
    if (iy < 0 || iy >= cv.h || ix < 0 || ix >= cv.w)
        return 0.0f;
    return c.base[((long long)ci * cv.batch * cv.h + iy) * cv.w + ix];
}

__global__ static void __launch_bounds__(GEMM_THREADS) gemm_kernel(GpuGemm g)
{
    /* As (TK, TM + 4): the A tile transposed, rows padded so the transposing stores do not all hit
     * one bank; Bs (TK, TN). 16-byte aligned for float4 reads. */
    __shared__ __align__(16) float as[GEMM_TK][GEMM_TM + 4];
    __shared__ __align__(16) float bs[GEMM_TK][GEMM_TN];
    const int z = blockIdx.z, z1 = z / g.zdiv, z2 = z % g.zdiv;
    const float *a = g.a.base + z1 * g.a.s1 + z2 * g.a.s2;
    const float *b = g.conv.in ? NULL : g.b.base + z1 * g.b.s1 + z2 * g.b.s2;
    float *c = g.c + z1 * g.c_s1 + z2 * g.c_s2;
    const int m0 = blockIdx.y * GEMM_TM, n0 = blockIdx.x * GEMM_TN;
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const BColumn column = b_column(g, b, n0 + t % GEMM_TN);
    /* This thread's rows: ty*4 + {0..3} and 64 + ty*4 + {0..3} of the tile; columns likewise. */
    float acc[8][8];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++)
            acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < g.k; k0 += GEMM_TK) {
        for (int l = 0; l < GEMM_TM * GEMM_TK / GEMM_THREADS; l++) {
            int e = t + l * GEMM_THREADS, mm = e / GEMM_TK, kk = e % GEMM_TK; /* k fastest: rows of W */
            int gm = m0 + mm, gk = k0 + kk;
            as[kk][mm] = gm < g.m && gk < g.k ? a[gm * g.a.si + gk * g.a.sj] : 0.0f;
        }
        for (int l = 0; l < GEMM_TN * GEMM_TK / GEMM_THREADS; l++) {
            int e = t + l * GEMM_THREADS, kk = e / GEMM_TN, nn = e % GEMM_TN; /* n fastest: pixels */
            bs[kk][nn] = load_b(g, column, k0 + kk);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GEMM_TK; kk++) {
            float ra[8], rb[8];
            float4 a0 = *(const float4 *)&as[kk][ty * 4], a1 = *(const float4 *)&as[kk][64 + ty * 4];
            float4 b0 = *(const float4 *)&bs[kk][tx * 4], b1 = *(const float4 *)&bs[kk][64 + tx * 4];
            ra[0] = a0.x, ra[1] = a0.y, ra[2] = a0.z, ra[3] = a0.w;
            ra[4] = a1.x, ra[5] = a1.y, ra[6] = a1.z, ra[7] = a1.w;
            rb[0] = b0.x, rb[1] = b0.y, rb[2] = b0.z, rb[3] = b0.w;
            rb[4] = b1.x, rb[5] = b1.y, rb[6] = b1.z, rb[7] = b1.w;
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++)
                    acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 8; i++) {
        int gm = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
        if (gm >= g.m)
            continue;
        for (int j = 0; j < 8; j++) {
            int gn = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
            if (gn < g.n)
                c[gm * g.c_si + gn * g.c_sj] = g.bias ? acc[i][j] + g.bias[gm] : acc[i][j];
        }
    }
}

int gpu_gemm(const GpuGemm *g, cudaStream_t s)
{
    if (g->m <= 0 || g->n <= 0 || g->batches <= 0)
        return SOWER_OK;
    if (g->batches > 65535 || (g->m + GEMM_TM - 1) / GEMM_TM > 65535)
        return SOWER_FAIL(SOWER_EINTERNAL, "gpu_gemm: %d products of %d rows exceed the launch grid", g->batches,
                          g->m);
    dim3 grid((g->n + GEMM_TN - 1) / GEMM_TN, (g->m + GEMM_TM - 1) / GEMM_TM, g->batches);
    GPU_LAUNCH(gemm_kernel, grid, GEMM_THREADS, s, *g);
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

enum { EW_THREADS = 256 };

static unsigned ew_blocks(size_t n) { return (unsigned)((n + EW_THREADS - 1) / EW_THREADS); }

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

__global__ static void upsample_kernel(const float *in, float *out, int h, int w, size_t n_out)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_out)
        return;
    const int wo = 2 * w, ho = 2 * h;
    int x = (int)(i % wo), y = (int)(i / wo % ho);
    size_t plane = i / ((size_t)wo * ho);
    out[i] = in[(plane * h + y / 2) * w + x / 2];
}

int gpu_upsample_nearest2x(const Act *in, Act *out, cudaStream_t s)
{
    size_t n = act_numel(out);
    if (n) {
        GPU_LAUNCH(upsample_kernel, ew_blocks(n), EW_THREADS, s, in->data, out->data, in->h, in->w, n);
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
