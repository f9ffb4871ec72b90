/* cmd_run.c: `sower run JOB.yaml`: the distributed sweep.
 *
 * Rank 0 reads the manifest and broadcasts its bytes; every rank parses the same bytes (so all
 * hold the same Job). Rows are planned into contiguous slices, one per rank, scattered from rank 0.
 * Each rank maps the model (the page cache makes that one read from storage per node), renders
 * its slice in batches and sends rows with their SHA-256 digests to rank 0, the writer, which
 * writes them into OUT.partial as they arrive. Then a sample of rows is re-rendered by a rank other
 * than the one that rendered them and compared bit for bit with what was written. Rank 0 decides
 * the exit status; a rank that fails mid-job aborts the whole job (MPI_Abort) after printing its
 * rank and the cause, so no rank waits forever.
 *
 * Sweeps larger than one allocation run as job-array tasks: `--slice K/N` renders slice K of N
 * (job_slice_bounds) into its own file OUT.slice-K-of-N.h5; `--stitch N` copies the N finished
 * slices into OUT.h5 (same datasets, byte for byte, as one allocation would write) and verifies.
 * A stop signal (stop.h) ends the run after the batches in hand, keeping OUT.partial for --resume. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <math.h>
#include <mpi.h>
#include <sched.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "gemm.h"
#include "h5out.h"
#include "manifest.h"
#include "model.h"
#include "outfile.h"
#include "pipeline.h"
#include "provenance.h"
#include "stop.h"
#include "weight_share.h"

/* Messages. TAG_ROWS to rank 0: [row0 (8), n (8), latents (n, C, H, W), digests (n, 32)]; n = 0 ends
 * the sender's part, with row0 = 1 when it stopped early. Rank 0 sends each other rank exactly one
 * TAG_STOP (empty): "stop now" while the rank is still rendering, else the reply to its end. */
enum { TAG_ROWS = 11, TAG_VERIFY = 12, TAG_STOP = 13, MANIFEST_MAX = 64 << 20, SLICES_MAX = 100000 };

typedef struct {
    const char *manifest, *output, *status_file;
    int force, resume, resume_auto, batch;
    int slice_k, slice_n; /* --slice K/N; slice_n 0: the whole job */
    int stitch_n;         /* --stitch N; 0: render */
} RunOptions;

typedef struct {
    int rank, world;
    Job job;
    Model model;
    Scheduler sched;
    WeightShare share;      /* how the weights reach this rank's device */
    ComputeBackend backend; /* runs the UNet: the manifest's pipeline.backend on this rank's device */
    RenderSettings rs;
    size_t per;             /* floats per row: C*H*W */
    uint64_t lo, hi;        /* job rows this run writes: the whole job, or one slice of it */
    char *out_path;         /* the file this run writes (the job's output, or the slice's file) */
    int slice_k, slice_n, stitch_n; /* from RunOptions */
    uint64_t *slices;       /* (world + 1,) job-row boundaries: rank r renders [slices[r], slices[r+1]) */
    uint8_t *done;          /* (hi - lo,) rows already in the output (resumed or stitched), skipped */
    uint64_t n_done;
    int finished_before;    /* --resume-auto found the output already finished: nothing to do */
    double t_render, t_write, t_wait; /* seconds: rendering (+ digests), HDF5 writes, waiting for rows */
    long fault_rank;        /* SOWER_FAULT_INJECT=RANK:ROW flips one bit of that row on that rank */
    uint64_t fault_row;
    long fail_rank;         /* SOWER_FAULT_FAIL_RANK=RANK makes that rank fail while rendering (tests) */
    double progress_seconds; /* between progress lines on stderr: SOWER_PROGRESS_SECONDS, default 2 */
    int failure;            /* the status of the first rank that failed a step (agree), for the last line */
} Run;

static const char run_usage[] =
    "usage: sower run JOB.yaml [--resume | --resume-auto] [--force] [-o OUT.h5] [--batch B]\n"
    "                          [--slice K/N | --stitch N]\n"
    "       mpirun -np N sower run JOB.yaml ...   (or srun --mpi=pmix)\n"
    "\n"
    "Renders every seed of the job across the MPI ranks into one HDF5 file (rows in manifest order),\n"
    "then re-renders a sample of rows on other ranks and compares the bits (exit 1 on a mismatch).\n"
    "  --resume     continue an interrupted run (OUT.h5.partial of the same manifest and model):\n"
    "               rows already written are kept, the rest rendered; the result is byte-identical\n"
    "  --resume-auto  for batch scripts that may run again (requeue): resume OUT.h5.partial if there\n"
    "               is one, start if not, exit 0 at once if OUT.h5 is already finished for this job\n"
    "  --slice K/N  render only slice K (0..N-1) of the rows, into OUT.slice-K-of-N.h5 (job arrays)\n"
    "  --stitch N   copy the N finished slices into OUT.h5 (datasets identical to a one-allocation\n"
    "               run), checking each slice's provenance and row digests, then verify\n"
    "  --force      replace an existing output file\n"
    "  -o OUT.h5    write here instead of the manifest's output.path\n"
    "  --batch B    seeds per forward pass (overrides pipeline.batch; bits never depend on it)\n"
    "  --status-file F  rank 0 writes the exit code to F when the run ends (batch scripts: srun can\n"
    "               report success for a step that never started)\n"
    "SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 stop the run after the batches in hand: the rows written stay\n"
    "in OUT.h5.partial (exit 3); run again with --resume to finish.\n";

