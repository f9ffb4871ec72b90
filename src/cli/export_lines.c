/* export_lines.c: see export_lines.h. */
#define _POSIX_C_SOURCE 200809L
#include "export_lines.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "regular_file.h"

/* Reads the earlier file's next line (closing it at its end). */
static void next_old(MergedLines *m)
{
    if (!m->old) return;
    if (getline(&m->line, &m->cap, m->old) < 0) {
        fclose(m->old);
        m->old = NULL;
        return;
    }
    m->old_key = m->key(m->line);
}

int merged_lines_open(MergedLines *m, const char *path, LineKey key)
{
    memset(m, 0, sizeof *m);
    m->key = key;
    m->old = regular_file_fopen(path); /* the earlier export's lines, merged into the new file */
    if (!m->old && errno != ENOENT)
        return SOWER_FAIL(SOWER_EPATH, "cannot read '%s': %s", path, regular_file_why(errno));
    int status = outfile_open(&m->out, path);
    if (status != SOWER_OK) {
        if (m->old) fclose(m->old);
        m->old = NULL;
        return status;
    }
    next_old(m);
    return SOWER_OK;
}

/* Earlier lines of keys below key (through: and of key itself) go over as they were; those of key are dropped. */
static int copy_old_before(MergedLines *m, uint64_t key, int through)
{
    while (m->old && (m->old_key < key || (through && m->old_key == key))) {
        SOWER_TRY(outfile_write(&m->out, m->line, strlen(m->line)));
        next_old(m);
    }
    while (m->old && m->old_key == key) next_old(m);
    return SOWER_OK;
}

int merged_lines_put(MergedLines *m, uint64_t key, const char *text, size_t bytes)
{
    SOWER_TRY(copy_old_before(m, key, 0));
    return outfile_write(&m->out, text, bytes);
}

int merged_lines_commit(MergedLines *m)
{
    SOWER_TRY(copy_old_before(m, UINT64_MAX, 1));
    return outfile_commit(&m->out);
}

void merged_lines_free(MergedLines *m)
{
    if (m->old) fclose(m->old);
    free(m->line);
    outfile_free(&m->out);
    memset(m, 0, sizeof *m);
}

uint64_t sums_line_key(const char *line)
{
    const char *name = strstr(line, "  ");
    unsigned long long k;
    if (name && (sscanf(name + 2, "row%llu", &k) == 1 || sscanf(name + 2, "shard-%llu", &k) == 1)) return k;
    return UINT64_MAX; /* metadata.jsonl */
}

uint64_t metadata_line_key(const char *line)
{
    const char *row = strstr(line, "\"row\":");
    return row ? strtoull(row + 6, NULL, 10) : UINT64_MAX;
}

static int file_digest(const char *path, unsigned char *digest)
{
    FILE *f = regular_file_fopen(path);
    if (!f) return SOWER_FAIL(SOWER_EIO, "cannot read '%s': %s", path, regular_file_why(errno));
    Digest d;
    int status = digest_init(&d);
    unsigned char buf[1 << 16];
    for (size_t n; status == SOWER_OK && (n = fread(buf, 1, sizeof buf, f)) > 0;) status = digest_update(&d, buf, n);
    if (status == SOWER_OK && ferror(f)) status = SOWER_FAIL(SOWER_EIO, "cannot read '%s'", path);
    fclose(f);
    if (status == SOWER_OK) return digest_final(&d, digest);
    digest_free(&d);
    return status;
}

int sums_put(MergedLines *sums, const char *dir, uint64_t key, const char *name, const unsigned char *digest)
{
    unsigned char read[DIGEST_BYTES];
    if (!digest) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        SOWER_TRY(file_digest(path, read));
        digest = read;
    }
    char hex[DIGEST_HEX_CHARS], line[400];
    digest_hex(digest, hex);
    const int n = snprintf(line, sizeof line, "%s  %s\n", hex, name);
    return merged_lines_put(sums, key, line, (size_t)n);
}
