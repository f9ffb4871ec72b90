/* export_images.c: see export_images.h.
 *
 * Each PNG carries two text chunks: `parameters`, the line AUTOMATIC1111/ComfyUI users and their tools
 * read ("PROMPT\nNegative prompt: N\nSteps: S, Sampler: X, CFG scale: G, Seed: S, Size: WxH, Model hash:
 * ..., Model: ..."), and `sower`, the row's provenance as JSON (source file, row, seed, the digests of
 * the latents, the job, the weights and the VAE). Text that is not ASCII goes in iTXt (UTF-8). Pixels
 * are diffusers' postprocess: (x / 2 + 0.5).clamp(0, 1) * 255, rounded half to even, as numpy_to_pil. */
#define _POSIX_C_SOURCE 200809L
#include "export_images.h"
#include "output_lock.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cpu_backend.h"
#include "digest.h"
#include "export_lines.h"
#include "json_keys.h"
#include "model.h"
#include "npy.h"
#include "outfile.h"
#include "regular_file.h"
#include "vae.h"
#include "version.h"

enum { MAX_PNG_TEXT = 2 * 4 * 8192 + 2048 }; /* two prompts of 8192 characters of up to 4 UTF-8 bytes, the rest */
static const char MARKER[] = "sower-export.json";
static const char LOCK_NAME[] = "sower-export"; /* output_lock.h: the folder's lock is sower-export.lock */

/* ---- a PNG in memory (its bytes are digested, then written whole) ---- */

typedef struct {
    unsigned char *data; /* (n,) */
    size_t n, cap;
} Bytes;

static void png_append(png_structp png, png_bytep p, png_size_t n)
{
    Bytes *b = png_get_io_ptr(png);
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) png_error(png, "out of memory");
        b->data = grown, b->cap = cap;
    }
    memcpy(b->data + b->n, p, n);
    b->n += n;
}

static void png_flush_nothing(png_structp png) { (void)png; }

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

/* pixels (h, w, channels) uint8 with text chunks keys[i] = values[i] -> out (reset first). */
static int encode_png(const unsigned char *pixels, int w, int h, int channels, const char *const *keys,
                      const char *const *values, int n_texts, Bytes *out)
{
    out->n = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return SOWER_FAIL(SOWER_ENOMEM, "cannot encode a PNG (out of memory)");
    }
    png_set_write_fn(png, out, png_append, png_flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_text text[4];
    memset(text, 0, sizeof text);
    for (int i = 0; i < n_texts && i < 4; i++) {
        text[i].compression = is_ascii(values[i]) ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        text[i].key = (char *)keys[i];
        text[i].text = (char *)values[i];
        text[i].text_length = strlen(values[i]);
    }
    png_set_text(png, info, text, n_texts);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * w * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return SOWER_OK;
}

/* ---- an existing PNG's text chunks (those before the image data, where encode_png puts them) ---- */

typedef struct {
    const unsigned char *data; /* (n,) the file's bytes */
    size_t n, at;
} PngSource;

static void png_take(png_structp png, png_bytep p, png_size_t n)
{
    PngSource *src = png_get_io_ptr(png);
    if (src->n - src->at < n) png_error(png, "truncated");
    memcpy(p, src->data + src->at, n);
    src->at += n;
}

static void png_fail_quietly(png_structp png, png_const_charp why) { (void)why, png_longjmp(png, 1); }
static void png_warn_nothing(png_structp png, png_const_charp why) { (void)png, (void)why; }

/* The text of chunk `key` in a PNG of n bytes (a new string: free), or NULL: not a PNG, or no such chunk
 * before its image data. */
static char *png_text_of(const unsigned char *data, size_t n, const char *key)
{
    if (n < 8 || png_sig_cmp(data, 0, 8) != 0) return NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, png_fail_quietly, png_warn_nothing);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    PngSource src = {data, n, 0};
    char *volatile found = NULL;
    if (png && info && !setjmp(png_jmpbuf(png))) {
        png_set_read_fn(png, &src, png_take);
        png_read_info(png, info);
        png_textp text = NULL;
        int count = 0;
        png_get_text(png, info, &text, &count);
        for (int i = 0; i < count && !found; i++)
            if (text[i].key && text[i].text && strcmp(text[i].key, key) == 0) found = strdup(text[i].text);
    }
    png_destroy_read_struct(&png, &info, NULL);
    return found;
}

/* ---- the export ---- */

typedef struct {
    const ExportSource *in;
    const char *path, *dir;
    const char *layout;    /* "pngs", "imagefolder", "webdataset" or "npy": one per folder (the marker says) */
    uint64_t shard_rows;   /* rows per shard (webdataset, npy; 0 for a file per row): one per folder too */
    int imagefolder;
    int latents_only;      /* --npy: the rows themselves, nothing decoded or drawn */
    int decode;            /* Stable Diffusion latents: through the VAE */
    int prompted;          /* Stable Diffusion: the rows have prompts (and `parameters` names them) */
    int stored_images;     /* pipeline.decode: the file's /images are the pixels (no VAE needed) */
    unsigned char *stored; /* (channels, height, width) a row of /images */
    Vae vae;
    ComputeBackend be;
    char job_hex[DIGEST_HEX_CHARS], weights_hex[DIGEST_HEX_CHARS], vae_hex[DIGEST_HEX_CHARS];
    const char *model_dir;  /* the model folder (its VAE decodes; its name goes in `parameters`) */
    const char *model_name; /* the model folder's last component */
    int channels, height, width; /* of the images */
    float *latent;          /* (c, h, w) one row as stored */
    float *image;           /* (channels, height, width) decoded (or the row itself) */
    unsigned char *pixels;  /* (height, width, channels) */
    Bytes png;
    MergedLines metadata;   /* dir/metadata.jsonl (imagefolder) */
    MergedLines sums;       /* dir/SHA256SUMS */
    OutputLock lock;        /* dir/sower-export.lock: one export at a time merges the folder's index files */
    uint64_t written, kept;
} Export;