/* Parses "K/N" (0 <= K < N <= SLICES_MAX). */
static int parse_slice(const char *text, int *k, int *n)
{
    char *end;
    long a = strtol(text, &end, 10), b = -1;
    if (end != text && *end == '/') {
        char *end2;
        b = strtol(end + 1, &end2, 10);
        if (end2 == end + 1 || *end2)
            b = -1;
    }
    if (b < 1 || b > SLICES_MAX || a < 0 || a >= b)
        return SOWER_FAIL(SOWER_EUSAGE, "--slice: expected K/N with 0 <= K < N <= %d, found '%s'", SLICES_MAX, text);
    *k = (int)a, *n = (int)b;
    return SOWER_OK;
}

enum { RUN_FORCE, RUN_RESUME, RUN_RESUME_AUTO, RUN_SLICE, RUN_STITCH, RUN_STATUS_FILE, RUN_OUTPUT, RUN_BATCH, N_RUN_OPTS };
static const CliOption run_options[N_RUN_OPTS] = {
    [RUN_FORCE] = {"--force", NULL, 0},        [RUN_RESUME] = {"--resume", NULL, 0},
    [RUN_RESUME_AUTO] = {"--resume-auto", NULL, 0}, [RUN_SLICE] = {"--slice", NULL, 1},
    [RUN_STITCH] = {"--stitch", NULL, 1},      [RUN_STATUS_FILE] = {"--status-file", NULL, 1},
    [RUN_OUTPUT] = {"--output", "-o", 1},      [RUN_BATCH] = {"--batch", NULL, 1},
};

static int on_run_option(void *ctx, int which, const char *v)
{
    RunOptions *o = ctx;
    long n;
    switch (which) {
    case RUN_FORCE: o->force = 1; break;
    case RUN_RESUME: o->resume = 1; break;
    case RUN_RESUME_AUTO: o->resume_auto = 1; break;
    case RUN_SLICE: SOWER_TRY(parse_slice(v, &o->slice_k, &o->slice_n)); break;
    case RUN_STITCH:
        SOWER_TRY(cli_parse_int("--stitch (the slice count)", v, 1, SLICES_MAX, &n));
        o->stitch_n = (int)n;
        break;
    case RUN_STATUS_FILE: o->status_file = v; break;
    case RUN_OUTPUT: o->output = v; break;
    case RUN_BATCH:
        SOWER_TRY(cli_parse_int("--batch", v, 1, 1024, &n));
        o->batch = (int)n;
        break;
    }
    return SOWER_OK;
}

static int on_run_manifest(void *ctx, const char *arg)
{
    RunOptions *o = ctx;
    if (o->manifest)
        return cli_unknown("run", arg);
    o->manifest = arg;
    return SOWER_OK;
}

static int parse_run_options(int argc, char **argv, RunOptions *o, int *help)
{
    memset(o, 0, sizeof *o);
    const CliParser parser = {"run", run_options, N_RUN_OPTS, on_run_option, on_run_manifest, o};
    SOWER_TRY(cli_parse(&parser, argc, argv, help));
    if (*help)
        return SOWER_OK;
    if (!o->manifest)
        return SOWER_FAIL(SOWER_EUSAGE, "run: JOB.yaml is required (see 'sower run --help')");
    if (o->resume && o->resume_auto)
        return SOWER_FAIL(SOWER_EUSAGE, "run: --resume and --resume-auto exclude each other");
    if (o->slice_n && o->stitch_n)
        return SOWER_FAIL(SOWER_EUSAGE, "run: --slice and --stitch exclude each other (render slices first, then "
                                        "stitch them in a job of its own)");
    return SOWER_OK;
}

/* OUT.slice-K-of-N.h5 beside OUT.h5 (".h5" replaced, or the suffix appended); K zero-padded to N's
 * width so that slices sort. Caller frees. */
static char *slice_path(const char *out, int k, int n)
{
    size_t len = h5_stem_length(out);
    int width = snprintf(NULL, 0, "%d", n - 1);
    size_t cap = len + 64;
    char *path = malloc(cap);
    if (path)
        snprintf(path, cap, "%.*s.slice-%0*d-of-%d.h5", (int)len, out, width, k, n);
    return path;
}

/* The agreed exit code, for the batch script (written to F.tmp and renamed: never half a file). */
static void write_status_file(const char *path, int exit_code)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", exit_code) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        fprintf(stderr, "sower: warning: cannot write the status file '%s'\n", path);
}

/* Threads per rank when the manifest does not say: Slurm's --cpus-per-task; else the CPUs this
 * process may run on when a launcher bound it to fewer than the node has; else the node's CPUs
 * shared among the ranks on it (oversubscribed spinning threads would wait on each other). */
static int default_threads(void)
{
    const char *slurm = getenv("SLURM_CPUS_PER_TASK");
    if (slurm && atoi(slurm) > 0)
        return atoi(slurm);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) == 0 && CPU_COUNT(&mask) < online)
        return CPU_COUNT(&mask);
    MPI_Comm node;
    int local = 1;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    return online / local > 0 ? (int)(online / local) : 1;
}

/* MPI_Bcast from rank 0 of n bytes, in pieces that fit MPI's int counts. */
static void bcast_bytes(void *data, uint64_t n)
{
    const uint64_t piece = UINT64_C(1) << 30;
    for (uint64_t at = 0; at < n; at += piece)
        MPI_Bcast((char *)data + at, (int)(n - at < piece ? n - at : piece), MPI_BYTE, 0, MPI_COMM_WORLD);
}

/* Every rank contributes its status; the worst exit code wins. The lowest failing rank prints its
 * error (a bad manifest fails every rank the same way: one message, not one per rank). */
static int agree(Run *r, int status)
{
    int code = status == SOWER_OK ? 0 : sower_status_exit_code(status), worst = 0;
    int mine = status == SOWER_OK ? r->world : r->rank, first = 0;
    MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (status != SOWER_OK && r->rank == first) {
        if (r->world > 1)
            fprintf(stderr, "[rank %d of %d] ", r->rank, r->world);
        sower_error_print(stderr, 0);
    }
    if (worst != 0 && first < r->world) { /* every rank learns what failed (a CUDA error is no bug) */
        int failure = status;
        MPI_Bcast(&failure, 1, MPI_INT, first, MPI_COMM_WORLD);
        if (r->failure == SOWER_OK)
            r->failure = failure;
    }
    return worst;
}

