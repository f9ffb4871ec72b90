/* weight_share.c: see weight_share.h. */
#include "weight_share.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_open.h"
#include "digest.h"
#include "gpu.h"
#include "mpi_check.h"

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

int weight_share_plan(WeightShare *ws, Backend kind, Precision precision, int rank, int world)
{
    memset(ws, 0, sizeof *ws);
    ws->kind = kind, ws->precision = precision, ws->rank = rank, ws->world = world;
    if (kind != BACKEND_CUDA) {
        snprintf(ws->reason, sizeof ws->reason, "every rank reads the weight file");
        return SOWER_OK;
    }
    if (world == 1) { /* find the device now, before the weight file is read for nothing */
        snprintf(ws->reason, sizeof ws->reason, "one rank reads the weight file");
        return compute_backend_cuda_device(&ws->device);
    }
    char key[KEY_BYTES] = "";
    int status = compute_backend_cuda_device(&ws->device);
    if (status == SOWER_OK)
        status = gpu_device_key(ws->device, key, sizeof key);
    if (status != SOWER_OK)
        key[0] = '\0';
    char *keys = rank == 0 ? calloc((size_t)world, KEY_BYTES) : NULL;
    if (rank == 0 && !keys) { /* the others already wait in the gather below: end the job */
        fprintf(stderr, "sower: rank 0: out of memory planning the weight broadcast, ending the job\n");
        MPI_Abort(MPI_COMM_WORLD, sower_status_exit_code(SOWER_ENOMEM));
    }
    int mpi =
        SOWER_MPI_STATUS(MPI_Gather(key, KEY_BYTES, MPI_CHAR, keys, KEY_BYTES, MPI_CHAR, 0, MPI_COMM_WORLD));
    if (rank == 0 && mpi == SOWER_OK)
        ws->broadcast = one_rank_per_gpu(keys, world, ws->reason, sizeof ws->reason);
    free(keys);
    SOWER_TRY(mpi);
    SOWER_MPI(MPI_Bcast(&ws->broadcast, 1, MPI_INT, 0, MPI_COMM_WORLD));
    SOWER_MPI(MPI_Bcast(ws->reason, sizeof ws->reason, MPI_CHAR, 0, MPI_COMM_WORLD));
    return status;
}

int weight_share_reads_file(const WeightShare *ws) { return !ws->broadcast || ws->rank == 0; }

int weight_share_digest(const WeightShare *ws, unsigned char *sha256)
{
    if (ws->broadcast)
        SOWER_MPI(MPI_Bcast(sha256, DIGEST_BYTES, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD));
    return SOWER_OK;
}

int weight_share_open_backend(const WeightShare *ws, ComputeBackend *be, const UNet *u)
{
    if (!ws->broadcast)
        return compute_backend_open(be, ws->kind, ws->precision, u);
    /* rank 0 copies the weights up, the others wait */
    CudaOptions opt = {ws->device, ws->rank != 0, ws->precision};
    SOWER_TRY(compute_backend_cuda(be, u, &opt));
    int status = backend_ops_check(be->ops, "cuda");
    if (status != SOWER_OK)
        compute_backend_close(be);
    return status;
}

/* The smallest and largest of v over the ranks. */
static int min_max(long long v, long long *lo, long long *hi)
{
    SOWER_MPI(MPI_Allreduce(&v, lo, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD));
    SOWER_MPI(MPI_Allreduce(&v, hi, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD));
    return SOWER_OK;
}

int weight_share_receive(const WeightShare *ws, ComputeBackend *be, const UNet *u)
{
    if (!ws->broadcast)
        return SOWER_OK;
    /* Every step that can fail on one rank is agreed on before anyone enters NCCL, whose
     * collectives would wait forever for a missing rank. A rank that did not fail returns
     * SOWER_OK: the caller's agreement then ends the job with the failing rank's own message. */
    long long lo, hi;
    SOWER_TRY(min_max(u->weights.n_values, &lo, &hi));
    if (lo != hi)
        return SOWER_FAIL(SOWER_EMODEL, "the ranks read models of different sizes (%lld and %lld parameters): is "
                                        "the model folder the same on every node?", lo, hi);
    unsigned char id[GPU_NCCL_ID_BYTES + 1] = {0}; /* the id, then 1 when rank 0 made it */
    int status = ws->rank == 0 ? gpu_nccl_id(id) : SOWER_OK;
    id[GPU_NCCL_ID_BYTES] = ws->rank == 0 && status == SOWER_OK;
    SOWER_MPI(MPI_Bcast(id, sizeof id, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD));
    if (!id[GPU_NCCL_ID_BYTES])
        return status;
    void *comm = NULL;
    status = gpu_nccl_open(&comm, id, ws->world, ws->rank, ws->device);
    long long failed = status != SOWER_OK, none, any;
    int mpi = min_max(failed, &none, &any);
    if (mpi != SOWER_OK || any) {
        gpu_nccl_close(comm, 1);
        return status != SOWER_OK ? status : mpi;
    }
    status = compute_backend_cuda_receive(be, comm);
    if (status != SOWER_OK) {
        /* Inside a collective the other ranks may already wait on this one: end the job here. */
        fprintf(stderr, "sower: rank %d of %d failed while receiving the weights, ending the job: ", ws->rank,
                ws->world);
        sower_error_print(stderr, 1);
        MPI_Abort(MPI_COMM_WORLD, sower_status_exit_code(status));
    }
    gpu_nccl_close(comm, 0);
    return SOWER_OK;
}
