/* gpu_selftest.cu: proves the CUDA toolchain, cuBLAS and NCCL link and run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "gpu.h"

static const char *no_device_reason = "no CUDA device";

extern "C" const char *gpu_no_device_reason(void) { return no_device_reason; }

extern "C" int gpu_device_count(int *count)
{
    *count = 0;
    cudaError_t e = cudaGetDeviceCount(count);
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
        *count = 0;
        no_device_reason = cudaGetErrorString(e); /* "CUDA driver version is insufficient ..." */
        cudaGetLastError(); /* clear the sticky error */
        return SOWER_OK;
    }
    GPU_CUDA_TRY(e);
    return SOWER_OK;
}

__global__ static void fill_kernel(float *x, int n, float scale)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = scale * (float)(i % 7 - 3);
}

/* C (m, n) = A (m, k) * B (k, n), row-major, on device and host; compares. */
static int sgemm_check(cublasHandle_t handle, double *max_err)
{
    enum { M = 33, N = 17, K = 65 };
    float a[M * K], b[K * N], c[M * N], ref[M * N]; /* row-major host copies */
    for (int i = 0; i < M * K; i++)
        a[i] = (float)((i * 7) % 11 - 5) / 8.0f;
    for (int i = 0; i < K * N; i++)
        b[i] = (float)((i * 5) % 13 - 6) / 4.0f;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++)
                s += (double)a[i * K + p] * b[p * N + j];
            ref[i * N + j] = (float)s;
        }
    float *da = NULL, *db = NULL, *dc = NULL;
    GPU_CUDA_TRY(cudaMalloc((void **)&da, sizeof a));
    GPU_CUDA_TRY(cudaMalloc((void **)&db, sizeof b));
    GPU_CUDA_TRY(cudaMalloc((void **)&dc, sizeof c));
    GPU_CUDA_TRY(cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice));
    GPU_CUDA_TRY(cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice));
    const float one = 1.0f, zero = 0.0f;
    /* Row-major C = A B is column-major C^T = B^T A^T. */
    GPU_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, db, N, da, K, &zero, dc, N));
    GPU_CUDA_TRY(cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost));
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    *max_err = 0;
    for (int i = 0; i < M * N; i++)
        *max_err = fmax(*max_err, fabs((double)c[i] - ref[i]));
    return SOWER_OK;
}

extern "C" int gpu_selftest(int device, char *report, size_t report_size)
{
    GPU_CUDA_TRY(cudaSetDevice(device));
    cudaDeviceProp prop;
    GPU_CUDA_TRY(cudaGetDeviceProperties(&prop, device));

    enum { N = 1000 };
    float *dx = NULL, hx[N];
    GPU_CUDA_TRY(cudaMalloc((void **)&dx, sizeof hx));
    GPU_LAUNCH(fill_kernel, (N + 255) / 256, 256, 0, dx, N, 0.5f);
    GPU_CUDA_TRY(cudaGetLastError());
    GPU_CUDA_TRY(cudaMemcpy(hx, dx, sizeof hx, cudaMemcpyDeviceToHost));
    cudaFree(dx);
    for (int i = 0; i < N; i++)
        if (hx[i] != 0.5f * (float)(i % 7 - 3))
            return sower_fail(SOWER_ECUDA, __FILE__, __LINE__, __func__, "kernel wrote %g at %d", hx[i], i);

    cublasHandle_t handle;
    GPU_CUBLAS_TRY(cublasCreate(&handle));
    double max_err = 0;
    int status = sgemm_check(handle, &max_err);
    int cublas_version = 0;
    cublasGetVersion(handle, &cublas_version);
    cublasDestroy(handle);
    if (status != SOWER_OK)
        return sower_trace(status, __FILE__, __LINE__, __func__);
    if (max_err > 1e-4)
        return sower_fail(SOWER_ECUDA, __FILE__, __LINE__, __func__, "cuBLAS SGEMM off by %g", max_err);

    int nccl_version = 0;
    if (ncclGetVersion(&nccl_version) != ncclSuccess)
        return sower_fail(SOWER_ECUDA, __FILE__, __LINE__, __func__, "ncclGetVersion failed");
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    snprintf(report, report_size,
             "%s, %d SMs, sm_%d%d, driver %d, runtime %d, cuBLAS %d, NCCL %d, SGEMM max err %.2g", prop.name,
             prop.multiProcessorCount, prop.major, prop.minor, driver, runtime, cublas_version, nccl_version,
             max_err);
    return SOWER_OK;
}
