/* nccl.h (emulated): one rank, so a broadcast from rank 0 is a no-op. */
#ifndef SOWER_CUDA_EMU_NCCL_H
#define SOWER_CUDA_EMU_NCCL_H
#include <stddef.h>
namespace sower_emu_rt {
typedef enum { ncclSuccess = 0 } ncclResult_t;
typedef enum { ncclFloat = 7 } ncclDataType_t;
typedef void *ncclComm_t;
const char *ncclGetErrorString(ncclResult_t r);
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           void *stream);
} // namespace sower_emu_rt
using namespace sower_emu_rt;
#endif