/* The sampler's name as AUTOMATIC1111 writes it (its own name where A1111 has none). */
static void sampler_name(const Job *job, char *out, size_t size)
{
    static const char *const names[][2] = {{"ddim", "DDIM"},    {"ddim-parallel", "DDIM"}, {"ddpm", "DDPM"},
                                           {"pndm", "PLMS"},    {"euler", "Euler"},        {"euler-a", "Euler a"},
                                           {"dpm++2m", "DPM++ 2M"}, {"dpm++2m-sde", "DPM++ 2M SDE"}, {"unipc", "UniPC"}, {"heun", "Heun"}, {"lms", "LMS"},
                                           {"dpm2", "DPM2"}, {"dpm2-a", "DPM2 a"},
                                           {"dpm++2s", "DPM++ 2S"}, {"dpm++2s-sde", "DPM++ 2S SDE"},
                                           {"deis", "DEIS"}, {"dpm++sde", "DPM++ SDE"}};
    const char *ours = scheduler_kind_name(job->scheduler), *theirs = ours;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i][0], ours) == 0) theirs = names[i][1];
    snprintf(out, size, "%s%s", theirs, job->sigmas == SIGMAS_KARRAS ? " Karras" : job->sigmas == SIGMAS_EXPONENTIAL ? " Exponential"
                                         : job->sigmas == SIGMAS_BETA ? " Beta" : "");
}

/* path <- bytes, written to a temporary file and renamed: readers never see a part of it. */
static int write_whole(const char *path, const void *data, size_t bytes)
{
    OutFile out = {0};
    int status = outfile_open(&out, path);
    if (status == SOWER_OK) status = outfile_write(&out, data, bytes);
    if (status == SOWER_OK) status = outfile_commit(&out);
    outfile_free(&out);
    return status;
}

/* An earlier export into dir of another layout or shard size would share file keys with this one (row 7's
 * PNG, shard 0's rows) in SHA256SUMS and metadata.jsonl: refused. A marker of before the layout was
 * recorded passes. */
static int check_same_layout(const Export *e, const cJSON *marker, const char *marker_path)
{
    const cJSON *layout = cJSON_GetObjectItemCaseSensitive(marker, "layout");
    const cJSON *shard = cJSON_GetObjectItemCaseSensitive(marker, "shard_rows");
    if (cJSON_IsString(layout) && strcmp(layout->valuestring, e->layout) != 0)
        return SOWER_FAIL(SOWER_EPATH, "%s: holds a --%s export of this job (see %s), not --%s: a folder holds one "
                                       "layout; choose another folder",
                          e->dir, layout->valuestring, marker_path, e->layout);
    if (e->shard_rows && cJSON_IsNumber(shard) && (uint64_t)shard->valuedouble != e->shard_rows)
        return SOWER_FAIL(SOWER_EPATH, "%s: its shards hold %llu rows each (see %s), not %llu: give --shard-size %llu "
                                       "or choose another folder",
                          e->dir, (unsigned long long)shard->valuedouble, marker_path,
                          (unsigned long long)e->shard_rows, (unsigned long long)shard->valuedouble);
    return SOWER_OK;
}

/* dir: new, empty, or an export of this very job in the same layout (its marker names the job's digest). */
static int claim_dir(Export *e)
{
    char marker[4200];
    snprintf(marker, sizeof marker, "%s/%s", e->dir, MARKER);
    unsigned char *text = NULL;
    size_t bytes = 0;
    int present = 0;
    SOWER_TRY(file_read_if_present(marker, 1 << 20, &text, &bytes, &present));
    if (present) {
        int ran_out;
        cJSON *obj = json_parse((const char *)text, bytes, NULL, &ran_out);
        free(text);
        if (ran_out) return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", marker);
        const cJSON *job = cJSON_GetObjectItemCaseSensitive(obj, "job_sha256");
        const int same = cJSON_IsString(job) && strcmp(job->valuestring, e->job_hex) == 0;
        int status = same ? check_same_layout(e, obj, marker) : SOWER_OK;
        cJSON_Delete(obj);
        if (!same)
            return SOWER_FAIL(SOWER_EPATH, "%s: holds the export of another job (see %s): choose another folder",
                              e->dir, marker);
        return status; /* resuming: its files are this job's */
    }
    DIR *d = opendir(e->dir);
    if (!d) return SOWER_FAIL(SOWER_EPATH, "%s: cannot read the folder", e->dir);
    int empty = 1;
    for (struct dirent *ent; empty && (ent = readdir(d));) /* the lock's files aside: ours, drafts, stale ones */
        empty = !strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..") ||
                (!strncmp(ent->d_name, LOCK_NAME, sizeof LOCK_NAME - 1) &&
                 !strncmp(ent->d_name + sizeof LOCK_NAME - 1, ".lock", 5));
    closedir(d);
    if (!empty)
        return SOWER_FAIL(SOWER_EPATH, "%s: not empty, and not a sower export (no %s): choose a new or empty folder",
                          e->dir, MARKER);
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "source", e->path);
    cJSON_AddStringToObject(obj, "job_sha256", e->job_hex);
    cJSON_AddStringToObject(obj, "weights_sha256", e->weights_hex);
    cJSON_AddStringToObject(obj, "layout", e->layout);
    if (e->shard_rows) cJSON_AddNumberToObject(obj, "shard_rows", (double)e->shard_rows);
    cJSON_AddStringToObject(obj, "sower_version", sower_version());
    char *json = cJSON_Print(obj);
    cJSON_Delete(obj);
    const size_t n = json ? strlen(json) : 0;
    char *line = json ? malloc(n + 2) : NULL; /* the JSON and a newline */
    if (line) memcpy(line, json, n), line[n] = '\n', line[n + 1] = '\0';
    cJSON_free(json);
    if (!line) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int status = write_whole(marker, line, n + 1);
    free(line);
    return status;
}

/* The folder whose VAE decodes the rows must be the pipeline that rendered them: its UNet's weights digest is
 * the one the file records (another pipeline's VAE would label its images with this file's weights). */
