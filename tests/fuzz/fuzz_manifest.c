/* fuzz_manifest.c: job manifests (manifest_load_text: libyaml, then sower's checks) and prompts files
 * (job_read_prompts_text: the same input as a prompts file, and as the file of a manifest that names
 * one). A manifest either loads with a consistent job (rows = ranges + list, in the format's limits,
 * every seed addressable; prompts of valid UTF-8, one line each) or fails with exit code 2 and a message
 * naming the file. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "fuzz.h"
#include "manifest.h"
#include "utf8.h"

static const char manifest_path[] = "fuzz-dir/job.yaml"; /* a folder that does not exist */

static void check_job(const Job *job)
{
    uint64_t rows = job->n_list;
    for (int i = 0; i < job->n_ranges; i++) {
        FUZZ_ASSERT(job->ranges[i].count > 0, "range %d is empty", i);
        FUZZ_ASSERT(job->ranges[i].start + (job->ranges[i].count - 1) >= job->ranges[i].start,
                    "range %d wraps past 2^64", i);
        rows += job->ranges[i].count;
    }
    FUZZ_ASSERT(rows == job->n_seeds, "%llu seeds counted, job says %llu", (unsigned long long)rows,
                (unsigned long long)job->n_seeds);
    FUZZ_ASSERT(job->n_rows == job->n_seeds * (job->n_prompts ? job->n_prompts : 1), "%llu rows of %llu seeds x %zu prompts",
                (unsigned long long)job->n_rows, (unsigned long long)job->n_seeds, job->n_prompts);
    for (size_t i = 0; i < job->n_prompts; i++) {
        size_t bad = 0, len = job->prompts[i] ? strlen(job->prompts[i]) : 0;
        /* "" only as a listed (quoted) prompt: a prompts file's blank lines are skipped */
        FUZZ_ASSERT(job->prompts[i] && job->negative_prompts[i] && (len || i < job->n_listed_prompts), "prompt %zu", i);
        FUZZ_ASSERT(utf8_valid(job->prompts[i], len, &bad) && utf8_chars(job->prompts[i], len) <= JOB_MAX_PROMPT_CHARS &&
                        (i < job->n_listed_prompts || !strchr(job->prompts[i], '\n')),
                    "prompt %zu is not (one line, from a file, of) at most %d characters of UTF-8", i,
                    JOB_MAX_PROMPT_CHARS);
    }
    FUZZ_ASSERT(job->n_listed_prompts <= job->n_prompts && job->n_prompts <= JOB_MAX_PROMPTS && !job->prompts_file_pending,
                "%zu prompts, %zu listed, pending %d", job->n_prompts, job->n_listed_prompts, job->prompts_file_pending);
    FUZZ_ASSERT(!job->height == !job->width && job->height % 8 == 0 && job->width % 8 == 0, "size %dx%d",
                job->height, job->width);
    FUZZ_ASSERT(job->n_rows >= 1 && job->n_rows <= JOB_MAX_ROWS, "%llu rows", (unsigned long long)job->n_rows);
    FUZZ_ASSERT(job->steps >= 1 && job->batch >= 1, "steps %d, batch %d", job->steps, job->batch);
    FUZZ_ASSERT(job->eta >= 0.0 && job->eta <= 1.0, "eta %g", job->eta);
    FUZZ_ASSERT(job->precision == PRECISION_FP32 || job->backend == BACKEND_CUDA, "tf32 on the cpu backend");
    FUZZ_ASSERT(job_verify_rows(job) <= job->n_rows, "verifies more rows than the job has");
    FUZZ_ASSERT(job->model_path && job->output_path, "no model or output path");
    FUZZ_ASSERT(strlen(job->name) > 0, "no name");
    (void)job_seed_at(job, 0);
    (void)job_seed_at(job, job->n_rows - 1);
}

/* The input as the prompts file of a job of 3 seeds. */
static void fuzz_prompts_file(const uint8_t *data, size_t size)
{
    Job job;
    memset(&job, 0, sizeof job);
    job.manifest_path = strdup(manifest_path);
    job.prompts_file = strdup("fuzz-dir/prompts.txt");
    job.prompts_file_negative = strdup("");
    FUZZ_ASSERT(job.manifest_path && job.prompts_file && job.prompts_file_negative, "out of memory");
    job.n_seeds = 3, job.prompts_file_pending = 1;
    job.model_path = strdup("m"), job.output_path = strdup("o"), job.steps = job.batch = 1, job.name[0] = 'f';
    int status = job_read_prompts_text(&job, (const char *)data, size);
    if (status == SOWER_OK) {
        job.n_list = 3; /* what check_job counts the seeds from */
        job.list = calloc(3, sizeof *job.list);
        FUZZ_ASSERT(job.list, "out of memory");
        check_job(&job);
    } else {
        fuzz_expect_input_error(status, "fuzz-dir/prompts.txt");
    }
    job_free(&job);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Job job;
    memset(&job, 0, sizeof job);
    int status = manifest_load_text(&job, manifest_path, (const char *)data, size);
    if (status == SOWER_OK && job.prompts_file_pending) /* the input is its own prompts file */
        status = job_read_prompts_text(&job, (const char *)data, size);
    if (status == SOWER_OK)
        check_job(&job);
    else
        fuzz_expect_input_error(status, manifest_path);
    job_free(&job);
    fuzz_prompts_file(data, size);
    return 0;
}
