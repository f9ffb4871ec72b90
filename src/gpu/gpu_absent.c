/* gpu_absent.c: the CUDA backend's entry points in a build without CUDA (SOWER_CUDA off, chosen by
 * CMake instead of src/gpu/): no device is ever visible, and asking for the backend says why. */
#include "backend.h"
#include "gpu.h"

static int no_cuda(void)
{
    return SOWER_FAIL(SOWER_EINPUT, "this sower was built without the CUDA backend (configure with -DSOWER_CUDA=ON on "
                                    "a machine with the CUDA toolkit)");
}

int gpu_backend_built(void) { return 0; }

int gpu_device_count(int *count)
{
    *count = 0;
    return SOWER_OK;
}

const char *gpu_no_device_reason(void) { return "this build has no CUDA backend"; }

int gpu_selftest(int device, char *report, size_t report_size)
{
    (void)device, (void)report, (void)report_size;
    return no_cuda();
}

int compute_backend_cuda(ComputeBackend *be, const UNet *u, const CudaOptions *opt)
{
    (void)be, (void)u, (void)opt;
    return no_cuda();
}

int gpu_device_key(int device, char *key, size_t size)
{
    (void)device, (void)key, (void)size;
    return no_cuda();
}

int gpu_nccl_id(unsigned char id[GPU_NCCL_ID_BYTES])
{
    (void)id;
    return no_cuda();
}

int gpu_nccl_open(void **comm, const unsigned char id[GPU_NCCL_ID_BYTES], int nranks, int rank, int device)
{
    (void)comm, (void)id, (void)nranks, (void)rank, (void)device;
    return no_cuda();
}

void gpu_nccl_close(void *comm, int abort) { (void)comm, (void)abort; }

int compute_backend_cuda_receive(ComputeBackend *be, void *nccl_comm)
{
    (void)be, (void)nccl_comm;
    return no_cuda();
}
