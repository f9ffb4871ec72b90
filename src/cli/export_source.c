/* export_source.c: see export_source.h. */
#include "export_source.h"
#include "provenance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5_layout.h"

static void attr_into(const OutputReader *in, const char *key, char *out)
{
    char *v = h5read_attr(in, key);
    snprintf(out, DIGEST_HEX_CHARS, "%s", v ? v : "");
    free(v);
}

static int open_output(ExportSource *s)
{
    OutputReader *in = &s->out;
    SOWER_TRY(h5read_open_finished(in, s->path));
    s->job = &in->job;
    s->lo = in->lo, s->rows = in->rows;
    s->c = in->c, s->h = in->h, s->w = in->w;
    s->ic = in->ic, s->ih = in->ih, s->iw = in->iw;
    /* The folder an export merges into is keyed on job_sha256: it must be this file's job's, not a copied one */
    char *job_key = h5read_attr(in, LAYOUT_ATTR_JOB_KEY), *job_sha256 = h5read_attr(in, LAYOUT_ATTR_JOB_SHA256);
    int status = provenance_check_key(&in->job, job_key, job_sha256, s->path);
    free(job_key), free(job_sha256);
    SOWER_TRY(status);
    attr_into(in, LAYOUT_ATTR_JOB_SHA256, s->job_hex);
    attr_into(in, LAYOUT_ATTR_WEIGHTS_SHA256, s->weights_hex);
    if (strlen(s->weights_hex) != DIGEST_HEX_CHARS - 1)
        return SOWER_FAIL(SOWER_EINPUT, "%s: no 'weights_sha256' attribute of 64 hex digits (a damaged file)", s->path);
    if (s->ic) { /* decoded by the run: its job key names the VAE */
        char *key = h5read_attr(in, LAYOUT_ATTR_JOB_KEY);
        provenance_key_digest(key, "vae_sha256=", s->vae_hex);
        free(key);
    }
    /* The model folder the run recorded (/run model_path, as verify reads it); else the manifest's. */
    s->model_path = h5read_run_attr(in, LAYOUT_RUN_MODEL_PATH);
    return SOWER_OK;
}

static int open_sample(ExportSource *s)
{
    SOWER_TRY(npy_open_f32(s->path, &s->array));
    SOWER_TRY(sample_record_read(&s->record, s->path, s->array.shape, s->array.ndim));
    const SampleRecord *r = &s->record;
    s->job = &r->job;
    s->lo = 0, s->rows = (uint64_t)r->shape[0];
    s->c = (int)r->shape[1], s->h = (int)r->shape[2], s->w = (int)r->shape[3];
    s->rows_are_images = r->rows_are == SAMPLE_ROWS_IMAGES;
    memcpy(s->job_hex, r->record_hex, sizeof s->job_hex);
    memcpy(s->weights_hex, r->weights_hex, sizeof s->weights_hex);
    memcpy(s->vae_hex, r->vae_hex, sizeof s->vae_hex);
    return SOWER_OK;
}

int export_source_open(ExportSource *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    const size_t len = strlen(path);
    s->is_sample = len >= 4 && strcmp(path + len - 4, ".npy") == 0;
    int status = s->is_sample ? open_sample(s) : open_output(s);
    if (status == SOWER_OK) s->prompted = s->job->n_prompts > 0;
    if (status != SOWER_OK) export_source_close(s);
    return status;
}

int export_source_row(const ExportSource *s, uint64_t r, float *row, uint64_t *seed, unsigned char *digest)
{
    unsigned char recorded[DIGEST_BYTES], check[DIGEST_BYTES];
    const size_t per = (size_t)s->c * s->h * s->w;
    if (s->is_sample) {
        SOWER_TRY(npy_read_rows(s->path, &s->array, r, 1, row));
        memcpy(recorded, s->record.row_sha256 + DIGEST_BYTES * r, DIGEST_BYTES);
        *seed = s->record.job.list[r];
    } else {
        SOWER_TRY(h5read_rows(&s->out, r, 1, row, seed, recorded, NULL));
        /* The digest covers the latents only: the seed a row is labelled with is the stored manifest's. */
        const uint64_t expected = job_seed_at(s->job, s->lo + r);
        if (*seed != expected)
            return SOWER_FAIL(SOWER_EINPUT, "%s: row %llu holds seed %llu in /seeds where its manifest gives %llu (a "
                                            "damaged or altered file): not exporting it (sower verify %s checks every row)",
                              s->path, (unsigned long long)r, (unsigned long long)*seed, (unsigned long long)expected,
                              s->path);
    }
    SOWER_TRY(digest_buffer(row, per * sizeof(float), check));
    if (memcmp(check, recorded, DIGEST_BYTES) != 0) {
        if (s->is_sample)
            return SOWER_FAIL(SOWER_EINPUT, "%s: row %llu does not match the SHA-256 its record %s.json gives (an "
                                            "altered array, or a record of another one): not exporting it",
                              s->path, (unsigned long long)r, s->path);
        return SOWER_FAIL(SOWER_EINPUT, "%s: row %llu does not match its /digest (a damaged or altered file): not "
                                        "exporting it (sower verify %s checks every row)",
                          s->path, (unsigned long long)r, s->path);
    }
    if (digest) memcpy(digest, recorded, DIGEST_BYTES);
    return SOWER_OK;
}

int export_source_image(const ExportSource *s, uint64_t r, unsigned char *image)
{
    unsigned char digest[DIGEST_BYTES], check[DIGEST_BYTES];
    SOWER_TRY(h5read_images(&s->out, r, 1, image, digest));
    SOWER_TRY(digest_buffer(image, (size_t)s->ic * s->ih * s->iw, check));
    if (memcmp(check, digest, DIGEST_BYTES) != 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: the image of row %llu does not match its /%s (a damaged or altered "
                                        "file): not exporting it",
                          s->path, (unsigned long long)r, LAYOUT_IMAGE_DIGEST);
    return SOWER_OK;
}

void export_source_close(ExportSource *s)
{
    if (s->is_sample) {
        sample_record_free(&s->record);
        npy_close(&s->array);
    } else if (s->out.file) {
        h5read_close(&s->out);
    }
    free(s->model_path);
    s->model_path = NULL;
}
