/* sweep.h: `sower run`, the distributed sweep, as one call the command line makes.
 *
 * Rank 0 reads the manifest and broadcasts its bytes; every rank parses the same bytes (so all
 * hold the same Job). Every rank computes the same plan (plan.h): contiguous rows per rank. Each
 * rank maps the model (the page cache makes that one read from storage per node), renders its
 * rows in batches and sends them with their SHA-256 digests to rank 0, the writer, which writes
 * them into OUT.partial as they arrive (render.h). Then a sample of rows is re-rendered by a rank
 * other than the one that rendered them and compared bit for bit with what was written
 * (cross_verify.h). Rank 0 decides the exit status; a rank that fails mid-job aborts the whole
 * job (collective.h) after printing its rank and the cause, so no rank waits forever.
 *
 * Sweeps larger than one allocation run as job-array tasks: `--slice K/N` renders slice K of N
 * (job_slice_bounds) into its own file OUT.slice-K-of-N.h5; `--stitch N` copies the N finished
 * slices into OUT.h5 (same datasets, byte for byte, as one allocation would write) and verifies.
 * A stop signal (stop.h) ends the run after the batches in hand, keeping OUT.partial for --resume.
 *
 * Test hooks (environment): SOWER_FAULT_INJECT=RANK:ROW flips one bit of that row on that rank;
 * SOWER_FAULT_FAIL_RANK=RANK makes that rank fail while rendering; SOWER_PROGRESS_SECONDS sets
 * the interval of progress lines (default 2). */
#ifndef SOWER_SWEEP_H
#define SOWER_SWEEP_H

#include "err.h"

typedef struct {
    const char *manifest, *output, *status_file;
    int force, resume, resume_auto, batch;
    int slice_k, slice_n; /* --slice K/N; slice_n 0: the whole job */
    int stitch_n;         /* --stitch N; 0: render */
} RunOptions;

/* Runs the job o names on every rank of MPI_COMM_WORLD (MPI_Init to MPI_Finalize happen here).
 * Returns the agreed status: rank 0 has the message recorded, other ranks return it silently. */
int sweep_run(const RunOptions *o);

#endif /* SOWER_SWEEP_H */
