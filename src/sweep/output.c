/* output.c: creating, resuming and stitching the output; the run's facts (output.h). */
#include "output.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cjson/cJSON.h>

#include "gemm.h"
#include "h5_layout.h"
#include "mpi_check.h"
#include "outfile.h"
#include "provenance.h"
#include "version.h"

char *output_slice_path(const char *out, int k, int n)
{
    size_t len = h5_stem_length(out);
    int width = snprintf(NULL, 0, "%d", n - 1);
    size_t cap = len + 64;
    char *path = malloc(cap);
    if (path) snprintf(path, cap, "%.*s.slice-%0*d-of-%d.h5", (int)len, out, width, k, n);
    return path;
}

/* mkdir -p of the output's directory, so a job's output tree need not exist beforehand. */
static int make_parent_dirs(const char *path)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return SOWER_FAIL(SOWER_EPATH, "output path '%s' is too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return SOWER_OK;
    *slash = '\0';
    SOWER_TRY(make_dirs(dir));
    return SOWER_OK;
}

/* The seed of row `row` of this run's file (job row lo + row). */
static uint64_t seed_of_row(const void *run, uint64_t row)
{
    const Run *r = run;
    return job_seed_at(&r->job, r->plan.lo + row);
}

/* The seed of row `row` of the whole job (its stitched output). */
static uint64_t seed_of_job_row(const void *run, uint64_t row)
{
    return job_seed_at(&((const Run *)run)->job, row);
}

/* The prompt of row `row` of this run's file (job row lo + row). */
static uint64_t prompt_of_row(const void *run, uint64_t row)
{
    const Run *r = run;
    return job_prompt_at(&r->job, r->plan.lo + row);
}

