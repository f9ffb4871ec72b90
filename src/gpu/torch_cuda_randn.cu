/* torch_cuda_randn.cu: torch.randn of a torch.Generator("cuda"), float32, made as torch makes it:
 * the launch of aten/src/ATen/native/cuda/DistributionTemplates.h's
 * distribution_elementwise_grid_stride_kernel with curand_normal4 (rng/philox.h has the layout), the
 * same cuRAND source torch compiles. Compiled apart from the other kernels (src/gpu/CMakeLists.txt):
 * like torch, with nvcc's default FMA contraction (curand's u = x * 2^-32 + 2^-33 is one fma there),
 * where sower's own kernels build with --fmad=false. */
#include <curand_kernel.h>

#include "cuda_check.h"
#include "cuda_kernels.h"
#include "philox.h"

/* One thread of torch's grid-stride loop: curand_init(seed, subsequence = thread, offset), then one
 * curand_normal4 per pass, lane ii to element idx + pass * 4 * stride + ii * stride. mean and std are
 * arguments, not constants, as in torch's lambda (rand * std + mean: one fma, -0 becoming +0). */
__global__ static void torch_cuda_randn_kernel(unsigned long long seed, unsigned long long offset, long long numel,
                                               float mean, float std, float *out)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long stride = (long long)blockDim.x * gridDim.x;
    curandStatePhilox4_32_10_t state;
    curand_init(seed, (unsigned long long)idx, offset, &state);
    const long long rounded = ((numel - 1) / (stride * TORCH_CUDA_NORMALS_PER_DRAW) + 1) * stride *
                              TORCH_CUDA_NORMALS_PER_DRAW;
    for (long long first = idx; first < rounded; first += stride * TORCH_CUDA_NORMALS_PER_DRAW) {
        const float4 r = curand_normal4(&state);
        const float lanes[TORCH_CUDA_NORMALS_PER_DRAW] = {r.x, r.y, r.z, r.w};
        for (int ii = 0; ii < TORCH_CUDA_NORMALS_PER_DRAW; ii++) {
            const long long li = first + stride * ii;
            if (li < numel)
                out[li] = lanes[ii] * std + mean;
        }
    }
}

int gpu_torch_cuda_randn(uint64_t seed, uint64_t offset, size_t n, float *out, TorchCudaLaunch *launch, cudaStream_t s)
{
    if (n == 0 || n >= (1ull << 31)) /* torch splits larger tensors into 32-bit-indexed launches */
        return SOWER_FAIL(SOWER_EINTERNAL, "torch-cuda randn of %zu values (1 to 2^31 - 1 per call)", n);
    int device = 0;
    cudaDeviceProp prop;
    GPU_CUDA_TRY(cudaGetDevice(&device));
    GPU_CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    const TorchCudaDevice d = {prop.multiProcessorCount, prop.maxThreadsPerMultiProcessor};
    *launch = torch_cuda_launch(n, d);
    GPU_LAUNCH(torch_cuda_randn_kernel, (unsigned)launch->blocks, TORCH_CUDA_BLOCK_THREADS, s,
               (unsigned long long)seed, (unsigned long long)offset, (long long)n, 0.0f, 1.0f, out);
    GPU_LAUNCH_TRY();
    return SOWER_OK;
}
