/* gpu.h: the CUDA backend's face to host code. Plain C: no CUDA or MPI headers, so src/ can
 * include it and the CPU build never sees nvcc. Every function returns a SowerStatus; CUDA,
 * cuBLAS and NCCL errors become SOWER_ECUDA with the library's own message kept. */
#ifndef SOWER_GPU_H
#define SOWER_GPU_H

#include <stddef.h>

#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible CUDA devices; 0 (and SOWER_OK) when there is no device or no driver. */
int gpu_device_count(int *count) SOWER_MUST_CHECK;

/* Exercises the backend's stack on device `device`: a kernel launch, a cuBLAS SGEMM checked
 * against a host reference, and the NCCL library version. Writes a one-line report. */
int gpu_selftest(int device, char *report, size_t report_size) SOWER_MUST_CHECK;

#ifdef __cplusplus
}
#endif

#endif /* SOWER_GPU_H */
