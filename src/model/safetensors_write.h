/* safetensors_write.h: writing a .safetensors file from tensors already in memory (their stored
 * bytes, any float dtype), streamed: the header, then each tensor's bytes, in name order. */
#ifndef SOWER_SAFETENSORS_WRITE_H
#define SOWER_SAFETENSORS_WRITE_H

#include <stdint.h>

#include "err.h"
#include "safetensors.h"

typedef struct {
    const char *name;
    StDtype dtype; /* ST_F32, ST_F16 or ST_BF16 */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const unsigned char *bytes; /* (n_bytes,) little-endian, as safetensors stores them */
    uint64_t n_bytes;
} StWriteTensor;

/* Writes path (created; an existing file is refused) with the n tensors (sorted here by name;
 * names must be unique). SOWER_EIO naming path on a failed write (a full disk: its errno). */
int safetensors_write(const char *path, StWriteTensor *tensors, int n) SOWER_MUST_CHECK;

#endif /* SOWER_SAFETENSORS_WRITE_H */
