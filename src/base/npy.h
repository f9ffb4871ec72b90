/* npy.h: NumPy .npy files (format 1.0), float32 little-endian, C order. */
#ifndef SOWER_NPY_H
#define SOWER_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum { NPY_MAX_DIMS = 8 };

/* Writes data (numel of shape,) to path atomically (temp file + rename). */
int npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim) SOWER_MUST_CHECK;
/* Reads a float32 C-order .npy into a new buffer (caller frees); shape (NPY_MAX_DIMS,). */
int npy_read_f32(const char *path, float **data, int64_t *shape, int *ndim) SOWER_MUST_CHECK;

#endif /* SOWER_NPY_H */
