/* weight_share.c: see weight_share.h. */
#include "weight_share.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "gpu.h"

enum { KEY_BYTES = 320 };

/* Rank 0: 1 when every key is set and no two are equal (one rank per GPU). keys (world, KEY_BYTES). */
static int one_rank_per_gpu(const char *keys, int world, char *reason, size_t size)
{
    for (int i = 0; i < world; i++) {
        if (!keys[(size_t)i * KEY_BYTES]) {
            snprintf(reason, size, "rank %d found no device", i);
            return 0;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(keys + (size_t)i * KEY_BYTES, keys + (size_t)j * KEY_BYTES) == 0) {
                snprintf(reason, size, "ranks %d and %d share GPU %s: each rank reads the weight file", j, i,
                         keys + (size_t)i * KEY_BYTES);
                return 0;
            }
    }
    snprintf(reason, size, "one rank per GPU: rank 0 reads the weight file, NCCL broadcasts it to %d GPUs", world);
    return 1;
}

int weight_share_plan(WeightShare *ws, Backend kind, int rank, int world)
{
    memset(ws, 0, sizeof *ws);
    ws->kind = kind, ws->rank = rank, ws->world = world;
    if (kind != BACKEND_CUDA || world == 1) {
        snprintf(ws->reason, sizeof ws->reason, "every rank reads the weight file");
        return SOWER_OK;
    }
    char key[KEY_BYTES] = "";
    int status = compute_backend_cuda_device(&ws->device);
    if (status == SOWER_OK)
        status = gpu_device_key(ws->device, key, sizeof key);
    if (status != SOWER_OK)
        key[0] = '\0';
    char *keys = rank == 0 ? calloc((size_t)world, KEY_BYTES) : NULL;
    if (rank == 0 && !keys)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory"); /* the others' gather waits: MPI aborts on OOM anyway */
    MPI_Gather(key, KEY_BYTES, MPI_CHAR, keys, KEY_BYTES, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0)
        ws->broadcast = one_rank_per_gpu(keys, world, ws->reason, sizeof ws->reason);
    free(keys);
    MPI_Bcast(&ws->broadcast, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(ws->reason, sizeof ws->reason, MPI_CHAR, 0, MPI_COMM_WORLD);
    return status;
}

int weight_share_reads_file(const WeightShare *ws) { return !ws->broadcast || ws->rank == 0; }

void weight_share_digest(const WeightShare *ws, unsigned char *sha256)
{
    if (ws->broadcast)
        MPI_Bcast(sha256, DIGEST_BYTES, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD);
}

int weight_share_open_backend(const WeightShare *ws, ComputeBackend *be, const UNet *u)
{
    if (!ws->broadcast)
        return compute_backend_open(be, ws->kind, u);
    /* Rank 0's id reaches everyone, a zeroed one meaning it failed: nobody then waits in NCCL. */
    unsigned char id[GPU_NCCL_ID_BYTES + 1] = {0};
    int status = ws->rank == 0 ? gpu_nccl_id(id) : SOWER_OK;
    id[GPU_NCCL_ID_BYTES] = ws->rank == 0 && status == SOWER_OK;
    MPI_Bcast(id, sizeof id, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD);
    if (!id[GPU_NCCL_ID_BYTES])
        return status != SOWER_OK ? status : SOWER_FAIL(SOWER_ECUDA, "rank 0 could not create the NCCL id");
    /* Each rank opens its backend (rank 0 copying the weights up); only when all did does anyone
     * enter NCCL's collectives, which would wait forever for a rank that failed. */
    CudaOptions opt = {ws->device, ws->rank != 0};
    status = compute_backend_cuda(be, u, &opt);
    int failed = status != SOWER_OK, any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any_failed) {
        compute_backend_close(be);
        return failed ? status : SOWER_FAIL(SOWER_ECUDA, "another rank could not open its GPU backend");
    }
    void *comm = NULL;
    status = gpu_nccl_open(&comm, id, ws->world, ws->rank, ws->device);
    if (status == SOWER_OK)
        status = compute_backend_cuda_receive(be, comm);
    gpu_nccl_close(comm);
    if (status != SOWER_OK)
        compute_backend_close(be);
    SOWER_TRY(status);
    return SOWER_OK;
}
