/* cuda_runtime.h (emulated): just enough of the CUDA runtime to run gpu/'s kernels and backend
 * on the host, for tests/test_gpu_ops.c on machines without a GPU (test gpu_ops_emulated).
 *
 * Kernels run block by block; a block's threads are fibers (ucontext) on one host thread, and
 * __syncthreads() yields to a scheduler that runs every other thread of the block up to the same
 * barrier, so barriers mean what they mean on a GPU. A grid's blocks are shared out among a few host
 * threads (SOWER_EMU_THREADS, default the CPUs this process may use, at most 8), as an SM runs blocks
 * in no set order: __shared__ is `static thread_local` (one block at a time per host thread), and so is
 * the fiber state. Device memory is host memory; streams are nothing. This checks indexing, barriers
 * and arithmetic; it cannot show warp effects or speed, and shows a race between blocks only when the
 * host threads happen to interleave badly. */
#ifndef SOWER_CUDA_EMU_RUNTIME_H
#define SOWER_CUDA_EMU_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>

#define __global__
#define __device__
#define __host__
#define __shared__ static thread_local
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

/* C++ names (not the C symbols of libcudart, which the same test binary may also link). */
namespace sower_emu_rt {

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3_emu {
    unsigned x, y, z;
};
/* Of the block this host thread runs. Defined here (inline, constant-initialised) so that every use
 * is a plain thread-pointer access, not a call of the wrapper an `extern thread_local` needs. */
inline thread_local uint3_emu threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

struct float4 {
    float x, y, z, w;
};

void __syncthreads();
/* Threads of a block run one at a time between barriers, so a warp is always in step. */
inline void __syncwarp() {}

typedef void (*EmuBody)(void *closure);
/* Runs body(closure) as every thread of every block of the grid. */
void emu_run_grid(dim3 grid, dim3 block, EmuBody body, void *closure);

#define GPU_LAUNCH(kernel, grid, block, stream, ...)                                                        \
    do {                                                                                                    \
        (void)(stream);                                                                                     \
        auto emu_call_ = [&]() { kernel(__VA_ARGS__); };                                                    \
        emu_run_grid(dim3(grid), dim3(block), [](void *c) { (*(decltype(emu_call_) *)c)(); }, &emu_call_); \
    } while (0)

typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100
} cudaError_t;
typedef enum { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice } cudaMemcpyKind;
typedef void *cudaStream_t;
typedef void *cudaMemPool_t;
enum { cudaStreamNonBlocking = 1, cudaMemPoolAttrReleaseThreshold = 4 };
typedef int cudaMemPoolAttr;

struct cudaDeviceProp {
    char name[256];
    int multiProcessorCount, major, minor;
    int maxThreadsPerMultiProcessor;
};

const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaDeviceGetPCIBusId(char *bus, int len, int device);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void *p, cudaStream_t s);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, int attr, void *value);
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t keep);

} // namespace sower_emu_rt
using namespace sower_emu_rt;

#endif
