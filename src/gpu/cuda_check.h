/* cuda_check.h: CUDA, cuBLAS and NCCL errors as sower statuses (SOWER_ECUDA, the library's own
 * message kept), for the .cu files of the backend. */
#ifndef SOWER_CUDA_CHECK_H
#define SOWER_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "err.h"

/* call returns a library status; anything but ok fails with `code` and the library's message. */
#define GPU_LIBRARY_TRY(call, type, ok, code, message)                                              \
    do {                                                                                           \
        type e_ = (call);                                                                          \
        if (e_ != (ok))                                                                            \
            return sower_fail((code), __FILE__, __LINE__, __func__, "%s: %s", #call, message(e_));  \
    } while (0)

/* A failed allocation is out of memory (exit 3 either way, but the message class is right). */
#define GPU_CUDA_TRY(call)                                                                         \
    GPU_LIBRARY_TRY(call, cudaError_t, cudaSuccess,                                                \
                    e_ == cudaErrorMemoryAllocation ? SOWER_ENOMEM : SOWER_ECUDA, cudaGetErrorString)
#define GPU_CUBLAS_TRY(call) \
    GPU_LIBRARY_TRY(call, cublasStatus_t, CUBLAS_STATUS_SUCCESS, SOWER_ECUDA, cublasGetStatusString)
#define GPU_NCCL_TRY(call) GPU_LIBRARY_TRY(call, ncclResult_t, ncclSuccess, SOWER_ECUDA, ncclGetErrorString)

/* A kernel launch, as a macro so tests/cuda_emu can run the kernels on the host (it defines its own). */
#ifndef GPU_LAUNCH
#define GPU_LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#endif

/* After a kernel launch: a bad configuration shows up here, a fault at the next synchronisation. */
#define GPU_LAUNCH_TRY() GPU_CUDA_TRY(cudaGetLastError())

#endif /* SOWER_CUDA_CHECK_H */
