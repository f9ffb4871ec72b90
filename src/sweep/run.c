/* run.c: `sower run` as a list of phases (sweep.h). Every rank runs the same list:
 *
 *   setup, each step agreed on by every rank before the next (collective_agree):
 *     load job -> threads and weight plan -> load model -> check weights -> open backend ->
 *     receive weights -> check identities -> plan -> open output
 *   then render -> verify -> facts -> end.
 *
 * After setup the ranks no longer move in step: a rank that fails ends the job (collective_abort). */
#define _GNU_SOURCE /* strdup */
#include "sweep.h"

#include <omp.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_file.h"
#include "cpu_load.h"
#include "cross_verify.h"
#include "gemm.h"
#include "mapped_file.h"
#include "mpi_check.h"
#include "outfile.h"
#include "output.h"
#include "render.h"
#include "regular_file.h"
#include "row_message.h"
#include "run_state.h"
#include "stop.h"

enum { MANIFEST_MAX = 64 << 20 };

/* A number from the environment: all of it, finite, in lo..hi; unset leaves *out. */
static int env_number(const char *name, double lo, double hi, double *out)
{
    const char *text = getenv(name);
    if (!text) return SOWER_OK;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !(v >= lo && v <= hi))
        return SOWER_FAIL(SOWER_EUSAGE, "%s=%s: expected a number in %g..%g", name, text, lo, hi);
    *out = v;
    return SOWER_OK;
}

/* 1 when path is free for a status file: absent, or an earlier status file (one exit code on a line).
 * Anything else there (an output, a manifest, a weight file a careless F names) is never replaced. */
static int status_file_replaceable(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT;
    if (!S_ISREG(st.st_mode) || st.st_size > 8) return 0;
    if (st.st_size == 0) return 1; /* an empty file (mktemp's) */
    char text[16] = "";
    FILE *f = regular_file_fopen(path);
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    char *end = NULL;
    strtol(text, &end, 10);
    return end != text && (*end == '\0' || (*end == '\n' && end[1] == '\0'));
}

/* Why the path alone rules out a status file there (why: why_size bytes), or 0: it must name a file in
 * an existing folder, neither another run's working file nor a name kept for one. */
static int status_path_refused(const char *status, char *why, size_t why_size)
{
    char owner[4200];
    const char *suffix = output_lock_working_suffix(status);
    if (status[0] == '\0') return snprintf(why, why_size, "the path is empty"), 1;
    if (!path_folder_exists(status, why, why_size)) return 1;
    if (output_lock_is_working_file(status, owner, sizeof owner))
        return snprintf(why, why_size, "that is a working file of the run writing '%s'", owner), 1;
    if (suffix) /* nor look like one: a later run of that output would take it for its own */
        return snprintf(why, why_size, "a name ending in %s is kept for a run's working files", suffix), 1;
    char lock[4300];
    struct stat st;
    snprintf(lock, sizeof lock, "%s.lock", status);
    if (lstat(lock, &st) == 0) /* nor the output a live run will rename into place */
        return snprintf(why, why_size, "that is the output of the run holding '%s'", lock), 1;
    return 0;
}

/* Why --status-file may not be written (why: why_size bytes), or 0 when it may: status_path_refused,
 * not the output (out: NULL when the manifest could not give it) nor the manifest, and free for a
 * status file (status_file_replaceable). Asked once the output is known and again when writing. */
static int status_file_refused(const char *status, const char *manifest, const char *out, char *why, size_t why_size)
{
    if (status_path_refused(status, why, why_size)) return 1;
    if (out && path_same_file(status, out)) return snprintf(why, why_size, "that is the job's output"), 1;
    if (path_same_file(status, manifest)) return snprintf(why, why_size, "that is the job's manifest"), 1;
    if (!status_file_replaceable(status))
        return snprintf(why, why_size, "the file exists and is not a status file (one exit code on a line): "
                                       "not replacing it"), 1;
    return 0;
}

/* Rank 0, before any work: SOWER_EUSAGE naming why --status-file cannot be written; out NULL: the
 * output is not known yet, only the path is looked at. */
static int check_status_file(Run *r, const RunOptions *o, const char *out)
{
    char why[4400];
    r->status_file_refused = o->status_file && (out ? status_file_refused(o->status_file, o->manifest, out, why, sizeof why)
                                                    : status_path_refused(o->status_file, why, sizeof why));
    if (r->status_file_refused)
        return SOWER_FAIL(SOWER_EUSAGE, "--status-file '%s': %s; choose another file", o->status_file, why);
    return SOWER_OK;
}

/* Step: the settings and test hooks of sweep.h, from the environment (each rank's own: a malformed one
 * on any rank ends the job before it starts, exit 2). */
