/* npy.h: NumPy .npy files (format 1.0), little-endian, C order. */
#ifndef SOWER_NPY_H
#define SOWER_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

enum { NPY_MAX_DIMS = 8, NPY_HEADER_MAX = 512 };

/* The .npy 1.0 header (magic, version, length, the dict padded to 64 bytes) of a C-order array of
 * dtype descr ("<f4", "<f8") and shape, into out (NPY_HEADER_MAX bytes); returns its length. */
size_t npy_header(unsigned char *out, const char *descr, const int64_t *shape, int ndim);

/* Writes data (numel of shape,) to path atomically (temp file + rename). */
int npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim) SOWER_MUST_CHECK;
/* The same, replace 0: path must be new (outfile_open_new: an existing file is never replaced). */
int npy_write_f32_opt(const char *path, const float *data, const int64_t *shape, int ndim, int replace) SOWER_MUST_CHECK;
/* A float32 C-order .npy opened for reading rows (its first dimension) without holding it all. */
typedef struct {
    FILE *fp;
    int64_t shape[NPY_MAX_DIMS];
    int ndim;
    size_t numel;       /* the product of shape */
    size_t data_offset; /* bytes of header before the data */
} NpyArray;

/* Opens path: a version 1 .npy of float32, C order, whose size is exactly its header's shape. */
int npy_open_f32(const char *path, NpyArray *a) SOWER_MUST_CHECK;
/* Rows [r0, r0 + n) of the first dimension into out (n * numel / shape[0] floats). */
int npy_read_rows(const char *path, const NpyArray *a, uint64_t r0, uint64_t n, float *out) SOWER_MUST_CHECK;
void npy_close(NpyArray *a);
/* Reads a float32 C-order .npy into a new buffer (caller frees); shape (NPY_MAX_DIMS,). */
int npy_read_f32(const char *path, float **data, int64_t *shape, int *ndim) SOWER_MUST_CHECK;

#endif /* SOWER_NPY_H */