static int check_pipeline_is_the_runs(const Export *e)
{
    Model m;
    int status = model_load(&m, e->model_dir);
    char hex[DIGEST_HEX_CHARS] = "";
    if (status == SOWER_OK) digest_hex(m.weights_sha256, hex);
    model_free(&m);
    if (status != SOWER_OK)
        return SOWER_FAIL(status, "%s: its latents are decoded by the VAE of its model '%s' (another: --model DIR): %s",
                          e->path, e->model_dir, sower_error_message());
    if (strcmp(hex, e->weights_hex) != 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: the model at %s is not the one that rendered it (UNet weights sha256 %s, "
                                        "recorded %s): its VAE would decode another pipeline's latents; --model DIR names "
                                        "the run's pipeline folder", e->path, e->model_dir, hex, e->weights_hex);
    return SOWER_OK;
}

static int setup(Export *e)
{
    const ExportSource *in = e->in;
    memcpy(e->job_hex, in->job_hex, sizeof e->job_hex);
    memcpy(e->weights_hex, in->weights_hex, sizeof e->weights_hex);
    memcpy(e->vae_hex, in->vae_hex, sizeof e->vae_hex);
    /* The model folder: --model, else the one the rows' file recorded, else the manifest's (relative to
     * where the manifest was, which the file does not know). */
    if (!e->model_dir) e->model_dir = in->model_path ? in->model_path : in->job->model_path;
    const char *slash = strrchr(e->model_dir, '/');
    e->model_name = slash && slash[1] ? slash + 1 : e->model_dir;
    e->prompted = in->prompted;
    e->decode = in->prompted && !in->rows_are_images && !e->latents_only;
    e->stored_images = in->ic > 0 && !e->latents_only;
    if (e->latents_only) {
        e->channels = in->c, e->height = in->h, e->width = in->w; /* the rows as stored */
    } else if (e->stored_images) { /* decoded by the run: its job key names the VAE */
        e->channels = in->ic, e->height = in->ih, e->width = in->iw;
        e->stored = malloc((size_t)e->channels * e->height * e->width);
        if (!e->stored) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for one image");
    } else if (e->decode) {
        SOWER_TRY(check_pipeline_is_the_runs(e));
        int status = vae_load(&e->vae, e->model_dir);
        if (status != SOWER_OK) {
            return SOWER_FAIL(status, "%s: its latents are decoded by the VAE of its model '%s' (another: --model DIR): %s",
                              e->path, e->model_dir, sower_error_message());
        }
        if (e->vae.cfg.latent_channels != in->c)
            return SOWER_FAIL(SOWER_EMODEL, "%s: latent_channels %d, the file's rows have %d channels",
                              e->vae.config_path, e->vae.cfg.latent_channels, in->c);
        digest_hex(e->vae.sha256, e->vae_hex);
        SOWER_TRY(compute_backend_cpu(&e->be, NULL));
        e->channels = e->vae.cfg.out_channels;
        e->height = in->h * e->vae.cfg.scale_factor, e->width = in->w * e->vae.cfg.scale_factor;
    } else if (in->c == 1 || in->c == 3) {
        e->channels = in->c, e->height = in->h, e->width = in->w;
    } else {
        return SOWER_FAIL(SOWER_EINPUT,
                          "%s: rows of %d channels are not images, and not a Stable Diffusion pipeline's latents "
                          "(no VAE to decode them): sower export --png draws channel 0",
                          e->path, in->c);
    }
    const size_t pixels = e->latents_only ? 1 : (size_t)e->channels * e->height * e->width;
    e->latent = malloc(sizeof(float) * in->c * in->h * in->w);
    e->image = malloc(sizeof(float) * pixels);
    e->pixels = malloc(pixels);
    if (!e->latent || !e->image || !e->pixels) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for one image");
    /* Two exports at once would each merge the index files they read and the last rename would win
     * (one's rows dropped from SHA256SUMS and metadata.jsonl): the second is refused, naming the first.
     * The lock comes before the folder is claimed: two exports of different jobs into one new folder
     * would otherwise both find it empty, and one write its images under the other's marker. */
    char lock_name[4200], command[4400];
    snprintf(lock_name, sizeof lock_name, "%s/%s", e->dir, LOCK_NAME);
    snprintf(command, sizeof command, "sower export %s --%s %s", e->path, e->layout, e->dir);
    SOWER_TRY(make_dirs(e->dir));
    SOWER_TRY(output_lock_take(&e->lock, lock_name, command));
    SOWER_TRY(claim_dir(e));
    char sums[4200];
    snprintf(sums, sizeof sums, "%s/SHA256SUMS", e->dir);
    SOWER_TRY(merged_lines_open(&e->sums, sums, sums_line_key));
    if (e->imagefolder) {
        char meta[4200];
        snprintf(meta, sizeof meta, "%s/metadata.jsonl", e->dir);
        SOWER_TRY(merged_lines_open(&e->metadata, meta, metadata_line_key));
    }
    return SOWER_OK;
}

/* The A1111 `parameters` line of a row. */
static void parameters_text(const Export *e, uint64_t seed, const char *prompt, const char *negative, char *out,
                            size_t size)
{
    const Job *job = e->in->job;
    size_t used = 0;
    if (prompt) {
        used += (size_t)snprintf(out, size, "%s\n", prompt);
        if (negative && *negative && used < size) used += (size_t)snprintf(out + used, size - used, "Negative prompt: %s\n", negative);
    }
    if (used >= size) return;
    char sampler[64];
    sampler_name(job, sampler, sizeof sampler);
    used += (size_t)snprintf(out + used, size - used, "Steps: %d, Sampler: %s, ", job->steps, sampler);
    char number[32];
    if (prompt && used < size)
        used += (size_t)snprintf(out + used, size - used, "CFG scale: %s, ", job_number_text(job->guidance, number));
    if (used < size)
        used += (size_t)snprintf(out + used, size - used, "Seed: %llu, Size: %dx%d, Model hash: %.10s, Model: %s",
                                 (unsigned long long)seed, e->width, e->height, e->weights_hex, e->model_name);
    if (prompt && job->clip_skip && used < size) /* A1111 counts the last layer as 1 */
        used += (size_t)snprintf(out + used, size - used, ", Clip skip: %d", job->clip_skip + 1);
    if (prompt && job->guidance_rescale > 0 && used < size) /* the CFG Rescale extension's name */
        used += (size_t)snprintf(out + used, size - used, ", CFG Rescale phi: %s",
                                 job_number_text(job->guidance_rescale, number));
    if (job->eta != 0.0 && used < size) /* DDIM's eta (the only scheduler sower runs that takes one) */
        used += (size_t)snprintf(out + used, size - used, ", Eta DDIM: %s", job_number_text(job->eta, number));
    if (used < size) snprintf(out + used, size - used, ", Version: sower %s", sower_version());
}

/* The row's facts, shared by the `sower` chunk and the metadata line. */
static cJSON *row_json(const Export *e, uint64_t row, uint64_t seed, const char *prompt, const char *negative,
                       const char *latents_hex)
{
    const Job *job = e->in->job;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "row", (double)row);
    char seed_text[24];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed); /* exact past 2^53 */
    cJSON_AddRawToObject(o, "seed", seed_text);
    if (prompt) {
        cJSON_AddStringToObject(o, "prompt", prompt);
        cJSON_AddStringToObject(o, "negative_prompt", negative);
        cJSON_AddNumberToObject(o, "guidance", job->guidance);
        if (job->guidance_rescale > 0) cJSON_AddNumberToObject(o, "guidance_rescale", job->guidance_rescale);
        cJSON_AddNumberToObject(o, "clip_skip", job->clip_skip);
    }
    cJSON_AddNumberToObject(o, "steps", job->steps);
    cJSON_AddStringToObject(o, "scheduler", scheduler_kind_name(job->scheduler));
    cJSON_AddBoolToObject(o, "karras", job->sigmas == SIGMAS_KARRAS);
    if (sigma_schedule_named(job->sigmas))
        cJSON_AddStringToObject(o, "sigmas", sigma_schedule_name(job->sigmas));
    cJSON_AddNumberToObject(o, "eta", job->eta);
    if (!e->latents_only) { /* the image's size (a latent row's is its shape) */
        cJSON_AddNumberToObject(o, "height", e->height);
        cJSON_AddNumberToObject(o, "width", e->width);
    }
    cJSON_AddStringToObject(o, "job_sha256", e->job_hex); /* the line names its job without the PNG */
    /* the row as stored: latents (or an unconditional model's samples), or sample --decode's float images */
    cJSON_AddStringToObject(o, e->in->rows_are_images ? "images_f32_sha256" : "latents_sha256", latents_hex);
    return o;
}

