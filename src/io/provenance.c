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

int provenance_of(const Job *job, const Model *model, Provenance *p)
{
    memset(p, 0, sizeof *p);
    digest_hex(job->text_sha256, p->manifest_sha256);
    digest_hex(model->weights_sha256, p->weights_sha256);
    int used = snprintf(p->pipeline, sizeof p->pipeline, "scheduler=%s steps=%d eta=%.9g%s",
                        scheduler_kind_name(job->scheduler), job->steps, job->eta, job->karras ? " karras=1" : "");
    int used_json = snprintf(p->pipeline_json, sizeof p->pipeline_json,
                             "{\"scheduler\": \"%s\", \"steps\": %d, \"eta\": %.9g, \"karras\": %s",
                             scheduler_kind_name(job->scheduler), job->steps, job->eta, job->karras ? "true" : "false");
    char text_lines[256] = ""; /* Stable Diffusion: the prompts and the text side in the job key */
    if (job->n_prompts) {
        if (!model->text_side_known)
            return SOWER_FAIL(SOWER_EINTERNAL, "provenance of a prompted job without the text side's digest");
        const int f = model->vae_scale_factor;
        const int height = job->height ? job->height : model->unet.cfg.sample_height * f,
                  width = job->width ? job->width : model->unet.cfg.sample_width * f;
        snprintf(p->pipeline + used, sizeof p->pipeline - (size_t)used,
                 " guidance=%.9g height=%d width=%d clip_skip=%d", job->guidance, height, width, job->clip_skip);
        used_json += snprintf(p->pipeline_json + used_json, sizeof p->pipeline_json - (size_t)used_json,
                              ", \"guidance\": %.9g, \"height\": %d, \"width\": %d, \"clip_skip\": %d",
                              job->guidance, height, width, job->clip_skip);
        char prompts_hex[DIGEST_HEX_CHARS], text_hex[DIGEST_HEX_CHARS];
        SOWER_TRY(prompts_digest_hex(job, prompts_hex));
        digest_hex(model->text_side_sha256, text_hex);
        snprintf(text_lines, sizeof text_lines, "prompts: %zu\nprompts_sha256: %s\ntext_side_sha256: %s\n",
                 job->n_prompts, prompts_hex, text_hex);
    }
    char decode_line[128] = ""; /* the images, when the job decodes: they depend on the VAE's weights */
    if (job->decode) {
        if (!model->vae_known) return SOWER_FAIL(SOWER_EINTERNAL, "provenance of a decoding job without the VAE's digest");
        char vae_hex[DIGEST_HEX_CHARS];
        digest_hex(model->vae_sha256, vae_hex);
        snprintf(decode_line, sizeof decode_line, "decode: uint8 vae_sha256=%s\n", vae_hex);
        used_json += snprintf(p->pipeline_json + used_json, sizeof p->pipeline_json - (size_t)used_json,
                              ", \"decode\": true");
    }
    snprintf(p->pipeline_json + used_json, sizeof p->pipeline_json - (size_t)used_json, "}");
    p->generator = rng_kernel_name(job->generator);
    p->model_config = model->unet_config_text;
    p->scheduler_config = model->scheduler_config_text;

    unsigned char seeds[DIGEST_BYTES];
    char seeds_hex[DIGEST_HEX_CHARS], model_hex[DIGEST_HEX_CHARS], scheduler_hex[DIGEST_HEX_CHARS];
    SOWER_TRY(seeds_digest(job, seeds));
    digest_hex(seeds, seeds_hex);
    SOWER_TRY(text_digest_hex(p->model_config, model_hex));
    SOWER_TRY(text_digest_hex(p->scheduler_config, scheduler_hex));
    snprintf(p->job_key, sizeof p->job_key,
             "%s\nrows: %llu\nseeds_sha256: %s\npipeline: %s\ngenerator: %s\nbackend: %s %s\n"
             "model_config_sha256: %s\nscheduler_config_sha256: %s\noutput: chunk_rows=%d gzip=%d\n%s%s",
             PROVENANCE_JOB_KEY_FORMAT, (unsigned long long)job->n_rows, seeds_hex, p->pipeline, p->generator,
             job->backend == BACKEND_CUDA ? "cuda" : "cpu", precision_name(job->precision),
             model_hex, scheduler_hex, job->chunk_rows, job->output_gzip, text_lines, decode_line);
    SOWER_TRY(text_digest_hex(p->job_key, p->job_sha256));
    return SOWER_OK;
}

int provenance_check_key(const Job *job, const char *job_key, const char *job_sha256, const char *what)
{
    if (!job_key || !job_sha256)
        return SOWER_FAIL(SOWER_EINPUT, "%s: no '%s' attribute: the record of the job that made it is missing (a "
                                        "damaged file, or one of a sower before job keys)",
                          what, job_key ? "job_sha256" : "job_key");
    char key_hex[DIGEST_HEX_CHARS], seeds_hex[DIGEST_HEX_CHARS], expect[256];
    unsigned char seeds[DIGEST_BYTES];
    SOWER_TRY(text_digest_hex(job_key, key_hex));
    if (strcmp(key_hex, job_sha256) != 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: 'job_sha256' is not the SHA-256 of its 'job_key' (the file was altered)",
                          what);
    SOWER_TRY(seeds_digest(job, seeds));
    digest_hex(seeds, seeds_hex);
    snprintf(expect, sizeof expect, "\nrows: %llu\nseeds_sha256: %s\n", (unsigned long long)job->n_rows, seeds_hex);
    if (strncmp(job_key, PROVENANCE_JOB_KEY_FORMAT "\n", strlen(PROVENANCE_JOB_KEY_FORMAT) + 1) != 0 ||
        !strstr(job_key, expect))
        return SOWER_FAIL(SOWER_EINPUT, "%s: its 'job_key' does not name the rows and seeds of the manifest stored in "
                                        "it (the file was altered)", what);
    return SOWER_OK;
}
