/* mpi_check.h: every MPI call checked, in the PETSc manner.
 *
 * The sweep sets MPI_ERRORS_RETURN on MPI_COMM_WORLD (sweep_mpi_errors_return), so a failing call
 * returns its code instead of ending the process inside the library. SOWER_MPI(call) turns a code
 * other than MPI_SUCCESS into SOWER_FAIL(SOWER_EMPI, ...) with MPI's own message and the call's
 * text, and returns that status up the stack like SOWER_TRY. Whether the job can go on is the
 * caller's question (collective.h): a rank that fails a collective must not leave the others
 * waiting in it. */
#ifndef SOWER_MPI_CHECK_H
#define SOWER_MPI_CHECK_H

#include <mpi.h>

#include "err.h"

/* SOWER_EMPI with "CALL failed: MPI's message" when code is not MPI_SUCCESS; SOWER_OK otherwise. */
int sower_mpi_status(int code, const char *call, const char *file, int line, const char *func);

/* The status of an MPI call (SOWER_OK or SOWER_EMPI with its message recorded), for expressions. */
#define SOWER_MPI_STATUS(call) sower_mpi_status((call), #call, __FILE__, __LINE__, __func__)

/* Evaluates an MPI call; on failure records the error (its first frame is here) and returns
 * SOWER_EMPI from this function. */
#define SOWER_MPI(call)                                                                                      \
    do {                                                                                                     \
        int sower_mpi_status_ = SOWER_MPI_STATUS(call);                                                      \
        if (sower_mpi_status_ != SOWER_OK) return sower_mpi_status_;                                         \
    } while (0)

/* Like SOWER_MPI but jumps to a cleanup label with the status in status_var. */
#define SOWER_MPI_GOTO(call, status_var, label)                                                              \
    do {                                                                                                     \
        (status_var) = SOWER_MPI_STATUS(call);                                                               \
        if ((status_var) != SOWER_OK) goto label;                                                            \
    } while (0)

/* Makes calls on MPI_COMM_WORLD (every call the sweep makes) return their error codes. */
int sweep_mpi_errors_return(void) SOWER_MUST_CHECK;

#endif /* SOWER_MPI_CHECK_H */
