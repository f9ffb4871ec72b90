/* nccl.h (emulated): NCCL's communicator and broadcast over MPI_COMM_WORLD, so that a job of
 * several processes, each with its own emulated "GPU", runs sower's NCCL weight broadcast for real
 * (tests/test_run_emulated_gpu.py). One communicator at a time, all ranks of the world. */
#ifndef SOWER_CUDA_EMU_NCCL_H
#define SOWER_CUDA_EMU_NCCL_H
#include <stddef.h>
namespace sower_emu_rt {
typedef enum { ncclSuccess = 0, ncclInvalidArgument = 4, ncclInvalidUsage = 5 } ncclResult_t;
typedef enum { ncclFloat = 7 } ncclDataType_t;
typedef struct EmuNcclComm *ncclComm_t;
typedef struct {
    char internal[128];
} ncclUniqueId;
const char *ncclGetErrorString(ncclResult_t r);
ncclResult_t ncclGetVersion(int *version);
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           void *stream);
} // namespace sower_emu_rt
using namespace sower_emu_rt;
#endif
