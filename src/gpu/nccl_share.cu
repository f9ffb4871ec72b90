/* nccl_share.cu: which GPU a rank holds (to tell ranks that share one apart) and the NCCL
 * communicator the ranks of a job broadcast the model's weights through. */
#include <string.h>
#include <unistd.h>

#include "cuda_check.h"
#include "gpu.h"

extern "C" int gpu_backend_built(void) { return 1; }

extern "C" int gpu_device_key(int device, char *key, size_t size)
{
    char bus[64] = "", host[256] = "";
    GPU_CUDA_TRY(cudaDeviceGetPCIBusId(bus, (int)sizeof bus, device));
    gethostname(host, sizeof host - 1);
    snprintf(key, size, "%s/%s", host, bus);
    return SOWER_OK;
}

extern "C" int gpu_nccl_id(unsigned char id[GPU_NCCL_ID_BYTES])
{
    static_assert(sizeof(ncclUniqueId) == GPU_NCCL_ID_BYTES, "NCCL's unique id size changed");
    ncclUniqueId uid;
    GPU_NCCL_TRY(ncclGetUniqueId(&uid));
    memcpy(id, &uid, sizeof uid);
    return SOWER_OK;
}

extern "C" int gpu_nccl_open(void **comm, const unsigned char id[GPU_NCCL_ID_BYTES], int nranks, int rank, int device)
{
    *comm = NULL;
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    GPU_CUDA_TRY(cudaSetDevice(device));
    ncclComm_t c;
    GPU_NCCL_TRY(ncclCommInitRank(&c, nranks, uid, rank));
    *comm = c;
    return SOWER_OK;
}

extern "C" void gpu_nccl_close(void *comm, int abort)
{
    if (comm)
        abort ? ncclCommAbort((ncclComm_t)comm) : ncclCommDestroy((ncclComm_t)comm);
}
