/* emu_gpu_full.cpp: the whole CUDA backend (kernels, backend, NCCL weight sharing, self-test)
 * compiled for the host against tests/cuda_emu, for sower_emulated: the real `sower` program with
 * an emulated GPU per process, so a multi-rank job exercises the NCCL broadcast of the weights
 * (nccl.h emulates it over MPI) on machines without GPUs (tests/test_run_emulated_gpu.py). Nothing
 * else links this: sower itself has either the real backend or src/gpu/gpu_absent.c. */
#include <cuda_runtime.h> /* tests/cuda_emu's, first on the include path */
#include <mma.h>          /* tests/cuda_emu's too */
#include <curand_kernel.h> /* tests/cuda_emu's too */
#include <cuda_pipeline_primitives.h> /* tests/cuda_emu's too */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda_check.h"
#include "gpu.h"

#include "cuda_kernels.cu"
#include "gemm16.cu"
#include "attention16.cu"
#include "cuda_backend.cu"
#include "torch_cuda_randn.cu"
#include "gpu_selftest.cu"
#include "nccl_share.cu"
