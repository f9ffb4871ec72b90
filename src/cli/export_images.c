/* export_images.c: see export_images.h.
 *
 * Each PNG carries two text chunks: `parameters`, the line AUTOMATIC1111/ComfyUI users and their tools
 * read ("PROMPT\nNegative prompt: N\nSteps: S, Sampler: X, CFG scale: G, Seed: S, Size: WxH, Model hash:
 * ..., Model: ..."), and `sower`, the row's provenance as JSON (source file, row, seed, the digests of
 * the latents, the job, the weights and the VAE). Text that is not ASCII goes in iTXt (UTF-8). Pixels
 * are diffusers' postprocess: (x / 2 + 0.5).clamp(0, 1) * 255, rounded half to even, as numpy_to_pil. */
#define _POSIX_C_SOURCE 200809L
#include "export_images.h"

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
#include "h5_layout.h"
#include "outfile.h"
#include "vae.h"
#include "version.h"

enum { MAX_PNG_TEXT = 3 * 8192 + 1024 };
static const char MARKER[] = "sower-export.json";

unsigned char export_to_byte(float x)
{
    float v = x / 2.0f + 0.5f;
    v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    return (unsigned char)lrintf(v * 255.0f);
}

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

/* ---- the export ---- */

typedef struct {
    OutputReader *in;
    const char *path, *dir;
    int imagefolder;
    int decode;            /* Stable Diffusion latents: through the VAE */
    Vae vae;
    ComputeBackend be;
    char job_hex[DIGEST_HEX_CHARS], weights_hex[DIGEST_HEX_CHARS], vae_hex[DIGEST_HEX_CHARS];
    const char *model_name; /* the model folder's last component */
    int channels, height, width; /* of the images */
    float *latent;          /* (c, h, w) one row as stored */
    float *image;           /* (channels, height, width) decoded (or the row itself) */
    unsigned char *pixels;  /* (height, width, channels) */
    Bytes png;
    OutFile metadata;       /* dir/metadata.jsonl (imagefolder) */
    uint64_t written, kept;
} Export;

/* The sampler's name as AUTOMATIC1111 writes it (its own name where A1111 has none). */
static void sampler_name(const Job *job, char *out, size_t size)
{
    static const char *const names[][2] = {{"ddim", "DDIM"},    {"ddim-parallel", "DDIM"}, {"ddpm", "DDPM"},
                                           {"pndm", "PLMS"},    {"euler", "Euler"},        {"euler-a", "Euler a"},
                                           {"dpm++2m", "DPM++ 2M"}};
    const char *ours = scheduler_kind_name(job->scheduler), *theirs = ours;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i][0], ours) == 0) theirs = names[i][1];
    snprintf(out, size, "%s%s", theirs, job->karras ? " Karras" : "");
}

/* dir: new, empty, or an export of this very job (its marker names the job's digest). */
static int claim_dir(Export *e)
{
    SOWER_TRY(make_dirs(e->dir));
    char marker[4200];
    snprintf(marker, sizeof marker, "%s/%s", e->dir, MARKER);
    unsigned char *text = NULL;
    size_t bytes = 0;
    if (file_read_all(marker, 1 << 20, &text, &bytes) == SOWER_OK) {
        cJSON *obj = cJSON_ParseWithLength((const char *)text, bytes);
        free(text);
        const cJSON *job = cJSON_GetObjectItemCaseSensitive(obj, "job_sha256");
        const int same = cJSON_IsString(job) && strcmp(job->valuestring, e->job_hex) == 0;
        cJSON_Delete(obj);
        if (!same)
            return SOWER_FAIL(SOWER_EPATH, "%s: holds the export of another job (see %s): choose another folder",
                              e->dir, marker);
        return SOWER_OK; /* resuming: its PNGs are this job's */
    }
    sower_error_clear();
    DIR *d = opendir(e->dir);
    if (!d) return SOWER_FAIL(SOWER_EPATH, "%s: cannot read the folder", e->dir);
    int empty = 1;
    for (struct dirent *ent; empty && (ent = readdir(d));) empty = !strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..");
    closedir(d);
    if (!empty)
        return SOWER_FAIL(SOWER_EPATH, "%s: not empty, and not a sower export (no %s): choose a new or empty folder",
                          e->dir, MARKER);
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "source", e->path);
    cJSON_AddStringToObject(obj, "job_sha256", e->job_hex);
    cJSON_AddStringToObject(obj, "weights_sha256", e->weights_hex);
    cJSON_AddStringToObject(obj, "sower_version", sower_version());
    char *json = cJSON_Print(obj);
    cJSON_Delete(obj);
    if (!json) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    OutFile f = {0};
    int status = outfile_open(&f, marker);
    if (status == SOWER_OK) status = outfile_write(&f, json, strlen(json));
    if (status == SOWER_OK) status = outfile_write(&f, "\n", 1);
    if (status == SOWER_OK) status = outfile_commit(&f);
    outfile_free(&f);
    cJSON_free(json);
    return status;
}

static int hex_attr(const OutputReader *in, const char *key, char *out)
{
    char *v = h5read_attr(in, key);
    snprintf(out, DIGEST_HEX_CHARS, "%s", v ? v : "");
    free(v);
    return SOWER_OK;
}