/* What the export knows of row r without decoding it: its key ("rowRRRRRRRR_seedS"), its facts (the
 * metadata line less file_name and png_sha256), the latents in e->latent (checked against /digest). */
typedef struct {
    uint64_t row, seed;
    char key[64];
    cJSON *facts;
} RowFacts;

static int row_facts(Export *e, uint64_t r, RowFacts *f)
{
    const ExportSource *in = e->in;
    unsigned char digest[DIGEST_BYTES];
    f->row = in->lo + r; /* the job's row */
    SOWER_TRY(export_source_row(in, r, e->latent, &f->seed, digest));
    char latents_hex[DIGEST_HEX_CHARS];
    digest_hex(digest, latents_hex);
    snprintf(f->key, sizeof f->key, "row%08llu_seed%llu", (unsigned long long)f->row, (unsigned long long)f->seed);
    const Job *job = in->job;
    const uint64_t p = job_prompt_at(job, f->row);
    const int prompted = e->prompted;
    f->facts = row_json(e, f->row, f->seed, prompted ? job->prompts[p] : NULL, prompted ? job->negative_prompts[p] : NULL,
                        latents_hex);
    return f->facts ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
}

/* The row's `sower` chunk: its facts and where they come from, as JSON (a new string: cJSON_free), or NULL
 * when out of memory. */
static char *row_provenance(const Export *e, const RowFacts *f)
{
    cJSON *provenance = cJSON_Duplicate(f->facts, 1);
    if (provenance) {
        cJSON_AddStringToObject(provenance, "source", e->path);
        cJSON_AddStringToObject(provenance, "weights_sha256", e->weights_hex);
        if (e->vae_hex[0]) cJSON_AddStringToObject(provenance, "vae_sha256", e->vae_hex);
        cJSON_AddStringToObject(provenance, "pixels", e->vae_hex[0] ? "vae.decode(latents / scaling_factor).sample, then "
                                                                  "(x / 2 + 0.5).clamp(0, 1) * 255 rounded"
                                                                : "(x / 2 + 0.5).clamp(0, 1) * 255 rounded");
        cJSON_AddStringToObject(provenance, "sower_version", sower_version());
    }
    char *text = provenance ? cJSON_PrintUnformatted(provenance) : NULL;
    cJSON_Delete(provenance);
    return text;
}

/* The row's PNG into e->png: decoded (or the row itself), postprocessed, with its text chunks. */
static int render_png(Export *e, const RowFacts *f)
{
    const ExportSource *in = e->in;
    const Job *job = in->job;
    const uint64_t p = job_prompt_at(job, f->row);
    const char *prompt = e->prompted ? job->prompts[p] : NULL, *negative = e->prompted ? job->negative_prompts[p] : NULL;
    const size_t plane = (size_t)e->height * e->width;
    if (e->stored_images) { /* the run's own image, checked against its digest */
        SOWER_TRY(export_source_image(in, f->row - in->lo, e->stored));
        for (size_t i = 0; i < plane; i++) /* (channels, H, W) -> (H, W, channels) */
            for (int ch = 0; ch < e->channels; ch++) e->pixels[i * e->channels + ch] = e->stored[ch * plane + i];
    } else {
        if (e->decode)
            SOWER_TRY(vae_decode(&e->be, &e->vae, e->latent, 1, in->h, in->w, e->image));
        else
            memcpy(e->image, e->latent, sizeof(float) * e->channels * e->height * e->width);
        for (size_t i = 0; i < plane; i++) /* (channels, H, W) -> (H, W, channels) */
            for (int ch = 0; ch < e->channels; ch++)
                e->pixels[i * e->channels + ch] = vae_pixel_byte(e->image[ch * plane + i]);
    }
    char *parameters = malloc(MAX_PNG_TEXT);
    char *provenance_text = row_provenance(e, f);
    int status = parameters && provenance_text ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (status == SOWER_OK) {
        parameters_text(e, f->seed, prompt, negative, parameters, MAX_PNG_TEXT);
        const char *keys[2] = {"parameters", "sower"}, *values[2] = {parameters, provenance_text};
        status = encode_png(e->pixels, e->width, e->height, e->channels, keys, values, 2, &e->png);
    }
    free(parameters);
    cJSON_free(provenance_text);
    return status;
}

