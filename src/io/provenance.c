/* provenance.c: see provenance.h. */
#include "provenance.h"

#include <stdio.h>
#include <string.h>

/* sha256 of the seed sequence as the manifest gives it: the counts, the ranges (start, count),
 * then the listed seeds, each a little-endian uint64. */
static int seeds_digest(const Job *job, unsigned char *out)
{
    Digest d = {0};
    int status = digest_init(&d);
    uint64_t head[2] = {(uint64_t)job->n_ranges, (uint64_t)job->n_list};
    if (status == SOWER_OK) status = digest_update(&d, head, sizeof head);
    for (int i = 0; i < job->n_ranges && status == SOWER_OK; i++) {
        uint64_t range[2] = {job->ranges[i].start, job->ranges[i].count};
        status = digest_update(&d, range, sizeof range);
    }
    if (status == SOWER_OK && job->n_list) status = digest_update(&d, job->list, sizeof *job->list * job->n_list);
    if (status == SOWER_OK) status = digest_final(&d, out);
    digest_free(&d);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* sha256 of the prompts in order: their count, then each prompt and negative prompt with its NUL. */
static int prompts_digest_hex(const Job *job, char *hex)
{
    Digest d = {0};
    unsigned char out[DIGEST_BYTES];
    int status = digest_init(&d);
    uint64_t count = job->n_prompts;
    if (status == SOWER_OK) status = digest_update(&d, &count, sizeof count);
    for (size_t i = 0; i < job->n_prompts && status == SOWER_OK; i++) {
        status = digest_update(&d, job->prompts[i], strlen(job->prompts[i]) + 1);
        if (status == SOWER_OK)
            status = digest_update(&d, job->negative_prompts[i], strlen(job->negative_prompts[i]) + 1);
    }
    if (status == SOWER_OK) status = digest_final(&d, out);
    digest_free(&d);
    SOWER_TRY(status);
    digest_hex(out, hex);
    return SOWER_OK;
}

static int text_digest_hex(const char *text, char *hex)
{
    unsigned char d[DIGEST_BYTES];
    SOWER_TRY(digest_buffer(text ? text : "", text ? strlen(text) : 0, d));
    digest_hex(d, hex);
    return SOWER_OK;
}

/* What the model contributes to a job key, as hex digests; the latent size the pipeline line names when
 * the manifest gives none. */
typedef struct {
    char model_config[DIGEST_HEX_CHARS], scheduler_config[DIGEST_HEX_CHARS];
    char text_side[DIGEST_HEX_CHARS]; /* Stable Diffusion */
    char vae[DIGEST_HEX_CHARS];       /* decoding jobs */
    int height, width;                /* Stable Diffusion: the pixel size without pipeline.height/width */
} KeyFacts;

/* The pipeline line and attribute, and the job key, of job rendered with a model of these facts. */
static int build_key(const Job *job, const KeyFacts *f, Provenance *p)
{
    /* exponential and beta sigmas are named where they apply only: the text of every other job stays as before */
    const int converted = sigma_schedule_named(job->sigmas);
    int used = snprintf(p->pipeline, sizeof p->pipeline, "scheduler=%s steps=%d eta=%.9g%s%s%s",
                        scheduler_kind_name(job->scheduler), job->steps, job->eta,
                        job->sigmas == SIGMAS_KARRAS ? " karras=1" : "", converted ? " sigmas=" : "",
                        converted ? sigma_schedule_name(job->sigmas) : "");
    int used_json = snprintf(p->pipeline_json, sizeof p->pipeline_json,
                             "{\"scheduler\": \"%s\", \"steps\": %d, \"eta\": %.9g, \"karras\": %s%s%s%s",
                             scheduler_kind_name(job->scheduler), job->steps, job->eta,
                             job->sigmas == SIGMAS_KARRAS ? "true" : "false", converted ? ", \"sigmas\": \"" : "",
                             converted ? sigma_schedule_name(job->sigmas) : "", converted ? "\"" : "");
    char text_lines[256] = ""; /* Stable Diffusion: the prompts and the text side in the job key */
    if (job->n_prompts) {
        const int given = job->height != 0; /* height and width are given together, or neither */
        const int height = given ? job->height : f->height, width = given ? job->width : f->width;
        used += snprintf(p->pipeline + used, sizeof p->pipeline - (size_t)used,
                         " guidance=%.9g height=%d width=%d clip_skip=%d", job->guidance, height, width, job->clip_skip);
        used_json += snprintf(p->pipeline_json + used_json, sizeof p->pipeline_json - (size_t)used_json,
                              ", \"guidance\": %.9g, \"height\": %d, \"width\": %d, \"clip_skip\": %d",
                              job->guidance, height, width, job->clip_skip);
        if (job->guidance_rescale > 0) { /* named only when on: the keys of jobs without it are unchanged */
            snprintf(p->pipeline + used, sizeof p->pipeline - (size_t)used, " guidance_rescale=%.9g",
                     job->guidance_rescale);
            used_json += snprintf(p->pipeline_json + used_json, sizeof p->pipeline_json - (size_t)used_json,
                                  ", \"guidance_rescale\": %.9g", job->guidance_rescale);
        }
        char prompts_hex[DIGEST_HEX_CHARS];
        SOWER_TRY(prompts_digest_hex(job, prompts_hex));
        snprintf(text_lines, sizeof text_lines, "prompts: %zu\nprompts_sha256: %s\ntext_side_sha256: %s\n",
                 job->n_prompts, prompts_hex, f->text_side);
    }
    char decode_line[128] = ""; /* the images, when the job decodes: they depend on the VAE's weights */
    if (job->decode) {
        snprintf(decode_line, sizeof decode_line, "decode: uint8 vae_sha256=%s\n", f->vae);
        used_json += snprintf(p->pipeline_json + used_json, sizeof p->pipeline_json - (size_t)used_json,
                              ", \"decode\": true");
    }
    snprintf(p->pipeline_json + used_json, sizeof p->pipeline_json - (size_t)used_json, "}");
    p->generator = rng_kernel_name(job->generator);

    unsigned char seeds[DIGEST_BYTES];
    char seeds_hex[DIGEST_HEX_CHARS];
    SOWER_TRY(seeds_digest(job, seeds));
    digest_hex(seeds, seeds_hex);
    snprintf(p->job_key, sizeof p->job_key,
             "%s\nrows: %llu\nseeds_sha256: %s\npipeline: %s\ngenerator: %s\nbackend: %s %s\n"
             "model_config_sha256: %s\nscheduler_config_sha256: %s\noutput: chunk_rows=%d gzip=%d\n%s%s",
             PROVENANCE_JOB_KEY_FORMAT, (unsigned long long)job->n_rows, seeds_hex, p->pipeline, p->generator,
             job->backend == BACKEND_CUDA ? "cuda" : "cpu", precision_name(job->precision),
             f->model_config, f->scheduler_config, job->chunk_rows, job->output_gzip, text_lines, decode_line);
    SOWER_TRY(text_digest_hex(p->job_key, p->job_sha256));
    return SOWER_OK;
}

int provenance_of(const Job *job, const Model *model, Provenance *p)
{
    memset(p, 0, sizeof *p);
    digest_hex(job->text_sha256, p->manifest_sha256);
    digest_hex(model->weights_sha256, p->weights_sha256);
    p->model_config = model->unet_config_text;
    p->scheduler_config = model->scheduler_config_text;
    KeyFacts f = {0};
    SOWER_TRY(text_digest_hex(p->model_config, f.model_config));
    SOWER_TRY(text_digest_hex(p->scheduler_config, f.scheduler_config));
    if (job->n_prompts) {
        if (!model->text_side_known)
            return SOWER_FAIL(SOWER_EINTERNAL, "provenance of a prompted job without the text side's digest");
        digest_hex(model->text_side_sha256, f.text_side);
        f.height = model->unet.cfg.sample_height * model->vae_scale_factor;
        f.width = model->unet.cfg.sample_width * model->vae_scale_factor;
    }
    if (job->decode) {
        if (!model->vae_known) return SOWER_FAIL(SOWER_EINTERNAL, "provenance of a decoding job without the VAE's digest");
        digest_hex(model->vae_sha256, f.vae);
    }
    SOWER_TRY(build_key(job, &f, p));
    return SOWER_OK;
}

int provenance_key_digest(const char *job_key, const char *field, char *hex)
{
    const char *at = job_key ? strstr(job_key, field) : NULL;
    hex[0] = '\0';
    if (!at) return 0;
    at += strlen(field);
    const size_t n = strspn(at, "0123456789abcdef");
    if (n != DIGEST_HEX_CHARS - 1) return 0;
    memcpy(hex, at, n);
    hex[n] = '\0';
    return 1;
}

/* The model's part of a recorded key: its digests and, for Stable Diffusion, the size its pipeline line names. */
static int recorded_facts(const char *job_key, KeyFacts *f)
{
    int ok = provenance_key_digest(job_key, "\nmodel_config_sha256: ", f->model_config) &&
             provenance_key_digest(job_key, "\nscheduler_config_sha256: ", f->scheduler_config);
    provenance_key_digest(job_key, "\ntext_side_sha256: ", f->text_side);
    provenance_key_digest(job_key, "vae_sha256=", f->vae);
    const char *size = strstr(job_key, " height=");
    if (size && sscanf(size, " height=%d width=%d", &f->height, &f->width) != 2) ok = 0;
    return ok;
}

int provenance_check_key(const Job *job, const char *job_key, const char *job_sha256, const char *what)
{
    if (!job_key || !job_sha256)
        return SOWER_FAIL(SOWER_EINPUT, "%s: no '%s' attribute: the record of the job that made it is missing (a "
                                        "damaged file, or one of a sower before job keys)",
                          what, job_key ? "job_sha256" : "job_key");
    char key_hex[DIGEST_HEX_CHARS];
    SOWER_TRY(text_digest_hex(job_key, key_hex));
    if (strcmp(key_hex, job_sha256) != 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: 'job_sha256' is not the SHA-256 of its 'job_key' (the file was altered)",
                          what);
    /* The key again from the stored manifest, with the model's digests as recorded: every line the manifest
     * decides (rows, seeds, pipeline, prompts, generator, backend, output) must be the manifest's. */
    KeyFacts f = {0};
    Provenance p = {0};
    if (!recorded_facts(job_key, &f))
        return SOWER_FAIL(SOWER_EINPUT, "%s: its 'job_key' is not one sower writes (the file was altered)", what);
    SOWER_TRY(build_key(job, &f, &p));
    if (strcmp(p.job_key, job_key) != 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: its 'job_key' does not name the job of the manifest stored in it (its rows, "
                                        "seeds, pipeline settings or prompts differ: the file was altered)", what);
    return SOWER_OK;
}