static void abort_job(const Run *r, int status)
{
    fprintf(stderr, "sower: rank %d of %d failed, ending the job: ", r->rank, r->world);
    sower_error_print(stderr, 1);
    MPI_Abort(MPI_COMM_WORLD, sower_status_exit_code(status));
}

/* Rank 0 reads the manifest; every rank parses the same bytes. */
static int load_job(Run *r, const RunOptions *o)
{
    unsigned char *text = NULL;
    size_t bytes = 0;
    long long len = -1;
    int status = SOWER_OK;
    if (r->rank == 0) {
        status = file_read_all(o->manifest, MANIFEST_MAX, &text, &bytes);
        len = status == SOWER_OK ? (long long)bytes : -1;
    }
    MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    if (len < 0) {
        free(text);
        return r->rank == 0 ? SOWER_FAIL(SOWER_EMANIFEST, "%s", sower_error_message())
                            : SOWER_FAIL(SOWER_EMANIFEST, "(rank 0 could not read the manifest)");
    }
    if (r->rank != 0 && !(text = malloc((size_t)len + 1)))
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    MPI_Bcast(text, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD);
    status = manifest_load_text(&r->job, o->manifest, (const char *)text, (size_t)len);
    free(text);
    SOWER_TRY(status);
    if (o->output) {
        free(r->job.output_path);
        r->job.output_path = strdup(o->output);
    }
    if (o->batch)
        r->job.batch = o->batch;
    r->slice_k = o->slice_k, r->slice_n = o->slice_n, r->stitch_n = o->stitch_n;
    r->lo = 0, r->hi = r->job.n_rows;
    if (o->slice_n) {
        job_slice_bounds(&r->job, o->slice_k, o->slice_n, &r->lo, &r->hi);
        r->out_path = slice_path(r->job.output_path, o->slice_k, o->slice_n);
    } else {
        r->out_path = strdup(r->job.output_path);
    }
    if (!r->out_path)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    struct stat st;
    if (r->rank == 0 && !o->force && !o->resume_auto && stat(r->out_path, &st) == 0)
        return SOWER_FAIL(SOWER_EPATH, "output '%s' exists: pass --force to replace it (or --resume-auto to accept "
                                       "it when it is this job's finished output)", r->out_path);
    return SOWER_OK;
}

/* Every rank parses the model; the weights themselves are read here only where weight_share says. */
static int load_model(Run *r)
{
    SOWER_TRY(model_load_opt(&r->model, r->job.model_path, weight_share_reads_file(&r->share)));
    const UNetConfig *cfg = &r->model.unet.cfg;
    if (!cfg->sample_height)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key 'sample_size' is null", r->model.unet_config_path);
    SchedulerConfig scfg;
    SOWER_TRY(scheduler_config_parse(r->model.scheduler_config_text, r->model.scheduler_config_bytes,
                                     r->model.scheduler_config_path, r->job.scheduler, &scfg));
    scfg.torch_kernel = r->job.generator;
    SOWER_TRY(scheduler_init(&r->sched, &scfg, r->job.steps));
    r->per = (size_t)cfg->in_channels * cfg->sample_height * cfg->sample_width;
    r->rs = (RenderSettings){.model = &r->model, .backend = &r->backend, .scheduler = &r->sched, .eta = (float)r->job.eta,
                             .generator = r->job.generator, .batch = r->job.batch,
                             .height = cfg->sample_height, .width = cfg->sample_width,
                             .should_stop = stop_requested};
    return SOWER_OK;
}

/* Every rank must compute as rank 0 does: the verification pass compares one rank's bits with
 * another's, and bits are reproducible only between equal backend identities (backend.h). */
static int check_identities(const Run *r)
{
    char *all = r->rank == 0 ? calloc((size_t)r->world, BACKEND_IDENTITY_SIZE) : NULL; /* (world, SIZE) */
    if (r->rank == 0 && !all)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    MPI_Gather(r->backend.identity, BACKEND_IDENTITY_SIZE, MPI_CHAR, all, BACKEND_IDENTITY_SIZE, MPI_CHAR, 0,
               MPI_COMM_WORLD);
    int status = SOWER_OK;
    for (int k = 1; r->rank == 0 && k < r->world && status == SOWER_OK; k++)
        if (strcmp(all + (size_t)k * BACKEND_IDENTITY_SIZE, all) != 0)
            status = SOWER_FAIL(SOWER_EINPUT, "ranks compute differently: rank 0 is '%s', rank %d is '%s'; bits "
                                              "compare only between equal backend identities, so one job needs one "
                                              "kind of node (ask Slurm for it with --constraint or --gres)",
                                all, k, all + (size_t)k * BACKEND_IDENTITY_SIZE);
    free(all);
    return status;
}

