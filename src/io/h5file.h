/* h5file.h: the HDF5 helpers the output's writer (h5out.c) and reader (h5read.c) share: string
 * attributes, the format and layout checks, reading rows. Private to the io layer: other layers go
 * through h5out.h and h5read.h and never see an HDF5 handle. */
#ifndef SOWER_H5FILE_H
#define SOWER_H5FILE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* HDF5 prints its own error stack by default; sower reports the failure itself. */
void h5file_quiet(void);
/* 1 when the HDF5 call that just failed ran out of memory (its error stack, which each API call starts afresh, holds
 * an allocation failure: H5E_CANTALLOC, H5E_NOSPACE or major H5E_RESOURCE): a read that failed so is "out of memory",
 * exit 3, not a damaged file. */
int h5file_ran_out(void);
/* SOWER_ENOMEM ("out of memory opening PATH") unless 4 MiB of address space are free: HDF5 1.10's H5Fopen and
 * H5Fcreate use their metadata cache's allocation unchecked (H5AC_create: SIGSEGV when it failed). Called before
 * each; a few MiB is what opening takes. */
int h5file_room_to_open(const char *path) SOWER_MUST_CHECK;
/* The string attribute key of an HDF5 object, fixed or variable length (as h5py writes str), as a
 * new NUL-terminated string; NULL when absent or not a string. */
char *h5file_string_attr(hid_t obj, const char *key);
/* The same into out (size); -1 when absent, not a string, or too long. */
int h5file_read_string_attr(hid_t obj, const char *key, char *out, size_t size);
/* A 1-D dataset of variable-length strings (/prompts), at most max_n, as *n new NUL-terminated
 * strings (*texts (n,), free each and the array); SOWER_EINPUT naming `what` and the dataset when it
 * is absent or of another shape or type. */
int h5file_read_texts(hid_t file, const char *what, const char *name, size_t max_n, char ***texts,
                      size_t *n) SOWER_MUST_CHECK;
/* The root attributes format and format_version must name what this sower reads; else SOWER_EINPUT,
 * the message starting with `what` ("not a sower output", or which version it is). */
int h5file_check_format(hid_t file, const char *what) SOWER_MUST_CHECK;
/* The file's /latents, /seeds, /digest and /done must be exactly what sower writes for rows x
 * (c, h, w): shapes and element types; else SOWER_EINPUT, the message starting with `what` and
 * naming the dataset. Every reader checks this before sizing a buffer from the job. */
int h5file_check_layout(hid_t file, const char *what, uint64_t rows, int c, int h, int w) SOWER_MUST_CHECK;
/* pipeline.decode's /images (rows, c, h, w) and /image_digest (rows, 32), uint8, when `has` (the
 * job decodes); neither when not. SOWER_EINPUT naming `what` and the dataset otherwise. */
int h5file_check_images(hid_t file, const char *what, uint64_t rows, int has, int c, int h, int w) SOWER_MUST_CHECK;
/* Rows [r0, r0 + n) of /images (n, c, h, w) and /image_digest (n, 32) (a NULL one is not read). */
int h5file_read_images(hid_t file, const char *what, uint64_t r0, uint64_t n, int c, int h, int w,
                       unsigned char *images, unsigned char *digests) SOWER_MUST_CHECK;
/* Reads (write = 0) or writes rows [row0, row0 + n) of dataset ds; row_dims (rank,) holds a row's
 * shape after dimension 0, data (n, row_dims[1..]). */
herr_t h5file_transfer_rows(hid_t ds, hid_t memtype, int rank, const hsize_t *row_dims, uint64_t row0,
                            uint64_t n, void *data, int write);
/* Rows [r0, r0 + n) of a file whose layout h5file_check_layout accepted for (c, h, w): latents
 * (n, c, h, w), seeds (n,), digests (n, 32), done (n,); a NULL one is not read. A failure
 * (SOWER_EINPUT) names `what` and the rows. */
int h5file_read_block(hid_t file, const char *what, uint64_t r0, uint64_t n, int c, int h, int w,
                      float *latents, uint64_t *seeds, unsigned char *digests,
                      uint8_t *done) SOWER_MUST_CHECK;
/* Rows of /done (rows,) (layout checked) that are not 1, read a block at a time. */
int h5file_count_not_done(hid_t file, const char *what, uint64_t rows, uint64_t *not_done) SOWER_MUST_CHECK;
/* The rows the run's own verification (/verify/match) found differing; SOWER_EINPUT when the file has none,
 * or one that is not sower's record for a file of `rows` rows. */
int h5file_count_verify_mismatches(hid_t file, const char *what, uint64_t rows, uint64_t *mismatched) SOWER_MUST_CHECK;

#endif /* SOWER_H5FILE_H */