/* The metadata line of a row: file_name, its facts, png_sha256 (NULL: none, a latents shard's line, which
 * has the row's index in the shard's array instead); a new string (cJSON_free). */
static char *metadata_line(const RowFacts *f, const char *file_name, const unsigned char *png_sha256, uint64_t index)
{
    char png_hex[DIGEST_HEX_CHARS];
    cJSON *line = cJSON_CreateObject();
    cJSON_AddStringToObject(line, "file_name", file_name);
    if (!png_sha256) cJSON_AddNumberToObject(line, "index", (double)index);
    for (const cJSON *item = f->facts->child; item; item = item->next)
        cJSON_AddItemToObject(line, item->string, cJSON_Duplicate(item, 1));
    if (png_sha256) {
        digest_hex(png_sha256, png_hex);
        cJSON_AddStringToObject(line, "png_sha256", png_hex);
    }
    char *text = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    return text;
}

/* Whether two rows' facts (`sower` chunks, metadata lines: JSON text) name the same image: its row, seed and
 * stored digest alike, and the job, weights, VAE and pixel rule wherever both give them. The labels around
 * them (settings a later sower adds, the source's path as typed, the version) may differ: an export resumed
 * by a later sower, or from another folder, keeps its files; the folder itself is keyed on the job.
 * 1 same, 0 not (or not JSON), -1 out of memory (not a verdict on the file). */
static int same_image(const char *ours, const char *theirs)
{
    static const char *const required[] = {"row", "seed"}, *const digests[] = {"latents_sha256", "images_f32_sha256"};
    static const char *const where_given[] = {"job_sha256", "weights_sha256", "vae_sha256", "pixels"};
    int a_ran_out = 0, b_ran_out = 0;
    cJSON *a = ours ? json_parse(ours, strlen(ours), NULL, &a_ran_out) : NULL,
          *b = theirs ? json_parse(theirs, strlen(theirs), NULL, &b_ran_out) : NULL;
    if (a_ran_out || b_ran_out) {
        cJSON_Delete(a);
        cJSON_Delete(b);
        return -1;
    }
    int same = cJSON_IsObject(a) && cJSON_IsObject(b), digest_seen = 0;
    for (size_t i = 0; same && i < 2; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, required[i]), *y = cJSON_GetObjectItemCaseSensitive(b, required[i]);
        same = x && y && cJSON_Compare(x, y, 1);
    }
    for (size_t i = 0; same && i < 2; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, digests[i]), *y = cJSON_GetObjectItemCaseSensitive(b, digests[i]);
        if (x) same = y && cJSON_Compare(x, y, 1), digest_seen = 1;
    }
    for (size_t i = 0; same && i < sizeof where_given / sizeof *where_given; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, where_given[i]), *y = cJSON_GetObjectItemCaseSensitive(b, where_given[i]);
        if (x && y) same = cJSON_Compare(x, y, 1);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    return same && digest_seen;
}

/* A PNG already at row r's name (bytes: its n bytes) is kept only as this row's image: its `sower` chunk
 * must give this row's facts (latents, job, weights, VAE digests), else SOWER_EPATH naming it. Another
 * file there (a stale export of other latents, an unrelated image) would otherwise be certified in
 * SHA256SUMS and metadata.jsonl as the row's. */
static int check_kept_png(const Export *e, const RowFacts *f, const char *file, const unsigned char *bytes, size_t n)
{
    char *ours = row_provenance(e, f), *theirs = png_text_of(bytes, n, "sower");
    const int same = ours ? same_image(ours, theirs) : -1, chunk = theirs != NULL;
    cJSON_free(ours);
    free(theirs);
    if (same < 0) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (!same)
        return SOWER_FAIL(SOWER_EPATH,
                          "'%s' is there but is not row %llu of %s (%s): export does not replace it, nor list it "
                          "in SHA256SUMS; remove it (or export to another folder) and run again",
                          file, (unsigned long long)f->row, e->path,
                          !chunk ? "no sower provenance chunk: not a PNG sower exported"
                                  : "its sower chunk names other latents, job, weights or VAE");
    return SOWER_OK;
}

/* Folder sink: row r's PNG (made unless already there) and its metadata line. */
static int export_row(Export *e, uint64_t r)
{
    RowFacts f = {0};
    int status = row_facts(e, r, &f);
    if (status != SOWER_OK) {
        cJSON_Delete(f.facts);
        return status;
    }
    char name[80], file[4200];
    unsigned char png_sha256[DIGEST_BYTES];
    snprintf(name, sizeof name, "%s.png", f.key);
    snprintf(file, sizeof file, "%s/%s", e->dir, name);
    unsigned char *existing = NULL;
    size_t existing_bytes = 0;
    int present = 0;
    status = file_read_if_present(file, 1u << 30, &existing, &existing_bytes, &present);
    if (status != SOWER_OK) {
        cJSON_Delete(f.facts);
        return status;
    }
    if (present) { /* written whole before */
        status = check_kept_png(e, &f, file, existing, existing_bytes);
        if (status == SOWER_OK) status = digest_buffer(existing, existing_bytes, png_sha256);
        free(existing);
        e->kept++;
    } else {
        status = render_png(e, &f);
        if (status == SOWER_OK) status = write_whole(file, e->png.data, e->png.n);
        if (status == SOWER_OK) status = digest_buffer(e->png.data, e->png.n, png_sha256);
        e->written++;
    }
    if (status == SOWER_OK) status = sums_put(&e->sums, e->dir, f.row, name, png_sha256);
    if (status == SOWER_OK && e->imagefolder) {
        char *text = metadata_line(&f, name, png_sha256, 0);
        status = text ? merged_lines_put(&e->metadata, f.row, text, strlen(text)) : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        if (status == SOWER_OK) status = merged_lines_put(&e->metadata, f.row, "\n", 1);
        cJSON_free(text);
    }
    cJSON_Delete(f.facts);
    return status;
}