static int setup(Export *e)
{
    OutputReader *in = e->in;
    SOWER_TRY(hex_attr(in, LAYOUT_ATTR_JOB_SHA256, e->job_hex));
    SOWER_TRY(hex_attr(in, LAYOUT_ATTR_WEIGHTS_SHA256, e->weights_hex));
    const char *slash = strrchr(in->job.model_path, '/');
    e->model_name = slash && slash[1] ? slash + 1 : in->job.model_path;
    e->decode = in->job.n_prompts > 0;
    if (e->decode) {
        int status = vae_load(&e->vae, in->job.model_path);
        if (status != SOWER_OK) {
            char reason[1024];
            snprintf(reason, sizeof reason, "%s", sower_error_message());
            return SOWER_FAIL(status, "%s: its latents are decoded by the VAE of its model '%s': %s", e->path,
                              in->job.model_path, reason);
        }
        if (e->vae.cfg.latent_channels != in->c)
            return SOWER_FAIL(SOWER_EMODEL, "%s: latent_channels %d, the file's rows have %d channels",
                              e->vae.config_path, e->vae.cfg.latent_channels, in->c);
        digest_hex(e->vae.weights_sha256, e->vae_hex);
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
    const size_t pixels = (size_t)e->channels * e->height * e->width;
    e->latent = malloc(sizeof(float) * in->c * in->h * in->w);
    e->image = malloc(sizeof(float) * pixels);
    e->pixels = malloc(pixels);
    if (!e->latent || !e->image || !e->pixels) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for one image");
    SOWER_TRY(claim_dir(e));
    if (e->imagefolder) {
        char meta[4200];
        snprintf(meta, sizeof meta, "%s/metadata.jsonl", e->dir);
        SOWER_TRY(outfile_open(&e->metadata, meta));
    }
    return SOWER_OK;
}

/* The A1111 `parameters` line of a row. */
static void parameters_text(const Export *e, uint64_t seed, const char *prompt, const char *negative, char *out,
                            size_t size)
{
    const Job *job = &e->in->job;
    size_t used = 0;
    if (prompt) {
        used += (size_t)snprintf(out, size, "%s\n", prompt);
        if (negative && *negative && used < size) used += (size_t)snprintf(out + used, size - used, "Negative prompt: %s\n", negative);
    }
    if (used >= size) return;
    char sampler[64];
    sampler_name(job, sampler, sizeof sampler);
    used += (size_t)snprintf(out + used, size - used, "Steps: %d, Sampler: %s, ", job->steps, sampler);
    if (prompt && used < size) used += (size_t)snprintf(out + used, size - used, "CFG scale: %g, ", job->guidance);
    if (used < size)
        used += (size_t)snprintf(out + used, size - used, "Seed: %llu, Size: %dx%d, Model hash: %.10s, Model: %s",
                                 (unsigned long long)seed, e->width, e->height, e->weights_hex, e->model_name);
    if (prompt && job->clip_skip && used < size) /* A1111 counts the last layer as 1 */
        used += (size_t)snprintf(out + used, size - used, ", Clip skip: %d", job->clip_skip + 1);
    if (used < size) snprintf(out + used, size - used, ", Version: sower %s", sower_version());
}

/* The row's facts, shared by the `sower` chunk and the metadata line. */
static cJSON *row_json(const Export *e, uint64_t row, uint64_t seed, const char *prompt, const char *negative,
                       const char *latents_hex)
{
    const Job *job = &e->in->job;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "row", (double)row);
    char seed_text[24];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed); /* exact past 2^53 */
    cJSON_AddRawToObject(o, "seed", seed_text);
    if (prompt) {
        cJSON_AddStringToObject(o, "prompt", prompt);
        cJSON_AddStringToObject(o, "negative_prompt", negative);
        cJSON_AddNumberToObject(o, "guidance", job->guidance);
    }
    cJSON_AddNumberToObject(o, "steps", job->steps);
    cJSON_AddStringToObject(o, "scheduler", scheduler_kind_name(job->scheduler));
    cJSON_AddStringToObject(o, "latents_sha256", latents_hex);
    return o;
}

