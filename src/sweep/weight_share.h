/* weight_share.h: how the ranks of a job put the model's weights where they compute.
 *
 * Backend cuda with one rank per GPU: rank 0 alone reads (and digests) the weight file; NCCL
 * broadcasts its device copy to the other ranks' GPUs, whose mappings of the file are never read,
 * so a job of N GPUs reads its weights from storage once, not N times. Where ranks share a GPU
 * (NCCL allows one rank per device), or on the CPU backend, every rank reads its own copy (on the
 * CPU the mapping is shared through the node's page cache anyway). Plan, digest and receive are
 * collective over MPI_COMM_WORLD (every rank calls them, after agreeing on the step before);
 * each returns this rank's status, which the caller agrees on before going on (an MPI call that
 * fails gives SOWER_EMPI: mpi_check.h). */
#ifndef SOWER_WEIGHT_SHARE_H
#define SOWER_WEIGHT_SHARE_H

#include "backend.h"
#include "err.h"
#include "manifest.h"

typedef struct {
    Backend kind;
    Precision precision;
    int rank, world;
    int device;    /* this rank's CUDA device (backend cuda) */
    int broadcast; /* 1: rank 0 reads, NCCL broadcasts (the same on every rank) */
    char reason[160]; /* why (for the log) */
} WeightShare;

/* Finds each rank's device and decides whether to broadcast (every rank learns the decision even
 * when its own lookup failed, so nobody waits alone). */
int weight_share_plan(WeightShare *ws, Backend kind, Precision precision, int rank, int world) SOWER_MUST_CHECK;
/* 1 when this rank must read and digest the weight file itself. */
int weight_share_reads_file(const WeightShare *ws);
/* Gives every rank rank 0's weight digest (DIGEST_BYTES,) when only rank 0 read the file. Call only
 * after every rank loaded the model. */
int weight_share_digest(const WeightShare *ws, unsigned char *sha256) SOWER_MUST_CHECK;
/* Opens this rank's backend over u (not collective); with broadcast, only rank 0's device weights
 * are filled from the host. */
int weight_share_open_backend(const WeightShare *ws, ComputeBackend *be, const UNet *u) SOWER_MUST_CHECK;
/* With broadcast: rank 0's device weights to every rank, through one NCCL communicator set up and
 * torn down here. Call only after every rank opened its backend. A rank failing inside the NCCL
 * broadcast itself ends the job (MPI_Abort): the others could be waiting in the collective. */
int weight_share_receive(const WeightShare *ws, ComputeBackend *be, const UNet *u) SOWER_MUST_CHECK;

#endif /* SOWER_WEIGHT_SHARE_H */