/* ---- WebDataset shards: DIR/shard-NNNNNN.tar of KEY.png + KEY.json (its metadata line) per row ---- */

/* One tar member of `bytes` bytes; mtime 0 and root ownership, so a shard's bytes depend on its rows only. */
static int tar_member(struct archive *a, const char *name, const void *data, size_t bytes, const char *shard)
{
    struct archive_entry *entry = archive_entry_new();
    if (!entry) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    archive_entry_set_pathname(entry, name);
    archive_entry_set_size(entry, (la_int64_t)bytes);
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    archive_entry_set_mtime(entry, 0, 0);
    int ok = archive_write_header(a, entry) == ARCHIVE_OK && archive_write_data(a, data, bytes) == (la_ssize_t)bytes;
    archive_entry_free(entry);
    if (!ok) return SOWER_FAIL(SOWER_EIO, "%s: cannot write '%s': %s", shard, name, archive_error_string(a));
    return SOWER_OK;
}

/* ---- shards already there: kept only when they hold what this export would write ---- */

/* SOWER_EPATH for a shard at its name that does not hold rows [lo, hi) as this export writes them (another
 * --rows range's, another shard size's, altered, foreign): certified in SHA256SUMS it would pass off other
 * rows, or none, as these. */
static int foreign_shard(const Export *e, const char *shard, uint64_t lo, uint64_t hi, const char *why)
{
    return SOWER_FAIL(SOWER_EPATH,
                      "'%s' is there but does not hold rows %llu-%llu of %s as this export writes them (%s): export "
                      "does not replace it, nor list it in SHA256SUMS; remove it (or export to another folder) and "
                      "run again",
                      shard, (unsigned long long)(e->in->lo + lo), (unsigned long long)(e->in->lo + hi - 1), e->path, why);
}

/* A kept latents shard: DIR/shard-NNNNNN.npy must be (hi - lo, C, h, w) holding rows [lo, hi) bit for bit, and
 * its .jsonl their metadata lines exactly (compared through their SHA-256, streamed). */
static int check_kept_latent_shard(Export *e, const char *npy, const char *jsonl, const char *npy_name, uint64_t lo,
                                   uint64_t hi)
{
    const ExportSource *in = e->in;
    const size_t per = (size_t)in->c * in->h * in->w;
    NpyArray a;
    if (npy_open_f32(npy, &a) != SOWER_OK) {
        char *why = strdup(sower_error_message());
        int status = foreign_shard(e, npy, lo, hi, why ? why : "unreadable");
        free(why);
        return status;
    }
    const int64_t want[4] = {(int64_t)(hi - lo), in->c, in->h, in->w};
    int same = a.ndim == 4 && memcmp(a.shape, want, sizeof want) == 0, same_lines = 1;
    const char *why = same ? NULL : "another shape";
    float *row = malloc(per * sizeof(float)); /* (C, h, w) the shard's row */
    char *lines = NULL; /* the .jsonl's text, cut into lines as they are read */
    size_t bytes = 0;
    int status = row ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (status == SOWER_OK && same && !regular_file_exists(jsonl)) {
        npy_close(&a);
        free(row);
        return foreign_shard(e, jsonl, lo, hi, "not a regular file");
    }
    if (status == SOWER_OK && same) status = file_read_all(jsonl, (size_t)1 << 32, (unsigned char **)&lines, &bytes);
    char *line = lines, *end = lines ? lines + bytes : NULL;
    for (uint64_t r = lo; r < hi && same && status == SOWER_OK; r++) {
        RowFacts f = {0};
        status = row_facts(e, r, &f);
        if (status == SOWER_OK) status = npy_read_rows(npy, &a, r - lo, 1, row);
        if (status == SOWER_OK && memcmp(row, e->latent, per * sizeof(float)) != 0) same = 0, why = "other latents";
        char *text = status == SOWER_OK ? metadata_line(&f, npy_name, NULL, r - lo) : NULL;
        if (status == SOWER_OK && !text) status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        char *newline = line && line < end ? memchr(line, '\n', (size_t)(end - line)) : NULL;
        if (newline) *newline = '\0';
        if (status == SOWER_OK && same_lines) same_lines = newline ? same_image(text, line) : 0; /* the row's own line */
        if (same_lines < 0) status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        line = newline ? newline + 1 : end;
        cJSON_free(text);
        cJSON_Delete(f.facts);
    }
    if (line != end) same_lines = 0; /* lines of more rows */
    npy_close(&a);
    free(row);
    free(lines);
    SOWER_TRY(status);
    if (!same) return foreign_shard(e, npy, lo, hi, why);
    if (!same_lines) return foreign_shard(e, jsonl, lo, hi, "other metadata lines");
    return SOWER_OK;
}

/* The next member of a tar being read: its name and bytes (*data (n,), a new buffer: free), or SOWER_EPATH. */
static int tar_next(struct archive *a, const Export *e, const char *shard, uint64_t lo, uint64_t hi, char *name,
                    size_t name_size, unsigned char **data, size_t *n)
{
    struct archive_entry *entry;
    *data = NULL;
    if (archive_read_next_header(a, &entry) != ARCHIVE_OK) return foreign_shard(e, shard, lo, hi, "fewer members");
    const la_int64_t size = archive_entry_size(entry);
    snprintf(name, name_size, "%s", archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "");
    if (size < 0 || size > (la_int64_t)1 << 30) return foreign_shard(e, shard, lo, hi, "a member of an odd size");
    *n = (size_t)size;
    if (!(*data = malloc(*n + 1))) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (archive_read_data(a, *data, *n) != (la_ssize_t)*n) {
        free(*data), *data = NULL;
        return foreign_shard(e, shard, lo, hi, "a member cut short");
    }
    return SOWER_OK;
}

