/* sample_record.c: see sample_record.h. */
#define _XOPEN_SOURCE 700 /* realpath, strdup */
#include "sample_record.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_keys.h"
#include "outfile.h"
#include "seeds.h"
#include "version.h"

enum { RECORD_FORMAT_VERSION = 1, RECORD_MAX_BYTES = 1 << 28 };
static const char RECORD_FORMAT[] = "sower-sample";
static const char *const ROWS_ARE[] = {[SAMPLE_ROWS_SAMPLES] = "samples", [SAMPLE_ROWS_LATENTS] = "latents",
                                       [SAMPLE_ROWS_IMAGES] = "images"};

void sample_record_path(const char *npy_path, char *out, size_t size) { snprintf(out, size, "%s.json", npy_path); }

/* "3,1,2": the seeds in row order, exact (JSON numbers past 2^53 are not, in most readers). */
static char *seeds_text(const uint64_t *seeds, size_t n)
{
    char *text = malloc(21 * n + 1), *p = text;
    if (!text) return NULL;
    *p = '\0';
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s%llu", i ? "," : "", (unsigned long long)seeds[i]);
    return text;
}

int sample_record_write(const char *npy_path, const Job *job, SampleRows rows_are, const float *rows,
                        const int64_t *shape, const unsigned char *weights_sha256, const unsigned char *vae_sha256,
                        const char *backend, int replace)
{
    char path[4200], hex[DIGEST_HEX_CHARS];
    sample_record_path(npy_path, path, sizeof path);
    const size_t n = (size_t)shape[0], per = (size_t)shape[1] * shape[2] * shape[3];
    cJSON *o = cJSON_CreateObject(), *model = cJSON_CreateObject(), *pipeline = cJSON_CreateObject();
    cJSON *shape_json = cJSON_CreateArray(), *digests = cJSON_CreateArray();
    char *seeds = seeds_text(job->list, job->n_list), *model_path = realpath(job->model_path, NULL);
    int status = o && model && pipeline && shape_json && digests && seeds ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (status == SOWER_OK) {
        cJSON_AddStringToObject(o, "format", RECORD_FORMAT);
        cJSON_AddNumberToObject(o, "format_version", RECORD_FORMAT_VERSION);
        const char *slash = strrchr(npy_path, '/');
        cJSON_AddStringToObject(o, "array", slash ? slash + 1 : npy_path);
        for (int i = 0; i < 4; i++) cJSON_AddItemToArray(shape_json, cJSON_CreateNumber((double)shape[i]));
        cJSON_AddItemToObject(o, "shape", shape_json), shape_json = NULL;
        cJSON_AddStringToObject(o, "rows_are", ROWS_ARE[rows_are]);
        cJSON_AddStringToObject(model, "path", model_path ? model_path : job->model_path);
        digest_hex(weights_sha256, hex);
        cJSON_AddStringToObject(model, "weights_sha256", hex);
        cJSON_AddItemToObject(o, "model", model), model = NULL;
        if (vae_sha256) digest_hex(vae_sha256, hex), cJSON_AddStringToObject(o, "vae_sha256", hex);
        cJSON_AddStringToObject(pipeline, "scheduler", scheduler_kind_name(job->scheduler));
        cJSON_AddNumberToObject(pipeline, "steps", job->steps);
        cJSON_AddNumberToObject(pipeline, "eta", job->eta);
        cJSON_AddBoolToObject(pipeline, "karras", job->sigmas == SIGMAS_KARRAS);
        if (sigma_schedule_named(job->sigmas)) /* absent otherwise, as before */
            cJSON_AddStringToObject(pipeline, "sigmas", sigma_schedule_name(job->sigmas));
        cJSON_AddStringToObject(pipeline, "generator", rng_kernel_name(job->generator));
        if (job->n_prompts) {
            cJSON_AddNumberToObject(pipeline, "guidance", job->guidance);
            if (job->guidance_rescale > 0) /* absent when off: records without it read as before */
                cJSON_AddNumberToObject(pipeline, "guidance_rescale", job->guidance_rescale);
            cJSON_AddNumberToObject(pipeline, "height", job->height);
            cJSON_AddNumberToObject(pipeline, "width", job->width);
            cJSON_AddNumberToObject(pipeline, "clip_skip", job->clip_skip);
        }
        cJSON_AddItemToObject(o, "pipeline", pipeline), pipeline = NULL;
        if (job->n_prompts) {
            cJSON_AddStringToObject(o, "prompt", job->prompts[0]);
            cJSON_AddStringToObject(o, "negative_prompt", job->negative_prompts[0]);
        }
        cJSON_AddStringToObject(o, "seeds", seeds);
        cJSON_AddStringToObject(o, "backend", backend);
        cJSON_AddStringToObject(o, "sower_version", sower_version());
    }
    for (size_t i = 0; i < n && status == SOWER_OK; i++) { /* each row's bytes, as /digest holds a run's */
        unsigned char d[DIGEST_BYTES];
        status = digest_buffer(rows + i * per, per * sizeof(float), d);
        digest_hex(d, hex);
        cJSON_AddItemToArray(digests, cJSON_CreateString(hex));
    }
    if (status == SOWER_OK) cJSON_AddItemToObject(o, "row_sha256", digests), digests = NULL;
    char *text = status == SOWER_OK ? cJSON_Print(o) : NULL;
    if (status == SOWER_OK && !text) status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    OutFile f = {0};
    if (status == SOWER_OK) status = replace ? outfile_open(&f, path) : outfile_open_new(&f, path);
    if (status == SOWER_OK) status = outfile_write(&f, text, strlen(text));
    if (status == SOWER_OK) status = outfile_write(&f, "\n", 1);
    if (status == SOWER_OK) status = outfile_commit(&f);
    outfile_free(&f);
    cJSON_free(text);
    cJSON_Delete(o), cJSON_Delete(model), cJSON_Delete(pipeline), cJSON_Delete(shape_json), cJSON_Delete(digests);
    free(seeds), free(model_path);
    return status;
}

