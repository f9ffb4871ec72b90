/* export_source.h: the rows `sower export` reads, from either kind of file sower writes: a run's finished
 * HDF5 output (h5read.h) or `sower sample`'s OUT.npy with its record OUT.npy.json (sample_record.h).
 * Either way a row is read with its seed and checked against the digest recorded for it, and the job
 * (settings, prompts, model) says what produced it. */
#ifndef SOWER_EXPORT_SOURCE_H
#define SOWER_EXPORT_SOURCE_H

#include <stdint.h>

#include "digest.h"
#include "h5read.h"
#include "npy.h"
#include "sample_record.h"

typedef struct {
    const char *path;
    int is_sample;       /* 1: a sample's .npy (record, array); 0: an HDF5 output (out) */
    OutputReader out;
    SampleRecord record;
    NpyArray array;      /* (N, C, H, W) */
    const Job *job;      /* what produced the rows */
    uint64_t lo, rows;   /* the file's row i is the job's row lo + i */
    int c, h, w;         /* a row as stored */
    int ic, ih, iw;      /* uint8 images stored beside the rows (pipeline.decode); 0: none */
    int rows_are_images; /* the rows are decoded images already (sample --decode): no VAE */
    int prompted;        /* Stable Diffusion: the job has prompts */
    char job_hex[DIGEST_HEX_CHARS], weights_hex[DIGEST_HEX_CHARS];
    char vae_hex[DIGEST_HEX_CHARS]; /* the VAE that made stored or float images; "" otherwise */
    char *model_path;    /* the model folder the rows came from, as recorded (NULL: the job's) */
} ExportSource;

/* path: "*.npy" a sample's array and record, anything else an HDF5 output that must be finished. */
int export_source_open(ExportSource *s, const char *path) SOWER_MUST_CHECK;
/* Row r of the file (r < rows): row (c, h, w) and its seed, checked against its recorded digest (the row
 * named when it differs); digest (DIGEST_BYTES,) may be NULL. */
int export_source_row(const ExportSource *s, uint64_t r, float *row, uint64_t *seed,
                      unsigned char *digest) SOWER_MUST_CHECK;
/* Row r's stored image (ic, ih, iw), checked against its digest. */
int export_source_image(const ExportSource *s, uint64_t r, unsigned char *image) SOWER_MUST_CHECK;
void export_source_close(ExportSource *s);

#endif /* SOWER_EXPORT_SOURCE_H */