/* A kept tar shard: for each row of [lo, hi), in order, KEY.png (this row's image: its sower chunk,
 * check_kept_png) and KEY.json (its metadata line, naming that PNG's SHA-256); nothing else. */
static int check_kept_tar_shard(Export *e, const char *shard, uint64_t lo, uint64_t hi)
{
    if (!regular_file_exists(shard)) return foreign_shard(e, shard, lo, hi, "not a regular file");
    struct archive *a = archive_read_new();
    if (!a) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    archive_read_support_format_tar(a);
    int status = archive_read_open_filename(a, shard, 65536) == ARCHIVE_OK
                     ? SOWER_OK
                     : foreign_shard(e, shard, lo, hi, "not a tar file sower can read");
    for (uint64_t r = lo; r < hi && status == SOWER_OK; r++) {
        RowFacts f = {0};
        char want[80], name[4200];
        unsigned char *png = NULL, *json = NULL, png_sha256[DIGEST_BYTES];
        size_t png_n = 0, json_n = 0;
        status = row_facts(e, r, &f);
        snprintf(want, sizeof want, "%s.png", f.key);
        if (status == SOWER_OK) status = tar_next(a, e, shard, lo, hi, name, sizeof name, &png, &png_n);
        if (status == SOWER_OK && strcmp(name, want) != 0) status = foreign_shard(e, shard, lo, hi, "other members");
        if (status == SOWER_OK) status = check_kept_png(e, &f, shard, png, png_n);
        if (status == SOWER_OK) status = digest_buffer(png, png_n, png_sha256);
        char *line = status == SOWER_OK ? metadata_line(&f, want, png_sha256, 0) : NULL;
        snprintf(want, sizeof want, "%s.json", f.key);
        if (status == SOWER_OK) status = tar_next(a, e, shard, lo, hi, name, sizeof name, &json, &json_n);
        char *member = json ? strndup((const char *)json, json_n) : NULL; /* (json_n + 1,) NUL-ended */
        const int same = status == SOWER_OK && line && member ? same_image(line, member) : -1;
        if (status == SOWER_OK && (same < 0 || strcmp(name, want) != 0 || !same))
            status = same >= 0 ? foreign_shard(e, shard, lo, hi, "other members") : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        free(member);
        cJSON_free(line);
        free(png), free(json);
        cJSON_Delete(f.facts);
    }
    struct archive_entry *extra;
    if (status == SOWER_OK && archive_read_next_header(a, &extra) != ARCHIVE_EOF)
        status = foreign_shard(e, shard, lo, hi, "more members");
    archive_read_free(a);
    return status;
}

/* Shard k: rows [lo, hi) of the export, written whole to a temporary file and renamed (an existing
 * shard is kept when it holds them: check_kept_tar_shard). */
static int export_shard(Export *e, uint64_t k, uint64_t lo, uint64_t hi)
{
    char shard[4200], shard_name[64];
    snprintf(shard_name, sizeof shard_name, "shard-%06llu.tar", (unsigned long long)k);
    snprintf(shard, sizeof shard, "%s/%s", e->dir, shard_name);
    if (path_present(shard)) {
        SOWER_TRY(check_kept_tar_shard(e, shard, lo, hi));
        e->kept += hi - lo;
        return sums_put(&e->sums, e->dir, k, shard_name, NULL);
    }
    OutFile out = {0};
    SOWER_TRY(outfile_open(&out, shard));
    struct archive *a = archive_write_new();
    int status = a && archive_write_set_format_ustar(a) == ARCHIVE_OK && archive_write_open_FILE(a, out.fp) == ARCHIVE_OK
                     ? SOWER_OK
                     : SOWER_FAIL(SOWER_EIO, "%s: cannot start the tar file", shard);
    for (uint64_t r = lo; r < hi && status == SOWER_OK; r++) {
        RowFacts f = {0};
        unsigned char png_sha256[DIGEST_BYTES];
        char name[80];
        status = row_facts(e, r, &f);
        if (status == SOWER_OK) status = render_png(e, &f);
        if (status == SOWER_OK) status = digest_buffer(e->png.data, e->png.n, png_sha256);
        snprintf(name, sizeof name, "%s.png", f.key);
        if (status == SOWER_OK) status = tar_member(a, name, e->png.data, e->png.n, shard);
        char *json = status == SOWER_OK ? metadata_line(&f, name, png_sha256, 0) : NULL;
        snprintf(name, sizeof name, "%s.json", f.key);
        if (status == SOWER_OK)
            status = json ? tar_member(a, name, json, strlen(json), shard) : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        cJSON_free(json);
        cJSON_Delete(f.facts);
        e->written += status == SOWER_OK;
    }
    if (a && archive_write_close(a) != ARCHIVE_OK && status == SOWER_OK)
        status = SOWER_FAIL(SOWER_EIO, "%s: cannot finish the tar file: %s", shard, archive_error_string(a));
    if (a) archive_write_free(a);
    if (status == SOWER_OK) status = outfile_commit(&out);
    outfile_free(&out);
    if (status == SOWER_OK) status = sums_put(&e->sums, e->dir, k, shard_name, NULL);
    return status;
}

/* Latents shard k: rows [lo, hi) as DIR/shard-NNNNNN.npy (n, C, h, w) float32, streamed a row at a time, and
 * DIR/shard-NNNNNN.jsonl (a metadata line per row, its index in the array); each written whole then renamed,
 * the .npy first: a shard whose .jsonl is there is complete and kept. */
