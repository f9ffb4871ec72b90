/* plan.c: the run's plan, computed alike on every rank (plan.h). */
#include "plan.h"

#include <math.h>
#include <string.h>

/* Slices as `sower run --slice K/N` takes them: SLICES_MAX in cli/cmd_run.c. */
#define PLAN_SLICES_MAX 100000

/* The job's verify count, or a slice's proportional share of it (rounded up). */
static uint64_t verify_count(const Job *job, const Plan *p)
{
    uint64_t v = job_verify_rows(job), rows = p->hi - p->lo;
    if (!p->slice_n || !job->n_rows) return v;
    v = (uint64_t)ceil((double)v * rows / job->n_rows);
    return v < rows ? v : rows;
}

int plan_make(Plan *p, const Job *job, int world, int slice_k, int slice_n, int stitch_n)
{
    memset(p, 0, sizeof *p);
    if (world < 1) return SOWER_FAIL(SOWER_EINPUT, "plan: rank count %d (expected at least 1)", world);
    if (slice_n < 0 || slice_n > PLAN_SLICES_MAX || (slice_n && (slice_k < 0 || slice_k >= slice_n)))
        return SOWER_FAIL(SOWER_EINPUT, "plan: slice %d/%d (expected K/N with 0 <= K < N <= %d)", slice_k,
                          slice_n, PLAN_SLICES_MAX);
    if (stitch_n < 0 || stitch_n > PLAN_SLICES_MAX || (stitch_n && slice_n))
        return SOWER_FAIL(SOWER_EINPUT,
                          "plan: stitch %d of slice %d/%d (expected 0..%d slices, not with a slice)",
                          stitch_n, slice_k, slice_n, PLAN_SLICES_MAX);
    p->world = world, p->slice_k = slice_k, p->slice_n = slice_n, p->stitch_n = stitch_n;
    p->lo = 0, p->hi = job->n_rows;
    if (slice_n) job_slice_bounds(job, slice_k, slice_n, &p->lo, &p->hi);
    p->verify_n = verify_count(job, p);
    return SOWER_OK;
}

void plan_split(uint64_t lo, uint64_t hi, int k, int n, uint64_t *a, uint64_t *b)
{
    /* job_slice_bounds owns the formula (manifest.h: "the same split serves array tasks and the
     * ranks of one run"); it reads only the row count, here that of [lo, hi). */
    Job rows;
    memset(&rows, 0, sizeof rows);
    rows.n_rows = hi - lo;
    job_slice_bounds(&rows, k, n, a, b);
    *a += lo, *b += lo;
}

void plan_rank_rows(const Plan *p, int rank, uint64_t *a, uint64_t *b)
{
    plan_split(p->lo, p->hi, rank, p->world, a, b);
}

void plan_rank_bounds(const Plan *p, uint64_t *bounds)
{
    for (int k = 0; k < p->world; k++)
        plan_rank_rows(p, k, &bounds[k], &bounds[k + 1]);
}

void plan_stitch_bounds(const Plan *p, const Job *job, uint64_t *bounds)
{
    for (int k = 0; k < p->stitch_n; k++)
        job_slice_bounds(job, k, p->stitch_n, &bounds[k], &bounds[k + 1]);
}

int plan_renderer(const Plan *p, uint64_t row)
{
    if (p->stitch_n) return -1;
    /* The first rank whose part ends after row (parts are contiguous and ascending; empty ones
     * come last, where they end at hi). */
    int first = 0, last = p->world - 1;
    while (first < last) {
        int mid = first + (last - first) / 2;
        uint64_t a, b;
        plan_rank_rows(p, mid, &a, &b);
        if (row < b)
            last = mid;
        else
            first = mid + 1;
    }
    return first;
}

uint64_t plan_verify_row(const Plan *p, uint64_t k)
{
    /* In double, as every output so far was made (the rows are provenance); exact below 2^53 rows. */
    return p->lo + (uint64_t)((double)k * (p->hi - p->lo) / p->verify_n);
}

int plan_verifier(const Plan *p, uint64_t k)
{
    if (p->stitch_n) return (int)(k % (uint64_t)p->world);
    return (plan_renderer(p, plan_verify_row(p, k)) + 1) % p->world;
}

uint64_t plan_next_batch(const Plan *p, const uint8_t *done, uint64_t *pos, uint64_t end, uint64_t max_b,
                         uint64_t *row0)
{
    while (*pos < end && done[*pos - p->lo])
        (*pos)++;
    *row0 = *pos;
    uint64_t n = 0;
    while (*pos < end && n < max_b && !done[*pos - p->lo])
        (*pos)++, n++;
    return n;
}

uint64_t plan_count_done(const Plan *p, const uint8_t *done)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < p->hi - p->lo; i++)
        n += done[i];
    return n;
}
