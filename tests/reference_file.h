/* reference_file.h: reading a committed reference file (a JSON file under tests/data) whole, for the C tests that compare
 * against one. */
#ifndef SOWER_TEST_REFERENCE_FILE_H
#define SOWER_TEST_REFERENCE_FILE_H

#include <stdio.h>
#include <stdlib.h>

enum { REFERENCE_MAX_BYTES = 1 << 20 };

/* The file's bytes, NUL-terminated (at most REFERENCE_MAX_BYTES - 1 of them); NULL if it cannot be read. */
static inline char *reference_file_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc(REFERENCE_MAX_BYTES) : NULL;
    size_t n = buf ? fread(buf, 1, REFERENCE_MAX_BYTES - 1, f) : 0;
    if (f)
        fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

#endif /* SOWER_TEST_REFERENCE_FILE_H */