static int export_latent_shard(Export *e, uint64_t k, uint64_t lo, uint64_t hi)
{
    const ExportSource *in = e->in;
    char npy_name[64], jsonl_name[64], npy[4200], jsonl[4200];
    snprintf(npy_name, sizeof npy_name, "shard-%06llu.npy", (unsigned long long)k);
    snprintf(jsonl_name, sizeof jsonl_name, "shard-%06llu.jsonl", (unsigned long long)k);
    snprintf(npy, sizeof npy, "%s/%s", e->dir, npy_name);
    snprintf(jsonl, sizeof jsonl, "%s/%s", e->dir, jsonl_name);
    if (path_present(jsonl) && path_present(npy)) {
        SOWER_TRY(check_kept_latent_shard(e, npy, jsonl, npy_name, lo, hi));
        e->kept += hi - lo;
        SOWER_TRY(sums_put(&e->sums, e->dir, k, npy_name, NULL));
        return sums_put(&e->sums, e->dir, k, jsonl_name, NULL);
    }
    OutFile array = {0}, lines = {0};
    unsigned char header[NPY_HEADER_MAX];
    const int64_t shape[4] = {(int64_t)(hi - lo), in->c, in->h, in->w};
    const size_t header_bytes = npy_header(header, "<f4", shape, 4), per = (size_t)in->c * in->h * in->w;
    int status = outfile_open(&array, npy);
    if (status == SOWER_OK) status = outfile_open(&lines, jsonl);
    if (status == SOWER_OK) status = outfile_write(&array, header, header_bytes);
    for (uint64_t r = lo; r < hi && status == SOWER_OK; r++) {
        RowFacts f = {0};
        status = row_facts(e, r, &f);
        if (status == SOWER_OK) status = outfile_write(&array, e->latent, per * sizeof(float)); /* little-endian hosts */
        char *text = status == SOWER_OK ? metadata_line(&f, npy_name, NULL, r - lo) : NULL;
        if (status == SOWER_OK) status = text ? outfile_write(&lines, text, strlen(text)) : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        if (status == SOWER_OK) status = outfile_write(&lines, "\n", 1);
        cJSON_free(text);
        cJSON_Delete(f.facts);
        e->written += status == SOWER_OK;
    }
    if (status == SOWER_OK) status = outfile_commit(&array);
    if (status == SOWER_OK) status = outfile_commit(&lines);
    outfile_free(&array);
    outfile_free(&lines);
    if (status == SOWER_OK) status = sums_put(&e->sums, e->dir, k, npy_name, NULL);
    if (status == SOWER_OK) status = sums_put(&e->sums, e->dir, k, jsonl_name, NULL);
    return status;
}

int export_images(const ExportSource *in, const char *dir, ExportLayout layout, uint64_t first, uint64_t last,
                  uint64_t shard_rows, const char *model_dir)
{
    static const char *const layout_names[] = {[EXPORT_PNGS] = "pngs", [EXPORT_IMAGEFOLDER] = "imagefolder",
                                               [EXPORT_WEBDATASET] = "webdataset", [EXPORT_NPY] = "npy"};
    const int sharded = layout == EXPORT_WEBDATASET || layout == EXPORT_NPY;
    /* Shard k holds the file's rows [k * shard_rows, (k + 1) * shard_rows): a range exported into shards is
     * whole shards, so that every row has one shard, whatever --rows each export gave. */
    if (sharded && (first % shard_rows || ((last + 1) % shard_rows && last + 1 != in->rows)))
        return SOWER_FAIL(SOWER_EUSAGE,
                          "--rows %llu-%llu: shards hold %llu rows each (shard k: rows k*%llu to (k+1)*%llu-1, the "
                          "last as many as are left), and an export into shards writes whole ones: start --rows at a "
                          "multiple of %llu and end it one row before a multiple of it, or at the last row (%llu)",
                          (unsigned long long)first, (unsigned long long)last, (unsigned long long)shard_rows,
                          (unsigned long long)shard_rows, (unsigned long long)shard_rows,
                          (unsigned long long)shard_rows, (unsigned long long)(in->rows - 1));
    Export e = {.in = in, .path = in->path, .dir = dir, .layout = layout_names[layout],
                .shard_rows = sharded ? shard_rows : 0, .imagefolder = layout == EXPORT_IMAGEFOLDER,
                .latents_only = layout == EXPORT_NPY, .model_dir = model_dir};
    int status = setup(&e);
    if (sharded) {
        int (*shard)(Export *, uint64_t, uint64_t, uint64_t) = layout == EXPORT_NPY ? export_latent_shard : export_shard;
        for (uint64_t k = first / shard_rows, lo = first; lo <= last && status == SOWER_OK; k++, lo += shard_rows)
            status = shard(&e, k, lo, last + 1 - lo < shard_rows ? last + 1 : lo + shard_rows);
    } else {
        for (uint64_t r = first; r <= last && status == SOWER_OK; r++) status = export_row(&e, r);
    }
    if (status == SOWER_OK && e.imagefolder) status = merged_lines_commit(&e.metadata);
    if (status == SOWER_OK && e.imagefolder) status = sums_put(&e.sums, dir, UINT64_MAX, "metadata.jsonl", NULL);
    if (status == SOWER_OK) status = merged_lines_commit(&e.sums); /* last: its lines name only whole files */
    if (status == SOWER_OK)
        fprintf(stderr, "sower export: rows %llu-%llu -> %s (%llu %s written, %llu already there%s)\n",
                (unsigned long long)first, (unsigned long long)last, dir, (unsigned long long)e.written,
                layout == EXPORT_NPY ? "rows of latents" : "PNGs", (unsigned long long)e.kept,
                layout == EXPORT_IMAGEFOLDER ? ", metadata.jsonl" : layout == EXPORT_WEBDATASET ? ", in tar shards" : "");
    if (status == SOWER_OK) fprintf(stderr, "  every file's SHA-256: %s/SHA256SUMS (sha256sum -c SHA256SUMS)\n", dir);
    merged_lines_free(&e.metadata);
    merged_lines_free(&e.sums);
    output_lock_release(&e.lock);
    compute_backend_close(&e.be);
    vae_free(&e.vae);
    free(e.stored);
    free(e.latent), free(e.image), free(e.pixels), free(e.png.data);
    return status;
}
