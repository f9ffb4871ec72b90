/* test_plan.c: the sweep's plan (src/sweep/plan.h), without MPI: which rank renders which rows,
 * slices, resuming past rows already done, verification pairs, and row counts beyond 2^31.
 *
 * "Today's" formulas below are those sower run used before the plan became pure functions (an
 * MPI_Scatter of these bounds from rank 0, cmd_run.c at 0e3c859): the row -> rank mapping and the
 * verification pairing are written into every output (/run/rank_slices, /verify/renderer_rank,
 * /verify/verifier_rank), so the plan must reproduce them exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"
#include "plan.h"

static int failures;

#define EXPECT(cond, ...)                                                                                    \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

/* A job of `rows` seeds (one range, or a range and a list) verifying `verify` rows. */
static Job make_job(uint64_t rows, const char *verify)
{
    char text[512];
    snprintf(text, sizeof text,
             "sower: 1\nname: plan-test\nmodel: ./no-model\npipeline: {scheduler: ddim, steps: 2}\n"
             "seeds:\n  ranges: [{start: 1000, count: %llu}]\n  list: [1, 2]\noutput: {path: out.h5}\n"
             "verify: {%s}\n",
             (unsigned long long)(rows - 2), verify);
    Job job;
    memset(&job, 0, sizeof job);
    if (manifest_load_text(&job, "plan-test.yaml", text, strlen(text)) != SOWER_OK) {
        sower_error_print(stderr, 1);
        fprintf(stderr, "FAIL: cannot make a job of %llu rows\n", (unsigned long long)rows);
        exit(1);
    }
    return job;
}

/* Today's rank bounds of [lo, hi) over world ranks: bounds (world + 1,). */
static void today_bounds(uint64_t lo, uint64_t hi, int world, uint64_t *bounds)
{
    uint64_t n = hi - lo, base = n / world, extra = n % world, at = lo;
    for (int k = 0; k < world; k++) {
        bounds[k] = at;
        at += base + ((uint64_t)k < extra);
    }
    bounds[world] = hi;
}

/* Today's renderer of a row: the last rank whose part starts at or before it. */
static int today_renderer(const uint64_t *bounds, int world, uint64_t row)
{
    int k = 0;
    while (k + 1 < world && row >= bounds[k + 1])
        k++;
    return k;
}

/* Every rank count 1..7, every row count 3..60, whole jobs and slices: the plan's parts are
 * today's, cover each row exactly once, and the verification pairs are today's. */
static void test_partition_matches_today(void)
{
    for (uint64_t rows = 3; rows <= 60; rows++) { /* a range of at least one seed and the two listed */
        Job job = make_job(rows, "count: 7");
        for (int slice_n = 0; slice_n <= 4; slice_n++)
            for (int slice_k = 0; slice_k < (slice_n ? slice_n : 1); slice_k++)
                for (int world = 1; world <= 7; world++) {
                    Plan p;
                    EXPECT(plan_make(&p, &job, world, slice_k, slice_n, 0) == SOWER_OK, "plan_make");
                    uint64_t want[8], got[8];
                    today_bounds(p.lo, p.hi, world, want);
                    plan_rank_bounds(&p, got);
                    unsigned char *seen = calloc(rows, 1); /* (rows,) times each job row is rendered */
                    for (int k = 0; k < world; k++) {
                        uint64_t a, b;
                        plan_rank_rows(&p, k, &a, &b);
                        EXPECT(a == want[k] && b == want[k + 1] && got[k] == a && got[k + 1] == b,
                               "rows %llu world %d slice %d/%d rank %d: [%llu, %llu), today [%llu, %llu)",
                               (unsigned long long)rows, world, slice_k, slice_n, k, (unsigned long long)a,
                               (unsigned long long)b, (unsigned long long)want[k],
                               (unsigned long long)want[k + 1]);
                        for (uint64_t row = a; row < b; row++) {
                            seen[row]++;
                            EXPECT(plan_renderer(&p, row) == k, "row %llu: renderer %d, rendered by %d",
                                   (unsigned long long)row, plan_renderer(&p, row), k);
                        }
                    }
                    for (uint64_t row = 0; row < rows; row++)
                        EXPECT(seen[row] == (row >= p.lo && row < p.hi),
                               "rows %llu world %d slice %d/%d: row %llu "
                               "rendered %d times",
                               (unsigned long long)rows, world, slice_k, slice_n, (unsigned long long)row,
                               seen[row]);
                    free(seen);
                    for (uint64_t v = 0; v < p.verify_n; v++) {
                        uint64_t row = p.lo + (uint64_t)((double)v * (p.hi - p.lo) / p.verify_n);
                        int ren = today_renderer(want, world, row);
                        EXPECT(plan_verify_row(&p, v) == row && plan_renderer(&p, row) == ren &&
                                   plan_verifier(&p, v) == (ren + 1) % world,
                               "rows %llu world %d: verify %llu is row %llu by %d (today row %llu, %d -> %d)",
                               (unsigned long long)rows, world, (unsigned long long)v,
                               (unsigned long long)plan_verify_row(&p, v), plan_verifier(&p, v),
                               (unsigned long long)row, ren, (ren + 1) % world);
                    }
                }
        job_free(&job);
    }
}

