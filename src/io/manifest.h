/* manifest.h: the job manifest (YAML), as schema/README.md and schema/sower-job.schema.json define
 * it. manifest_load reads and checks it completely (structure, ranges, seed duplicates) and reports
 * the first problem as FILE:LINE:COLUMN: expected ..., found ... (SOWER_EMANIFEST, exit 2). */
#ifndef SOWER_MANIFEST_H
#define SOWER_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "digest.h"
#include "err.h"
#include "rng.h"
#include "scheduler.h"

#define JOB_MAX_ROWS (UINT64_C(1) << 40)
#define JOB_MAX_PROMPTS 100000      /* prompts: and prompts_file together */
#define JOB_MAX_PROMPT_CHARS 8192   /* one prompt (or negative prompt): code points, as the schema counts */
#define JOB_MAX_PROMPTS_FILE_BYTES (256u << 20)

typedef struct {
    uint64_t start, count; /* seeds start .. start + count - 1 */
} SeedRange;

typedef struct {
    uint32_t line, column; /* 1-based position in the manifest, for messages */
} Mark;

/* 1 when s is a Slurm time limit as sbatch --time takes it: MINUTES, MM:SS, HH:MM:SS, DAYS-HH[:MM[:SS]]. */
int slurm_time_valid(const char *s);
/* 1 when s is a Slurm partition or a list of them as sbatch --partition takes it ("gpu,cpu": names of
 * letters, digits, '.', '_' and '-', separated by single commas). */
int slurm_partition_valid(const char *s);
/* Such a limit in seconds (0: none, as Slurm reads 0), or -1 when it is not one. */
double slurm_time_seconds(const char *s);

/* How `sower submit` asks Slurm for resources (the manifest's optional `slurm:` section; flags
 * override it). Not used by `sower run`. */
typedef struct {
    int tasks;                        /* MPI ranks per allocation or array task; default 1 */
    int cpus_per_task;                /* 0: Slurm's default */
    int gpus_per_task;                /* -1: 1 with backend cuda, else none */
    int slices;                       /* array tasks; 0: one allocation */
    char time[32];                    /* Slurm time limit ("" : the partition's default) */
    char partition[65], account[65];  /* "" : the cluster's default */
} SlurmSettings;

typedef struct {
    char *manifest_path;
    char *text;                       /* the manifest bytes, NUL-terminated */
    size_t text_bytes;
    unsigned char text_sha256[DIGEST_BYTES];

    char name[129];
    char *model_path;                 /* resolved against the manifest's directory */
    Mark model_mark;
    int model_digest_pinned;
    unsigned char model_digest[DIGEST_BYTES];

    SchedulerKind scheduler;          /* final once job_resolve_scheduler has run */
    int scheduler_given;              /* pipeline.scheduler named (else the model's default decides) */
    int steps;
    double eta;
    SigmaSchedule sigmas;             /* pipeline.sigmas (or karras: true): the schedule forced over the folder's config */
    Mark eta_mark, sigmas_mark;       /* where pipeline.eta / sigmas (or karras) are (0: not given) */
    const char *sigmas_key;           /* "pipeline.sigmas" or "pipeline.karras": the key that set it, for messages */
    int batch;
    Backend backend;
    Precision precision;
    int threads;                      /* 0: every CPU the rank may use */
    RngKernel generator;

    SeedRange *ranges;                /* (n_ranges,) in manifest order */
    Mark *range_marks;                /* (n_ranges,) */
    int n_ranges;
    uint64_t *list;                   /* (n_list,) in manifest order */
    Mark *list_marks;                 /* (n_list,) */
    size_t n_list;
    uint64_t n_seeds;                 /* all ranges' counts + n_list */
    uint64_t n_rows;                  /* n_seeds, times n_prompts when there are prompts */

    /* Stable Diffusion (a StableDiffusionPipeline folder): rows are every (prompt, seed) pair,
     * prompt-major: row = p * n_seeds + s. None for an unconditional model. */
    char **prompts, **negative_prompts; /* (n_prompts,) UTF-8; a negative prompt "" when absent */
    Mark *prompt_marks;               /* (n_prompts,) the manifest's line, or the prompts file's */
    size_t n_prompts;
    size_t n_listed_prompts;          /* the first n_listed_prompts are prompts:'s, the rest the file's */
    char *prompts_file;               /* prompts_file resolved against the manifest's directory; NULL: none */
    char *prompts_file_negative;      /* the negative prompt of the file's prompts ("" when none given) */
    Mark prompts_file_mark;
    int prompts_file_pending;         /* named but not read yet: the prompts and n_rows are not final */
    double guidance;                  /* pipeline.guidance: diffusers' guidance_scale (7.5) */
    double guidance_rescale;          /* pipeline.guidance_rescale: diffusers' guidance_rescale, 0..1 (0: off) */
    Mark guidance_rescale_mark;
    int height, width;                /* pipeline.height/width in pixels; 0: the model's default */
    int clip_skip;                    /* pipeline.clip_skip */
    int decode;                       /* pipeline.decode: images (/images, uint8) beside the latents */
    Mark text_mark;                   /* where the first Stable Diffusion setting is (0: none given) */
    Mark size_mark, clip_skip_mark, decode_mark; /* where pipeline.height / clip_skip / decode are (0: not given) */

    char *output_path;                /* resolved against the manifest's directory */
    int output_gzip;
    int chunk_rows;

    int verify_by_fraction;
    uint64_t verify_count;
    double verify_fraction;

    SlurmSettings slurm;
} Job;