/* ---- reading ---- */

static const cJSON *field(const cJSON *o, const char *key, int (*is)(const cJSON *)) 
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && is(v) ? v : NULL;
}

static int hex_digest(const char *hex, unsigned char *out)
{
    if (!hex || strlen(hex) != 2 * DIGEST_BYTES) return -1;
    for (int i = 0; i < DIGEST_BYTES; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdef", hex[2 * i]) ||
            !strchr("0123456789abcdef", hex[2 * i + 1]))
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* The seeds text into job->list (n of them). */
static int parse_seeds(const char *text, Job *job, uint64_t n)
{
    job->list = malloc(sizeof(uint64_t) * (n ? n : 1));
    if (!job->list) return -1;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        uint64_t lo, hi;
        if (job->n_list == n || seed_item_parse(p, len, &lo, &hi) != 0 || lo != hi) return -1;
        job->list[job->n_list++] = lo;
        p += len + (end != NULL);
        if (end && !*p) return -1;
    }
    return job->n_list == n ? 0 : -1;
}

static char *copy(const cJSON *s) { return s ? strdup(s->valuestring) : NULL; }

/* The record's JSON into r (everything but record_hex); the name of the first key that is wrong in *bad. */
static int parse_record(SampleRecord *r, const cJSON *o, const char **bad)
{
    Job *job = &r->job;
    const cJSON *format = field(o, "format", cJSON_IsString), *version = field(o, "format_version", cJSON_IsNumber);
    if (!format || strcmp(format->valuestring, RECORD_FORMAT) != 0) return *bad = "format", -1;
    if (!version || version->valueint != RECORD_FORMAT_VERSION) return *bad = "format_version", -1;
    const cJSON *shape = field(o, "shape", cJSON_IsArray);
    if (!shape || cJSON_GetArraySize(shape) != 4) return *bad = "shape", -1;
    for (int i = 0; i < 4; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < (i ? 1 : 0) || d->valuedouble > INT_MAX) return *bad = "shape", -1;
        r->shape[i] = (int64_t)d->valuedouble;
    }
    const cJSON *rows_are = field(o, "rows_are", cJSON_IsString);
    int kind = -1;
    for (int i = 0; rows_are && i < 3; i++)
        if (strcmp(rows_are->valuestring, ROWS_ARE[i]) == 0) kind = i;
    if (kind < 0) return *bad = "rows_are", -1;
    r->rows_are = (SampleRows)kind;
    const cJSON *model = field(o, "model", cJSON_IsObject);
    const cJSON *model_path = model ? field(model, "path", cJSON_IsString) : NULL;
    const cJSON *weights = model ? field(model, "weights_sha256", cJSON_IsString) : NULL;
    unsigned char d[DIGEST_BYTES];
    if (!model_path || !weights || hex_digest(weights->valuestring, d) != 0) return *bad = "model", -1;
    digest_hex(d, r->weights_hex);
    const cJSON *vae = field(o, "vae_sha256", cJSON_IsString);
    if ((r->rows_are == SAMPLE_ROWS_IMAGES) != (vae != NULL) || (vae && hex_digest(vae->valuestring, d) != 0))
        return *bad = "vae_sha256", -1;
    if (vae) digest_hex(d, r->vae_hex);
    const cJSON *p = field(o, "pipeline", cJSON_IsObject);
    const cJSON *scheduler = p ? field(p, "scheduler", cJSON_IsString) : NULL;
    const cJSON *steps = p ? field(p, "steps", cJSON_IsNumber) : NULL, *eta = p ? field(p, "eta", cJSON_IsNumber) : NULL;
    const cJSON *karras = p ? field(p, "karras", cJSON_IsBool) : NULL;
    const cJSON *generator = p ? field(p, "generator", cJSON_IsString) : NULL;
    if (!scheduler || scheduler_kind_parse(scheduler->valuestring, &job->scheduler) != SOWER_OK || !steps ||
        steps->valuedouble < 1 || steps->valuedouble > INT_MAX || !eta || !isfinite(eta->valuedouble) || !karras || !generator ||
        rng_kernel_parse(generator->valuestring, &job->generator) != SOWER_OK)
        return sower_error_clear(), *bad = "pipeline", -1;
    job->steps = steps->valueint, job->eta = eta->valuedouble, job->sigmas = cJSON_IsTrue(karras) ? SIGMAS_KARRAS : SIGMAS_CONFIG;
    const cJSON *sigmas = cJSON_GetObjectItemCaseSensitive(p, "sigmas");
    if (sigmas) { /* written for exponential and beta only, beside karras: false */
        SigmaSchedule named;
        if (!cJSON_IsString(sigmas) || sigma_schedule_parse(sigmas->valuestring, &named) != 0 ||
            !sigma_schedule_named(named) || job->sigmas == SIGMAS_KARRAS)
            return *bad = "pipeline", -1;
        job->sigmas = named;
    }
    const cJSON *prompt = field(o, "prompt", cJSON_IsString), *negative = field(o, "negative_prompt", cJSON_IsString);
    if ((r->rows_are == SAMPLE_ROWS_SAMPLES) != !prompt || !prompt != !negative) return *bad = "prompt", -1;
    if (prompt) {
        const cJSON *guidance = field(p, "guidance", cJSON_IsNumber), *height = field(p, "height", cJSON_IsNumber);
        const cJSON *width = field(p, "width", cJSON_IsNumber), *clip_skip = field(p, "clip_skip", cJSON_IsNumber);
        if (!guidance || !isfinite(guidance->valuedouble) || !height || height->valuedouble < 0 ||
            height->valuedouble > 1 << 20 || !width || width->valuedouble < 0 || width->valuedouble > 1 << 20 ||
            !clip_skip || clip_skip->valuedouble < 0 || clip_skip->valuedouble > 1024)
            return *bad = "pipeline", -1;
        job->guidance = guidance->valuedouble, job->height = height->valueint, job->width = width->valueint;
        job->clip_skip = clip_skip->valueint;
        const cJSON *rescale = cJSON_GetObjectItemCaseSensitive(p, "guidance_rescale"); /* optional */
        if (rescale && (!cJSON_IsNumber(rescale) || !(rescale->valuedouble >= 0 && rescale->valuedouble <= 1)))
            return *bad = "pipeline", -1;
        job->guidance_rescale = rescale ? rescale->valuedouble : 0.0;
        job->decode = r->rows_are == SAMPLE_ROWS_IMAGES;
        job->prompts = calloc(1, sizeof(char *)), job->negative_prompts = calloc(1, sizeof(char *));
        if (!job->prompts || !job->negative_prompts) return *bad = "prompt", -1;
        job->n_prompts = 1;
        job->prompts[0] = copy(prompt), job->negative_prompts[0] = copy(negative);
        if (!job->prompts[0] || !job->negative_prompts[0]) return *bad = "prompt", -1;
    }
    const uint64_t n = (uint64_t)r->shape[0];
    const cJSON *seeds = field(o, "seeds", cJSON_IsString);
    if (!seeds || parse_seeds(seeds->valuestring, job, n) != 0) return *bad = "seeds", -1;
    job->n_seeds = job->n_rows = n;
    const cJSON *digests = field(o, "row_sha256", cJSON_IsArray);
    if (!digests || (uint64_t)cJSON_GetArraySize(digests) != n) return *bad = "row_sha256", -1;
    r->row_sha256 = malloc(DIGEST_BYTES * (n ? n : 1));
    if (!r->row_sha256) return *bad = "row_sha256", -1;
    uint64_t i = 0;
    for (const cJSON *h = digests->child; h; h = h->next, i++)
        if (!cJSON_IsString(h) || hex_digest(h->valuestring, r->row_sha256 + DIGEST_BYTES * i) != 0)
            return *bad = "row_sha256", -1;
    const cJSON *backend = field(o, "backend", cJSON_IsString);
    if (!backend) return *bad = "backend", -1;
    r->backend = copy(backend);
    snprintf(job->name, sizeof job->name, "sample");
    job->model_path = copy(model_path);
    return r->backend && job->model_path ? 0 : (*bad = "model", -1);
}