static int read_environment(Run *r, const RunOptions *o)
{
    r->faults = (Faults){.fault_rank = -1, .fault_row = 0, .fail_rank = -1};
    r->progress_seconds = 2.0;
    r->silence_seconds = 0;
    double fail_rank = -1;
    SOWER_TRY(env_number("SOWER_FAULT_FAIL_RANK", 0, 1e6, &fail_rank));
    if (fail_rank != (double)(long)fail_rank)
        return SOWER_FAIL(SOWER_EUSAGE, "SOWER_FAULT_FAIL_RANK=%s: expected a rank number", getenv("SOWER_FAULT_FAIL_RANK"));
    r->faults.fail_rank = (long)fail_rank;
    SOWER_TRY(env_number("SOWER_PROGRESS_SECONDS", 0, 1e9, &r->progress_seconds));
    SOWER_TRY(env_number("SOWER_SILENCE_SECONDS", 0, 1e9, &r->silence_seconds));
    const char *fault = getenv("SOWER_FAULT_INJECT");
    if (fault) {
        unsigned long long row = 0;
        long rank = -1;
        int used = 0;
        if (sscanf(fault, "%ld:%llu%n", &rank, &row, &used) != 2 || fault[used] != '\0' || rank < 0)
            return SOWER_FAIL(SOWER_EUSAGE, "SOWER_FAULT_INJECT=%s: expected RANK:ROW", fault);
        r->faults.fault_rank = rank, r->faults.fault_row = row;
    }
    if (r->team.rank == 0) SOWER_TRY(check_status_file(r, o, NULL)); /* again once the output is known */
    return SOWER_OK;
}

static void release_lock(void *run)
{
    output_lock_release(&((Run *)run)->lock);
}


/* The output must not be one of the job's inputs: the manifest, its prompts file, or (with --force, the
 * only way an existing output is replaced) a file of the model folder: a render renamed over the weights
 * it reads. */
static int check_output_not_input(const Job *job, const char *out, const RunOptions *o)
{
    struct stat target, input;
    if (stat(out, &target) != 0) return SOWER_OK; /* a new file replaces nothing */
    const char *files[] = {o->manifest, job->prompts_file};
    for (int k = 0; k < 2; k++)
        if (files[k] && stat(files[k], &input) == 0 && target.st_dev == input.st_dev && target.st_ino == input.st_ino)
            return SOWER_FAIL(SOWER_EPATH, "output '%s' is %s, an input of the job: choose another path", out, files[k]);
    if (!o->force) return SOWER_OK; /* claim_output refuses an existing output anyway */
    if (folder_holds_file(job->model_path, out))
        return SOWER_FAIL(SOWER_EPATH, "output '%s' is a file of the model folder '%s', which the job reads: choose "
                                       "another path",
                          out, job->model_path);
    return SOWER_OK;
}

/* Rank 0, before anything looks at the output: its lock (one run per output), then what earlier
 * runs left there. Nothing found is replaced or discarded without --force. */
static int claim_output(Run *r, const RunOptions *o)
{
    char command[4200], partial[4200];
    snprintf(command, sizeof command, "sower run %s%s", o->manifest,
             o->resume ? " --resume" : o->resume_auto ? " --resume-auto" : o->force ? " --force" : "");
    SOWER_TRY(output_lock_take(&r->lock, r->out_path, command));
    r->team.before_abort = release_lock, r->team.before_abort_ctx = r;
    mapped_file_on_fatal(output_lock_release_from_signal); /* weights truncated under the mapping */
    /* OUT.partial.new is a creation a killed run left unfinished (h5out_create): it never held a row,
     * and with the lock held no live run is making it. */
    char creating[4300];
    snprintf(creating, sizeof creating, "%s.partial.new", r->out_path);
    remove(creating);
    struct stat st;
    if (!o->force && !o->resume_auto && lstat(r->out_path, &st) == 0) /* a link too, dangling or not */
        return SOWER_FAIL(SOWER_EPATH,
                          "output '%s' exists: pass --force to replace it (or --resume-auto to accept "
                          "it when it is this job's finished output)",
                          r->out_path);
    snprintf(partial, sizeof partial, "%s.partial", r->out_path);
    if (o->force || o->resume || o->resume_auto || stat(partial, &st) != 0) return SOWER_OK;
    uint64_t done = 0, rows = 0;
    if (h5out_partial_progress(partial, &done, &rows) != SOWER_OK) {
        return SOWER_FAIL(SOWER_EPATH, "%s; it is left by an interrupted run: not replacing it without --force",
                          sower_error_message());
    }
    return SOWER_FAIL(SOWER_EPATH,
                      "'%s' holds %llu of %llu rows of an interrupted run: pass --resume (or --resume-auto) "
                      "to finish it, or --force to discard them",
                      partial, (unsigned long long)done, (unsigned long long)rows);
}

