/* cublas_v2.h (emulated): what the CUDA backend uses of cuBLAS: the version queries of its identity
 * line, and the self-test's one SGEMM (column-major, no transposes), computed on the host. */
#ifndef SOWER_CUDA_EMU_CUBLAS_H
#define SOWER_CUDA_EMU_CUBLAS_H
namespace sower_emu_rt {
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL } libraryPropertyType;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef struct EmuCublas *cublasHandle_t;
cublasStatus_t cublasGetProperty(libraryPropertyType type, int *value);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasGetVersion(cublasHandle_t handle, int *version);
/* C (m, n) = alpha A (m, k) B (k, n) + beta C, column-major; CUBLAS_OP_N only. */
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *a, int lda, const float *b, int ldb, const float *beta,
                           float *c, int ldc);
} // namespace sower_emu_rt
using namespace sower_emu_rt;
#endif