/* The 3-rank run of tests/data/manifests/run_small.yaml (11 rows, verify 5), as its file records it. */
static void test_run_small_provenance(void)
{
    Job job = make_job(11, "count: 5");
    Plan p;
    EXPECT(plan_make(&p, &job, 3, 0, 0, 0) == SOWER_OK, "plan_make");
    uint64_t bounds[4], want_bounds[4] = {0, 4, 8, 11};
    plan_rank_bounds(&p, bounds);
    EXPECT(!memcmp(bounds, want_bounds, sizeof bounds), "/run/rank_slices %llu %llu %llu %llu",
           (unsigned long long)bounds[0], (unsigned long long)bounds[1], (unsigned long long)bounds[2],
           (unsigned long long)bounds[3]);
    const uint64_t rows[5] = {0, 2, 4, 6, 8};
    const int renderer[5] = {0, 0, 1, 1, 2}, verifier[5] = {1, 1, 2, 2, 0};
    EXPECT(p.verify_n == 5, "verify_n %llu", (unsigned long long)p.verify_n);
    for (uint64_t k = 0; k < 5; k++)
        EXPECT(plan_verify_row(&p, k) == rows[k] && plan_renderer(&p, rows[k]) == renderer[k] &&
                   plan_verifier(&p, k) == verifier[k],
               "verification %llu: row %llu, renderer %d, verifier %d", (unsigned long long)k,
               (unsigned long long)plan_verify_row(&p, k), plan_renderer(&p, plan_verify_row(&p, k)),
               plan_verifier(&p, k));
    /* Stitched from 3 slices, on 2 ranks: the slices rendered the rows (renderer -1), verifiers alternate. */
    EXPECT(plan_make(&p, &job, 2, 0, 0, 3) == SOWER_OK, "plan_make stitch");
    uint64_t stitch[4];
    plan_stitch_bounds(&p, &job, stitch);
    EXPECT(!memcmp(stitch, want_bounds, sizeof stitch), "stitch bounds");
    for (uint64_t k = 0; k < 5; k++)
        EXPECT(plan_renderer(&p, plan_verify_row(&p, k)) == -1 && plan_verifier(&p, k) == (int)(k % 2),
               "stitched verification %llu", (unsigned long long)k);
    job_free(&job);
}

/* --slice K/N: the job's slices (job_slice_bounds), tiling the job; each verifies its share, rounded up. */
static void test_slices(void)
{
    Job job = make_job(11, "count: 5");
    const uint64_t lo[3] = {0, 4, 8}, hi[3] = {4, 8, 11}, verify[3] = {2, 2, 2};
    for (int k = 0; k < 3; k++) {
        Plan p;
        EXPECT(plan_make(&p, &job, 2, k, 3, 0) == SOWER_OK, "plan_make");
        EXPECT(p.lo == lo[k] && p.hi == hi[k] && p.verify_n == verify[k],
               "slice %d/3: [%llu, %llu) verify %llu", k, (unsigned long long)p.lo, (unsigned long long)p.hi,
               (unsigned long long)p.verify_n);
    }
    for (int n = 1; n <= 13; n++) { /* more slices than rows: the last ones are empty */
        uint64_t end = 0;
        for (int k = 0; k < n; k++) {
            Plan p;
            uint64_t a, b;
            EXPECT(plan_make(&p, &job, 3, k, n, 0) == SOWER_OK, "plan_make");
            job_slice_bounds(&job, k, n, &a, &b);
            EXPECT(p.lo == a && p.hi == b && p.lo == end && p.verify_n <= p.hi - p.lo, "slice %d/%d", k, n);
            plan_split(0, job.n_rows, k, n, &a, &b);
            EXPECT(p.lo == a && p.hi == b, "plan_split is job_slice_bounds: slice %d/%d", k, n);
            end = p.hi;
        }
        EXPECT(end == job.n_rows, "%d slices end at %llu", n, (unsigned long long)end);
    }
    Plan p;
    EXPECT(plan_make(&p, &job, 0, 0, 0, 0) == SOWER_EINPUT, "zero ranks");
    EXPECT(plan_make(&p, &job, 2, 3, 3, 0) == SOWER_EINPUT, "slice 3/3");
    EXPECT(plan_make(&p, &job, 2, -1, 3, 0) == SOWER_EINPUT, "slice -1/3");
    EXPECT(plan_make(&p, &job, 2, 0, 2, 2) == SOWER_EINPUT, "slice and stitch");
    sower_error_clear();
    job_free(&job);
}

/* Resuming: batches skip the rows done, never span one, hold at most max_b rows, and visit every
 * row not done exactly once. */
