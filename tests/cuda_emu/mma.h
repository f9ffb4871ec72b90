/* mma.h (emulated): the part of CUDA's warp matrix API (nvcuda::wmma) the tf32, bf16 and fp16 matrix
 * multiplies of src/gpu/cuda_kernels.cu use, for the host emulation (cuda_runtime.h).
 *
 * On a GPU a fragment is spread over a warp's 32 threads in an unspecified layout, and kernels
 * only load, store, fill or map it element by element. Here every thread holds the whole tile
 * (rows x cols, row-major, as floats: a bf16 or fp16 element as the float it stands for) and does the
 * warp's whole operation itself: the same values, 32 times over. mma_sync sums a tile's K exact
 * products in double and rounds once; the tensor cores' internal rounding is their own, so the
 * emulation checks indexing and layout, and the results against fp32 within a tolerance, not the
 * device's bits. */
#ifndef SOWER_CUDA_EMU_MMA_H
#define SOWER_CUDA_EMU_MMA_H

#include <string.h>

#include "cuda_bf16.h"
#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
namespace precision {
struct tf32 {};
} // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K> struct fragment_shape;
template <int M, int N, int K> struct fragment_shape<matrix_a, M, N, K> {
    enum { rows = M, cols = K };
};
template <int M, int N, int K> struct fragment_shape<matrix_b, M, N, K> {
    enum { rows = K, cols = N };
};
template <int M, int N, int K> struct fragment_shape<accumulator, M, N, K> {
    enum { rows = M, cols = N };
};

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    enum { rows = fragment_shape<Use, M, N, K>::rows, cols = fragment_shape<Use, M, N, K>::cols,
           num_elements = rows * cols };
    float x[num_elements]; /* (rows, cols) */
};

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, float v)
{
    for (int i = 0; i < f.num_elements; i++)
        f.x[i] = v;
}

inline float element_value(float v) { return v; }
inline float element_value(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float element_value(__half v) { return __half2float(v); }

template <class Use, int M, int N, int K, class T, class P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, row_major> &f, const P *p, unsigned ldm)
{
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++)
            f.x[r * f.cols + c] = element_value(p[(size_t)r * ldm + c]);
}

template <class Use, int M, int N, int K, class T, class P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, col_major> &f, const P *p, unsigned ldm)
{
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++)
            f.x[r * f.cols + c] = element_value(p[r + (size_t)c * ldm]);
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t layout)
{
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++)
            p[layout == mem_row_major ? (size_t)r * ldm + c : r + (size_t)c * ldm] = f.x[r * f.cols + c];
}

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c)
{
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double sum = 0.0;
            for (int k = 0; k < K; k++)
                sum += (double)a.x[i * K + k] * (double)b.x[k * N + j];
            out[i * N + j] = (float)(sum + (double)c.x[i * N + j]);
        }
    memcpy(d.x, out, sizeof out);
}

/* cvt.rna.tf32.f32: round to nearest (ties away from zero) to 10 mantissa bits. */
inline float __float_to_tf32(float v)
{
    unsigned u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) /* finite: round; inf and NaN pass */
        u = (u + 0x1000u) & 0xffffe000u;
    memcpy(&v, &u, sizeof v);
    return v;
}

} // namespace wmma
} // namespace nvcuda

#endif
