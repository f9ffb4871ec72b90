/* cuda_kernels.h: the CUDA backend's kernels, each behind a launcher that returns a sower status.
 *
 * Determinism: every output element is reduced by one accumulator (a thread's register, or in
 * tf32 one tensor-core fragment element), or by one block's fixed reduction tree, in an order set
 * by the shapes of its own sample only; no atomics; no split of a
 * reduction across blocks. So the bits of a sample never depend on the batch it is in, on where
 * in the batch it sits, or on the run. The matrix multiply is sower's own (gpu_gemm): cuBLAS
 * chooses its algorithm, and so its reduction order, from the whole problem's shape (and Hopper's
 * stream-K kernels split a reduction by tile position), which would tie a seed's bits to its batch.
 * Compiled with --fmad=false: the only fused multiply-adds are the fmaf() written here. The opt-in
 * TF32 mode keeps all of this (same tiles, same k order), with tensor cores doing the products. */
#ifndef SOWER_CUDA_KERNELS_H
#define SOWER_CUDA_KERNELS_H

#include <cuda_runtime.h>

#include "layers.h"
#include "philox.h"
#include "scheduler_step.h"
#include "upsample_index.h"

/* A strided view: element (i, j) of matrix z is at base + z1 * s1 + z2 * s2 + i * si + j * sj,
 * where z1 = z / zdiv and z2 = z % zdiv (z: the batch of products, blockIdx.z). */
typedef struct {
    const float *base;
    long long si, sj, s1, s2;
} GpuMatrix;

/* The B operand of a convolution read straight from its input activation (no im2col matrix):
 * B(r, col) with r = (ci, ky, kx) and col = (b, oy, ox) is in(ci, b, oy*stride + ky - pad_top,
 * ox*stride + kx - pad_left), zero outside the image. */
typedef struct {
    const float *in; /* (cin, batch, h, w) */
    int cin, batch, h, w, k, stride, pad_top, pad_left, ho, wo;
} GpuConvInput;

/* The matrix products' arithmetic (backend.h's Precision, in its order). */
typedef enum { GPU_ARITH_FP32, GPU_ARITH_TF32, GPU_ARITH_BF16, GPU_ARITH_FP16 } GpuArith;

typedef struct {
    int m, n, k;
    GpuMatrix a;         /* (m, k) */
    GpuMatrix b;         /* (k, n), unless conv.in is set */
    GpuConvInput conv;   /* conv.in != NULL: B is this convolution's input */
    float *c;            /* C(i, j) at c + z1*c_s1 + z2*c_s2 + i*c_si + j*c_sj */
    long long c_si, c_sj, c_s1, c_s2;
    const float *bias;   /* (m,) added to each row after the reduction, or NULL */
    int batches, zdiv;   /* products in the batch (>= 1), and z's split (>= 1) */
    int sms;             /* the device's SMs: the tile size follows (bits do not) */
    int arith;           /* GpuArith: fp32 fmaf, or tensor cores on TF32/BF16/FP16-rounded inputs (opt-in) */
    int a_constant;      /* a is a model parameter (in the backend's weight blocks): its 16-bit copy may be kept */
    struct GpuWeights16 *weights16; /* bf16/fp16: gemm16's route, keeping its copies here; NULL: the tile loader */
} GpuGemm;

/* C = A B (+ bias): each element reduced by one accumulator over k = 0, 1, ..., K-1: fmaf in one
 * thread (fp32), or tensor-core steps of 8 (tf32) or 16 (bf16, fp16) in one fragment element. */
int gpu_gemm(const GpuGemm *g, cudaStream_t s);

/* gemm16.cu: the bf16 and fp16 products from 16-bit operands in global memory. A (a model
 * parameter) is rounded once into a kept copy; B is rounded (a convolution's gathered) into a
 * workspace, a chunk of columns at a time; then a kernel streams both through shared memory with
 * asynchronous copies, several k steps in flight. Each value is rounded as the tile-loading kernel
 * rounds it and each fragment element accumulates the same 16-wide tensor-core steps in the same k
 * order, so the two routes give the same bits (test_gpu_ops compares them); which one runs is a
 * matter of speed only. */
typedef struct GpuWeights16 GpuWeights16; /* one backend's kept 16-bit copies of its parameters */
/* workspace_bytes: the most B workspace one product takes (GPU16_WORKSPACE_DEFAULT_KB by default); wider
 * products run in chunks of columns. */
