/* gpu_absent.c: the CUDA backend's entry points in a build without CUDA (SOWER_CUDA off, chosen by
 * CMake instead of gpu/): no device is ever visible, and asking for the backend says why. */
#include "backend.h"
#include "gpu.h"

int gpu_device_count(int *count)
{
    *count = 0;
    return SOWER_OK;
}

int gpu_selftest(int device, char *report, size_t report_size)
{
    (void)device, (void)report, (void)report_size;
    return SOWER_FAIL(SOWER_EINPUT, "this sower was built without the CUDA backend (configure with -DSOWER_CUDA=ON "
                                    "on a machine with the CUDA toolkit)");
}

int compute_backend_cuda(ComputeBackend *be, const UNet *u, const CudaOptions *opt)
{
    (void)be, (void)u, (void)opt;
    return SOWER_FAIL(SOWER_EINPUT, "backend cuda: this sower was built without the CUDA backend (configure with "
                                    "-DSOWER_CUDA=ON on a machine with the CUDA toolkit)");
}