/* Rank 0 reads a file (the manifest, the prompts file) and broadcasts its bytes, so that every rank
 * parses the same bytes even if the file changes meanwhile. *text (*len + 1,) new on every rank. */
static int bcast_file(Run *r, const char *path, const char *what, size_t max_bytes, char **text, size_t *len)
{
    long long n = -1;
    *text = NULL;
    if (r->team.rank == 0) {
        size_t bytes = 0;
        n = config_file_read(path, what, max_bytes, SOWER_EMANIFEST, text, &bytes) == SOWER_OK ? (long long)bytes : -1;
    }
    SOWER_MPI(MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD));
    if (n < 0)
        return r->team.rank == 0 ? SOWER_FAIL(SOWER_EMANIFEST, "%s", sower_error_message())
                                 : SOWER_FAIL(SOWER_EMANIFEST, "(rank 0 could not read the %s)", what);
    if (r->team.rank != 0 && !(*text = malloc((size_t)n + 1))) {
        /* the others wait in the broadcast below: end the job rather than leave them there */
        collective_abort(&r->team, SOWER_FAIL(SOWER_ENOMEM, "out of memory for a %lld-byte %s", n, what));
    }
    int status = collective_bcast_bytes(*text, (uint64_t)n, 0);
    if (status != SOWER_OK) {
        free(*text), *text = NULL;
        return status;
    }
    (*text)[n] = '\0';
    *len = (size_t)n;
    return SOWER_OK;
}

/* Step: the job from rank 0's manifest (and prompts file), parsed alike on every rank. */
static int load_job(Run *r, const RunOptions *o)
{
    char *text = NULL; /* (len + 1,) the manifest's bytes, then the prompts file's */
    size_t len = 0;
    SOWER_TRY(bcast_file(r, o->manifest, "job manifest", MANIFEST_MAX, &text, &len));
    int status = manifest_load_text(&r->job, o->manifest, text, len);
    free(text);
    SOWER_TRY(status);
    if (r->job.prompts_file_pending) {
        char what[4200];
        job_prompts_file_role(&r->job, what, sizeof what);
        SOWER_TRY(bcast_file(r, r->job.prompts_file, what, JOB_MAX_PROMPTS_FILE_BYTES, &text, &len));
        status = job_read_prompts_text(&r->job, text, len);
        free(text);
        SOWER_TRY(status);
    }
    if (o->output) {
        free(r->job.output_path);
        if (!(r->job.output_path = strdup(o->output))) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    }
    if (o->batch) r->job.batch = o->batch;
    r->out_path = o->slice_n ? output_slice_path(r->job.output_path, o->slice_k, o->slice_n)
                             : strdup(r->job.output_path);
    if (!r->out_path) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (r->team.rank == 0) SOWER_TRY(output_path_check(r->out_path, "output"));
    if (r->team.rank == 0) SOWER_TRY(output_lock_check_output_name(r->out_path, "output"));
    if (r->team.rank == 0) SOWER_TRY(check_output_not_input(&r->job, r->out_path, o));
    if (r->team.rank == 0) SOWER_TRY(check_status_file(r, o, r->out_path));
    if (r->team.rank == 0) SOWER_TRY(claim_output(r, o));
    return SOWER_OK;
}

/* Threads per rank when the manifest does not say: Slurm's --cpus-per-task; else this rank's share
 * of the CPUs its affinity mask holds (cpu_load_entitlement): its own when a launcher bound each rank
 * to its own CPUs, a half each when two ranks are bound to one socket (Open MPI binds to sockets past
 * 2 ranks), the node's split among the ranks when unbound; oversubscribed spinning threads would
 * wait on each other. CPUs that other work keeps busy are left out (cpu_load.h), and rank 0 says so;
 * then the rank watches the load while it renders (r->load). */
