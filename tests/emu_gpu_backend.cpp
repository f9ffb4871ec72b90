/* emu_gpu_backend.cpp: gpu/'s kernels and backend, compiled for the host against tests/cuda_emu
 * (an emulated CUDA runtime), so test_gpu_ops can check them on machines without a GPU. The
 * backend's entry points are renamed *_emulated (the build sets
 * -Dcompute_backend_cuda=...) and everything else it defines lives in namespace sower_emu, so
 * nothing collides with the real backend or libcudart in the same binary. */
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

namespace sower_emu {
#include "cuda_kernels.cu"
#include "gemm16.cu"
#include "attention16.cu"
#include "cuda_backend.cu"
#include "torch_cuda_randn.cu"
} // namespace sower_emu
