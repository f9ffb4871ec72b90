/* mapped_file.h: files sower reads through mmap (the model's weights) that must not change while a
 * run uses them. Another process that truncates a mapped file makes the next read of a page past
 * its new end a SIGBUS; one that rewrites it in place silently changes what the mapping reads. Both
 * would put rows from other weights under the recorded weights digest, so:
 *   - a SIGBUS inside a registered mapping ends the process at once with a message naming the file
 *     (exit 3; what was written before stays, nothing of the batch in hand is recorded);
 *   - mapped_file_check_unchanged, called between batches, compares each file's inode, size and
 *     modification time with what they were when it was mapped. */
#ifndef SOWER_MAPPED_FILE_H
#define SOWER_MAPPED_FILE_H

#include <stddef.h>
#include <sys/stat.h>

#include "err.h"

/* Registers [base, base + bytes), the mapping of path whose fstat at mapping time was st, and
 * installs the SIGBUS handler (once). At most 16 files at a time; more are not watched. */
void mapped_file_register(const char *path, const void *base, size_t bytes, const struct stat *st);
/* fn (async-signal-safe, e.g. unlink of the output's lock) runs before a SIGBUS in a mapping ends
 * the process; NULL: none. */
void mapped_file_on_fatal(void (*fn)(void));
/* Forgets the mapping at base (before munmap). */
void mapped_file_unregister(const void *base);
/* SOWER_EIO naming the first registered file whose inode, size or modification time changed. */
int mapped_file_check_unchanged(void) SOWER_MUST_CHECK;

#endif /* SOWER_MAPPED_FILE_H */
