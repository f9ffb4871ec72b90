/* plan.h: which rows a run writes, which rank renders each, and which rows are verified where.
 *
 * Pure functions of (job, rank count, slice options, done bitmap): every rank evaluates them and
 * gets the same answer, so the plan needs no messages. The row -> rank mapping and the
 * verification pairing are part of the output's provenance (/run/rank_slices, /verify/renderer_rank,
 * /verify/verifier_rank): changing a formula here changes what those datasets say.
 *
 * Rows are job rows (0 .. job->n_rows - 1, manifest order) unless a name says otherwise; counts are
 * 64-bit throughout (a job has up to JOB_MAX_ROWS = 2^40 rows). */
#ifndef SOWER_PLAN_H
#define SOWER_PLAN_H

#include <stdint.h>

#include "err.h"
#include "manifest.h"

typedef struct {
    uint64_t lo, hi;      /* job rows this run writes: [lo, hi), the whole job or one slice */
    int world;            /* ranks rendering */
    int slice_k, slice_n; /* --slice K/N; slice_n 0: the whole job */
    int stitch_n;         /* --stitch N: rows copied from N slice files, rendered by array tasks; 0: here */
    uint64_t verify_n;    /* rows the verification pass re-renders */
} Plan;

/* The plan of a run over `world` ranks: slice_n 0 (the whole job) or 0 <= slice_k < slice_n;
 * stitch_n 0 or the slice count being stitched. SOWER_EINPUT naming the bad value otherwise. */
int plan_make(Plan *p, const Job *job, int world, int slice_k, int slice_n, int stitch_n) SOWER_MUST_CHECK;

/* Rows [a, b) of [lo, hi) for part k of n (0 <= k < n): contiguous, the remainder spread over the
 * first parts. The split of job_slice_bounds (manifest.h), applied to a range of rows. */
void plan_split(uint64_t lo, uint64_t hi, int k, int n, uint64_t *a, uint64_t *b);
/* The rows rank `rank` renders: [a, b), possibly empty. */
void plan_rank_rows(const Plan *p, int rank, uint64_t *a, uint64_t *b);
/* Rank k renders [bounds[k], bounds[k+1]); bounds is (world + 1,) (the /run/rank_slices dataset). */
void plan_rank_bounds(const Plan *p, uint64_t *bounds);
/* Stitched runs: slice k of stitch_n holds [bounds[k], bounds[k+1]); bounds is (stitch_n + 1,). */
void plan_stitch_bounds(const Plan *p, const Job *job, uint64_t *bounds);
/* The rank that rendered `row` (lo <= row < hi) in this run; -1 for stitched rows. */
int plan_renderer(const Plan *p, uint64_t row);

/* Verification row k (0 <= k < verify_n): spread evenly over [lo, hi). */
uint64_t plan_verify_row(const Plan *p, uint64_t k);
/* The rank that re-renders verification row k: the renderer's successor (stitched: k mod world). */
int plan_verifier(const Plan *p, uint64_t k);

/* The next batch of at most max_b consecutive rows not yet done, scanning from *pos (advanced) up
 * to end; done is (hi - lo,), indexed by row - lo. Returns the batch's size (0: none left) and its
 * first row in *row0. */
uint64_t plan_next_batch(const Plan *p, const uint8_t *done, uint64_t *pos, uint64_t end, uint64_t max_b,
                         uint64_t *row0);
/* How many of this run's rows the bitmap marks done. */
uint64_t plan_count_done(const Plan *p, const uint8_t *done);

#endif /* SOWER_PLAN_H */
