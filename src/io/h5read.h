/* h5read.h: reading a finished sower output (h5_layout.h names its parts) without trusting it, for
 * `sower verify` and `sower export`. Opening checks what every reader of the format must check
 * before sizing a buffer from the file, the same checks --resume and --stitch make: the format and
 * format_version attributes, the stored manifest (which says how many rows the file holds), then
 * the datasets' shapes and element types (h5read_check_layout). Failures are SOWER_EINPUT or
 * SOWER_EPATH (exit 2) with a message naming the file and what is wrong. */
#ifndef SOWER_H5READ_H
#define SOWER_H5READ_H

#include <stdint.h>

#include "err.h"
#include "manifest.h"

typedef struct {
    int64_t file; /* the HDF5 file (hid_t), read-only; 0 when closed */
    char *path;
    Job job;     /* the manifest stored in the file */
    char *slice; /* the slice attribute ("K/N") of a slice file (`sower run --slice`); NULL: a job's file */
    uint64_t lo, hi; /* the file holds job rows [lo, hi): its row i is job row lo + i */
    uint64_t rows;   /* hi - lo */
    int c, h, w;     /* a row's shape once h5read_check_layout accepted it; 0 before */
    int ic, ih, iw;  /* pipeline.decode: an image's shape once h5read_check_images accepted it; 0: none */
} OutputReader;

/* The run's own verification (/verify), V entries: the rows re-rendered on another rank. */
typedef struct {
    uint64_t n;             /* V */
    uint64_t *rows, *seeds; /* (V,) */
    int32_t *renderer;      /* (V,) the rank that rendered the row; -1: an array task (stitched) */
    int32_t *verifier;      /* (V,) the rank that re-rendered it */
    uint8_t *match;         /* (V,) 1: bitwise equal */
    float *max_abs_diff;    /* (V,) */
} VerifyTable;

/* Opens PATH read-only: an HDF5 file whose format and format_version are this sower's, with a
 * stored manifest and, for a slice file, a valid slice attribute. r is closed again on failure. */
int h5read_open(OutputReader *r, const char *path) SOWER_MUST_CHECK;
/* The datasets must be what sower writes for r->rows rows of shape (c, h, w) (the model's); then
 * the row readers below may be used. */
int h5read_check_layout(OutputReader *r, int c, int h, int w) SOWER_MUST_CHECK;
/* A row's shape (c, h, w) as the model_config attribute (the model's config.json) gives it, for
 * readers without the model. */
int h5read_recorded_shape(const OutputReader *r, int *c, int *h, int *w) SOWER_MUST_CHECK;
/* h5read_open, then the layout for the recorded shape, then every row marked done: a finished
 * output (an unfinished or damaged one is refused, SOWER_EINPUT). */
int h5read_open_finished(OutputReader *r, const char *path) SOWER_MUST_CHECK;
/* SOWER_EINPUT "unfinished (N of M rows done)" when the file is whole as its recorded shape says
 * but not every row is done (an interrupted run's file); SOWER_OK otherwise, damage included, which
 * the caller's own checks name. Leaves the layout unchecked (check it again before reading rows). */
int h5read_refuse_unfinished(OutputReader *r) SOWER_MUST_CHECK;
/* Rows [r0, r0 + n) (within r->rows; layout checked): latents (n, c, h, w), seeds (n,), digests
 * (n, 32), done (n,); a NULL one is not read. */
int h5read_rows(const OutputReader *r, uint64_t r0, uint64_t n, float *latents, uint64_t *seeds,
                unsigned char *digests, uint8_t *done) SOWER_MUST_CHECK;
/* pipeline.decode: a file of a decoding job must hold /images (rows, 3, H, W) and /image_digest
 * (rows, 32), uint8 (then r->ic, ih, iw are set), one of another job neither; SOWER_EINPUT otherwise. */
int h5read_check_images(OutputReader *r) SOWER_MUST_CHECK;
/* Rows [r0, r0 + n) of /images (n, ic, ih, iw) and /image_digest (n, 32) (images checked; a NULL one is
 * not read). */
int h5read_images(const OutputReader *r, uint64_t r0, uint64_t n, unsigned char *images,
                  unsigned char *digests) SOWER_MUST_CHECK;
/* Rows whose /done entry is not 1 (layout checked), read a block at a time. */
int h5read_count_not_done(const OutputReader *r, uint64_t *not_done) SOWER_MUST_CHECK;
/* A root attribute (LAYOUT_ATTR_*) as a new string; NULL when absent or not a string. */
char *h5read_attr(const OutputReader *r, const char *key);
/* An attribute of the /run group (LAYOUT_RUN_*) as a new string; NULL when absent. */
char *h5read_run_attr(const OutputReader *r, const char *key);
/* The /verify table; *present = 0 (t zeroed) when the file has none. Its vectors must be 1-D, of one
 * length V <= r->rows and of sower's element types; else SOWER_EINPUT naming the dataset. */
int h5read_verify_table(const OutputReader *r, VerifyTable *t, int *present) SOWER_MUST_CHECK;
/* Stable Diffusion: /prompts and /negative_prompts must hold the stored manifest's texts and /prompt_index
 * give each row its prompt (read a block at a time); SOWER_EMISMATCH naming the dataset where one was
 * altered, SOWER_EINPUT where one is missing or of another shape. Nothing to check for other jobs. */
int h5read_check_prompt_record(const OutputReader *r) SOWER_MUST_CHECK;
void verify_table_free(VerifyTable *t); /* safe on a zeroed table */
void h5read_close(OutputReader *r);     /* safe on a zeroed reader */

#endif /* SOWER_H5READ_H */
