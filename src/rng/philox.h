/* philox.h: torch's CUDA generator (torch.Generator(device="cuda")), the part that is integer
 * arithmetic: cuRAND's Philox4x32-10 counter-based engine and how torch's CUDA randn lays its
 * counters out over the elements. The normals themselves come from cuRAND's Box-Muller on the GPU
 * (curand_normal4: device logf, sqrtf and the __sincosf intrinsic, the special-function unit's
 * approximation, which no CPU reproduces bit for bit), so `generator: torch-cuda` renders on a CUDA
 * backend only (src/gpu/torch_cuda_randn.cu); this header is what both sides and the tests share.
 *
 * torch (aten/src/ATen/native/cuda/DistributionTemplates.h, CUDAGeneratorImpl.cpp, 1.13 to 2.11):
 *   manual_seed(s): seed = s (all 64 bits), offset = 0.
 *   randn(numel) in float32/float16/bfloat16: one launch of blocks x 256 threads, blocks =
 *   min(ceil(numel / 256), SMs * (max threads per SM / 256)); thread idx runs curand_init(seed,
 *   subsequence idx, offset) and then a grid-stride loop, each pass one curand_normal4 whose lane ii
 *   goes to element idx + pass * 4 * stride + ii * stride (stride = blocks * 256); the generator's
 *   offset then grows by 4 * passes (passes = ceil(numel / (4 * stride))), rounded up to a multiple of 4.
 * So an element's value depends on the seed, the offset (how many randn calls came before, and their
 * sizes), numel and, only once numel > 256 * SMs * blocks per SM (270,336 on an H100/H200), the GPU's
 * SM count. Where element i comes from: torch_cuda_element(). */
#ifndef SOWER_PHILOX_H
#define SOWER_PHILOX_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    TORCH_CUDA_BLOCK_THREADS = 256, /* torch's block_size_bound */
    TORCH_CUDA_NORMALS_PER_DRAW = 4, /* curand_normal4 */
};

/* The GPU properties torch's launch depends on (cudaDeviceProp). */
typedef struct {
    int sm_count;           /* multiProcessorCount */
    int max_threads_per_sm; /* maxThreadsPerMultiProcessor */
} TorchCudaDevice;

/* One randn launch: its grid and how far it moves the generator's offset. */
typedef struct {
    uint64_t blocks;         /* grid.x; threads per block TORCH_CUDA_BLOCK_THREADS */
    uint64_t passes;         /* grid-stride passes: curand_normal4 calls per thread */
    uint64_t counter_offset; /* the offset's growth (a multiple of 4) */
} TorchCudaLaunch;

/* torch's calc_execution_policy for numel >= 1 elements (numel < 2^31: torch splits larger tensors). */
static inline TorchCudaLaunch torch_cuda_launch(uint64_t numel, TorchCudaDevice d)
{
    const uint64_t threads = TORCH_CUDA_BLOCK_THREADS;
    uint64_t blocks = (numel + threads - 1) / threads;
    const uint64_t cap = (uint64_t)d.sm_count * (uint64_t)(d.max_threads_per_sm / (int)threads);
    blocks = blocks < cap ? blocks : cap;
    TorchCudaLaunch l;
    l.blocks = blocks;
    l.passes = (numel - 1) / (threads * blocks * TORCH_CUDA_NORMALS_PER_DRAW) + 1;
    l.counter_offset = l.passes * TORCH_CUDA_NORMALS_PER_DRAW; /* already a multiple of 4 */
    return l;
}

/* Philox4x32-10 (Salmon et al., SC'11; cuRAND's curand_Philox4x32_10): out = the block of four 32-bit
 * words at counter ctr (ctr[0] least significant) under key (key[0] = the seed's low word). */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Where element i of a randn launch of `blocks` blocks (torch_cuda_launch) comes from: the four words of thread `thread`'s draw number
 * `draw` (curand_init(seed, thread, offset), then `draw` curand4 calls: counter = (offset / 4 + draw)
 * in words 0-1, thread in words 2-3), and which lane (0..3) of that draw's curand_normal4 it takes:
 * lanes 0 and 1 are Box-Muller's sin and cos of words 0-1, lanes 2 and 3 of words 2-3. offset: a
 * multiple of 4, as torch keeps it. */
typedef struct {
    uint64_t thread, draw;
    int lane;
    uint32_t words[4];
} TorchCudaElement;
void torch_cuda_element(uint64_t seed, uint64_t offset, uint64_t blocks, uint64_t i, TorchCudaElement *e);

#ifdef __cplusplus
}
#endif

#endif /* SOWER_PHILOX_H */