static int default_threads(Run *r, int *threads)
{
    /* The node's masks first, on every rank: MPI_Comm_split_type is collective, and whether a rank
     * needs them depends on its own environment and binding. */
    MPI_Comm node;
    int local = 1;
    NodeRank me = {.pid = (int32_t)getpid()};
    CpuSet busy, node_busy;
    cpu_load_affinity(&me.mask);
    memset(&node_busy, 0, sizeof node_busy);
    SOWER_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    int status = SOWER_MPI_STATUS(MPI_Comm_size(node, &local));
    NodeRank *ranks = status == SOWER_OK ? calloc((size_t)local, sizeof *ranks) : NULL; /* (local,) */
    int allocated = ranks != NULL, everywhere = 0; /* every rank of the node takes the same path below */
    if (status == SOWER_OK)
        status = SOWER_MPI_STATUS(MPI_Allreduce(&allocated, &everywhere, 1, MPI_INT, MPI_MIN, node));
    if (status == SOWER_OK && !everywhere) status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (status == SOWER_OK)
        status = SOWER_MPI_STATUS(MPI_Allgather(&me, sizeof me, MPI_BYTE, ranks, sizeof me, MPI_BYTE, node));
    /* The node's ranks probe at once, after a barrier, so that none counts another's loading as load. */
    if (status == SOWER_OK) status = SOWER_MPI_STATUS(MPI_Barrier(node));
    if (status == SOWER_OK) cpu_load_probe(50, &busy);
    if (status == SOWER_OK)
        status = SOWER_MPI_STATUS(MPI_Allreduce(busy.bits, node_busy.bits, CPU_LOAD_MAX_CPUS / 64, MPI_UINT64_T,
                                                MPI_BOR, node));
    int freed = SOWER_MPI_STATUS(MPI_Comm_free(&node));
    if (status == SOWER_OK && freed != SOWER_OK) status = freed;
    if (status != SOWER_OK) {
        free(ranks);
        return status;
    }
    const double quiet = cpu_load_entitlement(&me.mask, ranks, local, NULL);
    const double share = cpu_load_entitlement(&me.mask, ranks, local, &node_busy);
    const char *slurm = getenv("SLURM_CPUS_PER_TASK");
    if (slurm && atoi(slurm) > 0) { /* the allocation's CPUs are the job's own */
        *threads = atoi(slurm);
        free(ranks);
        return SOWER_OK;
    }
    *threads = cpu_load_threads(share);
    if (r->job.backend == BACKEND_CPU) /* a GPU rank's host threads matter little */
        status = load_watch_start(&r->load, *threads, quiet, &me, ranks, local);
    free(ranks);
    SOWER_TRY(status);
    CpuSet busy_mine = node_busy;
    for (int i = 0; i < CPU_LOAD_MAX_CPUS / 64; i++)
        busy_mine.bits[i] &= me.mask.bits[i];
    const int n_busy = cpu_set_count(&busy_mine);
    if (n_busy && r->team.rank == 0)
        fprintf(stderr, "sower run: %d of the %d CPUs here are busy with other work: %d thread%s per rank "
                        "(pipeline.threads overrides)\n", n_busy, cpu_set_count(&me.mask), *threads,
                *threads == 1 ? "" : "s");
    return SOWER_OK;
}

/* Step: threads (the manifest's, or shared among the node's ranks) and how the weights travel. */
static int plan_resources(Run *r, const RunOptions *o)
{
    (void)o;
    int threads = r->job.threads;
    if (!threads) /* every rank alike: all hold the same Job */
        SOWER_TRY(default_threads(r, &threads));
    else
        threads = cpu_load_cap_threads(threads, "run", "pipeline.threads", r->team.rank == 0);
    omp_set_num_threads(threads);
    gemm_set_threads(threads);
    SOWER_TRY(weight_share_plan(&r->share, r->job.backend, r->job.precision, r->team.rank, r->team.world));
    return SOWER_OK;
}

/* Stable Diffusion: a StableDiffusionPipeline folder needs the job's prompts, and only it takes them; the
 * latent size from pipeline.height/width; the text side (its digest goes into the job key). */
static int load_text_side(Run *r)
{
    char where[4200];
    const Job *job = &r->job;
    Model *m = &r->model;
    if (!m->stable_diffusion) return SOWER_OK; /* load_model checked the job against the model */
    if (job->height) r->rs.height = job->height / m->vae_scale_factor, r->rs.width = job->width / m->vae_scale_factor;
    int status = prompt_table_init(&r->text, job->model_path, (const char *const *)job->prompts,
                                   (const char *const *)job->negative_prompts, job->n_prompts, job->clip_skip,
                                   job->guidance > 1.0);
    if (status != SOWER_OK) {
        job_text_where(job, where, sizeof where);
        return SOWER_FAIL(status, "%s: %s", where, sower_error_message());
    }
    SOWER_TRY(model_check_text_width(m, r->text.encoder.dim, r->text.encoder.encoder.config_path));
    SOWER_TRY(prompt_encoder_digest(&r->text.encoder, m->text_side_sha256));
    m->text_side_known = 1;
    if (job->decode) { /* the VAE, on every rank: each decodes the rows it renders */
        job_mark_where(job, job->decode_mark, where, sizeof where);
        status = row_images_load(&r->images, m, job->model_path, m->unet.cfg.in_channels, r->rs.height, r->rs.width);
        if (status != SOWER_OK) {
            return SOWER_FAIL(status, "%s: pipeline.decode: %s", where, sower_error_message());
        }
    }
    r->rs.guidance = (float)job->guidance;
    r->rs.guidance_rescale = job->guidance_rescale;
    r->rs.text_tokens = r->text.encoder.tokens;
    return SOWER_OK;
}

