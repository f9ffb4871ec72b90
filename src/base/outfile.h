/* outfile.h: write a file so that readers never see it half-written.
 * Data goes to "PATH.tmp.PID" beside the target; outfile_commit flushes, fsyncs and renames it
 * over PATH; outfile_abort (or outfile_free before commit) removes it, so a failed command leaves
 * any earlier PATH untouched. "-" means standard output (written directly). */
#ifndef SOWER_OUTFILE_H
#define SOWER_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"

typedef struct {
    FILE *fp;
    char *path;     /* the target the user named */
    char *tmp_path; /* NULL for standard output and a device or FIFO (written in place, never replaced) */
    int committed;
    int keep_existing; /* outfile_open_new: the commit never replaces a file at path */
} OutFile;

int outfile_open(OutFile *f, const char *path) SOWER_MUST_CHECK;
/* outfile_open for a file that must be new: SOWER_EPATH if path exists now, or when the commit finds
 * one there (another process made it meanwhile: it is left as it is, this one's removed). */
int outfile_open_new(OutFile *f, const char *path) SOWER_MUST_CHECK;
int outfile_write(OutFile *f, const void *data, size_t bytes) SOWER_MUST_CHECK;
int outfile_commit(OutFile *f) SOWER_MUST_CHECK;
/* Removes the temporary file unless committed; safe on a zeroed OutFile. */
void outfile_free(OutFile *f);

/* rename(2) that never replaces: -1 with errno EEXIST when something is at `to` (RENAME_NOREPLACE, or
 * link(2) then unlink(2) where the file system lacks it, as NFS does). */
int rename_no_replace(const char *from, const char *to);

/* Length of PATH without a trailing ".h5": files beside an output (OUT.slice-K-of-N.h5, OUT.slurm/)
 * are named from this stem. */
size_t h5_stem_length(const char *path);

/* mkdir -p DIR (a path of at most 4095 characters); SOWER_EPATH naming it when it cannot be made. */
int make_dirs(const char *dir) SOWER_MUST_CHECK;

/* Reads a whole file of at most max_bytes into a new buffer (caller frees). */
int file_read_all(const char *path, size_t max_bytes, unsigned char **data, size_t *bytes) SOWER_MUST_CHECK;
/* The same, with *present = 0 and SOWER_OK when nothing is at path; any other failure (unreadable,
 * too large, out of memory) is an error, never taken for absence. */
int file_read_if_present(const char *path, size_t max_bytes, unsigned char **data, size_t *bytes,
                         int *present) SOWER_MUST_CHECK;

#endif /* SOWER_OUTFILE_H */
