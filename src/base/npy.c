/* npy.c: minimal .npy (version 1.0) writer and reader for float32 arrays. */
#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outfile.h"

enum { NPY_ALIGN = 64, NPY_MAX_FILE = 1 << 30 };

size_t npy_header(unsigned char *out, const char *descr, const int64_t *shape, int ndim)
{
    char header[NPY_HEADER_MAX];
    size_t used = (size_t)snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++) /* a 1-tuple needs its comma: (5,) */
        used += (size_t)snprintf(header + used, sizeof header - used, "%lld,%s", (long long)shape[i],
                                 i + 1 < ndim ? " " : "");
    used += (size_t)snprintf(header + used, sizeof header - used, "), }");
    /* magic(6) + version(2) + length(2) + header, padded with spaces to NPY_ALIGN, ending in '\n' */
    size_t total = 10 + used + 1;
    size_t padded = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    memset(header + used, ' ', padded - total);
    used += padded - total;
    header[used++] = '\n';
    const unsigned char prefix[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(used & 0xFF),
                                      (unsigned char)(used >> 8)};
    memcpy(out, prefix, sizeof prefix);
    memcpy(out + sizeof prefix, header, used);
    return sizeof prefix + used;
}

int npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim)
{
    unsigned char header[NPY_HEADER_MAX];
    size_t used = npy_header(header, "<f4", shape, ndim), numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= (size_t)shape[i];
    OutFile f;
    int status = outfile_open(&f, path);
    if (status == SOWER_OK)
        status = outfile_write(&f, header, used);
    if (status == SOWER_OK)
        status = outfile_write(&f, data, numel * sizeof(float));
    if (status == SOWER_OK)
        status = outfile_commit(&f);
    outfile_free(&f);
    SOWER_TRY(status);
    return SOWER_OK;
}

int npy_read_f32(const char *path, float **data, int64_t *shape, int *ndim)
{
    unsigned char *bytes = NULL;
    size_t n = 0;
    *data = NULL;
    SOWER_TRY(file_read_all(path, NPY_MAX_FILE, &bytes, &n));
    int status = SOWER_OK;
    if (n < 10 || memcmp(bytes, "\x93NUMPY", 6) != 0 || bytes[6] != 1) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: not a version 1 .npy file", path);
        goto done;
    }
    size_t hlen = bytes[8] | ((size_t)bytes[9] << 8);
    if (10 + hlen > n) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: truncated .npy header", path);
        goto done;
    }
    char header[65536 + 1];
    memcpy(header, bytes + 10, hlen);
    header[hlen] = '\0';
    if (!strstr(header, "'descr': '<f4'") || !strstr(header, "'fortran_order': False")) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: expected float32 little-endian C-order data", path);
        goto done;
    }
    const char *p = strstr(header, "'shape': (");
    if (!p) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: no shape in the .npy header", path);
        goto done;
    }
    p += strlen("'shape': (");
    *ndim = 0;
    size_t numel = 1;
    while (*p && *p != ')') {
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 0 || *ndim == NPY_MAX_DIMS) {
            status = SOWER_FAIL(SOWER_EINPUT, "%s: bad shape in the .npy header", path);
            goto done;
        }
        shape[(*ndim)++] = d;
        numel *= (size_t)d;
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
    }
    if (10 + hlen + numel * sizeof(float) != n) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: %zu data bytes, the shape needs %zu", path, n - 10 - hlen,
                            numel * sizeof(float));
        goto done;
    }
    *data = malloc(numel * sizeof(float) + 1);
    if (!*data) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    memcpy(*data, bytes + 10 + hlen, numel * sizeof(float));
done:
    free(bytes);
    return status;
}