/* Step: every rank parses the model; the weights themselves are read here only where weight_share says. */
static int load_model(Run *r, const RunOptions *o)
{
    (void)o;
    char where[4200];
    job_model_where(&r->job, where, sizeof where);
    int status = model_load_opt(&r->model, r->job.model_path, weight_share_reads_file(&r->share));
    if (status == SOWER_ENOMEM) return status; /* "out of memory", exit 3, as everywhere */
    if (status != SOWER_OK) /* name the manifest line, as its other errors do */
        return SOWER_FAIL(status, "%s: model: %s", where, sower_error_message());
    SOWER_TRY(job_check_model_kind(&r->job, &r->model)); /* what check says of the model, before any output */
    const UNetConfig *cfg = &r->model.unet.cfg;
    SOWER_TRY(job_resolve_scheduler(&r->job, &r->model));
    if (model_scheduler(&r->model, r->job.scheduler, r->job.sigmas, r->job.generator, r->job.steps, &r->sched) != SOWER_OK)
        return SOWER_FAIL(sower_error_status(), "%s: %s", where, sower_error_message()); /* as check says it */
    r->rs = (RenderSettings){.model = &r->model,
                             .backend = &r->backend,
                             .scheduler = &r->sched,
                             .eta = (float)r->job.eta,
                             .generator = r->job.generator,
                             .batch = r->job.batch,
                             .height = cfg->sample_height,
                             .width = cfg->sample_width,
                             .should_stop = stop_requested};
    SOWER_TRY(load_text_side(r));
    r->per = (size_t)cfg->in_channels * r->rs.height * r->rs.width;
    return SOWER_OK;
}

/* Step: every rank holds the weights' digest (only rank 0 computed it when it alone read them),
 * which must match the manifest's pinned digest. */
static int check_weights(Run *r, const RunOptions *o)
{
    (void)o;
    SOWER_TRY(weight_share_digest(&r->share, r->model.weights_sha256));
    char where[4200];
    job_model_where(&r->job, where, sizeof where);
    if (r->job.model_digest_pinned) SOWER_TRY(model_check_digest(&r->model, r->job.model_digest, where));
    return SOWER_OK;
}

static int open_backend(Run *r, const RunOptions *o)
{
    (void)o;
    SOWER_TRY(weight_share_open_backend(&r->share, &r->backend, &r->model.unet));
    return SOWER_OK;
}

static int receive_weights(Run *r, const RunOptions *o)
{
    (void)o;
    SOWER_TRY(weight_share_receive(&r->share, &r->backend, &r->model.unet));
    return SOWER_OK;
}

/* Step: every rank must compute as rank 0 does: the verification pass compares one rank's bits
 * with another's, and bits are reproducible only between equal backend identities (backend.h). */
static int check_identities(Run *r, const RunOptions *o)
{
    (void)o;
    const int rank = r->team.rank, world = r->team.world;
    char *all = rank == 0 ? calloc((size_t)world, BACKEND_IDENTITY_SIZE) : NULL; /* (world, SIZE) */
    if (rank == 0 && !all) /* the others wait in the gather below: end the job */
        collective_abort(&r->team, SOWER_FAIL(SOWER_ENOMEM, "out of memory"));
    SOWER_MPI(MPI_Gather(r->backend.identity, BACKEND_IDENTITY_SIZE, MPI_CHAR, all, BACKEND_IDENTITY_SIZE,
                         MPI_CHAR, 0, MPI_COMM_WORLD));
    int status = SOWER_OK;
    for (int k = 1; rank == 0 && k < world && status == SOWER_OK; k++)
        if (strcmp(all + (size_t)k * BACKEND_IDENTITY_SIZE, all) != 0)
            status = SOWER_FAIL(SOWER_EINPUT,
                                "ranks compute differently: rank 0 is '%s', rank %d is '%s'; bits "
                                "compare only between equal backend identities, so one job needs one "
                                "kind of node (ask Slurm for it with --constraint or --gres)",
                                all, k, all + (size_t)k * BACKEND_IDENTITY_SIZE);
    free(all);
    return status;
}

/* Step: every rank must render the model rank 0 records: each loads the folder itself (node-local copies,
 * a path relative to another working directory), so rank 0 compares their digests, part by part. */
