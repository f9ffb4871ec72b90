/* npy.h: NumPy .npy files (format 1.0), little-endian, C order. */
#ifndef SOWER_NPY_H
#define SOWER_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum { NPY_MAX_DIMS = 8, NPY_HEADER_MAX = 512 };

/* The .npy 1.0 header (magic, version, length, the dict padded to 64 bytes) of a C-order array of
 * dtype descr ("<f4", "<f8") and shape, into out (NPY_HEADER_MAX bytes); returns its length. */
size_t npy_header(unsigned char *out, const char *descr, const int64_t *shape, int ndim);

/* Writes data (numel of shape,) to path atomically (temp file + rename). */
int npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim) SOWER_MUST_CHECK;
/* Reads a float32 C-order .npy into a new buffer (caller frees); shape (NPY_MAX_DIMS,). */
int npy_read_f32(const char *path, float **data, int64_t *shape, int *ndim) SOWER_MUST_CHECK;

#endif /* SOWER_NPY_H */
