/* h5read.c: see h5read.h. */
#define _POSIX_C_SOURCE 200809L
#include "h5read.h"

#include <errno.h>
#include <cjson/cJSON.h>
#include <hdf5.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regular_file.h"
#include "h5_layout.h"
#include "h5file.h"
#include "json_keys.h"
#include "unet.h"

static void free_texts(char **texts, size_t n)
{
    for (size_t i = 0; texts && i < n; i++) free(texts[i]);
    free(texts);
}

/* A manifest with a prompts_file: its prompts are the ones the file recorded (the prompts file itself may
 * have changed or gone since the run). */
static int adopt_recorded_prompts(OutputReader *r)
{
    char **prompts = NULL, **negatives = NULL; /* (n,), (n_negatives,) */
    size_t n = 0, n_negatives = 0;
    hid_t file = (hid_t)r->file;
    int status = h5file_read_texts(file, r->path, LAYOUT_PROMPTS, JOB_MAX_PROMPTS, &prompts, &n);
    if (status == SOWER_OK)
        status = h5file_read_texts(file, r->path, LAYOUT_NEGATIVE_PROMPTS, JOB_MAX_PROMPTS, &negatives, &n_negatives);
    if (status == SOWER_OK && n_negatives != n)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: /%s holds %zu texts, /%s %zu (expected one per prompt)", r->path,
                            LAYOUT_NEGATIVE_PROMPTS, n_negatives, LAYOUT_PROMPTS, n);
    if (status == SOWER_OK) status = job_adopt_recorded_prompts(&r->job, prompts, negatives, n, r->path);
    free_texts(prompts, n);
    free_texts(negatives, n_negatives);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* A manifest without pipeline.scheduler: the scheduler is the one the run resolved it to (the model's default,
 * job_resolve_scheduler) and recorded in the `pipeline` attribute: JSON {"scheduler": "pndm", ...}, or
 * "scheduler=ddim steps=..." in older files. Verify and export then name and run what made the rows, even a
 * file from a sower whose manifests defaulted to ddim for Stable Diffusion folders too. */
static int adopt_recorded_scheduler(OutputReader *r)
{
    char *pipeline = h5file_string_attr((hid_t)r->file, LAYOUT_ATTR_PIPELINE);
    char name[32] = "";
    if (pipeline && pipeline[0] == '{') {
        int ran_out;
        cJSON *json = json_parse(pipeline, strlen(pipeline), NULL, &ran_out);
        if (ran_out) {
            free(pipeline);
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", r->path);
        }
        const cJSON *scheduler = cJSON_GetObjectItemCaseSensitive(json, "scheduler");
        if (cJSON_IsString(scheduler)) snprintf(name, sizeof name, "%s", scheduler->valuestring);
        cJSON_Delete(json);
    } else if (pipeline && sscanf(pipeline, "scheduler=%31[^ ]", name) != 1) {
        name[0] = '\0';
    }
    free(pipeline);
    if (!name[0] || scheduler_kind_parse(name, &r->job.scheduler) != SOWER_OK)
        return SOWER_FAIL(SOWER_EINPUT, "%s: attribute '%s' names no scheduler sower runs (found '%s'), and the "
                          "manifest stored in the file names none",
                          r->path, LAYOUT_ATTR_PIPELINE, name);
    r->job.scheduler_given = 1;
    return SOWER_OK;
}