enum { MODEL_PARTS = 5 };
static int check_same_model(Run *r, const RunOptions *o)
{
    (void)o;
    const Model *m = &r->model;
    static const char *const names[MODEL_PARTS] = {"UNet weights file", "UNet config.json", "scheduler config",
                                                   "tokenizer or text encoder", "VAE"};
    unsigned char mine[MODEL_PARTS][DIGEST_BYTES] = {{0}}; /* (parts, DIGEST_BYTES): zeros where a part is unused */
    memcpy(mine[0], m->weights_sha256, DIGEST_BYTES);
    int status = digest_buffer(m->unet_config_text, strlen(m->unet_config_text), mine[1]);
    if (status == SOWER_OK) status = digest_buffer(m->scheduler_config_text, strlen(m->scheduler_config_text), mine[2]);
    if (status != SOWER_OK) collective_abort(&r->team, status);
    if (m->text_side_known) memcpy(mine[3], m->text_side_sha256, DIGEST_BYTES);
    if (m->vae_known) memcpy(mine[4], m->vae_sha256, DIGEST_BYTES);
    const int rank = r->team.rank, world = r->team.world;
    unsigned char *all = rank == 0 ? malloc((size_t)world * sizeof mine) : NULL; /* (world, parts, DIGEST_BYTES) */
    if (rank == 0 && !all) /* the others wait in the gather below: end the job */
        collective_abort(&r->team, SOWER_FAIL(SOWER_ENOMEM, "out of memory"));
    SOWER_MPI(MPI_Gather(mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, 0, MPI_COMM_WORLD));
    for (int k = 1; rank == 0 && k < world && status == SOWER_OK; k++)
        for (int part = 0; part < MODEL_PARTS && status == SOWER_OK; part++)
            if (memcmp(all + ((size_t)k * MODEL_PARTS + part) * DIGEST_BYTES, mine[part], DIGEST_BYTES) != 0)
                status = SOWER_FAIL(SOWER_EINPUT,
                                    "rank %d loaded another model than rank 0: its %s differs from rank 0's at '%s' "
                                    "(every rank reads the folder itself: node-local copies must be the same files)",
                                    k, names[part], m->dir);
    free(all);
    return status;
}

/* Step: the plan (the same on every rank, no messages) and the bitmap of rows done. */
static int make_plan(Run *r, const RunOptions *o)
{
    SOWER_TRY(plan_make(&r->plan, &r->job, r->team.world, o->slice_k, o->slice_n, o->stitch_n));
    SOWER_TRY(row_message_fits(r->per, r->images.bytes, (uint64_t)r->job.batch, r->job.manifest_path)); /* before rendering */
    if (r->team.rank == 0 && r->job.backend == BACKEND_CUDA)
        fprintf(stderr, "sower run: backend %s; weights: %s\n", r->backend.identity, r->share.reason);
    if (r->team.rank == 0) job_warn_seed_collisions(&r->job, stderr);
    const uint64_t rows = r->plan.hi - r->plan.lo;
    r->done = rows < SIZE_MAX ? calloc((size_t)rows + 1, 1) : NULL; /* (hi - lo,) */
    if (!r->done) /* the job is too big for one run here, not a failure of it: said before any output */
        return SOWER_FAIL(SOWER_EINPUT,
                          "%s: %llu rows in one run: each rank keeps a map of the rows done, one byte a row (%.1f GiB), "
                          "more than this node can hold: split the job (sower run --slice K/N, or sower submit "
                          "--array N)",
                          r->job.manifest_path, (unsigned long long)rows, (double)rows / (1u << 30));
    return SOWER_OK;
}

/* Step: rank 0 opens the output (output.h). */
static int open_output(Run *r, const RunOptions *o)
{
    return r->team.rank == 0 ? output_open(r, o, &r->out) : SOWER_OK;
}

typedef int (*SetupStep)(Run *r, const RunOptions *o);
/* Step: every rank was started with rank 0's options. An MPMD launch (mpirun A : B) may give ranks other
 * command lines; with --resume on some ranks only, they would wait in different collectives for ever. */