/* Contiguous parts of [lo, hi), the remainder spread over the first ranks; scattered from rank 0. */
static void plan(Run *r)
{
    uint64_t mine[2] = {0, 0}, *all = NULL;
    if (r->rank == 0) {
        all = malloc(sizeof *all * 2 * r->world);
        uint64_t n = r->hi - r->lo, base = n / r->world, extra = n % r->world, at = r->lo;
        for (int k = 0; k < r->world; k++) {
            all[2 * k] = at;
            at += base + ((uint64_t)k < extra);
            all[2 * k + 1] = at;
        }
    }
    MPI_Scatter(all, 2, MPI_UINT64_T, mine, 2, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    r->slices = malloc(sizeof *r->slices * (r->world + 1));
    /* Every rank also needs the whole plan (which rank rendered a row): gather the boundaries. */
    uint64_t *starts = malloc(sizeof *starts * r->world);
    MPI_Allgather(&mine[0], 1, MPI_UINT64_T, starts, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int k = 0; k < r->world; k++)
        r->slices[k] = starts[k];
    r->slices[r->world] = r->hi;
    free(starts);
    free(all);
}

/* The rank that rendered a job row in this run; -1 for stitched rows (an array task rendered them). */
static int renderer_of(const Run *r, uint64_t row)
{
    if (r->stitch_n)
        return -1;
    int k = 0;
    while (k + 1 < r->world && row >= r->slices[k + 1])
        k++;
    return k;
}

/* Renders rows [row0, row0+n) into latents (n, per) and their digests (n, 32). */
static int render_rows(Run *r, uint64_t row0, uint64_t n, float *latents, unsigned char *digests)
{
    if (r->fail_rank == r->rank)
        return SOWER_FAIL(SOWER_EIO, "injected failure (SOWER_FAULT_FAIL_RANK=%ld) while rendering row %llu",
                          r->fail_rank, (unsigned long long)row0);
    uint64_t *seeds = calloc(n + 1, sizeof *seeds);
    if (!seeds)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++)
        seeds[i] = job_seed_at(&r->job, row0 + i);
    double t0 = MPI_Wtime();
    int status = render_seeds(&r->rs, seeds, (int)n, latents);
    free(seeds);
    SOWER_TRY(status);
    for (uint64_t i = 0; i < n; i++) {
        float *row = latents + r->per * i;
        if (r->fault_rank == r->rank && row0 + i == r->fault_row) {
            uint32_t bits;
            memcpy(&bits, row, sizeof bits);
            bits ^= 1u;
            memcpy(row, &bits, sizeof bits);
        }
        SOWER_TRY(digest_buffer(row, r->per * sizeof(float), digests + 32 * i));
    }
    r->t_render += MPI_Wtime() - t0;
    return SOWER_OK;
}

/* done: rows of this run in the output; fresh: of them, rendered since start. */
static void progress(const Run *r, uint64_t done, uint64_t fresh, double start, double *last)
{
    double now = MPI_Wtime();
    const uint64_t total = r->hi - r->lo;
    if (now - *last < r->progress_seconds && done < total)
        return;
    *last = now;
    double rate = fresh / (now - start + 1e-9);
    double eta = rate > 0 ? (total - done) / rate : 0;
    fprintf(stderr, "%s[sower] %llu/%llu rows, %.2f rows/s, ETA %.0f s%s", isatty(2) ? "\r" : "",
            (unsigned long long)done, (unsigned long long)total, rate, eta, isatty(2) ? "" : "\n");
}

/* The next batch of at most max_b consecutive rows not yet done, from *pos up to hi; 0 when none. */
static uint64_t next_batch(const Run *r, uint64_t *pos, uint64_t hi, uint64_t max_b, uint64_t *row0)
{
    while (*pos < hi && r->done[*pos - r->lo])
        (*pos)++;
    *row0 = *pos;
    uint64_t n = 0;
    while (*pos < hi && n < max_b && !r->done[*pos - r->lo])
        (*pos)++, n++;
    return n;
}

/* Rank 0 sends rank k its one TAG_STOP unless it has had it (told (world,)). */
static void tell_stop(uint8_t *told, int k)
{
    if (told[k])
        return;
    told[k] = 1;
    MPI_Send(NULL, 0, MPI_BYTE, k, TAG_STOP, MPI_COMM_WORLD);
}

/* sig: the signal rank 0 received; else `rank` stopped early (it received one). */
static void announce_stop(int sig, int rank)
{
    fprintf(stderr, "%ssower run: %s %d: finishing the batches in hand, then stopping (OUT.partial is kept for "
                    "--resume)\n", isatty(2) ? "\n" : "", sig ? "signal" : "stopped early on rank", sig ? sig : rank);
}

/* Rank 0: writes its own batches and whatever the other ranks send, until every rank has ended
 * its part (finished it, or stopped early). *stopped: some rows are still missing. */
