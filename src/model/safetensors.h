/* safetensors.h: strict reader of the safetensors format (https://huggingface.co/docs/safetensors).
 * The file is mapped read-only, never copied: F32 tensors are views into the mapping (page cache,
 * shared by every process on the node); F16/BF16 tensors are converted once into one allocation.
 * Every check names the file and the tensor: header length cap, valid JSON, known dtypes, shapes,
 * offsets inside the data and covering it exactly with no overlap and no hole. */
#ifndef SOWER_SAFETENSORS_H
#define SOWER_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum { ST_MAX_DIMS = 8 };
#define ST_MAX_HEADER_BYTES 100000000u /* the format's own limit (safetensors' MAX_HEADER_SIZE) */

/* ST_INTEGER: any integer or boolean dtype; such tensors have data NULL. */
typedef enum { ST_F32, ST_F16, ST_BF16, ST_INTEGER } StDtype;

typedef struct {
    char *name;
    StDtype file_dtype;            /* as stored; data is always float32 */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const float *data;             /* (numel,) float32: into the mapping or the converted block; NULL for
                                      ST_INTEGER and empty tensors, and for all when opened stored-only */
    const unsigned char *stored;   /* (stored_bytes,) the tensor's bytes as the file holds them (mapping) */
    uint64_t stored_bytes;
} StTensor;

typedef struct {
    char *path;
    void *map;                     /* the whole file, read-only */
    size_t map_bytes;
    StTensor *tensors;             /* (n_tensors,) sorted by name */
    int n_tensors;
    float *converted;              /* F16/BF16 tensors as float32, one block */
} StFile;

int safetensors_open(StFile *f, const char *path) SOWER_MUST_CHECK;
/* The same, leaving the tensors skip() names unconverted (data NULL): a part of the file the model
 * never reads (a VAE's encoder, when decoding) costs no memory. */
int safetensors_open_except(StFile *f, const char *path, int (*skip)(const char *name)) SOWER_MUST_CHECK;
/* The same checks, without converting anything: every data is NULL, each tensor's bytes are read
 * through `stored` (for copying tensors into another file as they are). */
int safetensors_open_stored(StFile *f, const char *path) SOWER_MUST_CHECK;
/* The tensor called name, or NULL. */
const StTensor *safetensors_find(const StFile *f, const char *name);
/* Once the file is digested: when every tensor was converted (F16/BF16 files), no page of the mapping is
 * read again, so they are given back (their memory would otherwise stay counted in the process's RSS:
 * SD 1.5's fp16 UNet is 1.7 GB). A no-op when any tensor is used in place. */
void safetensors_release_pages(StFile *f);
/* Refuses (SOWER_EMODEL naming the tensor and index) a NaN or infinity in any converted or mapped tensor:
 * such weights render NaN samples that would otherwise pass every check (a re-render gives the same NaN). */
int safetensors_check_finite(const StFile *f) SOWER_MUST_CHECK;
/* The SHA-256 of the whole file (DIGEST_BYTES), read through the mapping in chunks, each chunk's pages
 * given back as it is hashed when no tensor is used in place. */
int safetensors_digest(StFile *f, unsigned char *sha256) SOWER_MUST_CHECK;
/* "F32", "F16", "BF16" or "an integer dtype", for messages. */
const char *safetensors_dtype_name(StDtype dtype);
void safetensors_close(StFile *f); /* safe on a zeroed StFile */

#endif /* SOWER_SAFETENSORS_H */