static int check_same_options(Run *r, const RunOptions *o)
{
    enum { OPTIONS_TEXT = 12800 };
    char mine[OPTIONS_TEXT], first[OPTIONS_TEXT]; /* the options as text; rank 0's */
    snprintf(mine, sizeof mine, "manifest=%.4000s output=%.4000s status-file=%.4000s%s%s%s batch=%d slice=%d/%d stitch=%d",
             o->manifest, o->output ? o->output : "-", o->status_file ? o->status_file : "-", o->force ? " --force" : "",
             o->resume ? " --resume" : "", o->resume_auto ? " --resume-auto" : "", o->batch, o->slice_k, o->slice_n,
             o->stitch_n);
    memcpy(first, mine, sizeof first);
    SOWER_MPI(MPI_Bcast(first, OPTIONS_TEXT, MPI_CHAR, 0, MPI_COMM_WORLD));
    if (strcmp(first, mine) != 0)
        return SOWER_FAIL(SOWER_EUSAGE, "rank %d was started with other options than rank 0 (rank 0: %s; rank %d: %s): "
                                        "every rank of a job runs the same sower run command",
                          r->team.rank, first, r->team.rank, mine);
    return SOWER_OK;
}

static const SetupStep setup_steps[] = {check_same_options, read_environment, load_job,       plan_resources, load_model,
                                        check_weights,    open_backend,   receive_weights,
                                        check_identities, check_same_model, make_plan, open_output};

/* Render, verify, facts: returns the exit code (0, 1 on a mismatch, 3 when stopped early).
 * Ends the job (collective_abort) when a rank fails. */
static int render_verify_record(Run *r, const RunOptions *o, int *stopped, int *mismatches)
{
    const Team *t = &r->team;
    const uint64_t rows = r->plan.hi - r->plan.lo;
    collective_check(t, SOWER_MPI_STATUS(MPI_Bcast(&r->finished_before, 1, MPI_INT, 0, MPI_COMM_WORLD)));
    if (r->finished_before) {
        /* A finished file whose own verification failed stays a failure (exit 1) however often a requeue
         * finds it: it is not rendered again (the rows are kept; --force renders anew). */
        int recorded = r->finished_mismatches > INT_MAX ? INT_MAX : (int)r->finished_mismatches;
        collective_check(t, SOWER_MPI_STATUS(MPI_Bcast(&recorded, 1, MPI_INT, 0, MPI_COMM_WORLD)));
        *mismatches = recorded;
        if (t->rank == 0 && recorded)
            fprintf(stderr,
                    "sower run: %s is already finished for this manifest and model, but its run's own "
                    "verification found %d row%s differing when re-rendered (sower verify names them; "
                    "--force renders the job anew)\n",
                    r->out_path, recorded, recorded == 1 ? "" : "s");
        else if (t->rank == 0 && r->finished_stitched)
            printf("sower run: the job's output %s is already finished (stitched from its slices) for this manifest "
                   "and model: slice %d/%d has nothing to do\n", r->job.output_path, o->slice_k, o->slice_n);
        else if (t->rank == 0)
            printf("sower run: %s is already finished for this manifest and model: nothing to do\n",
                   r->out_path);
        return recorded ? 1 : 0;
    }
    if (o->resume || o->resume_auto || o->stitch_n) /* a new output has nothing done: no need to send zeros */
        collective_check(t, collective_bcast_bytes(r->done, rows, 0));
    r->n_done = plan_count_done(&r->plan, r->done);
    if (t->rank == 0 && (o->resume || o->resume_auto) && r->n_done)
        fprintf(stderr, "sower run: resuming: %llu of %llu rows already written\n",
                (unsigned long long)r->n_done, (unsigned long long)rows);
    if (t->rank == 0 && o->stitch_n)
        fprintf(stderr, "sower run: stitched %d slices into %s.partial (%llu rows)\n", o->stitch_n,
                r->out_path, (unsigned long long)r->n_done);
    double start = MPI_Wtime();
    collective_check(t, t->rank == 0 ? render_and_write(r, &r->out, start, stopped) : render_and_send(r));
    collective_check(t, SOWER_MPI_STATUS(MPI_Bcast(stopped, 1, MPI_INT, 0, MPI_COMM_WORLD)));
    double rendered = MPI_Wtime();
    r->t_render_pass = r->t_render;
    if (!*stopped) {
        collective_check(t, cross_verify(r, &r->out, mismatches));
        double verified = MPI_Wtime();
        int status = output_write_facts(r, &r->out, rendered - start, verified - rendered);
        if (status == SOWER_OK && t->rank == 0) status = h5out_finish(&r->out, o->force);
        collective_check(t, status);
    } else if (t->rank == 0) {
        h5out_keep_partial(&r->out);
    }
    if (t->rank == 0 && !*stopped)
        printf("sower run: %llu rows on %d rank%s in %.1f s (%.2f rows/s); verify: %llu row%s re-rendered %s, "
               "%d mismatch%s -> %s\n",
               (unsigned long long)rows, t->world, t->world == 1 ? "" : "s", rendered - start,
               (rows - r->n_done) / (rendered - start + 1e-9), (unsigned long long)r->plan.verify_n,
               r->plan.verify_n == 1 ? "" : "s", t->world > 1 ? "on another rank" : "by the only rank", *mismatches,
               *mismatches == 1 ? "" : "es", r->out_path);
    collective_check(t, SOWER_MPI_STATUS(MPI_Bcast(mismatches, 1, MPI_INT, 0, MPI_COMM_WORLD)));
    return *stopped ? 3 : *mismatches ? 1 : 0;
}