static int open_checked(OutputReader *r, const char *path)
{
    r->path = strdup(path);
    if (!r->path) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    FILE *probe = regular_file_fopen(path);
    if (!probe && errno != ENOENT)
        return SOWER_FAIL(SOWER_EPATH, "%s: cannot read: %s", path, regular_file_why(errno));
    if (!probe) {
        char partial[4200];
        snprintf(partial, sizeof partial, "%s.partial", path);
        FILE *unfinished = regular_file_fopen(partial);
        if (unfinished) fclose(unfinished);
        return SOWER_FAIL(
            SOWER_EPATH, "%s: no such file%s%s%s", path, unfinished ? " ('" : "", unfinished ? partial : "",
            unfinished ? "' beside it is an unfinished run: finish it with sower run --resume)" : "");
    }
    fclose(probe);
    h5file_quiet();
    SOWER_TRY(h5file_room_to_open(path));
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return SOWER_FAIL(SOWER_EPATH,
                          "%s: not an HDF5 file sower can open (truncated, or another kind of file)", path);
    r->file = file;
    SOWER_TRY(h5file_check_format(file, path));
    char *manifest = h5file_string_attr(file, LAYOUT_ATTR_MANIFEST);
    if (!manifest)
        return SOWER_FAIL(SOWER_EINPUT, "%s: no %s attribute (not a sower output, or a damaged one)", path,
                          LAYOUT_ATTR_MANIFEST);
    int status = manifest_load_text(&r->job, path, manifest, strlen(manifest));
    free(manifest);
    SOWER_TRY(status);
    if (r->job.prompts_file_pending) SOWER_TRY(adopt_recorded_prompts(r));
    if (!r->job.scheduler_given) SOWER_TRY(adopt_recorded_scheduler(r));
    /* A slice file (sower run --slice K/N) holds job rows [lo, hi); a job's file all of them. */
    r->lo = 0, r->hi = r->job.n_rows;
    r->slice = h5file_string_attr(file, LAYOUT_ATTR_SLICE);
    if (r->slice) {
        int k = -1, parts = 0;
        char end;
        if (!isdigit((unsigned char)r->slice[0]) || strspn(r->slice, "0123456789/") != strlen(r->slice) ||
            sscanf(r->slice, "%d/%d%c", &k, &parts, &end) != 2 || parts < 1 || k < 0 || k >= parts) /* as sower writes it */
            return SOWER_FAIL(SOWER_EINPUT, "%s: bad %s attribute '%s' (expected K/N)", path,
                              LAYOUT_ATTR_SLICE, r->slice);
        job_slice_bounds(&r->job, k, parts, &r->lo, &r->hi);
    }
    r->rows = r->hi - r->lo;
    return SOWER_OK;
}