static int render_and_write(Run *r, H5Out *out, double start, int *stopped)
{
    const uint64_t lo = r->slices[r->rank], hi = r->slices[r->rank + 1], total = r->hi - r->lo;
    const size_t max_b = (size_t)r->job.batch;
    float *lat = malloc(sizeof(float) * r->per * max_b);       /* (batch, C, H, W) */
    unsigned char *dig = malloc(32 * max_b);                    /* (batch, 32) */
    uint8_t *told = calloc((size_t)r->world, 1);                /* (world,) rank k has had its TAG_STOP */
    int status = SOWER_OK, stopping = 0, own_open = 1, open_ranks = r->world - 1;
    uint64_t written = r->n_done;
    double last = start;
    if (!lat || !dig || !told) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        goto done;
    }
    uint64_t next = lo, row0 = 0;
    while (own_open || open_ranks > 0) {
        if (!stopping && stop_requested()) {
            announce_stop(stop_requested(), 0);
            stopping = 1;
        }
        if (stopping) {
            own_open = 0;
            for (int k = 1; k < r->world; k++)
                tell_stop(told, k);
        }
        uint64_t n = own_open ? next_batch(r, &next, hi, max_b, &row0) : 0;
        if (n) {
            status = render_rows(r, row0, n, lat, dig);
            if (status == SOWER_ESTOPPED) { /* a signal mid-batch: those rows are rendered again later */
                sower_error_clear();
                status = SOWER_OK;
                continue;
            }
            SOWER_TRY_GOTO(status, status, done);
            double t0 = MPI_Wtime();
            SOWER_TRY_GOTO(h5out_write_rows(out, row0 - r->lo, n, lat, dig), status, done);
            r->t_write += MPI_Wtime() - t0;
            written += n;
        } else {
            own_open = 0;
        }
        /* Take what has arrived; once our own part is over, wait for it. */
        while (open_ranks > 0) {
            MPI_Status st;
            int pending = 1;
            double t0 = MPI_Wtime();
            if (own_open)
                MPI_Iprobe(MPI_ANY_SOURCE, TAG_ROWS, MPI_COMM_WORLD, &pending, &st);
            else
                MPI_Probe(MPI_ANY_SOURCE, TAG_ROWS, MPI_COMM_WORLD, &st);
            r->t_wait += MPI_Wtime() - t0;
            if (!pending)
                break;
            int bytes = 0;
            MPI_Get_count(&st, MPI_BYTE, &bytes);
            unsigned char *buf = malloc((size_t)bytes);
            t0 = MPI_Wtime();
            MPI_Recv(buf, bytes, MPI_BYTE, st.MPI_SOURCE, TAG_ROWS, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            r->t_wait += MPI_Wtime() - t0;
            uint64_t first, count;
            memcpy(&first, buf, 8);
            memcpy(&count, buf + 8, 8);
            if (count == 0) { /* the sender's end; first = 1: it stopped early */
                free(buf);
                open_ranks--;
                tell_stop(told, st.MPI_SOURCE);
                if (first && !stopping) {
                    announce_stop(0, st.MPI_SOURCE);
                    stopping = 1;
                    break; /* back to the top: tell the others */
                }
                continue;
            }
            t0 = MPI_Wtime();
            status = h5out_write_rows(out, first - r->lo, count, (const float *)(const void *)(buf + 16),
                                      buf + 16 + sizeof(float) * r->per * count);
            r->t_write += MPI_Wtime() - t0;
            free(buf);
            if (status != SOWER_OK)
                goto done;
            written += count;
        }
        progress(r, written, written - r->n_done, start, &last);
    }
    *stopped = written < total;
done:
    free(lat), free(dig), free(told);
    return status;
}

/* Other ranks: render the part and send each batch to rank 0; stop early on a signal or when rank 0
 * says so; then send the end and wait for rank 0's one TAG_STOP (so no message is left unmatched). */
static int render_and_send(Run *r)
{
    const uint64_t lo = r->slices[r->rank], hi = r->slices[r->rank + 1];
    const size_t max_b = (size_t)r->job.batch;
    size_t cap = 16 + (sizeof(float) * r->per + 32) * max_b;
    unsigned char *buf = malloc(cap); /* [row0, n, latents (n, C, H, W), digests (n, 32)] */
    if (!buf)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int status = SOWER_OK, told = 0;
    uint64_t pos = lo, row0 = 0, n, stopped = 0;
    for (;;) {
        int stop_msg = 0;
        MPI_Iprobe(0, TAG_STOP, MPI_COMM_WORLD, &stop_msg, MPI_STATUS_IGNORE);
        if (stop_msg) {
            MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_STOP, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            told = 1;
        }
        if (told || stop_requested()) {
            stopped = 1;
            break;
        }
        if ((n = next_batch(r, &pos, hi, max_b, &row0)) == 0)
            break;
        float *lat = (float *)(void *)(buf + 16);
        unsigned char *dig = buf + 16 + sizeof(float) * r->per * n;
        status = render_rows(r, row0, n, lat, dig);
        if (status == SOWER_ESTOPPED) { /* a signal mid-batch: those rows are rendered again later */
            sower_error_clear();
            status = SOWER_OK;
            stopped = 1;
            break;
        }
        SOWER_TRY_GOTO(status, status, done);
        memcpy(buf, &row0, 8);
        memcpy(buf + 8, &n, 8);
        MPI_Send(buf, (int)(16 + (sizeof(float) * r->per + 32) * n), MPI_BYTE, 0, TAG_ROWS, MPI_COMM_WORLD);
    }
    uint64_t end[2] = {stopped, 0};
    MPI_Send(end, 16, MPI_BYTE, 0, TAG_ROWS, MPI_COMM_WORLD);
    if (!told)
        MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_STOP, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
done:
    free(buf);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* Verification rows: evenly spread over this run's rows, rendered again by the next rank (stitched
 * rows, rendered by array tasks, are spread over all ranks). */
static uint64_t verify_row(const Run *r, uint64_t k, uint64_t v)
{
    return r->lo + (uint64_t)((double)k * (r->hi - r->lo) / v);
}

/* The rank that re-renders verification row k (job row `row`). */
static int verifier_of(const Run *r, uint64_t k, uint64_t row)
{
    return r->stitch_n ? (int)(k % (uint64_t)r->world) : (renderer_of(r, row) + 1) % r->world;
}

/* The job's verify count, or a slice's proportional share of it (rounded up). */
static uint64_t verify_count(const Run *r)
{
    uint64_t v = job_verify_rows(&r->job), rows = r->hi - r->lo;
    if (!r->slice_n || !r->job.n_rows)
        return v;
    v = (uint64_t)ceil((double)v * rows / r->job.n_rows);
    return v < rows ? v : rows;
}

/* Renders one row again into msg = [row (8), digest (32), latent (per floats)], with fault
 * injection off: the point is to catch a fault of the first render. Stop signals are not polled
 * here: verification is short and every row is already written (a run killed now resumes with
 * nothing left to render but the verification). */
static int rerender(Run *r, uint64_t row, unsigned char *msg)
{
    long fault = r->fault_rank;
    int (*should_stop)(void) = r->rs.should_stop;
    r->fault_rank = -1;
    r->rs.should_stop = NULL;
    int status = render_rows(r, row, 1, (float *)(void *)(msg + 40), msg + 8);
    r->fault_rank = fault;
    r->rs.should_stop = should_stop;
    memcpy(msg, &row, 8);
    return status;
}

