/* gpu_plugin.c: gpu.h and the CUDA half of backend.h in a build with the CUDA backend, served by
 * libsower_cuda.so, opened on first use (src/gpu/gpu_plugin.h says why). Where it cannot be opened (no
 * CUDA runtime on this node, say), no device is visible and gpu_no_device_reason() says why, so
 * backend cuda fails with that message (exit 2) and backend cpu never notices. */
#define _GNU_SOURCE /* readlink, PATH_MAX */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu_plugin.h"

static pthread_once_t plugin_once = PTHREAD_ONCE_INIT;
static GpuPluginApi plugin;     /* valid when plugin_loaded */
static int plugin_loaded;
static char plugin_problem[1024]; /* why it is not loaded */

/* Tries one candidate file; 1 when loaded. A file that exists but fails says why in plugin_problem
 * (a missing one does not: a later candidate may exist). */
static int try_plugin(const char *path)
{
    if (access(path, F_OK) != 0)
        return 0;
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(plugin_problem, sizeof plugin_problem, "the CUDA backend %s cannot be loaded: %s", path, dlerror());
        return 0;
    }
    GpuPluginOpen open_plugin = (GpuPluginOpen)dlsym(lib, GPU_PLUGIN_ENTRY);
    const GpuPluginHost host = {GPU_PLUGIN_ABI, sizeof(ComputeBackend), sizeof(UNet), sizeof(CudaOptions),
                                sower_fail, sower_trace};
    if (!open_plugin || open_plugin(&host, &plugin) != 0) {
        snprintf(plugin_problem, sizeof plugin_problem,
                 "the CUDA backend %s is from another build of sower (its entry point or ABI differs)", path);
        dlclose(lib);
        return 0;
    }
    return 1; /* kept open for the life of the process: backends hold its functions */
}

/* Where the plug-in may be, in order: $SOWER_CUDA_PLUGIN; beside the program (an install, or the
 * build's top folder); ../lib beside it; the build tree it was made in (tests, benchmarks). */
static void load_plugin(void)
{
    snprintf(plugin_problem, sizeof plugin_problem,
             "the CUDA backend (" GPU_PLUGIN_FILE ") was not found beside the program, in ../lib, at "
             SOWER_CUDA_PLUGIN_BUILD_PATH " or in $SOWER_CUDA_PLUGIN");
    const char *env = getenv("SOWER_CUDA_PLUGIN");
    if (env && *env) {
        plugin_loaded = try_plugin(env);
        if (!plugin_loaded && access(env, F_OK) != 0)
            snprintf(plugin_problem, sizeof plugin_problem, "SOWER_CUDA_PLUGIN=%s: no such file", env);
        return;
    }
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(path, sizeof path, "%s/" GPU_PLUGIN_FILE, exe);
        if ((plugin_loaded = try_plugin(path)))
            return;
        snprintf(path, sizeof path, "%s/../lib/" GPU_PLUGIN_FILE, exe);
        if ((plugin_loaded = try_plugin(path)))
            return;
    }
    plugin_loaded = try_plugin(SOWER_CUDA_PLUGIN_BUILD_PATH);
}

static int loaded(void)
{
    pthread_once(&plugin_once, load_plugin);
    return plugin_loaded;
}

static int not_loaded(void) { return SOWER_FAIL(SOWER_EINPUT, "backend cuda: %s", plugin_problem); }

int gpu_backend_built(void) { return 1; }

int gpu_device_count(int *count)
{
    *count = 0;
    return loaded() ? plugin.device_count(count) : SOWER_OK;
}

const char *gpu_no_device_reason(void) { return loaded() ? plugin.no_device_reason() : plugin_problem; }

int gpu_selftest(int device, char *report, size_t report_size)
{
    return loaded() ? plugin.selftest(device, report, report_size) : not_loaded();
}

int gpu_device_key(int device, char *key, size_t size)
{
    return loaded() ? plugin.device_key(device, key, size) : not_loaded();
}

int gpu_nccl_id(unsigned char id[GPU_NCCL_ID_BYTES]) { return loaded() ? plugin.nccl_id(id) : not_loaded(); }

int gpu_nccl_open(void **comm, const unsigned char id[GPU_NCCL_ID_BYTES], int nranks, int rank, int device)
{
    return loaded() ? plugin.nccl_open(comm, id, nranks, rank, device) : not_loaded();
}

void gpu_nccl_close(void *comm, int abort)
{
    if (comm && loaded())
        plugin.nccl_close(comm, abort);
}

int compute_backend_cuda(ComputeBackend *be, const UNet *u, const CudaOptions *opt)
{
    return loaded() ? plugin.backend_open(be, u, opt) : not_loaded();
}

int compute_backend_cuda_receive(ComputeBackend *be, void *nccl_comm)
{
    return loaded() ? plugin.backend_receive(be, nccl_comm) : not_loaded();
}