/* "12.3 MB", "4.0 GB" (powers of 1000, as df -H). */
static void format_bytes(double bytes, char *out, size_t size)
{
    static const char *const units[] = {"bytes", "kB", "MB", "GB", "TB", "PB"};
    int u = 0;
    while (bytes >= 1000 && u < 5)
        bytes /= 1000, u++;
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

/* Uncompressed outputs get all their space at creation (h5out.c): refuse when it cannot fit, and say
 * how much when it is large, before HDF5 meets a full disk. */
static int check_space(const Run *r, uint64_t rows)
{
    /* latents, seed, digest, done; with pipeline.decode the image and its digest */
    const double row_bytes = (double)r->per * sizeof(float) + 8 + DIGEST_BYTES + 1 +
                             (r->images.bytes ? (double)r->images.bytes + DIGEST_BYTES : 0);
    const double need = row_bytes * (double)rows;
    char dir[4096], need_text[32], free_text[32];
    snprintf(dir, sizeof dir, "%s", r->out_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    struct statvfs vfs;
    const double free_bytes =
        statvfs(slash ? (dir[0] ? dir : "/") : ".", &vfs) == 0 ? (double)vfs.f_bavail * (double)vfs.f_frsize : -1;
    format_bytes(need, need_text, sizeof need_text);
    format_bytes(free_bytes, free_text, sizeof free_text);
    if (!r->job.output_gzip && free_bytes >= 0 && need > free_bytes)
        return SOWER_FAIL(SOWER_EIO,
                          "output '%s': %llu rows need %s at creation, and %s are free there: make room, "
                          "write elsewhere (-o), or set output.compression: gzip",
                          r->out_path, (unsigned long long)rows, need_text, free_text);
    if (need >= 1e9)
        fprintf(stderr, "sower run: %s.partial: %s %s (%s free there)\n", r->out_path,
                r->job.output_gzip ? "up to" : "allocating", need_text, free_bytes >= 0 ? free_text : "unknown");
    return SOWER_OK;
}

/* A new output; with carry, holding the rows of the earlier partial it replaces (h5out_resume). */
static int create_output(Run *r, H5Out *out, const H5Carry *carry)
{
    SOWER_TRY(make_parent_dirs(r->out_path));
    SOWER_TRY(check_space(r, r->plan.hi - r->plan.lo));
    const Plan *pl = &r->plan;
    char slice[64], rows[96];
    Provenance p;
    SOWER_TRY(provenance_of(&r->job, &r->model, &p));
    snprintf(slice, sizeof slice, "%d/%d", pl->slice_k, pl->slice_n);
    snprintf(rows, sizeof rows, "job rows %llu..%llu (row i here is job row %llu + i)",
             (unsigned long long)pl->lo, (unsigned long long)(pl->hi ? pl->hi - 1 : 0),
             (unsigned long long)pl->lo);
    const UNetConfig *cfg = &r->model.unet.cfg;
    H5Attr attrs[] = {
        {LAYOUT_ATTR_FORMAT, LAYOUT_FORMAT_NAME},
        {LAYOUT_ATTR_FORMAT_VERSION, LAYOUT_FORMAT_VERSION},
        {LAYOUT_ATTR_SOWER_VERSION, sower_version()},
        {LAYOUT_ATTR_SOURCE_REVISION, sower_revision()},
        {LAYOUT_ATTR_MANIFEST, r->job.text},
        {LAYOUT_ATTR_MANIFEST_SHA256, p.manifest_sha256},
        {LAYOUT_ATTR_JOB_KEY, p.job_key},
        {LAYOUT_ATTR_JOB_SHA256, p.job_sha256},
        {LAYOUT_ATTR_MODEL_CONFIG, p.model_config},
        {LAYOUT_ATTR_WEIGHTS_SHA256, p.weights_sha256},
        {LAYOUT_ATTR_SCHEDULER_CONFIG, p.scheduler_config},
        {LAYOUT_ATTR_PIPELINE, p.pipeline_json},
        {LAYOUT_ATTR_GENERATOR, p.generator},
        {LAYOUT_ATTR_BACKEND_IDENTITY, r->backend.identity},
        {LAYOUT_ATTR_DETERMINISM, r->backend.determinism},
        {LAYOUT_ATTR_SLICE, slice}, /* slice files only: the last two */
        {LAYOUT_ATTR_SLICE_ROWS, rows},
    };
    int n_attrs = (int)(sizeof attrs / sizeof attrs[0]) - (pl->slice_n ? 0 : 2);
    const H5Prompts prompts = {(const char *const *)r->job.prompts, (const char *const *)r->job.negative_prompts,
                               r->job.n_prompts, prompt_of_row};
    const H5ImageShape images = {r->images.c, r->images.h, r->images.w};
    int status = h5out_create(out, r->out_path, pl->hi - pl->lo, cfg->in_channels, r->rs.height, r->rs.width,
                              r->job.chunk_rows, r->job.output_gzip, seed_of_row, r,
                              r->job.n_prompts ? &prompts : NULL, attrs, n_attrs, r->images.bytes ? &images : NULL,
                              carry);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* Copies the --stitch slices into the output (rows not yet done). */
static int stitch_slices(Run *r, H5Out *out, const H5JobKey *key)
{
    for (int k = 0; k < r->plan.stitch_n; k++) {
        uint64_t lo, hi;
        job_slice_bounds(&r->job, k, r->plan.stitch_n, &lo, &hi);
        char *path = output_slice_path(r->job.output_path, k, r->plan.stitch_n), tag[64];
        if (!path) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        snprintf(tag, sizeof tag, "%d/%d", k, r->plan.stitch_n);
        int status = h5out_copy_slice(out, path, tag, lo, hi, key, r->done);
        free(path);
        SOWER_TRY(status);
    }
    return SOWER_OK;
}

int output_open(Run *r, const RunOptions *o, H5Out *out)
{
    char partial[4200];
    Provenance p;
    SOWER_TRY(provenance_of(&r->job, &r->model, &p));
    snprintf(partial, sizeof partial, "%s.partial", r->out_path);
    const H5JobKey key = {p.job_key, p.job_sha256, p.manifest_sha256, p.weights_sha256, r->backend.identity};
    H5JobKey finished_key = key;
    finished_key.backend_identity = NULL; /* a finished output from any backend */
    struct stat st;
    const UNetConfig *cfg = &r->model.unet.cfg;
    const uint64_t rows = r->plan.hi - r->plan.lo;
    const H5ImageShape shape = {r->images.c, r->images.h, r->images.w}, *images = r->images.bytes ? &shape : NULL;
    /* --resume-auto: an OUT there must be this job's finished output (nothing to do), checked before any
     * OUT.partial beside it is resumed and renamed over it (plain --resume refuses an existing OUT in
     * claim_output). */
    if (o->resume_auto) {
        SOWER_TRY(h5out_is_finished(r->out_path, &finished_key, rows, cfg->in_channels, r->rs.height, r->rs.width,
                                    images, seed_of_row, r, &r->finished_before, &r->finished_mismatches));
        if (r->finished_before) return SOWER_OK;
    }
    if (o->resume || (o->resume_auto && stat(partial, &st) == 0)) {
        int rebuild = 0;
        SOWER_TRY(h5out_resume(out, r->out_path, rows, cfg->in_channels, r->rs.height, r->rs.width, images, &key,
                               seed_of_row, r, r->done, &rebuild));
        if (rebuild) {
            fprintf(stderr, "sower run: --resume: '%s' is gzip-compressed: copying its rows into a new file that "
                            "replaces it when whole\n", partial);
            const H5Carry carry = {partial, r->done};
            SOWER_TRY(create_output(r, out, &carry));
        }
    } else {
        if (o->resume_auto && o->slice_n) { /* an array task run again after its stitch job finished */
            uint64_t ignored = 0; /* the stitched file's verification is the stitch job's verdict */
            SOWER_TRY(h5out_is_finished(r->job.output_path, &finished_key, r->job.n_rows, cfg->in_channels,
                                        r->rs.height, r->rs.width, images, seed_of_job_row, r, &r->finished_stitched,
                                        &ignored));
            if (r->finished_stitched) return r->finished_before = 1, SOWER_OK;
        }
        SOWER_TRY(create_output(r, out, NULL));
    }
    if (r->plan.stitch_n) SOWER_TRY(stitch_slices(r, out, &key));
    return SOWER_OK;
}

/* ["host0", "host1", ...]: hosts (world, MPI_MAX_PROCESSOR_NAME) as a JSON list. Caller frees; NULL:
 * no memory. */
static char *hosts_json(const char *hosts, int world)
{
    cJSON *list = cJSON_CreateArray();
    for (int k = 0; list && k < world; k++) {
        cJSON *name = cJSON_CreateString(hosts + (size_t)k * MPI_MAX_PROCESSOR_NAME);
        if (!name || !cJSON_AddItemToArray(list, name)) {
            cJSON_Delete(name);
            cJSON_Delete(list);
            return NULL;
        }
    }
    char *text = list ? cJSON_PrintUnformatted(list) : NULL;
    cJSON_Delete(list);
    return text;
}

int output_write_facts(Run *r, H5Out *out, double render_s, double verify_s)
{
    const Team *t = &r->team;
    char host[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    /* A rank failing here leaves the others in the gather: the caller ends the job (collective_check). */
    SOWER_MPI(MPI_Get_processor_name(host, &len));
    char *hosts =
        t->rank == 0 ? calloc((size_t)t->world, MPI_MAX_PROCESSOR_NAME) : NULL; /* (world, NAME_MAX) */
    if (t->rank == 0 && !hosts) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int status = SOWER_MPI_STATUS(MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts,
                                             MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, MPI_COMM_WORLD));
    if (t->rank != 0 || status != SOWER_OK) {
        free(hosts);
        return status;
    }
    const int stitch_n = r->plan.stitch_n;
    char *list = hosts_json(hosts, t->world);
    /* Which rows each rank rendered, or, stitched, each array task: slice k = rows [b[k], b[k+1]). */
    const int parts = stitch_n ? stitch_n : t->world;
    uint64_t *bounds = malloc(sizeof *bounds * ((size_t)parts + 1)); /* (parts + 1,) */
    if (!list || !bounds) {
        free(bounds), free(list), free(hosts);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    }
    if (stitch_n)
        plan_stitch_bounds(&r->plan, &r->job, bounds);
    else
        plan_rank_bounds(&r->plan, bounds);
    char times[320];
    fprintf(stderr,
            "sower run: timings: render phase %.3f s (rank 0: %d thread%s at the end, rendering %.3f s, writing %.3f s, "
            "waiting %.3f s), verify %.3f s\n",
            render_s, gemm_threads(), gemm_threads() == 1 ? "" : "s", r->t_render_pass, r->t_write, r->t_wait, verify_s);
    snprintf(times, sizeof times,
             "{\"render_phase_s\": %.3f, \"rank0_rendering_s\": %.3f, \"rank0_writing_s\": %.3f, "
             "\"rank0_waiting_s\": %.3f, \"verify_s\": %.3f}",
             render_s, r->t_render_pass, r->t_write, r->t_wait, verify_s);
    char stitched[160];
    snprintf(stitched, sizeof stitched,
             "%d slices (array tasks) OUT.slice-K-of-%d.h5; rank_slices holds their rows", stitch_n,
             stitch_n);
    const H5Attr attrs[] = {{LAYOUT_RUN_HOSTS, list},
                            {LAYOUT_RUN_TIMINGS, times},
                            {LAYOUT_RUN_MODEL_PATH, r->model.dir},
                            {LAYOUT_RUN_STITCHED_FROM, stitched}};
    const H5IntAttr numbers[] = {{LAYOUT_RUN_WORLD_SIZE, t->world}, {LAYOUT_RUN_BATCH, r->job.batch}};
    status = h5out_write_run(out, attrs, stitch_n ? 4 : 3, numbers, 2, bounds, parts);
    free(bounds), free(list), free(hosts);
    SOWER_TRY(status);
    return SOWER_OK;
}
