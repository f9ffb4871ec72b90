/* cuda_check.h: CUDA, cuBLAS and NCCL errors as sower statuses (SOWER_ECUDA, the library's own
 * message kept), for the .cu files of the backend. */
#ifndef SOWER_CUDA_CHECK_H
#define SOWER_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "err.h"

#define GPU_CUDA_TRY(call)                                                                         \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return sower_fail(e_ == cudaErrorMemoryAllocation ? SOWER_ENOMEM : SOWER_ECUDA,        \
                              __FILE__, __LINE__, __func__, "%s: %s", #call, cudaGetErrorString(e_)); \
    } while (0)

#define GPU_CUBLAS_TRY(call)                                                                       \
    do {                                                                                           \
        cublasStatus_t e_ = (call);                                                                \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return sower_fail(SOWER_ECUDA, __FILE__, __LINE__, __func__, "%s: %s", #call,          \
                              cublasGetStatusString(e_));                                          \
    } while (0)

#define GPU_NCCL_TRY(call)                                                                         \
    do {                                                                                           \
        ncclResult_t e_ = (call);                                                                  \
        if (e_ != ncclSuccess)                                                                     \
            return sower_fail(SOWER_ECUDA, __FILE__, __LINE__, __func__, "%s: %s", #call,          \
                              ncclGetErrorString(e_));                                             \
    } while (0)

/* After a kernel launch: a bad configuration shows up here, a fault at the next synchronisation. */
#define GPU_LAUNCH_TRY() GPU_CUDA_TRY(cudaGetLastError())

#endif /* SOWER_CUDA_CHECK_H */
