/* sample_record.h: what `sower sample -o OUT.npy` records beside its array, in OUT.npy.json: the model
 * (its folder and weights' digest), the pipeline settings, the prompt, the seeds in row order and each
 * row's SHA-256. With it `sower export OUT.npy` says what produced every image, as it does for a run's
 * HDF5 output, and refuses an array that is not the one recorded (a row whose bytes differ is named).
 *
 * The record is JSON (README "sower sample's record"):
 *   {"format": "sower-sample", "format_version": 1, "array": "OUT.npy", "shape": [N, C, H, W],
 *    "rows_are": "samples" | "latents" | "images", "model": {"path": ..., "weights_sha256": ...},
 *    "vae_sha256": ... (images only), "pipeline": {"scheduler": ..., "steps": ..., ...},
 *    "prompt": ..., "negative_prompt": ... (Stable Diffusion only), "seeds": "3,1,2" (exact uint64s),
 *    "backend": ..., "sower_version": ..., "row_sha256": [N hex digests]} */
#ifndef SOWER_SAMPLE_RECORD_H
#define SOWER_SAMPLE_RECORD_H

#include "digest.h"
#include "manifest.h"

/* What the array's rows are. */
typedef enum {
    SAMPLE_ROWS_SAMPLES, /* an unconditional pipeline's final samples (pixel space) */
    SAMPLE_ROWS_LATENTS, /* Stable Diffusion latents (output_type="latent") */
    SAMPLE_ROWS_IMAGES,  /* sample --decode: vae.decode(latents / scaling_factor).sample, float */
} SampleRows;

typedef struct {
    Job job;                       /* the settings as a job: model_path, pipeline, one prompt (or none),
                                    * the seeds as its list (row i is seed list[i]); nothing else set */
    SampleRows rows_are;
    int64_t shape[4];              /* (N, C, H, W) of the array */
    unsigned char *row_sha256;     /* (N, DIGEST_BYTES) */
    char weights_hex[DIGEST_HEX_CHARS], vae_hex[DIGEST_HEX_CHARS]; /* vae_hex "" unless images */
    char record_hex[DIGEST_HEX_CHARS]; /* of the record's bytes: the export's job identity */
    char *backend;                 /* the backend identity that rendered it */
} SampleRecord;

/* "OUT.npy.json" for "OUT.npy" into out. */
void sample_record_path(const char *npy_path, char *out, size_t size);

/* Writes npy_path's record (atomically: temporary file, rename): job as cmd_sample filled it (model_path,
 * pipeline, prompts, seeds list), the rows (shape[0], shape[1..3]) as written, the weights' and VAE's digests
 * (vae NULL unless images), the backend identity; replace 0: the record must be a new file. */
int sample_record_write(const char *npy_path, const Job *job, SampleRows rows_are, const float *rows,
                        const int64_t *shape, const unsigned char *weights_sha256, const unsigned char *vae_sha256,
                        const char *backend, int replace) SOWER_MUST_CHECK;

/* Reads npy_path's record; SOWER_EINPUT naming the record for one missing, malformed or of another array
 * (shape). r is freed again on failure. */
int sample_record_read(SampleRecord *r, const char *npy_path, const int64_t *npy_shape, int npy_ndim) SOWER_MUST_CHECK;
/* The same from the record's bytes (read from path, for messages). */
int sample_record_parse(SampleRecord *r, const char *path, const unsigned char *bytes, size_t n, const char *npy_path,
                        const int64_t *npy_shape, int npy_ndim) SOWER_MUST_CHECK;
void sample_record_free(SampleRecord *r);

#endif /* SOWER_SAMPLE_RECORD_H */