/* Row r of the file: its PNG (made unless already there) and its metadata line. */
static int export_row(Export *e, uint64_t r)
{
    OutputReader *in = e->in;
    const uint64_t row = in->lo + r; /* the job's row */
    uint64_t seed = 0;
    unsigned char digest[DIGEST_BYTES], check[DIGEST_BYTES];
    const size_t per = (size_t)in->c * in->h * in->w;
    SOWER_TRY(h5read_rows(in, r, 1, e->latent, &seed, digest, NULL));
    SOWER_TRY(digest_buffer(e->latent, per * sizeof(float), check));
    if (memcmp(check, digest, DIGEST_BYTES) != 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: row %llu does not match its /digest (a damaged or altered file): not "
                                        "exporting it (sower verify %s checks every row)",
                          e->path, (unsigned long long)r, e->path);
    char latents_hex[DIGEST_HEX_CHARS], png_hex[DIGEST_HEX_CHARS], name[64], file[4200];
    digest_hex(digest, latents_hex);
    snprintf(name, sizeof name, "row%08llu_seed%llu.png", (unsigned long long)row, (unsigned long long)seed);
    snprintf(file, sizeof file, "%s/%s", e->dir, name);
    const Job *job = &in->job;
    const uint64_t p = job_prompt_at(job, row);
    const char *prompt = e->decode ? job->prompts[p] : NULL, *negative = e->decode ? job->negative_prompts[p] : NULL;
    cJSON *facts = row_json(e, row, seed, prompt, negative, latents_hex);
    unsigned char *existing = NULL;
    size_t existing_bytes = 0;
    int status = SOWER_OK;
    if (file_read_all(file, 1u << 30, &existing, &existing_bytes) == SOWER_OK) { /* written whole by a run before */
        status = digest_buffer(existing, existing_bytes, check);
        free(existing);
        e->kept++;
    } else {
        sower_error_clear();
        if (e->decode)
            status = vae_decode(&e->be, &e->vae, e->latent, 1, in->h, in->w, e->image);
        else
            memcpy(e->image, e->latent, per * sizeof(float));
        const size_t plane = (size_t)e->height * e->width;
        for (size_t i = 0; i < plane; i++) /* (channels, H, W) -> (H, W, channels) */
            for (int ch = 0; ch < e->channels; ch++) e->pixels[i * e->channels + ch] = export_to_byte(e->image[ch * plane + i]);
        char *parameters = malloc(MAX_PNG_TEXT);
        cJSON *provenance = cJSON_Duplicate(facts, 1);
        if (provenance) {
            cJSON_AddStringToObject(provenance, "source", e->path);
            cJSON_AddStringToObject(provenance, "job_sha256", e->job_hex);
            cJSON_AddStringToObject(provenance, "weights_sha256", e->weights_hex);
            if (e->decode) cJSON_AddStringToObject(provenance, "vae_sha256", e->vae_hex);
            cJSON_AddStringToObject(provenance, "pixels", e->decode ? "vae.decode(latents / scaling_factor).sample, then "
                                                                      "(x / 2 + 0.5).clamp(0, 1) * 255 rounded"
                                                                    : "(x / 2 + 0.5).clamp(0, 1) * 255 rounded");
            cJSON_AddStringToObject(provenance, "sower_version", sower_version());
        }
        char *provenance_text = provenance ? cJSON_PrintUnformatted(provenance) : NULL;
        cJSON_Delete(provenance);
        if (status == SOWER_OK && (!parameters || !provenance_text)) status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        if (status == SOWER_OK) {
            parameters_text(e, seed, prompt, negative, parameters, MAX_PNG_TEXT);
            const char *keys[2] = {"parameters", "sower"}, *values[2] = {parameters, provenance_text};
            status = encode_png(e->pixels, e->width, e->height, e->channels, keys, values, 2, &e->png);
        }
        free(parameters);
        cJSON_free(provenance_text);
        OutFile f = {0};
        if (status == SOWER_OK) status = outfile_open(&f, file);
        if (status == SOWER_OK) status = outfile_write(&f, e->png.data, e->png.n);
        if (status == SOWER_OK) status = outfile_commit(&f);
        outfile_free(&f);
        if (status == SOWER_OK) status = digest_buffer(e->png.data, e->png.n, check);
        e->written++;
    }
    if (status == SOWER_OK && e->imagefolder) {
        digest_hex(check, png_hex);
        cJSON *line = cJSON_CreateObject();
        cJSON_AddStringToObject(line, "file_name", name);
        for (cJSON *item = facts->child; item; item = item->next) cJSON_AddItemToObject(line, item->string, cJSON_Duplicate(item, 1));
        cJSON_AddStringToObject(line, "png_sha256", png_hex);
        char *text = cJSON_PrintUnformatted(line);
        cJSON_Delete(line);
        status = text ? outfile_write(&e->metadata, text, strlen(text)) : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        if (status == SOWER_OK) status = outfile_write(&e->metadata, "\n", 1);
        cJSON_free(text);
    }
    cJSON_Delete(facts);
    return status;
}

int export_images(OutputReader *in, const char *path, const char *dir, int imagefolder, uint64_t first, uint64_t last)
{
    Export e = {.in = in, .path = path, .dir = dir, .imagefolder = imagefolder};
    int status = setup(&e);
    for (uint64_t r = first; r <= last && status == SOWER_OK; r++) status = export_row(&e, r);
    if (status == SOWER_OK && imagefolder) status = outfile_commit(&e.metadata);
    if (status == SOWER_OK)
        fprintf(stderr, "sower export: rows %llu-%llu -> %s (%llu PNGs written, %llu already there%s)\n",
                (unsigned long long)first, (unsigned long long)last, dir, (unsigned long long)e.written,
                (unsigned long long)e.kept, imagefolder ? ", metadata.jsonl" : "");
    outfile_free(&e.metadata);
    compute_backend_close(&e.be);
    vae_free(&e.vae);
    free(e.latent), free(e.image), free(e.pixels), free(e.png.data);
    return status;
}