static void test_resume_batches(void)
{
    Job job = make_job(40, "count: 3");
    for (int world = 1; world <= 4; world++) {
        Plan p;
        EXPECT(plan_make(&p, &job, world, 1, 2, 0) == SOWER_OK, "plan_make"); /* rows [20, 40) */
        uint8_t done[20] = {0};
        for (int i = 0; i < 20; i++)
            done[i] = (i % 3 == 0) || i == 7 || i == 8; /* rows 20, 23, ..., 27, 28 */
        EXPECT(plan_count_done(&p, done) == 9, "%llu done", (unsigned long long)plan_count_done(&p, done));
        int rendered[20] = {0};
        for (int k = 0; k < world; k++) {
            uint64_t a, b, pos, row0, n;
            plan_rank_rows(&p, k, &a, &b);
            pos = a;
            while ((n = plan_next_batch(&p, done, &pos, b, 2, &row0)) != 0) {
                EXPECT(n <= 2 && row0 >= a && row0 + n <= b, "batch [%llu, +%llu) of rank %d",
                       (unsigned long long)row0, (unsigned long long)n, k);
                for (uint64_t row = row0; row < row0 + n; row++) {
                    EXPECT(!done[row - p.lo], "row %llu is done, rendered again", (unsigned long long)row);
                    rendered[row - p.lo]++;
                }
            }
            EXPECT(pos == b, "rank %d stopped at %llu of [%llu, %llu)", k, (unsigned long long)pos,
                   (unsigned long long)a, (unsigned long long)b);
        }
        for (int i = 0; i < 20; i++)
            EXPECT(rendered[i] == !done[i], "world %d: row %d rendered %d times", world, 20 + i, rendered[i]);
    }
    job_free(&job);
}

/* Up to JOB_MAX_ROWS = 2^40 rows: parts, renderers and verification rows stay exact past 2^31 and 2^32. */
static void test_large_counts(void)
{
    const uint64_t sizes[3] = {(UINT64_C(1) << 31) + 3, (UINT64_C(1) << 32) + 11, JOB_MAX_ROWS};
    for (int s = 0; s < 3; s++) {
        Job job = make_job(sizes[s], "fraction: 0.001");
        EXPECT(job.n_rows == sizes[s], "job rows %llu", (unsigned long long)job.n_rows);
        for (int world = 1; world <= 7; world++) {
            Plan p;
            EXPECT(plan_make(&p, &job, world, 0, 0, 0) == SOWER_OK, "plan_make");
            uint64_t want[8], got[8];
            today_bounds(p.lo, p.hi, world, want);
            plan_rank_bounds(&p, got);
            EXPECT(!memcmp(want, got, sizeof(uint64_t) * (world + 1)) && got[world] == sizes[s],
                   "%llu rows on %d", (unsigned long long)sizes[s], world);
            for (int k = 0; k < world; k++) { /* the rows either side of each boundary */
                EXPECT(got[k + 1] - got[k] >= sizes[s] / world && got[k + 1] - got[k] <= sizes[s] / world + 1,
                       "part %d of %llu rows: %llu", k, (unsigned long long)sizes[s],
                       (unsigned long long)(got[k + 1] - got[k]));
                EXPECT(plan_renderer(&p, got[k]) == k && plan_renderer(&p, got[k + 1] - 1) == k,
                       "renderers at part %d's ends", k);
            }
            EXPECT(p.verify_n == job_verify_rows(&job) && p.verify_n >= sizes[s] / 1000, "verify %llu",
                   (unsigned long long)p.verify_n);
            uint64_t last = 0;
            for (uint64_t v = 0; v < p.verify_n; v += p.verify_n / 97 + 1) {
                uint64_t row = plan_verify_row(&p, v);
                int ren = today_renderer(want, world, row);
                EXPECT(row >= last && row < p.hi && plan_renderer(&p, row) == ren &&
                           plan_verifier(&p, v) == (ren + 1) % world,
                       "verification %llu: row %llu", (unsigned long long)v, (unsigned long long)row);
                last = row;
            }
        }
        /* The last slice of 100000, past 2^31 rows: resuming with a bitmap of its rows only. */
        Plan p;
        EXPECT(plan_make(&p, &job, 3, 99999, 100000, 0) == SOWER_OK, "plan_make");
        uint64_t rows = p.hi - p.lo, a, b, pos, row0;
        EXPECT(p.hi == sizes[s] && p.hi > (UINT64_C(1) << 31), "last slice [%llu, %llu)",
               (unsigned long long)p.lo, (unsigned long long)p.hi);
        uint8_t *done = calloc(rows, 1); /* (rows,) */
        if (!done) {
            fprintf(stderr, "FAIL: out of memory for %llu rows\n", (unsigned long long)rows);
            exit(1);
        }
        memset(done, 1, rows - 5); /* all but the last five rows were written */
        EXPECT(plan_count_done(&p, done) == rows - 5, "done");
        plan_rank_rows(&p, 2, &a, &b);
        pos = a;
        EXPECT(plan_next_batch(&p, done, &pos, b, 8, &row0) == 5 && row0 == sizes[s] - 5 && pos == b,
               "the last five rows of %llu", (unsigned long long)sizes[s]);
        free(done);
        job_free(&job);
    }
}

int main(void)
{
    test_partition_matches_today();
    test_run_small_provenance();
    test_slices();
    test_resume_batches();
    test_large_counts();
    printf("test_plan: %d failures\n", failures);
    return failures ? 1 : 0;
}