/* Each rank re-renders its share and sends [row, digest, latent] to rank 0, which compares. */
static int verify(Run *r, H5Out *out, uint64_t v, int *mismatches)
{
    unsigned char *msg = malloc(8 + 32 + sizeof(float) * r->per); /* [row, digest, (C, H, W)] */
    int status = msg ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    *mismatches = 0;
    if (r->rank != 0) {
        for (uint64_t k = 0; k < v && status == SOWER_OK; k++) {
            uint64_t row = verify_row(r, k, v);
            if (verifier_of(r, k, row) != r->rank)
                continue;
            status = rerender(r, row, msg);
            if (status == SOWER_OK)
                MPI_Send(msg, (int)(40 + sizeof(float) * r->per), MPI_BYTE, 0, TAG_VERIFY, MPI_COMM_WORLD);
        }
        free(msg);
        SOWER_TRY(status);
        return SOWER_OK;
    }
    /* Rank 0: collect every verification in row order. */
    uint64_t *rows = calloc(v + 1, 8), *seeds = calloc(v + 1, 8);
    int32_t *ren = calloc(v + 1, 4), *ver = calloc(v + 1, 4);
    uint8_t *match = calloc(v + 1, 1);
    float *diff = calloc(v + 1, 4);
    float *stored = malloc(sizeof(float) * r->per);
    for (uint64_t k = 0; k < v && status == SOWER_OK; k++) {
        uint64_t row = verify_row(r, k, v);
        int who = verifier_of(r, k, row);
        if (who == 0) {
            status = rerender(r, row, msg);
        } else {
            MPI_Recv(msg, (int)(40 + sizeof(float) * r->per), MPI_BYTE, who, TAG_VERIFY, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
        }
        if (status == SOWER_OK)
            status = h5out_read_row(out, row - r->lo, stored);
        if (status != SOWER_OK)
            break;
        unsigned char stored_digest[DIGEST_BYTES];
        status = digest_buffer(stored, sizeof(float) * r->per, stored_digest);
        const float *fresh = (const float *)(const void *)(msg + 40);
        double worst = 0;
        for (size_t i = 0; i < r->per; i++)
            worst = fmax(worst, fabs((double)fresh[i] - stored[i]));
        rows[k] = row, seeds[k] = job_seed_at(&r->job, row);
        ren[k] = renderer_of(r, row), ver[k] = who;
        match[k] = memcmp(stored_digest, msg + 8, DIGEST_BYTES) == 0 && memcmp(stored, fresh, sizeof(float) * r->per) == 0;
        diff[k] = (float)worst;
        if (!match[k]) {
            (*mismatches)++;
            fprintf(stderr, "sower: verify: row %llu (seed %llu) rendered by rank %d differs from rank %d's re-render "
                            "(max abs diff %g)\n", (unsigned long long)row, (unsigned long long)seeds[k], ren[k], who,
                    worst);
        }
    }
    if (status == SOWER_OK)
        status = h5out_write_verify(out, v, rows, seeds, ren, ver, match, diff);
    free(rows), free(seeds), free(ren), free(ver), free(match), free(diff), free(stored), free(msg);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* mkdir -p of the output's directory, so a job's output tree need not exist beforehand. */
static int make_parent_dirs(const char *path)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return SOWER_FAIL(SOWER_EPATH, "output path '%s' is too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return SOWER_OK;
    *slash = '\0';
    SOWER_TRY(make_dirs(dir));
    return SOWER_OK;
}

/* The seed of row `row` of this run's file (job row lo + row). */
static uint64_t seed_of_row(const void *run, uint64_t row)
{
    const Run *r = run;
    return job_seed_at(&r->job, r->lo + row);
}

static int create_output(Run *r, H5Out *out)
{
    SOWER_TRY(make_parent_dirs(r->out_path));
    char slice[64], rows[96];
    Provenance p;
    provenance_of(&r->job, &r->model, &p);
    snprintf(slice, sizeof slice, "%d/%d", r->slice_k, r->slice_n);
    snprintf(rows, sizeof rows, "job rows %llu..%llu (row i here is job row %llu + i)", (unsigned long long)r->lo,
             (unsigned long long)(r->hi ? r->hi - 1 : 0), (unsigned long long)r->lo);
    const UNetConfig *cfg = &r->model.unet.cfg;
    H5Attr attrs[] = {
        {"format", PROVENANCE_FORMAT},
        {"format_version", PROVENANCE_FORMAT_VERSION},
        {"sower_version", sower_version()},
        {"source_revision", sower_revision()},
        {"manifest", r->job.text},
        {"manifest_sha256", p.manifest_sha256},
        {"model_config", p.model_config},
        {"weights_sha256", p.weights_sha256},
        {"scheduler_config", p.scheduler_config},
        {"pipeline", p.pipeline},
        {"generator", p.generator},
        {"backend_identity", r->backend.identity},
        {"determinism", r->backend.determinism},
        {"slice", slice}, /* slice files only: the last two */
        {"slice_rows", rows},
    };
    int n_attrs = (int)(sizeof attrs / sizeof attrs[0]) - (r->slice_n ? 0 : 2);
    int status = h5out_create(out, r->out_path, r->hi - r->lo, cfg->in_channels, cfg->sample_height,
                              cfg->sample_width, r->job.chunk_rows, r->job.output_gzip, seed_of_row, r, attrs, n_attrs);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* Copies the --stitch slices into the output (rows not yet done). */
static int stitch_slices(Run *r, H5Out *out, const H5JobKey *key)
{
    for (int k = 0; k < r->stitch_n; k++) {
        uint64_t lo, hi;
        job_slice_bounds(&r->job, k, r->stitch_n, &lo, &hi);
        char *path = slice_path(r->job.output_path, k, r->stitch_n), tag[64];
        if (!path)
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        snprintf(tag, sizeof tag, "%d/%d", k, r->stitch_n);
        int status = h5out_copy_slice(out, path, tag, lo, hi, key, r->done);
        free(path);
        SOWER_TRY(status);
    }
    return SOWER_OK;
}

/* Rank 0: a new output, or the interrupted one (--resume, or --resume-auto when there is one);
 * with --resume-auto, a finished output of this job means nothing is left to do. */
static int open_output(Run *r, const RunOptions *o, H5Out *out)
{
    char partial[4200];
    Provenance p;
    provenance_of(&r->job, &r->model, &p);
    snprintf(partial, sizeof partial, "%s.partial", r->out_path);
    const H5JobKey key = {p.manifest_sha256, p.weights_sha256, r->backend.identity};
    const H5JobKey finished_key = {p.manifest_sha256, p.weights_sha256, NULL}; /* a finished output from any backend */
    struct stat st;
    const UNetConfig *cfg = &r->model.unet.cfg;
    if (o->resume || (o->resume_auto && stat(partial, &st) == 0)) {
        SOWER_TRY(h5out_resume(out, r->out_path, r->hi - r->lo, cfg->in_channels, cfg->sample_height,
                               cfg->sample_width, &key, r->done));
    } else {
        if (o->resume_auto) {
            SOWER_TRY(h5out_is_finished(r->out_path, &finished_key, r->hi - r->lo, cfg->in_channels,
                                        cfg->sample_height, cfg->sample_width, &r->finished_before));
            if (r->finished_before)
                return SOWER_OK;
        }
        SOWER_TRY(create_output(r, out));
    }
    if (r->stitch_n)
        SOWER_TRY(stitch_slices(r, out, &key));
    return SOWER_OK;
}

static int write_run_facts(Run *r, H5Out *out, double render_s, double verify_s)
{
    char host[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    MPI_Get_processor_name(host, &len);
    char *hosts = r->rank == 0 ? calloc((size_t)r->world, MPI_MAX_PROCESSOR_NAME) : NULL;
    MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (r->rank != 0)
        return SOWER_OK;
    size_t cap = (size_t)r->world * (MPI_MAX_PROCESSOR_NAME + 2) + 1, used = 0;
    char *list = calloc(cap, 1);
    for (int k = 0; k < r->world; k++)
        used += (size_t)snprintf(list + used, cap - used, "%s%s", k ? "," : "", hosts + (size_t)k * MPI_MAX_PROCESSOR_NAME);
    char world[32], batch[32], times[256];
    snprintf(world, sizeof world, "%d", r->world);
    snprintf(batch, sizeof batch, "%d", r->job.batch);
    snprintf(times, sizeof times, "render phase %.3f s (rank 0: rendering %.3f s, writing %.3f s, waiting %.3f s), "
             "verify %.3f s", render_s, r->t_render, r->t_write, r->t_wait, verify_s);
    fprintf(stderr, "sower run: timings: %s\n", times);
    char stitched[160];
    snprintf(stitched, sizeof stitched, "%d slices (array tasks) OUT.slice-K-of-%d.h5; rank_slices holds their rows",
             r->stitch_n, r->stitch_n);
    H5Attr attrs[] = {{"hosts", list},   {"world_size", world}, {"batch", batch},
                      {"timings", times}, {"model_path", r->model.dir}, {"stitched_from", stitched}};
    /* Stitched: the rows were rendered by the array tasks, slice k = rows [b[k], b[k+1]). */
    uint64_t *bounds = r->stitch_n ? malloc(sizeof *bounds * ((size_t)r->stitch_n + 1)) : NULL;
    for (int k = 0; bounds && k < r->stitch_n; k++)
        job_slice_bounds(&r->job, k, r->stitch_n, &bounds[k], &bounds[k + 1]);
    int status = bounds ? h5out_write_run(out, attrs, 6, bounds, r->stitch_n)
                        : h5out_write_run(out, attrs, 5, r->slices, r->world);
    free(bounds), free(list), free(hosts);
    SOWER_TRY(status);
    return SOWER_OK;
}

int cmd_run(int argc, char **argv)
{
    RunOptions o;
    int help = 0;
    SOWER_TRY(parse_run_options(argc, argv, &o, &help));
    if (help) {
        fputs(run_usage, stdout);
        return SOWER_OK;
    }
    Run r;
    memset(&r, 0, sizeof r);
    r.fault_rank = -1;
    r.fail_rank = getenv("SOWER_FAULT_FAIL_RANK") ? atol(getenv("SOWER_FAULT_FAIL_RANK")) : -1;
    r.progress_seconds = getenv("SOWER_PROGRESS_SECONDS") ? atof(getenv("SOWER_PROGRESS_SECONDS")) : 2.0;
    const char *fault = getenv("SOWER_FAULT_INJECT");
    if (fault) {
        unsigned long long row = 0;
        long rank = -1;
        if (sscanf(fault, "%ld:%llu", &rank, &row) == 2)
            r.fault_rank = rank, r.fault_row = row;
    }
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &r.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &r.world);
    stop_install();
    int exit_code = agree(&r, load_job(&r, &o));
    if (exit_code == 0) {
        /* Default: share the node's CPUs among the ranks on it (oversubscribed spinning threads
         * would otherwise wait on each other). */
        int threads = r.job.threads ? r.job.threads : default_threads();
        omp_set_num_threads(threads);
        gemm_set_threads(threads);
        exit_code = agree(&r, weight_share_plan(&r.share, r.job.backend, r.job.precision, r.rank, r.world));
    }
    if (exit_code == 0)
        exit_code = agree(&r, load_model(&r));
    if (exit_code == 0) {
        weight_share_digest(&r.share, r.model.weights_sha256);
        int status = SOWER_OK;
        if (r.job.model_digest_pinned)
            status = model_check_digest(&r.model, r.job.model_digest, r.job.manifest_path);
        exit_code = agree(&r, status);
    }
    if (exit_code == 0)
        exit_code = agree(&r, weight_share_open_backend(&r.share, &r.backend, &r.model.unet));
    if (exit_code == 0)
        exit_code = agree(&r, weight_share_receive(&r.share, &r.backend, &r.model.unet));
    if (exit_code == 0)
        exit_code = agree(&r, check_identities(&r));
    if (exit_code == 0 && r.rank == 0 && r.job.backend == BACKEND_CUDA)
        fprintf(stderr, "sower run: backend %s; weights: %s\n", r.backend.identity, r.share.reason);
    if (exit_code == 0 && r.rank == 0)
        job_warn_seed_collisions(&r.job, stderr);
    H5Out out;
    memset(&out, 0, sizeof out);
    if (exit_code == 0) {
        r.done = calloc(r.hi - r.lo + 1, 1);
        int status = r.done ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        if (status == SOWER_OK && r.rank == 0)
            status = open_output(&r, &o, &out);
        exit_code = agree(&r, status);
    }
    if (exit_code == 0)
        MPI_Bcast(&r.finished_before, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (exit_code == 0 && r.finished_before && r.rank == 0)
        printf("sower run: %s is already finished for this manifest and model: nothing to do\n", r.out_path);
    int mismatches = 0, stopped = 0;
    if (exit_code == 0 && !r.finished_before) {
        if (o.resume || o.resume_auto || o.stitch_n) /* a new output has nothing done: no need to send zeros */
            bcast_bytes(r.done, r.hi - r.lo);
        for (uint64_t i = 0; i < r.hi - r.lo; i++)
            r.n_done += r.done[i];
        if (r.rank == 0 && (o.resume || o.resume_auto) && r.n_done)
            fprintf(stderr, "sower run: resuming: %llu of %llu rows already written\n", (unsigned long long)r.n_done,
                    (unsigned long long)(r.hi - r.lo));
        if (r.rank == 0 && o.stitch_n)
            fprintf(stderr, "sower run: stitched %d slices into %s.partial (%llu rows)\n", o.stitch_n, r.out_path,
                    (unsigned long long)r.n_done);
        plan(&r);
        double start = MPI_Wtime();
        int status = r.rank == 0 ? render_and_write(&r, &out, start, &stopped) : render_and_send(&r);
        if (status != SOWER_OK)
            abort_job(&r, status);
        MPI_Bcast(&stopped, 1, MPI_INT, 0, MPI_COMM_WORLD);
        double rendered = MPI_Wtime();
        uint64_t v = verify_count(&r);
        if (!stopped) {
            status = verify(&r, &out, v, &mismatches);
            if (status != SOWER_OK)
                abort_job(&r, status);
            double verified = MPI_Wtime();
            status = write_run_facts(&r, &out, rendered - start, verified - rendered);
            if (status == SOWER_OK && r.rank == 0)
                status = h5out_finish(&out);
            if (status != SOWER_OK)
                abort_job(&r, status);
        } else if (r.rank == 0) {
            h5out_keep_partial(&out);
        }
        if (r.rank == 0 && !stopped)
            printf("sower run: %llu rows on %d rank%s in %.1f s (%.2f rows/s); verify: %llu rows re-rendered %s, "
                   "%d mismatch%s -> %s\n",
                   (unsigned long long)(r.hi - r.lo), r.world, r.world == 1 ? "" : "s", rendered - start,
                   (r.hi - r.lo - r.n_done) / (rendered - start + 1e-9), (unsigned long long)v,
                   r.world > 1 ? "on another rank" : "by the only rank", mismatches, mismatches == 1 ? "" : "es",
                   r.out_path);
        MPI_Bcast(&mismatches, 1, MPI_INT, 0, MPI_COMM_WORLD);
        exit_code = stopped ? 3 : mismatches ? 1 : 0;
    }
    if (o.status_file && r.rank == 0)
        write_status_file(o.status_file, exit_code);
    char out_partial[4200];
    snprintf(out_partial, sizeof out_partial, "%s.partial", r.out_path ? r.out_path : "OUT.h5");
    h5out_abandon(&out);
    scheduler_free(&r.sched);
    compute_backend_close(&r.backend);
    model_free(&r.model);
    job_free(&r.job);
    free(r.slices);
    free(r.done);
    free(r.out_path);
    MPI_Finalize();
    /* The exit code is agreed; report it through a status main() maps back to the same code.
     * Only rank 0 words it: the others return the status with no message. */
    int rank = r.rank;
    sower_error_clear();
    if (exit_code == 0)
        return SOWER_OK;
    const int failure = r.failure;
    int status = stopped                ? SOWER_ESTOPPED
                 : exit_code == 1       ? SOWER_EMISMATCH
                 : exit_code == 2       ? SOWER_EINPUT
                 : failure != SOWER_OK && sower_status_exit_code(failure) == exit_code ? failure
                                        : SOWER_EINTERNAL;
    if (rank != 0)
        return status;
    if (stopped)
        return SOWER_FAIL(status, "stopped early: %s holds the rows written so far; run again with --resume "
                                  "(or --resume-auto) to finish", out_partial);
    return exit_code == 1 ? SOWER_FAIL(status, "verification found %d mismatching row%s", mismatches,
                                       mismatches == 1 ? "" : "s")
           : exit_code == 2 ? SOWER_FAIL(status, "the job was not started (see the error above)")
                            : SOWER_FAIL(status, "the job failed (see the error above)");
}
