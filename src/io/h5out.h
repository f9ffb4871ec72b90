/* h5out.h: writing the job's HDF5 output file (its names: h5_layout.h; reading it: h5read.h).
 * Written by one process (the writer rank) into "PATH.partial" and renamed to PATH when the job
 * completes, so a failed job never leaves a file that looks finished. Object timestamps are off,
 * so a rerun gives byte-identical datasets and non-run attributes. */
#ifndef SOWER_H5OUT_H
#define SOWER_H5OUT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct {
    int64_t file, latents, seeds, digest, done; /* HDF5 handles (hid_t), 0 when closed */
    int64_t images, image_digest;                /* pipeline.decode's (hid_t); 0 when none */
    uint64_t rows;
    int c, h, w;
    int ic, ih, iw; /* an image's shape (pipeline.decode); 0 when none */
    char *path, *partial_path;
    char *creating_path;   /* PATH.partial.new while h5out_create makes it; NULL once renamed */
    int created;           /* this run created PATH.partial (else it resumed one) */
    uint64_t (*seed_of)(const void *ctx, uint64_t row); /* the job's seed of each row, for checks */
    const void *seed_ctx;
    uint64_t rows_written; /* rows this run rendered into it (copies from slices are not counted) */
    uint64_t file_dev, file_ino; /* the file open as o->file: h5out_finish renames it only if PATH.partial
                                  * still names it (0, 0: not known) */
} H5Out;

typedef struct {
    const char *key, *value; /* a string attribute */
} H5Attr;

typedef struct {
    const char *key; /* an integer attribute */
    int64_t value;
} H5IntAttr;

/* What makes rows of two files comparable: the same job key (provenance.h: what decides the bits,
 * not the manifest's text) and its digest, the same weights (SHA-256 hex), and the same backend
 * identity (backend.h; NULL: not checked), since float bits are reproducible only on equal
 * hardware and kernels. A file written before job keys existed is compared by manifest_sha256. */
typedef struct {
    const char *job_key, *job_sha256, *manifest_sha256, *weights_sha256, *backend_identity;
} H5JobKey;

/* The seed of a row, for filling /seeds a block at a time (no N-sized array). */
typedef uint64_t (*H5SeedOf)(const void *ctx, uint64_t row);

/* A prompted job's prompts (h5_layout.h): prompts and negatives (n,), and each row's prompt index. */
typedef struct {
    const char *const *prompts, *const *negatives;
    size_t n;
    uint64_t (*prompt_of)(const void *ctx, uint64_t row); /* called with the seed_ctx */
} H5Prompts;

/* Rows an earlier partial of the same job holds, to carry into a new file (a rebuilt gzip partial:
 * h5out_resume): `path`, and done (rows,), 1 for each row to copy (each one checked already). */
typedef struct {
    const char *path;
    const uint8_t *done;
} H5Carry;

/* An image's shape (c, h, w) of a decoding job's /images; NULL where there are none. */
typedef struct {
    int c, h, w;
} H5ImageShape;

/* Creates PATH.partial with the datasets sized for rows x (c, h, w), /seeds, the prompts when
 * `prompts` is not NULL, /images and /image_digest when `images` is not NULL, and the root attributes. With `carry`, its rows are copied in before the
 * new file replaces the earlier PATH.partial (so that one is never lost half-copied). */
int h5out_create(H5Out *o, const char *path, uint64_t rows, int c, int h, int w, int chunk_rows, int gzip,
                 H5SeedOf seed_of, const void *seed_ctx, const H5Prompts *prompts, const H5Attr *attrs,
                 int n_attrs, const H5ImageShape *images, const H5Carry *carry) SOWER_MUST_CHECK;
/* Reopens PATH.partial left by an interrupted run of the same job (seed_of gives each row's seed): its format and format_version
 * must be this sower's (h5_layout.h), its job key, weights_sha256 and backend_identity must equal
 * key's (else SOWER_EINPUT naming which setting differs), its stored manifest and job key must
 * match their digests and its shape must match.
 * Fills done (rows,) from /done, less the rows whose bytes do not match their digest or whose seed
 * is not the job's (they are rendered again; a warning counts them), and removes any /run and /verify. When refused, the file is closed
 * and kept as it was (o is left closed).
 * A gzip partial is not written again in place: HDF5 allocates its chunks as rows arrive, so a run
 * cut short (a full disk) can leave its chunk index unwritable. Then *rebuild is set, done is
 * filled, o is left closed and the caller makes a new file carrying those rows (H5Carry). */
