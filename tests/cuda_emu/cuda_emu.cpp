/* cuda_emu.cpp: the emulated CUDA runtime (see cuda_runtime.h). */
#include "cuda_runtime.h"

#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <ucontext.h>

#include <map>
#include <vector>

#include "cublas_v2.h"
#include "nccl.h"

namespace sower_emu_rt {

uint3_emu threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {
enum { FIBER_STACK = 256 << 10 };
/* A fiber starts from its ucontext (makecontext: one system call), then every switch is
 * _setjmp/_longjmp, which leave the signal mask alone and so cost no system call (swapcontext
 * makes two per switch, and a tiled matrix multiply switches at every k step). */
struct Jump {
    jmp_buf at;
};
Jump scheduler;
std::vector<Jump> parked;          /* (threads,) where each fiber waits at its barrier */
std::vector<char> started;
std::vector<ucontext_t> fibers;
std::vector<char> done;
std::vector<char *> stacks;
EmuBody current_body;
void *current_closure;
unsigned current_thread;
int barrier_seen;                  /* the running block called __syncthreads */
std::map<EmuBody, bool> uses_barrier; /* per launch site, learnt from its first block */

void free_stacks(void)
{
    for (char *stack : stacks)
        free(stack);
    stacks.clear();
}

void fiber_main(void)
{
    current_body(current_closure);
    done[current_thread] = 1;
    _longjmp(scheduler.at, 1);
}
} // namespace

void __syncthreads()
{
    barrier_seen = 1;
    if (!_setjmp(parked[current_thread].at))
        _longjmp(scheduler.at, 1);
}

/* A block of a kernel without barriers: its threads one after another, no fibers (fast). */
static void run_block_plain(dim3 block, EmuBody body, void *closure)
{
    const unsigned n = block.x * block.y * block.z;
    for (unsigned t = 0; t < n; t++) {
        threadIdx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
        body(closure);
    }
}

void emu_run_grid(dim3 grid, dim3 block, EmuBody body, void *closure)
{
    const unsigned n = block.x * block.y * block.z;
    gridDim = grid, blockDim = block;
    current_body = body, current_closure = closure;
    fibers.resize(n);
    parked.resize(n);
    done.assign(n, 0);
    started.assign(n, 0);
    if (stacks.empty())
        atexit(free_stacks);
    while (stacks.size() < n)
        stacks.push_back((char *)malloc(FIBER_STACK));
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = {bx, by, bz};
                /* Barriers are block-uniform in valid CUDA: a launch site whose first block ran
                 * without one never needs fibers. */
                auto known = uses_barrier.find(body);
                if (known != uses_barrier.end() && !known->second) {
                    run_block_plain(block, body, closure);
                    continue;
                }
                barrier_seen = 0;
                for (unsigned t = 0; t < n; t++) {
                    getcontext(&fibers[t]);
                    fibers[t].uc_stack.ss_sp = stacks[t];
                    fibers[t].uc_stack.ss_size = FIBER_STACK;
                    fibers[t].uc_link = NULL; /* fiber_main never returns */
                    makecontext(&fibers[t], fiber_main, 0);
                    done[t] = 0;
                    started[t] = 0;
                }
                /* Each pass runs every unfinished thread up to its next barrier (or its end). */
                for (unsigned left = n; left > 0;) {
                    left = 0;
                    for (unsigned t = 0; t < n; t++) {
                        if (done[t])
                            continue;
                        current_thread = t;
                        threadIdx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
                        if (!_setjmp(scheduler.at)) {
                            if (!started[t]) {
                                started[t] = 1;
                                setcontext(&fibers[t]);
                            }
                            _longjmp(parked[t].at, 1);
                        }
                        left += !done[t];
                    }
                }
                uses_barrier[body] = barrier_seen;
            }
}

const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *count) { return *count = 1, cudaSuccess; }
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    (void)device;
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "host emulation (tests/cuda_emu)");
    /* SOWER_EMU_SMS: the SM count the backend sees (its matrix-multiply tile follows it); default 1 */
    const char *sms = getenv("SOWER_EMU_SMS");
    prop->multiProcessorCount = sms ? atoi(sms) : 1;
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) { return *v = 0, cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { return *v = 0, cudaSuccess; }
cudaError_t cudaDeviceGetPCIBusId(char *bus, int len, int device)
{
    snprintf(bus, (size_t)len, "emu:%d", device);
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t bytes)
{
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) { return free(p), cudaSuccess; }
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
cudaError_t cudaFreeAsync(void *p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind)
{
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t)
{
    return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { return *s = (void *)1, cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int) { return *pool = (void *)1, cudaSuccess; }
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, int, void *) { return cudaSuccess; }
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return cudaSuccess; }

cublasStatus_t cublasGetProperty(libraryPropertyType, int *value) { return *value = 0, CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t) { return "emulated"; }

const char *ncclGetErrorString(ncclResult_t) { return "emulated"; }
ncclResult_t ncclBroadcast(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t, void *) { return ncclSuccess; }

} // namespace sower_emu_rt
