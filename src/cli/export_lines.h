/* export_lines.h: the line files of an export, DIR/SHA256SUMS and DIR/metadata.jsonl, written as the export
 * goes without holding them: lines come in ascending order of a key (the row, or the shard number), and an
 * earlier file of the same name (an export of the same job, perhaps of other rows) is merged in step: its
 * lines of the keys this export writes are replaced, the others kept. The new file replaces the old only
 * when whole (temporary file, rename), so an interrupted export leaves the earlier one as it was.
 *
 * SHA256SUMS (`sha256sum -c SHA256SUMS` checks it): "HEX  NAME" per file (PNGs, tar or .npy shards, then
 * metadata.jsonl), keyed by the row (rowRRRRRRRR_seedS.png) or shard (shard-NNNNNN.*) its name holds,
 * metadata.jsonl last. metadata.jsonl: one JSON line per row, keyed by its "row". */
#ifndef SOWER_EXPORT_LINES_H
#define SOWER_EXPORT_LINES_H

#include <stdint.h>
#include <stdio.h>

#include "digest.h"
#include "err.h"
#include "outfile.h"

typedef uint64_t (*LineKey)(const char *line); /* a line's key; UINT64_MAX: after every other */

typedef struct {
    OutFile out;
    FILE *old;      /* the earlier file, read in step; NULL: none (or all read) */
    char *line;     /* (cap,) its next line, not yet copied or dropped */
    size_t cap;
    uint64_t old_key;
    LineKey key;
} MergedLines;

int merged_lines_open(MergedLines *m, const char *path, LineKey key) SOWER_MUST_CHECK;
/* text of key (a line may come in pieces, under the same key): earlier lines of smaller keys go first, those
 * of key are dropped. */
int merged_lines_put(MergedLines *m, uint64_t key, const char *text, size_t bytes) SOWER_MUST_CHECK;
/* The earlier file's remaining lines, then the rename. */
int merged_lines_commit(MergedLines *m) SOWER_MUST_CHECK;
void merged_lines_free(MergedLines *m); /* safe on a zeroed one; an uncommitted file is removed */

/* SHA256SUMS keys (by the file name) and metadata.jsonl keys (by "row"). */
uint64_t sums_line_key(const char *line);
uint64_t metadata_line_key(const char *line);

/* A SHA256SUMS line for DIR/NAME: its digest given, or (NULL) read from the file. */
int sums_put(MergedLines *sums, const char *dir, uint64_t key, const char *name,
             const unsigned char *digest) SOWER_MUST_CHECK;

#endif /* SOWER_EXPORT_LINES_H */