int h5out_resume(H5Out *o, const char *path, uint64_t rows, int c, int h, int w, const H5ImageShape *images,
                 const H5JobKey *key, H5SeedOf seed_of, const void *seed_ctx, uint8_t *done,
                 int *rebuild) SOWER_MUST_CHECK;
/* Rows [row0, row0 + n): latents (n, c, h, w) and digests (n, 32), with images (n, ic, ih, iw) and
 * their digests (n, 32) when the file has images (else NULL); then marks them done. */
int h5out_write_rows(H5Out *o, uint64_t row0, uint64_t n, const float *latents, const unsigned char *digests,
                     const unsigned char *images, const unsigned char *image_digests) SOWER_MUST_CHECK;
/* The stored image digest (DIGEST_BYTES) of row `row` (a file with images). */
int h5out_read_image_digest(H5Out *o, uint64_t row, unsigned char *digest) SOWER_MUST_CHECK;
/* Reads row `row` of /latents back into latent (c, h, w). */
int h5out_read_row(H5Out *o, uint64_t row, float *latent) SOWER_MUST_CHECK;
/* The /run group (facts that differ between runs) and the /verify group. */
/* slices (world + 1,): rank k rendered rows [slices[k], slices[k+1]). */
int h5out_write_run(H5Out *o, const H5Attr *attrs, int n_attrs, const H5IntAttr *ints, int n_ints,
                    const uint64_t *slices, int world) SOWER_MUST_CHECK;
int h5out_write_verify(H5Out *o, uint64_t n, const uint64_t *rows, const uint64_t *seeds,
                       const int32_t *renderer, const int32_t *verifier, const uint8_t *match,
                       const float *max_abs_diff) SOWER_MUST_CHECK;
/* Copies the rows of a finished slice file (`sower run --slice K/N`, slice attribute `slice_tag`)
 * into rows [lo, hi) of o, skipping rows already done (done (rows,) is updated). The slice must be
 * of this format, of the same manifest, weights and backend identity (key), complete, of the right
 * shape, and every row's bytes must match its stored digest and its seed the job's; else SOWER_EINPUT naming the slice and what
 * differs. */
int h5out_copy_slice(H5Out *o, const char *slice_path, const char *slice_tag, uint64_t lo, uint64_t hi,
                     const H5JobKey *key, uint8_t *done) SOWER_MUST_CHECK;
/* 1 when PATH is a finished sower output (this format) of this job (key) with rows x (c, h, w),
 * every row marked done, matching its digest and holding its seed (seed_of); 0 when PATH does not
 * exist; SOWER_EINPUT when it exists but is something else, or damaged (never overwritten
 * silently), naming the first rows that fail. */
/* *verify_mismatches: the rows its run's own verification found differing (/verify), for the caller to
 * report: such a file is finished, but not a success. */
int h5out_is_finished(const char *path, const H5JobKey *key, uint64_t rows, int c, int h, int w,
                      const H5ImageShape *images, H5SeedOf seed_of, const void *seed_ctx, int *finished,
                      uint64_t *verify_mismatches) SOWER_MUST_CHECK;
/* Closes PATH.partial and keeps it, for a later --resume (an interrupted run). */
void h5out_keep_partial(H5Out *o);
/* Closes and renames PATH.partial to PATH. Without replace, a file at PATH (another program's, made
 * while the run went on) stays, and so does PATH.partial: SOWER_EIO (exit 3), saying how to finish. */
int h5out_finish(H5Out *o, int replace) SOWER_MUST_CHECK;
/* Closes after a failure. PATH.partial is removed only when this run created it and no row reached
 * it (there is nothing to resume); else it is kept for --resume. Safe on a zeroed H5Out. */
void h5out_abandon(H5Out *o);
/* What an interrupted run left in partial_path (PATH.partial): *rows in /done, *done of them marked
 * done, read without trusting the file; SOWER_EINPUT naming it when it is no sower output. */
int h5out_partial_progress(const char *partial_path, uint64_t *done, uint64_t *rows) SOWER_MUST_CHECK;

#endif /* SOWER_H5OUT_H */
