/* cuda_emu.cpp: the emulated CUDA runtime (see cuda_runtime.h). */
#include "cuda_runtime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <setjmp.h>
#include <ucontext.h>
#include <unistd.h>

#define OMPI_SKIP_MPICXX 1 /* the C API only: no MPI C++ bindings to link */
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#endif

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "cublas_v2.h"
#include "cuda_pipeline_primitives.h"
#include "nccl.h"

namespace sower_emu_rt {

namespace {
enum { FIBER_STACK = 256 << 10 };
/* A fiber starts from its ucontext (makecontext: one system call), then every switch is
 * _setjmp/_longjmp, which leave the signal mask alone and so cost no system call (swapcontext
 * makes two per switch, and a tiled matrix multiply switches at every k step). Everything below is
 * per host thread: each runs whole blocks of its own. */
struct Jump {
    jmp_buf at;
};
thread_local Jump scheduler;
thread_local std::vector<Jump> parked;          /* (threads,) where each fiber waits at its barrier */
thread_local std::vector<char> started;
thread_local std::vector<ucontext_t> fibers;
thread_local std::vector<char> done;
struct Stacks { /* the fibers' stacks, freed when the host thread ends */
    std::vector<char *> all;
    ~Stacks()
    {
        for (char *stack : all)
            free(stack);
    }
};
thread_local Stacks stacks;
thread_local EmuBody current_body;
thread_local void *current_closure;
thread_local unsigned current_thread;
thread_local int barrier_seen;                  /* the running block called __syncthreads */
thread_local std::map<EmuBody, bool> uses_barrier; /* per launch site, learnt from its first block */

/* cp.async (cuda_pipeline_primitives.h): per thread of the running block, its committed groups of
 * queued copies, oldest first, and the group being filled (copies not yet committed). */
struct QueuedCopy {
    void *dst;
    const void *src;
    size_t bytes, zfill;
};
thread_local std::vector<std::vector<std::vector<QueuedCopy> > > copy_groups; /* (threads,) groups */
thread_local std::vector<std::vector<QueuedCopy> > copy_open;                  /* (threads,) */

unsigned linear_thread(void) { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

void land(const QueuedCopy &q)
{
    memcpy(q.dst, q.src, q.bytes - q.zfill);
    memset((char *)q.dst + (q.bytes - q.zfill), 0, q.zfill);
}

/* After each block: nothing may still be queued. */
void check_copies_landed(void)
{
    for (size_t t = 0; t < copy_groups.size(); t++)
        if (!copy_groups[t].empty() || !copy_open[t].empty()) {
            fprintf(stderr, "cuda_emu: thread %zu ended with cp.async copies it never waited for\n", t);
            abort();
        }
}

/* AddressSanitizer is told of every switch between the host thread's stack and a fiber's (else it takes
 * a fiber's stack for a corrupt one and warns that false reports may follow). start before the jump,
 * naming the stack it lands on; finish after landing, with what the matching start saved. */
#ifdef __SANITIZE_ADDRESS__
thread_local const void *host_stack_bottom; /* the host thread's stack, learnt as the first fiber starts */
thread_local size_t host_stack_size;
thread_local void *host_fake_stack;          /* ASan's fake stack of the scheduler while a fiber runs */
thread_local std::vector<void *> fiber_fake_stacks; /* (threads,) each parked fiber's */
void to_fiber(unsigned t) { __sanitizer_start_switch_fiber(&host_fake_stack, stacks.all[t], FIBER_STACK); }
void in_fiber(void *saved) { __sanitizer_finish_switch_fiber(saved, &host_stack_bottom, &host_stack_size); }
void to_host(void **save) { __sanitizer_start_switch_fiber(save, host_stack_bottom, host_stack_size); }
void in_host(void) { __sanitizer_finish_switch_fiber(host_fake_stack, nullptr, nullptr); }
void **fake_stack_of(unsigned t) { return &fiber_fake_stacks[t]; }
void forget_fake_stacks(unsigned n) { fiber_fake_stacks.assign(n, nullptr); }
#else
inline void to_fiber(unsigned) {}
inline void in_fiber(void *) {}
inline void to_host(void **) {}
inline void in_host(void) {}
inline void **fake_stack_of(unsigned) { return nullptr; }
inline void forget_fake_stacks(unsigned) {}
#endif

void fiber_main(void)
{
    in_fiber(nullptr);
    current_body(current_closure);
    done[current_thread] = 1;
    to_host(nullptr); /* this fiber's fake stack ends with it */
    _longjmp(scheduler.at, 1);
}
} // namespace

void __pipeline_memcpy_async(void *dst_shared, const void *src_global, size_t size_and_align, size_t zfill)
{
    if ((size_and_align != 4 && size_and_align != 8 && size_and_align != 16) || zfill > size_and_align ||
        (uintptr_t)dst_shared % size_and_align || (uintptr_t)src_global % size_and_align) {
        fprintf(stderr, "cuda_emu: __pipeline_memcpy_async(%p, %p, %zu, %zu): bad size or alignment\n", dst_shared,
                src_global, size_and_align, zfill);
        abort();
    }
    copy_open[linear_thread()].push_back(QueuedCopy{dst_shared, src_global, size_and_align, zfill});
}

void __pipeline_commit()
{
    const unsigned t = linear_thread();
    copy_groups[t].push_back(copy_open[t]);
    copy_open[t].clear();
}

void __pipeline_wait_prior(size_t prior)
{
    std::vector<std::vector<QueuedCopy> > &groups = copy_groups[linear_thread()];
    while (groups.size() > prior) {
        for (const QueuedCopy &q : groups.front())
            land(q);
        groups.erase(groups.begin());
    }
}

void __syncthreads()
{
    barrier_seen = 1;
    void **fake = fake_stack_of(current_thread);
    if (!_setjmp(parked[current_thread].at)) {
        to_host(fake);
        _longjmp(scheduler.at, 1);
    }
    in_fiber(fake ? *fake : nullptr);
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

/* One block on this host thread: its threads as fibers, each pass running every unfinished one up to its
 * next barrier (or its end); a launch site known to have no barrier runs its threads one after another. */
static void run_block(dim3 block_index, dim3 block, EmuBody body, void *closure)
{
    const unsigned n = block.x * block.y * block.z;
    blockIdx = {block_index.x, block_index.y, block_index.z};
    current_body = body, current_closure = closure;
    copy_groups.resize(n);
    copy_open.resize(n);
    /* Barriers are block-uniform in valid CUDA: a launch site whose first block ran without one never
     * needs fibers. */
    auto known = uses_barrier.find(body);
    if (known != uses_barrier.end() && !known->second) {
        run_block_plain(block, body, closure);
        check_copies_landed();
        return;
    }
    fibers.resize(n);
    parked.resize(n);
    forget_fake_stacks(n);
    done.assign(n, 0);
    started.assign(n, 0);
    while (stacks.all.size() < n)
        stacks.all.push_back((char *)malloc(FIBER_STACK));
    barrier_seen = 0;
    for (unsigned t = 0; t < n; t++) {
        getcontext(&fibers[t]);
        fibers[t].uc_stack.ss_sp = stacks.all[t];
        fibers[t].uc_stack.ss_size = FIBER_STACK;
        fibers[t].uc_link = NULL; /* fiber_main never returns */
        makecontext(&fibers[t], fiber_main, 0);
    }
    for (unsigned left = n; left > 0;) {
        left = 0;
        for (unsigned t = 0; t < n; t++) {
            if (done[t])
                continue;
            current_thread = t;
            threadIdx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
            if (!_setjmp(scheduler.at)) {
                to_fiber(t);
                if (!started[t]) {
                    started[t] = 1;
                    setcontext(&fibers[t]);
                }
                _longjmp(parked[t].at, 1);
            }
            in_host();
            left += !done[t];
        }
    }
    uses_barrier[body] = barrier_seen;
    check_copies_landed();
}

namespace {
/* One grid being run: host threads take its blocks in turn from `next` (linear block index). */
struct Launch {
    dim3 grid, block;
    EmuBody body;
    void *closure;
    unsigned blocks;
    std::atomic<unsigned> next;
};

void run_blocks(Launch *l)
{
    gridDim = l->grid, blockDim = l->block;
    for (unsigned i; (i = l->next.fetch_add(1)) < l->blocks;)
        run_block(dim3(i % l->grid.x, i / l->grid.x % l->grid.y, i / (l->grid.x * l->grid.y)), l->block, l->body,
                  l->closure);
}

/* Host threads beside the caller's, started at the first grid of more than one block and kept (never
 * joined: they sleep between launches and end with the process). */
struct Pool {
    std::mutex lock;
    std::condition_variable wake, finished;
    Launch *launch = nullptr;
    unsigned generation = 0, running = 0;
    unsigned helpers = 0;
};
Pool *pool;

void helper_main(unsigned seen)
{
    for (;;) {
        Launch *l;
        {
            std::unique_lock<std::mutex> hold(pool->lock);
            pool->wake.wait(hold, [&] { return pool->generation != seen; });
            seen = pool->generation;
            l = pool->launch;
        }
        run_blocks(l);
        std::lock_guard<std::mutex> hold(pool->lock);
        if (--pool->running == 0) pool->finished.notify_one();
    }
}

unsigned host_threads(void)
{
    const char *env = getenv("SOWER_EMU_THREADS");
    if (env && atoi(env) >= 1) return (unsigned)atoi(env);
    cpu_set_t mask;
    unsigned cpus = sched_getaffinity(0, sizeof mask, &mask) == 0 ? (unsigned)CPU_COUNT(&mask) : 1;
    return cpus < 1 ? 1 : cpus > 8 ? 8 : cpus;
}
} // namespace

void emu_run_grid(dim3 grid, dim3 block, EmuBody body, void *closure)
{
    Launch l;
    l.grid = grid, l.block = block, l.body = body, l.closure = closure;
    l.blocks = grid.x * grid.y * grid.z;
    l.next = 0;
    if (!pool) {
        pool = new Pool;
        pool->helpers = host_threads() - 1;
        for (unsigned h = 0; h < pool->helpers; h++)
            std::thread(helper_main, 0u).detach();
    }
    if (l.blocks < 2 || !pool->helpers) {
        run_blocks(&l);
        return;
    }
    {
        std::lock_guard<std::mutex> hold(pool->lock);
        pool->launch = &l;
        pool->running = pool->helpers;
        pool->generation++;
    }
    pool->wake.notify_all();
    run_blocks(&l);
    std::unique_lock<std::mutex> hold(pool->lock);
    pool->finished.wait(hold, [] { return pool->running == 0; });
}

const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *count) { return *count = 1, cudaSuccess; }
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int *device) { return *device = 0, cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    (void)device;
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "host emulation (tests/cuda_emu)");
    /* SOWER_EMU_SMS: the SM count the backend sees (its matrix-multiply tile follows it); default 1 */
    const char *sms = getenv("SOWER_EMU_SMS");
    prop->multiProcessorCount = sms ? atoi(sms) : 1;
    prop->maxThreadsPerMultiProcessor = 2048; /* sm_80 and later */
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) { return *v = 0, cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { return *v = 0, cudaSuccess; }
/* SOWER_EMU_GPUS=per-process: every process has a GPU of its own (distinct bus ids, so a job's
 * ranks broadcast the weights over "NCCL"); otherwise they all share one. */
cudaError_t cudaDeviceGetPCIBusId(char *bus, int len, int device)
{
    const char *gpus = getenv("SOWER_EMU_GPUS");
    if (gpus && strcmp(gpus, "per-process") == 0)
        snprintf(bus, (size_t)len, "emu:%d:pid%ld", device, (long)getpid());
    else
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
const char *cublasGetStatusString(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS ? "success" : "emulated error"; }
struct EmuCublas {
    int unused;
};
cublasStatus_t cublasCreate(cublasHandle_t *handle) { return *handle = new EmuCublas(), CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t handle) { return delete handle, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasGetVersion(cublasHandle_t, int *version) { return *version = 0, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *a, int lda, const float *b, int ldb, const float *beta,
                           float *c, int ldc)
{
    if (ta != CUBLAS_OP_N || tb != CUBLAS_OP_N)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float sum = 0.0f;
            for (int p = 0; p < k; p++)
                sum += a[i + (size_t)p * lda] * b[p + (size_t)j * ldb];
            float *out = &c[i + (size_t)j * ldc];
            *out = *alpha * sum + (*beta == 0.0f ? 0.0f : *beta * *out);
        }
    return CUBLAS_STATUS_SUCCESS;
}

/* NCCL over MPI_COMM_WORLD (the job's ranks are the communicator's: sower opens it that way). */
struct EmuNcclComm {
    int nranks, rank;
};
const char *ncclGetErrorString(ncclResult_t r) { return r == ncclSuccess ? "no error" : "emulated NCCL error"; }
ncclResult_t ncclGetVersion(int *version) { return *version = 0, ncclSuccess; }
ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "emulated nccl id of pid %ld", (long)getpid());
    return ncclSuccess;
}
/* SOWER_EMU_NCCL_FAIL_RANK=R: joining the communicator fails on rank R (a failure test). */
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId, int rank)
{
    int world = 0, me = -1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    const char *fail_rank = getenv("SOWER_EMU_NCCL_FAIL_RANK");
    if (nranks != world || rank != me || (fail_rank && atoi(fail_rank) == rank))
        return ncclInvalidUsage;
    *comm = new EmuNcclComm{nranks, rank};
    return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t comm) { return delete comm, ncclSuccess; }
ncclResult_t ncclCommAbort(ncclComm_t comm) { return delete comm, ncclSuccess; }
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           void *)
{
    if (type != ncclFloat || !comm || count > (size_t)0x7fffffff)
        return ncclInvalidArgument;
    if (comm->rank == root && send != recv)
        memcpy(recv, send, count * sizeof(float));
    return MPI_Bcast(recv, (int)count, MPI_FLOAT, root, MPI_COMM_WORLD) == MPI_SUCCESS ? ncclSuccess
                                                                                        : ncclInvalidUsage;
}

} // namespace sower_emu_rt
