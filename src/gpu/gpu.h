/* gpu.h: the CUDA backend's face to host code. Plain C: no CUDA or MPI headers, so src/ can
 * include it and the CPU build never sees nvcc. Every function returns a SowerStatus; CUDA,
 * cuBLAS and NCCL errors become SOWER_ECUDA with the library's own message kept. */
#ifndef SOWER_GPU_H
#define SOWER_GPU_H

#include <stddef.h>

#include "backend.h"
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 in a build with the CUDA backend, 0 without (gpu_absent.c). */
int gpu_backend_built(void);

/* Number of visible CUDA devices; 0 (and SOWER_OK) when there is no device or no driver, and
 * then gpu_no_device_reason() says which (CUDA's own message). */
int gpu_device_count(int *count) SOWER_MUST_CHECK;
const char *gpu_no_device_reason(void);

/* Exercises the backend's stack on device `device`: a kernel launch, a cuBLAS SGEMM checked
 * against a host reference, and the NCCL library version. Writes a one-line report. */
int gpu_selftest(int device, char *report, size_t report_size) SOWER_MUST_CHECK;

/* A key naming device `device` of this node uniquely across the job ("HOST/PCI-BUS-ID"): two
 * ranks with equal keys share one GPU. */
int gpu_device_key(int device, char *key, size_t size) SOWER_MUST_CHECK;

/* NCCL: the unique id rank 0 creates and every rank receives (by MPI), then one communicator of
 * nranks ranks, one per GPU (NCCL refuses two ranks on one device). */
enum { GPU_NCCL_ID_BYTES = 128 };
int gpu_nccl_id(unsigned char id[GPU_NCCL_ID_BYTES]) SOWER_MUST_CHECK;
int gpu_nccl_open(void **comm, const unsigned char id[GPU_NCCL_ID_BYTES], int nranks, int rank, int device)
    SOWER_MUST_CHECK;
void gpu_nccl_close(void *comm, int abort); /* abort: ncclCommAbort (a peer failed); safe on NULL */

/* Options of the CUDA backend. */
typedef struct {
    int device;           /* CUDA device index (placement.h picks it from the local rank) */
    int weights_arrive;   /* 1: leave the device weights unset (the host copy is never read: it may
                           * be unread pages of a mapping); compute_backend_cuda_receive fills them */
    Precision precision;  /* fp32, or matrix products on tensor cores from TF32-, BF16- or FP16-rounded
                           * inputs (opt-in; each its own identity, so its bits never pass for fp32 ones) */
} CudaOptions;

/* The CUDA backend (cuda_backend.cu): copies u's weights to the device. In a build without CUDA,
 * fails with SOWER_EINPUT saying so. */
int compute_backend_cuda(ComputeBackend *be, const UNet *u, const CudaOptions *opt) SOWER_MUST_CHECK;

/* Collective over an NCCL communicator (gpu_nccl_open): copies rank 0's device weights into every
 * other rank's (opened with weights_arrive). Bits are copied, not summed. */
int compute_backend_cuda_receive(ComputeBackend *be, void *nccl_comm) SOWER_MUST_CHECK;

#ifdef __cplusplus
}
#endif

#endif /* SOWER_GPU_H */