enum { GPU16_WORKSPACE_DEFAULT_KB = 256 << 10 };
GpuWeights16 *gpu_weights16_new(size_t workspace_bytes);
void gpu_weights16_clear(GpuWeights16 *w); /* forgets every copy: the parameters' values changed */
void gpu_weights16_free(GpuWeights16 *w);
/* Runs g (bf16 or fp16, one product) with TILE x TILE blocks (64 or 128); *done = 0 when
 * it declines (a shape it does not take, or no memory for its copies): then the caller runs the tile
 * loader, with the same bits. */
int gpu_gemm16(const GpuGemm *g, int tile, cudaStream_t s, int *done);

/* y = group_norm(x) (then SiLU); y may be x. x, y (C, B, H, W). */
int gpu_group_norm(const GroupNormParams *p, const Act *x, Act *y, int silu, cudaStream_t s);
int gpu_silu(float *x, size_t n, cudaStream_t s);
/* rows of s (rows, cols): softmax(scale * row), max-subtracted, the sum in double. */
int gpu_softmax_rows(float *s, long long rows, int cols, float scale, cudaStream_t st);
/* out (C, B, out->h, out->w) = torch's nearest upsampling of in (upsample_index.h). */
int gpu_upsample_nearest(const Act *in, Act *out, cudaStream_t s);
/* x[c, b, :, :] += t[b, c] */
int gpu_add_channel_bias(Act *x, const float *t, cudaStream_t s);
/* out = (shortcut + out) / scale */
int gpu_residual(const float *shortcut, float *out, size_t n, float scale, cudaStream_t s);
/* (B, C, H, W) <-> (C, B, H, W); center: 2x - 1 on the way in. */
int gpu_from_nchw(const float *x, int center, Act *out, cudaStream_t s);
int gpu_to_nchw(const Act *in, float *x, cudaStream_t s);
/* Element-wise kernels: one thread per value, in blocks of EW_THREADS (ew_blocks(n) of them). */
enum { EW_THREADS = 256 };
static inline unsigned ew_blocks(size_t n) { return (unsigned)((n + EW_THREADS - 1) / EW_THREADS); }

/* UNet2DConditionModel's transformers (backend.h's layer_norm, attention_heads, geglu, guidance). */
/* y = LayerNorm over the channels of each token of x: the CPU's arithmetic, so its bits; y may be x. */
int gpu_layer_norm(const LayerNormParams *p, const Act *x, Act *y, cudaStream_t s);
/* out (C, B, Hq, Wq) = softmax(q^T k / sqrt(C / heads)) v per sample and head, flash-style (scores of
 * one tile of queries and keys at a time, in shared memory); head width at most 256. out allocated. */
int gpu_attention_heads(int heads, const Act *q, const Act *k, const Act *v, Act *out, cudaStream_t s);
/* attention16.cu: the same attention on tensor cores for the bf16 and fp16 arithmetics (arith): queries,
 * keys, values and probabilities rounded to 16 bits, fp32 sums, the row maximum found first so the
 * outputs need no rescaling; deterministic and batch-invariant as the fp32 kernel, with its own bits.
 * The rounded q, k and v take at most workspace_bytes (else samples go in chunks, with the same bits).
 * *done = 0 (nothing run) for fp32/tf32 or heads wider than 160. */
int gpu_attention16(int arith, int heads, const Act *q, const Act *k, const Act *v, Act *out, size_t workspace_bytes,
                    cudaStream_t s, int *done);
/* out (C / 2, B, H, W) = in[:C/2] * gelu_erf(in[C/2:]); out allocated. */
int gpu_geglu(const Act *in, Act *out, cudaStream_t s);
/* out = uncond + scale * (cond - uncond), element-wise. */
int gpu_guidance(const float *uncond, const float *cond, float scale, float *out, size_t n, cudaStream_t s);

/* out (n,) = torch.randn(n) of a torch.Generator("cuda") at (seed, offset), made as torch launches it on
 * this device (torch_cuda_randn.cu), the launch into *launch. */
int gpu_torch_cuda_randn(uint64_t seed, uint64_t offset, size_t n, float *out, TorchCudaLaunch *launch, cudaStream_t s);

/* x[i] = scheduler_step_value(k, m[i], x[i], z[i]) (z NULL: no noise): the host's bits. */
int gpu_scheduler_step(const StepCoefficients *k, const float *m, float *x, const float *z, size_t n, cudaStream_t s);

#endif /* SOWER_CUDA_KERNELS_H */
