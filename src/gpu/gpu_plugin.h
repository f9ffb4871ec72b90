/* gpu_plugin.h: how sower loads its CUDA backend. src/gpu/ builds libsower_cuda.so, the only part of
 * sower linked against the CUDA runtime, cuBLAS and NCCL; src/gpu/gpu_plugin.c opens it with dlopen the
 * first time a gpu.h function is called. So a CPU rank never maps those libraries (about 200 MB of
 * resident memory and 0.1 s per process, measured with `sower --version`), and the same binary
 * starts on nodes without CUDA, where asking for backend cuda says why it cannot load.
 *
 * The plug-in and the program must come from one build: the ABI number and the sizes of the
 * structures they share are checked when it opens. */
#ifndef SOWER_GPU_PLUGIN_H
#define SOWER_GPU_PLUGIN_H

#include <stddef.h>

#include "backend.h"
#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { GPU_PLUGIN_ABI = 1 };
#define GPU_PLUGIN_FILE "libsower_cuda.so"
#define GPU_PLUGIN_ENTRY "sower_cuda_plugin_open"

/* What the program lends the plug-in: its error record (err.h), so that a CUDA error raised in the
 * plug-in is the one main() reports; and what the plug-in checks the build against. */
typedef struct {
    int abi;                                   /* GPU_PLUGIN_ABI */
    size_t backend_size, unet_size, options_size; /* sizeof ComputeBackend, UNet, CudaOptions */
    int (*fail)(int status, const char *file, int line, const char *func, const char *fmt, ...);
    int (*trace)(int status, const char *file, int line, const char *func);
} GpuPluginHost;

/* The plug-in's entry points: gpu.h's and backend.h's CUDA functions, one for one. */
typedef struct {
    int (*device_count)(int *count);
    const char *(*no_device_reason)(void);
    int (*selftest)(int device, char *report, size_t report_size);
    int (*device_key)(int device, char *key, size_t size);
    int (*nccl_id)(unsigned char id[GPU_NCCL_ID_BYTES]);
    int (*nccl_open)(void **comm, const unsigned char id[GPU_NCCL_ID_BYTES], int nranks, int rank, int device);
    void (*nccl_close)(void *comm, int abort);
    int (*backend_open)(ComputeBackend *be, const UNet *u, const CudaOptions *opt);
    int (*backend_receive)(ComputeBackend *be, void *nccl_comm);
} GpuPluginApi;

/* GPU_PLUGIN_ENTRY: fills api and returns 0; -1 when host's ABI or sizes are not its own. */
typedef int (*GpuPluginOpen)(const GpuPluginHost *host, GpuPluginApi *api);
int sower_cuda_plugin_open(const GpuPluginHost *host, GpuPluginApi *api); /* plugin_entry.c's GpuPluginOpen */

#ifdef __cplusplus
}
#endif

#endif /* SOWER_GPU_PLUGIN_H */
