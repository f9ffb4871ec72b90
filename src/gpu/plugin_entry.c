/* plugin_entry.c: the entry point of libsower_cuda.so (src/gpu/gpu_plugin.h) and its error record,
 * which is the program's: sower_fail and sower_trace here forward to the host's, so the plug-in
 * links no copy of err.c (its record would be a second one, unseen by main()). */
#include <stdarg.h>
#include <stdio.h>

#include "gpu_plugin.h"

static GpuPluginHost host;

int sower_fail(int status, const char *file, int line, const char *func, const char *fmt, ...)
{
    char message[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return host.fail(status, file, line, func, "%s", message);
}

int sower_trace(int status, const char *file, int line, const char *func)
{
    return host.trace(status, file, line, func);
}

__attribute__((visibility("default"))) int sower_cuda_plugin_open(const GpuPluginHost *h, GpuPluginApi *api)
{
    if (h->abi != GPU_PLUGIN_ABI || h->backend_size != sizeof(ComputeBackend) || h->unet_size != sizeof(UNet) ||
        h->options_size != sizeof(CudaOptions))
        return -1;
    host = *h;
    *api = (GpuPluginApi){
        .device_count = gpu_device_count,
        .no_device_reason = gpu_no_device_reason,
        .selftest = gpu_selftest,
        .device_key = gpu_device_key,
        .nccl_id = gpu_nccl_id,
        .nccl_open = gpu_nccl_open,
        .nccl_close = gpu_nccl_close,
        .backend_open = compute_backend_cuda,
        .backend_receive = compute_backend_cuda_receive,
    };
    return 0;
}
