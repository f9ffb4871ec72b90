/* collective.c: agreement between the ranks, and ending the job (collective.h). */
#include "collective.h"

#include <stdio.h>
#include <stdlib.h>

#include "mpi_check.h"

int collective_agree(Team *t, int status)
{
    /* A failed MPI call may leave the ranks out of step (some inside a collective this one left):
     * no agreement can be trusted after it, so the job ends here. */
    if (status == SOWER_EMPI) collective_abort(t, status);
    int code = status == SOWER_OK ? 0 : sower_status_exit_code(status), worst = 0;
    int mine = status == SOWER_OK ? t->world : t->rank, first = 0;
    int mpi = SOWER_MPI_STATUS(MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (mpi == SOWER_OK)
        mpi = SOWER_MPI_STATUS(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (mpi != SOWER_OK) {
        if (status != SOWER_OK) { /* this rank's own failure first, then why it cannot be agreed on */
            fprintf(stderr, "[rank %d of %d] ", t->rank, t->world);
            sower_error_print(stderr, 0);
        }
        collective_abort(t, mpi);
    }
    if (status != SOWER_OK && t->rank == first) {
        if (t->world > 1) fprintf(stderr, "[rank %d of %d] ", t->rank, t->world);
        sower_error_print(stderr, 0);
    }
    if (worst != 0 && first < t->world) { /* every rank learns what failed (a CUDA error is no bug) */
        int failure = status;
        collective_check(t, SOWER_MPI_STATUS(MPI_Bcast(&failure, 1, MPI_INT, first, MPI_COMM_WORLD)));
        if (t->failure == SOWER_OK) t->failure = failure;
    }
    return worst;
}

void collective_abort(const Team *t, int status)
{
    fprintf(stderr, "sower: rank %d of %d failed, ending the job: ", t->rank, t->world);
    sower_error_print(stderr, 1);
    if (t->before_abort) t->before_abort(t->before_abort_ctx);
    MPI_Abort(MPI_COMM_WORLD, sower_status_exit_code(status));
    exit(sower_status_exit_code(status)); /* MPI_Abort does not return; if it did, this process still ends */
}

void collective_check(const Team *t, int status)
{
    if (status != SOWER_OK) collective_abort(t, status);
}

int collective_bcast_bytes(void *data, uint64_t n, int root)
{
    const uint64_t piece = UINT64_C(1) << 30; /* below INT_MAX */
    for (uint64_t at = 0; at < n; at += piece)
        SOWER_MPI(MPI_Bcast((char *)data + at, (int)(n - at < piece ? n - at : piece), MPI_BYTE, root,
                            MPI_COMM_WORLD));
    return SOWER_OK;
}