/* Reads the manifest and, when it names one, its prompts_file: a complete job. */
int manifest_load(Job *job, const char *path) SOWER_MUST_CHECK;
/* The same from the manifest's bytes (read elsewhere, e.g. by rank 0 and broadcast); path names it.
 * A manifest that names a prompts_file leaves the job incomplete (prompts_file_pending) until one of
 * the two below gives it the file's prompts. */
int manifest_load_text(Job *job, const char *path, const char *text, size_t bytes) SOWER_MUST_CHECK;
/* The prompts file's bytes (read elsewhere, e.g. by rank 0 and broadcast): one UTF-8 prompt per line
 * (\n or \r\n; a leading byte-order mark and blank lines skipped), appended after prompts:'s, each
 * with prompts_file's negative prompt. SOWER_EMANIFEST naming FILE:LINE:COLUMN for invalid UTF-8, a NUL
 * byte, a prompt over JOB_MAX_PROMPT_CHARS, too many prompts or rows, or a file with no prompt. */
int job_read_prompts_text(Job *job, const char *text, size_t bytes) SOWER_MUST_CHECK;
/* "prompts file (named at MANIFEST:LINE:COL)": its role in messages about reading it. */
void job_prompts_file_role(const Job *job, char *out, size_t size);
/* Reads job->prompts_file from disk and gives it to job_read_prompts_text. */
int job_load_prompts_file(Job *job) SOWER_MUST_CHECK;
/* The prompts an output recorded (its /prompts and /negative_prompts, n of each), for readers of a file
 * whose stored manifest names a prompts_file: the first n_listed_prompts must be the manifest's own, the
 * rest become the file's. where names the output in messages (SOWER_EINPUT). */
int job_adopt_recorded_prompts(Job *job, char *const *prompts, char *const *negatives, size_t n,
                               const char *where) SOWER_MUST_CHECK;
void job_free(Job *job); /* safe on a zeroed Job */

/* The seed of row `row` (0 <= row < n_rows): ranges in order, then the list (prompt-major rows:
 * row % n_seeds). */
uint64_t job_seed_at(const Job *job, uint64_t row);
/* The prompt of row `row` (index into prompts; 0 without prompts). */
uint64_t job_prompt_at(const Job *job, uint64_t row);
/* The shortest text that reads back as v ("%g" would print 0.123456789 as 0.123457: another job), with a
 * point before any exponent (YAML 1.1 readers take 1e-320 for a string); returns text. */
const char *job_number_text(double v, char text[static 32]);
/* Rows the verification pass re-renders (count, or fraction of the rows rounded up, at most n_rows). */
uint64_t job_verify_rows(const Job *job);
/* Slice k of n (0 <= k < n): rows [lo, hi), contiguous, the remainder spread over the first slices.
 * The same split serves array tasks (`sower run --slice K/N`) and the ranks of one run. */
void job_slice_bounds(const Job *job, int k, int n, uint64_t *lo, uint64_t *hi);
/* Writes a warning naming the first pair of seeds whose low 32 bits are equal (identical noise). */
void job_warn_seed_collisions(const Job *job, FILE *stream);
/* "MANIFEST:LINE:COLUMN" of the job's model key into out, for messages about the model it names. */
void job_model_where(const Job *job, char *out, size_t size);
/* A job fits its model's kind: prompts (and the other Stable Diffusion settings) with a
 * StableDiffusionPipeline folder, required there, refused elsewhere; sizes that the VAE's factor divides.
 * SOWER_EMANIFEST naming the manifest's line. */
struct Model; /* model.h */
int job_check_model_kind(const Job *job, const struct Model *m) SOWER_MUST_CHECK;
/* pipeline.eta and karras must suit the job's scheduler: SOWER_EMANIFEST naming their line otherwise; `whose`
 * ("" for a named scheduler, else ending in "; ") says in the message where the scheduler came from. */
int job_check_scheduler_settings(const Job *job, const char *whose) SOWER_MUST_CHECK;
/* A manifest without pipeline.scheduler runs the model's default (model_default_scheduler: a Stable
 * Diffusion folder's own, as StableDiffusionPipeline and `sower sample` run it; DDIM otherwise); its
 * pipeline.eta and karras must suit it. SOWER_EMANIFEST / SOWER_EUSAGE naming the manifest's line. */
int job_resolve_scheduler(Job *job, const struct Model *m) SOWER_MUST_CHECK;
/* "manifest.yaml:LINE:COL" of the first Stable Diffusion setting (prompts, pipeline.guidance, ...). */
void job_text_where(const Job *job, char *out, size_t size);
/* "MANIFEST:LINE:COL" of one setting (size_mark, ...), or of the first Stable Diffusion setting where that one
 * was not given (a default found wanting). */
void job_mark_where(const Job *job, Mark mark, char *out, size_t size);
/* The normalised job (every default filled in) as YAML: itself a manifest for the same job, read from any folder
 * (absolute, quoted paths) and by YAML 1.1 readers too (tests/test_manifest_schema.py reads it back). */
void job_print(const Job *job, FILE *stream);

#endif /* SOWER_MANIFEST_H */
