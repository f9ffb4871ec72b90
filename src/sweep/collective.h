/* collective.h: how the ranks of one job agree, and how a job ends when they cannot.
 *
 * One process decides how the job ends; a failing rank must not leave the others hanging. Between
 * the steps of the setup every rank calls collective_agree with its own status: all learn the worst
 * exit code and go on, or stop, together. Where ranks no longer move in step (the render and
 * verification passes), a rank that fails calls collective_abort, which prints its rank and the
 * cause and ends every process of the job (MPI_Abort). A failed MPI call (SOWER_EMPI), in a step
 * or in the agreement itself, ends the job the same way: the ranks may no longer be in step. */
#ifndef SOWER_COLLECTIVE_H
#define SOWER_COLLECTIVE_H

#include <stdint.h>

#include "err.h"

typedef struct {
    int rank, world;
    int failure; /* the status of the first rank that failed a step (SOWER_OK: none yet) */
    /* Called by collective_abort before the job ends (rank 0 releases the output's lock); may be NULL. */
    void (*before_abort)(void *ctx);
    void *before_abort_ctx;
} Team;

/* Every rank contributes its status; returns the worst exit code (0: every rank succeeded), or
 * ends the job when status is SOWER_EMPI. The lowest failing rank prints its error (a bad manifest
 * fails every rank alike: one message, not one per rank), and every rank records that rank's
 * status in t->failure. */
int collective_agree(Team *t, int status);
/* Prints "rank R of W failed" and the error, then ends the whole job with status's exit code. */
_Noreturn void collective_abort(const Team *t, int status);
/* collective_abort unless status is SOWER_OK: for the steps after which ranks cannot agree. */
void collective_check(const Team *t, int status);
/* MPI_Bcast of n bytes from root, in pieces that fit MPI's int counts (n may exceed 2^31). */
int collective_bcast_bytes(void *data, uint64_t n, int root) SOWER_MUST_CHECK;

#endif /* SOWER_COLLECTIVE_H */