/* The agreed exit code, for the batch script (written to F.tmp and renamed: never half a file); never
 * over a file that is not a status file (status_file_replaceable). */
static void write_status_file(const char *path, const RunOptions *o, const char *out, int exit_code)
{
    char why[4400];
    if (status_file_refused(path, o->manifest, out, why, sizeof why)) {
        fprintf(stderr, "sower: warning: not writing the status file '%s': %s\n", path, why);
        return;
    }
    char tmp[4200]; /* a new file of its own (mkstemp: never an existing F.tmp, nor through a link) */
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && !f) close(fd);
    int ok = f && fprintf(f, "%d\n", exit_code) >= 0;
    ok = (f && fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (fd >= 0) unlink(tmp);
        fprintf(stderr, "sower: warning: cannot write the status file '%s'\n", path);
    }
}

static void run_free(Run *r)
{
    h5out_abandon(&r->out);
    output_lock_release(&r->lock);
    load_watch_free(&r->load);
    scheduler_free(&r->sched);
    prompt_table_free(&r->text);
    row_images_free(&r->images);
    compute_backend_close(&r->backend);
    model_free(&r->model);
    job_free(&r->job);
    free(r->done);
    free(r->out_path);
}

/* The exit code is agreed; report it through a status main() maps back to the same code. Only
 * rank 0 words it: the others return the status with no message. A stop is reported at once by
 * rank 0 (say_stopped), before MPI_Finalize: under mpirun a stop signal comes with a kill a second
 * later, and the hint to resume must not be lost with it. */
static int exit_status(const Team *t, int exit_code, int stopped, int mismatches)
{
    sower_error_clear();
    if (exit_code == 0) return SOWER_OK;
    const int failure = t->failure;
    int status = stopped                                                               ? SOWER_ESTOPPED
                 : exit_code == 1                                                      ? SOWER_EMISMATCH
                 : exit_code == 2                                                      ? SOWER_EINPUT
                 : failure != SOWER_OK && sower_status_exit_code(failure) == exit_code ? failure
                                                                                       : SOWER_EINTERNAL;
    if (t->rank != 0 || stopped) return status;
    return exit_code == 1   ? SOWER_FAIL(status, "verification found %d mismatching row%s", mismatches,
                                       mismatches == 1 ? "" : "s")
           : exit_code == 2 ? SOWER_FAIL(status, "the job was not started (see the error above)")
                            : SOWER_FAIL(status, "the job failed (see the error above)");
}

static void say_stopped(const Run *r)
{
    fprintf(stderr,
            "sower run: stopped early: %s.partial holds %llu of %llu rows; run again with --resume "
            "(or --resume-auto) to finish (exit status 3)\n",
            r->out_path, (unsigned long long)r->rows_kept, (unsigned long long)(r->plan.hi - r->plan.lo));
    fflush(stderr);
}

int sweep_run(const RunOptions *o)
{
    Run r;
    memset(&r, 0, sizeof r);
    SOWER_MPI(MPI_Init(NULL, NULL));
    /* From here on MPI reports failures as codes (mpi_check.h), never by ending the process. */
    SOWER_TRY(sweep_mpi_errors_return());
    SOWER_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &r.team.rank));
    SOWER_MPI(MPI_Comm_size(MPI_COMM_WORLD, &r.team.world));
    stop_install();

    int exit_code = 0, stopped = 0, mismatches = 0;
    for (size_t i = 0; i < sizeof setup_steps / sizeof setup_steps[0] && exit_code == 0; i++)
        exit_code = collective_agree(&r.team, setup_steps[i](&r, o));
    if (exit_code == 0) exit_code = render_verify_record(&r, o, &stopped, &mismatches);

    if (o->status_file && r.team.rank == 0 && !r.status_file_refused) write_status_file(o->status_file, o, r.out_path, exit_code);
    if (stopped && r.team.rank == 0) say_stopped(&r);
    run_free(&r);
    int finalized = SOWER_MPI_STATUS(MPI_Finalize());
    if (finalized != SOWER_OK) { /* the outcome stands; say that MPI did not end cleanly */
        fprintf(stderr, "sower: warning: [rank %d] ", r.team.rank);
        sower_error_print(stderr, 0);
    }
    return exit_status(&r.team, exit_code, stopped, mismatches);
}
