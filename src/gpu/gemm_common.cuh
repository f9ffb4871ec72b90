/* gemm_common.cuh: what the matrix-product kernels share (cuda_kernels.cu's tile-loading kernel and
 * gemm16.cu's pipelined 16-bit one): how a value is rounded for the tensor cores and how a finished
 * tile of C goes out. Included once by each .cu file (and once in all by the emulated builds, which
 * include both). */
#ifndef SOWER_GEMM_COMMON_CUH
#define SOWER_GEMM_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "cuda_kernels.h"

enum { GEMM_THREADS = 256 }; /* every product kernel's block: 8 warps */

/* A value as a tile (or gemm16's 16-bit operand copy) holds it: float as is, bf16 and fp16 rounded
 * to nearest even. Both product kernels round each value exactly so, so they feed the tensor cores
 * the same values. */
template <class E> __device__ inline E to_tile(float v);
template <> __device__ inline float to_tile<float>(float v) { return v; }
template <> __device__ inline __nv_bfloat16 to_tile<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ inline __half to_tile<__half>(float v) { return __float2half_rn(v); }

__device__ static inline void store_c(const GpuGemm &g, float *c, int gm, int gn, float v)
{
    if (gm < g.m && gn < g.n)
        c[gm * g.c_si + gn * g.c_sj] = g.bias ? v + g.bias[gm] : v;
}

/* Writes a warp's FM x FN accumulator fragments (16 x 16 each, the warp's tile at (row0, col0) of C)
 * through stage, the warp's own 16 x 16 floats of shared memory: C's strides, edges and bias are
 * not a fragment's. */
template <int FM, int FN, class Fragment>
__device__ static inline void store_warp_tile(const GpuGemm &g, float *c, int row0, int col0,
                                              Fragment (&acc)[FM][FN], float *stage)
{
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int i = 0; i < FM; i++)
#pragma unroll
        for (int j = 0; j < FN; j++) {
            nvcuda::wmma::store_matrix_sync(stage, acc[i][j], 16, nvcuda::wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 16 * 16; e += 32)
                store_c(g, c, row0 + i * 16 + e / 16, col0 + j * 16 + e % 16, stage[e]);
            __syncwarp();
        }
}

#endif /* SOWER_GEMM_COMMON_CUH */
