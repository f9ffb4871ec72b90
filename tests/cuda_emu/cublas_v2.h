/* cublas_v2.h (emulated): the version queries the CUDA backend's identity line uses. */
#ifndef SOWER_CUDA_EMU_CUBLAS_H
#define SOWER_CUDA_EMU_CUBLAS_H
namespace sower_emu_rt {
typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
typedef enum { MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL } libraryPropertyType;
cublasStatus_t cublasGetProperty(libraryPropertyType type, int *value);
const char *cublasGetStatusString(cublasStatus_t s);
} // namespace sower_emu_rt
using namespace sower_emu_rt;
#endif
