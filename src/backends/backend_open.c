/* backend_open.c: see backend_open.h. */
#include "backend_open.h"

#include <stdlib.h>

#include "cpu_backend.h"
#include "gpu.h"
#include "placement.h"

int compute_backend_cuda_device(int *device)
{
    int count = 0;
    if (!gpu_backend_built())
        return SOWER_FAIL(SOWER_EINPUT, "backend cuda: this sower was built without the CUDA backend (configure with "
                                        "-DSOWER_CUDA=ON on a machine with the CUDA toolkit)");
    SOWER_TRY(gpu_device_count(&count));
    if (count == 0)
        return SOWER_FAIL(SOWER_EINPUT, "backend cuda: no CUDA device is visible to this rank (CUDA: %s; "
                                        "CUDA_VISIBLE_DEVICES=%s)", gpu_no_device_reason(),
                          getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset");
    *device = placement_gpu_index(placement_local_rank(), count);
    return SOWER_OK;
}

/* A backend whose table has a hole is a bug of that backend: close it and say which operation. */
static int complete_or_close(ComputeBackend *be, const char *name)
{
    int status = backend_ops_check(be->ops, name);
    if (status != SOWER_OK)
        compute_backend_close(be);
    return status;
}

int compute_backend_open(ComputeBackend *be, Backend kind, Precision precision, const UNet *u)
{
    if (kind == BACKEND_CPU && precision != PRECISION_FP32)
        return SOWER_FAIL(SOWER_EINPUT, "precision %s needs backend cuda (the CPU backend computes in fp32)",
                          precision_name(precision));
    if (kind == BACKEND_CPU) {
        SOWER_TRY(compute_backend_cpu(be, u));
        return complete_or_close(be, "cpu");
    }
    CudaOptions opt = {0};
    opt.precision = precision;
    SOWER_TRY(compute_backend_cuda_device(&opt.device));
    SOWER_TRY(compute_backend_cuda(be, u, &opt));
    return complete_or_close(be, "cuda");
}