int h5read_open(OutputReader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    int status = open_checked(r, path);
    if (status != SOWER_OK) h5read_close(r);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5read_check_layout(OutputReader *r, int c, int h, int w)
{
    SOWER_TRY(h5file_check_layout((hid_t)r->file, r->path, r->rows, c, h, w));
    r->c = c, r->h = h, r->w = w;
    return SOWER_OK;
}

int h5read_recorded_shape(const OutputReader *r, int *c, int *h, int *w)
{
    char *config = h5file_string_attr((hid_t)r->file, LAYOUT_ATTR_MODEL_CONFIG);
    if (!config)
        return SOWER_FAIL(SOWER_EINPUT, "%s: no %s attribute (not a sower output, or a damaged one)", r->path,
                          LAYOUT_ATTR_MODEL_CONFIG);
    char where[4200];
    snprintf(where, sizeof where, "%s (attribute %s)", r->path, LAYOUT_ATTR_MODEL_CONFIG);
    UNetConfig cfg;
    int status = unet_config_parse(config, strlen(config), where, &cfg);
    free(config);
    SOWER_TRY(status);
    *c = cfg.in_channels, *h = cfg.sample_height, *w = cfg.sample_width;
    if (r->job.n_prompts) { /* Stable Diffusion: the size is the manifest's pipeline.height/width (or the
                             * default) over the VAE's factor, which the file does not record: read it
                             * from /latents, whose other dimensions h5read_check_layout checks */
        hid_t ds = H5Dopen2((hid_t)r->file, LAYOUT_LATENTS, H5P_DEFAULT);
        hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t dims[4] = {0};
        const int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
        if (rank == 4) H5Sget_simple_extent_dims(space, dims, NULL);
        if (space >= 0) H5Sclose(space);
        if (ds >= 0) H5Dclose(ds);
        if (rank != 4 || dims[2] < 1 || dims[3] < 1 || dims[2] > 4096 || dims[3] > 4096)
            return SOWER_FAIL(SOWER_EINPUT, "%s: /%s is not (rows, channels, 1..4096, 1..4096)", r->path,
                              LAYOUT_LATENTS);
        *h = (int)dims[2], *w = (int)dims[3];
    }
    return SOWER_OK;
}

static int unfinished(const OutputReader *r, uint64_t not_done)
{
    return SOWER_FAIL(SOWER_EINPUT, "%s: unfinished (%llu of %llu rows done, per /%s): %s", r->path,
                      (unsigned long long)(r->rows - not_done), (unsigned long long)r->rows, LAYOUT_DONE,
                      strstr(r->path, ".partial") ? "an interrupted run's file; finish it with sower run --resume"
                                                  : "an unfinished run's file, or a damaged one");
}

int h5read_open_finished(OutputReader *r, const char *path)
{
    SOWER_TRY(h5read_open(r, path));
    int c = 0, h = 0, w = 0, status = h5read_recorded_shape(r, &c, &h, &w);
    if (status == SOWER_OK) status = h5read_check_layout(r, c, h, w);
    if (status == SOWER_OK) status = h5read_check_images(r);
    uint64_t not_done = 0;
    if (status == SOWER_OK) status = h5read_count_not_done(r, &not_done);
    if (status == SOWER_OK && not_done) status = unfinished(r, not_done);
    if (status != SOWER_OK) h5read_close(r);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5read_refuse_unfinished(OutputReader *r)
{
    int c = 0, h = 0, w = 0;
    uint64_t not_done = 0;
    if (h5read_recorded_shape(r, &c, &h, &w) != SOWER_OK || h5read_check_layout(r, c, h, w) != SOWER_OK ||
        h5read_count_not_done(r, &not_done) != SOWER_OK) {
        sower_error_clear(); /* damage, which the caller's own checks name */
        r->c = r->h = r->w = 0;
        return SOWER_OK;
    }
    if (not_done) SOWER_TRY(unfinished(r, not_done));
    return SOWER_OK;
}

int h5read_rows(const OutputReader *r, uint64_t r0, uint64_t n, float *latents, uint64_t *seeds,
                unsigned char *digests, uint8_t *done)
{
    if (r->c <= 0 || r0 > r->rows || n > r->rows - r0)
        return SOWER_FAIL(SOWER_EINTERNAL,
                          "%s: rows %llu+%llu read before the layout check or past %llu rows", r->path,
                          (unsigned long long)r0, (unsigned long long)n, (unsigned long long)r->rows);
    SOWER_TRY(
        h5file_read_block((hid_t)r->file, r->path, r0, n, r->c, r->h, r->w, latents, seeds, digests, done));
    return SOWER_OK;
}

int h5read_check_images(OutputReader *r)
{
    hsize_t dims[4] = {0, 0, 0, 0};
    if (r->job.decode) { /* the shape is the file's, then checked as the writer's would be */
        hid_t ds = H5Lexists((hid_t)r->file, LAYOUT_IMAGES, H5P_DEFAULT) > 0
                       ? H5Dopen2((hid_t)r->file, LAYOUT_IMAGES, H5P_DEFAULT)
                       : -1;
        hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
        const int ok = space >= 0 && H5Sget_simple_extent_ndims(space) == 4 &&
                       H5Sget_simple_extent_dims(space, dims, NULL) == 4 && (dims[1] == 1 || dims[1] == 3) &&
                       dims[2] > 0 && dims[2] <= 65536 && dims[3] > 0 && dims[3] <= 65536;
        if (space >= 0) H5Sclose(space);
        if (ds >= 0) H5Dclose(ds);
        if (!ok)
            return SOWER_FAIL(SOWER_EINPUT, "%s: its job decodes (pipeline.decode), but /%s is %s", r->path,
                              LAYOUT_IMAGES, ds < 0 ? "missing" : "not (rows, 1 or 3, H, W)");
    }
    SOWER_TRY(h5file_check_images((hid_t)r->file, r->path, r->rows, r->job.decode, (int)dims[1], (int)dims[2],
                                  (int)dims[3]));
    r->ic = (int)dims[1], r->ih = (int)dims[2], r->iw = (int)dims[3];
    return SOWER_OK;
}

int h5read_images(const OutputReader *r, uint64_t r0, uint64_t n, unsigned char *images, unsigned char *digests)
{
    if (r->ic <= 0 || r0 > r->rows || n > r->rows - r0)
        return SOWER_FAIL(SOWER_EINTERNAL, "%s: images %llu+%llu read before the check or past %llu rows", r->path,
                          (unsigned long long)r0, (unsigned long long)n, (unsigned long long)r->rows);
    SOWER_TRY(h5file_read_images((hid_t)r->file, r->path, r0, n, r->ic, r->ih, r->iw, images, digests));
    return SOWER_OK;
}

int h5read_count_not_done(const OutputReader *r, uint64_t *not_done)
{
    if (r->c <= 0)
        return SOWER_FAIL(SOWER_EINTERNAL, "%s: /%s read before the layout check", r->path, LAYOUT_DONE);
    SOWER_TRY(h5file_count_not_done((hid_t)r->file, r->path, r->rows, not_done));
    return SOWER_OK;
}

char *h5read_attr(const OutputReader *r, const char *key)
{
    return h5file_string_attr((hid_t)r->file, key);
}

char *h5read_run_attr(const OutputReader *r, const char *key)
{
    hid_t run = H5Lexists((hid_t)r->file, LAYOUT_RUN, H5P_DEFAULT) > 0
                    ? H5Gopen2((hid_t)r->file, LAYOUT_RUN, H5P_DEFAULT)
                    : -1;
    if (run < 0) return NULL;
    char *value = h5file_string_attr(run, key);
    H5Gclose(run);
    return value;
}

/* /verify/name: 1-D of n entries (n = *len, or any length <= max when *len is UINT64_MAX, which it
 * then becomes), of class cls with elements of `bytes` bytes (integers signed as `is_signed`), read
 * as memtype into a new buffer *out (n, bytes). */
static int read_vector(const OutputReader *r, hid_t group, const char *name, H5T_class_t cls, size_t bytes,
                       int is_signed, hid_t memtype, uint64_t max, uint64_t *len, void **out)
{
    hid_t ds = H5Lexists(group, name, H5P_DEFAULT) > 0 ? H5Dopen2(group, name, H5P_DEFAULT) : -1;
    if (ds < 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: no /%s/%s dataset (a damaged file?)", r->path, LAYOUT_VERIFY,
                          name);
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    hsize_t dims[1] = {0};
    int rank_ok = H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, dims, NULL) == 1;
    int type_ok = H5Tget_class(type) == cls && H5Tget_size(type) == bytes &&
                  (cls != H5T_INTEGER || H5Tget_sign(type) == (is_signed ? H5T_SGN_2 : H5T_SGN_NONE));
    int length_ok = rank_ok && (*len == UINT64_MAX ? dims[0] <= max : dims[0] == *len);
    int status = SOWER_OK;
    if (!rank_ok || !length_ok)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: /%s/%s is not a vector of %s%llu entries", r->path,
                            LAYOUT_VERIFY, name, *len == UINT64_MAX ? "at most " : "",
                            (unsigned long long)(*len == UINT64_MAX ? max : *len));
    else if (!type_ok)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: /%s/%s has another element type than sower writes", r->path,
                            LAYOUT_VERIFY, name);
    if (status == SOWER_OK) {
        *len = dims[0];
        *out = malloc(bytes * (dims[0] ? dims[0] : 1));
        if (!*out)
            status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        else if (dims[0] && H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
            status = h5file_ran_out() ? SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", r->path)
                                      : SOWER_FAIL(SOWER_EINPUT, "%s: cannot read /%s/%s (a damaged file?)", r->path,
                                                   LAYOUT_VERIFY, name);
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(ds);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5read_verify_table(const OutputReader *r, VerifyTable *t, int *present)
{
    memset(t, 0, sizeof *t);
    *present = 0;
    if (H5Lexists((hid_t)r->file, LAYOUT_VERIFY, H5P_DEFAULT) <= 0) return SOWER_OK;
    hid_t g = H5Gopen2((hid_t)r->file, LAYOUT_VERIFY, H5P_DEFAULT);
    if (g < 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: /%s is not a group (a damaged file?)", r->path, LAYOUT_VERIFY);
    uint64_t n = UINT64_MAX; /* set by the first vector, then required of the others */
    int status = read_vector(r, g, LAYOUT_VERIFY_ROWS, H5T_INTEGER, 8, 0, H5T_NATIVE_UINT64, r->rows, &n,
                             (void **)&t->rows);
    if (status == SOWER_OK)
        status = read_vector(r, g, LAYOUT_VERIFY_SEEDS, H5T_INTEGER, 8, 0, H5T_NATIVE_UINT64, r->rows, &n,
                             (void **)&t->seeds);
    if (status == SOWER_OK)
        status = read_vector(r, g, LAYOUT_VERIFY_RENDERER, H5T_INTEGER, 4, 1, H5T_NATIVE_INT32, r->rows, &n,
                             (void **)&t->renderer);
    if (status == SOWER_OK)
        status = read_vector(r, g, LAYOUT_VERIFY_VERIFIER, H5T_INTEGER, 4, 1, H5T_NATIVE_INT32, r->rows, &n,
                             (void **)&t->verifier);
    if (status == SOWER_OK)
        status = read_vector(r, g, LAYOUT_VERIFY_MATCH, H5T_INTEGER, 1, 0, H5T_NATIVE_UINT8, r->rows, &n,
                             (void **)&t->match);
    if (status == SOWER_OK)
        status = read_vector(r, g, LAYOUT_VERIFY_MAX_ABS_DIFF, H5T_FLOAT, 4, 0, H5T_NATIVE_FLOAT, r->rows, &n,
                             (void **)&t->max_abs_diff);
    H5Gclose(g);
    if (status != SOWER_OK) verify_table_free(t);
    SOWER_TRY(status);
    t->n = n;
    *present = 1;
    return SOWER_OK;
}

/* One of the job's texts against the file's record of it: the first difference, SOWER_EMISMATCH. */
static int compare_texts(const OutputReader *r, const char *name, const char *kind, char *const *want,
                         char *const *found, size_t n, size_t n_found)
{
    if (n_found != n)
        return SOWER_FAIL(SOWER_EMISMATCH, "%s: /%s holds %zu texts, the manifest stored in the file %zu prompts (the "
                                           "file was altered)", r->path, name, n_found, n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(want[i], found[i]) != 0)
            return SOWER_FAIL(SOWER_EMISMATCH, "%s: /%s[%zu] differs from the %sprompt of prompt %zu in the manifest "
                                               "stored in the file (the file was altered)", r->path, name, i, kind, i);
    return SOWER_OK;
}

/* /prompt_index (rows,) uint32 must give each row the job's prompt, read a block at a time. */
static int check_prompt_index(const OutputReader *r)
{
    enum { BLOCK = 1 << 16 };
    hid_t file = (hid_t)r->file;
    hid_t ds = H5Lexists(file, LAYOUT_PROMPT_INDEX, H5P_DEFAULT) > 0 ? H5Dopen2(file, LAYOUT_PROMPT_INDEX, H5P_DEFAULT)
                                                                      : -1;
    if (ds < 0) return SOWER_FAIL(SOWER_EINPUT, "%s: no /%s dataset (a damaged file)", r->path, LAYOUT_PROMPT_INDEX);
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    hsize_t dims[1] = {0};
    const int ok = H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, dims, NULL) == 1 &&
                   dims[0] == r->rows && H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 4 &&
                   H5Tget_sign(type) == H5T_SGN_NONE;
    H5Tclose(type), H5Sclose(space);
    uint32_t *block = ok ? malloc(sizeof *block * BLOCK) : NULL; /* (BLOCK,) */
    int status = !ok       ? SOWER_FAIL(SOWER_EINPUT, "%s: /%s is not a uint32 vector of %llu entries (a damaged file)",
                                        r->path, LAYOUT_PROMPT_INDEX, (unsigned long long)r->rows)
                 : !block ? SOWER_FAIL(SOWER_ENOMEM, "out of memory")
                          : SOWER_OK;
    uint64_t wrong = 0, first = 0, first_found = 0;
    for (uint64_t r0 = 0; r0 < r->rows && status == SOWER_OK; r0 += BLOCK) {
        const uint64_t n = r->rows - r0 < BLOCK ? r->rows - r0 : BLOCK;
        const hsize_t none[1] = {0};
        if (h5file_transfer_rows(ds, H5T_NATIVE_UINT32, 1, none, r0, n, block, 0) < 0) {
            status = h5file_ran_out() ? SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", r->path)
                                      : SOWER_FAIL(SOWER_EINPUT, "%s: cannot read /%s rows %llu-%llu (a damaged file)",
                                                   r->path, LAYOUT_PROMPT_INDEX, (unsigned long long)r0,
                                                   (unsigned long long)(r0 + n - 1));
            break;
        }
        for (uint64_t i = 0; i < n; i++)
            if (block[i] != job_prompt_at(&r->job, r->lo + r0 + i) && !wrong++) first = r0 + i, first_found = block[i];
    }
    free(block);
    H5Dclose(ds);
    if (status == SOWER_OK && wrong)
        status = SOWER_FAIL(SOWER_EMISMATCH, "%s: /%s gives %llu row(s) another prompt than the manifest stored in the file "
                                             "(first row %llu: %llu, the manifest's %llu): the file was altered",
                            r->path, LAYOUT_PROMPT_INDEX, (unsigned long long)wrong, (unsigned long long)first,
                            (unsigned long long)first_found, (unsigned long long)job_prompt_at(&r->job, r->lo + first));
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5read_check_prompt_record(const OutputReader *r)
{
    const Job *job = &r->job;
    if (!job->n_prompts) return SOWER_OK;
    char **prompts = NULL, **negatives = NULL; /* (n,), (n_negatives,) */
    size_t n = 0, n_negatives = 0;
    int status = h5file_read_texts((hid_t)r->file, r->path, LAYOUT_PROMPTS, JOB_MAX_PROMPTS, &prompts, &n);
    if (status == SOWER_OK)
        status = h5file_read_texts((hid_t)r->file, r->path, LAYOUT_NEGATIVE_PROMPTS, JOB_MAX_PROMPTS, &negatives,
                                   &n_negatives);
    if (status == SOWER_OK) status = compare_texts(r, LAYOUT_PROMPTS, "", job->prompts, prompts, job->n_prompts, n);
    if (status == SOWER_OK)
        status = compare_texts(r, LAYOUT_NEGATIVE_PROMPTS, "negative ", job->negative_prompts, negatives, job->n_prompts,
                               n_negatives);
    free_texts(prompts, n);
    free_texts(negatives, n_negatives);
    if (status == SOWER_OK) status = check_prompt_index(r);
    SOWER_TRY(status);
    return SOWER_OK;
}

void verify_table_free(VerifyTable *t)
{
    free(t->rows), free(t->seeds), free(t->renderer), free(t->verifier), free(t->match),
        free(t->max_abs_diff);
    memset(t, 0, sizeof *t);
}

void h5read_close(OutputReader *r)
{
    if (r->file > 0) H5Fclose((hid_t)r->file);
    free(r->path);
    free(r->slice);
    job_free(&r->job);
    memset(r, 0, sizeof *r);
}
