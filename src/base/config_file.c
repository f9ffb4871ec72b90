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
    char *buf = malloc(max_bytes + 1); /* (max_bytes + 1,): one byte more tells an oversized file */
    if (!buf) {
        fclose(fp);
        return SOWER_FAIL(SOWER_ENOMEM, "%s: cannot read the %s: out of memory", path, what);
    }
    size_t n = fread(buf, 1, max_bytes + 1, fp);
    int read_error = ferror(fp);
    fclose(fp);
    int status = SOWER_OK;
    if (read_error)
        status = SOWER_FAIL(SOWER_EIO, "%s: cannot read the %s: input/output error", path, what);
    else if (n > max_bytes)
        status = SOWER_FAIL(bad_input_status, "%s: cannot read the %s: it is larger than %zu bytes", path,
                            what, max_bytes);
    if (status != SOWER_OK) {
        free(buf);
        return status;
    }
    char *shrunk = realloc(buf, n + 1); /* (n + 1,) */
    if (shrunk)
        buf = shrunk;
    buf[n] = '\0';
    *text = buf;
    *bytes = n;
    return SOWER_OK;
}