int sample_record_read(SampleRecord *r, const char *npy_path, const int64_t *npy_shape, int npy_ndim)
{
    memset(r, 0, sizeof *r);
    char path[4200];
    sample_record_path(npy_path, path, sizeof path);
    unsigned char *bytes = NULL;
    size_t n = 0;
    int read = file_read_all(path, RECORD_MAX_BYTES, &bytes, &n);
    if (read == SOWER_ENOMEM) return read;
    if (read != SOWER_OK) {
        return SOWER_FAIL(SOWER_EINPUT,
                          "%s: no record of what produced it (%s, which sower sample writes beside its array: %s); "
                          "sower export reads arrays written by sower sample, or a run's HDF5 output",
                          npy_path, path, sower_error_message());
    }
    const int status = sample_record_parse(r, path, bytes, n, npy_path, npy_shape, npy_ndim);
    free(bytes);
    return status;
}

int sample_record_parse(SampleRecord *r, const char *path, const unsigned char *bytes, size_t n, const char *npy_path,
                        const int64_t *npy_shape, int npy_ndim)
{
    memset(r, 0, sizeof *r);
    int ran_out;
    cJSON *o = json_parse((const char *)bytes, n, NULL, &ran_out);
    if (ran_out) return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", path);
    const char *bad = NULL;
    int status = SOWER_OK;
    unsigned char d[DIGEST_BYTES];
    if (!cJSON_IsObject(o))
        status = SOWER_FAIL(SOWER_EINPUT, "%s: not a sower sample record (not a JSON object)", path);
    else if (parse_record(r, o, &bad) != 0)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: key '%s' is missing or wrong: not a sower sample record of format %d",
                            path, bad, RECORD_FORMAT_VERSION);
    else if (npy_ndim != 4 || memcmp(npy_shape, r->shape, sizeof r->shape) != 0)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: records an array of shape (%lld, %lld, %lld, %lld); %s is not it",
                            path, (long long)r->shape[0], (long long)r->shape[1], (long long)r->shape[2],
                            (long long)r->shape[3], npy_path);
    else if ((status = digest_buffer(bytes, n, d)) == SOWER_OK)
        digest_hex(d, r->record_hex);
    cJSON_Delete(o);
    if (status != SOWER_OK) sample_record_free(r);
    return status;
}

void sample_record_free(SampleRecord *r)
{
    job_free(&r->job);
    free(r->row_sha256);
    free(r->backend);
    memset(r, 0, sizeof *r);
}
