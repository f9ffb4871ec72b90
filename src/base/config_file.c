/* config_file.c: configuration text from disk (config_file.h). */
#include "config_file.h"
#include "regular_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_file_read(const char *path, const char *what, size_t max_bytes, int bad_input_status, char **text,
                     size_t *bytes)
{
    *text = NULL;
    *bytes = 0;
    FILE *fp = regular_file_fopen(path);
    if (!fp)
        return SOWER_FAIL(bad_input_status, "%s: cannot read the %s: %s", path, what, regular_file_why(errno));
    unsigned char *buf = NULL; /* (n + 1,) */
    size_t n = 0;
    int err = regular_file_read_stream(fp, max_bytes, &buf, &n);
    fclose(fp);
    if (err == ENOMEM)
        return SOWER_FAIL(SOWER_ENOMEM, "%s: cannot read the %s: out of memory", path, what);
    if (err == EFBIG)
        return SOWER_FAIL(bad_input_status, "%s: cannot read the %s: it is larger than %zu bytes", path, what,
                          max_bytes);
    if (err)
        return SOWER_FAIL(SOWER_EIO, "%s: cannot read the %s: input/output error", path, what);
    *text = (char *)buf;
    *bytes = n;
    return SOWER_OK;
}
