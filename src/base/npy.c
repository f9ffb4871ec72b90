/* npy.c: minimal .npy (version 1.0) writer and reader for float32 arrays. */
#define _POSIX_C_SOURCE 200809L
#include "npy.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "regular_file.h"
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
    return npy_write_f32_opt(path, data, shape, ndim, 1);
}

int npy_write_f32_opt(const char *path, const float *data, const int64_t *shape, int ndim, int replace)
{
    unsigned char header[NPY_HEADER_MAX];
    size_t used = npy_header(header, "<f4", shape, ndim), numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= (size_t)shape[i];
    OutFile f;
    int status = replace ? outfile_open(&f, path) : outfile_open_new(&f, path);
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

/* The header dict, as numpy writes it ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
 * read strictly: each of the three keys once, nothing else, the shape a tuple of integers. */
typedef struct {
    const char *p; /* the next character of the dict text */
} DictText;

static void skip_blanks(DictText *d)
{
    while (*d->p == ' ') d->p++;
}

/* A quoted word ('descr' or "descr") into out (size bytes): 1, else 0. */
static int quoted(DictText *d, char *out, size_t size)
{
    const char q = *d->p;
    if (q != '\'' && q != '"') return 0;
    const char *close = strchr(d->p + 1, q);
    if (!close || (size_t)(close - d->p - 1) >= size) return 0;
    memcpy(out, d->p + 1, (size_t)(close - d->p - 1));
    out[close - d->p - 1] = '\0';
    d->p = close + 1;
    return 1;
}

/* "(D0, D1, ...)" with an optional trailing comma, into a->shape: 1, else 0. */
static int shape_tuple(DictText *d, NpyArray *a)
{
    if (*d->p != '(') return 0;
    d->p++;
    a->ndim = 0;
    a->numel = 1;
    for (skip_blanks(d); *d->p != ')'; skip_blanks(d)) {
        if (!isdigit((unsigned char)*d->p) || a->ndim == NPY_MAX_DIMS) return 0;
        errno = 0;
        char *end;
        const long long dim = strtoll(d->p, &end, 10);
        if (errno || (dim && a->numel > (SIZE_MAX / sizeof(float)) / (size_t)dim)) return 0;
        a->shape[a->ndim++] = dim;
        a->numel *= (size_t)dim;
        d->p = end;
        skip_blanks(d);
        if (*d->p == ',') d->p++;
        else if (*d->p != ')') return 0;
    }
    d->p++;
    return 1;
}

/* The header of bytes[0..n) (at least the whole header): float32, C order, its shape; data_offset set. */
static int parse_header(const char *path, const unsigned char *bytes, size_t n, NpyArray *a)
{
    if (n < 10 || memcmp(bytes, "\x93NUMPY", 6) != 0 || bytes[6] != 1)
        return SOWER_FAIL(SOWER_EINPUT, "%s: not a version 1 .npy file", path);
    const size_t hlen = bytes[8] | ((size_t)bytes[9] << 8);
    if (10 + hlen > n) return SOWER_FAIL(SOWER_EINPUT, "%s: truncated .npy header", path);
    char header[65536 + 1];
    memcpy(header, bytes + 10, hlen);
    header[hlen] = '\0';
    if (memchr(header, '\0', hlen)) return SOWER_FAIL(SOWER_EINPUT, "%s: a NUL byte in the .npy header", path);
    DictText d = {header};
    int seen[3] = {0}, c_order = 0, f32 = 0, ok = 1; /* descr, fortran_order, shape */
    skip_blanks(&d);
    ok = *d.p == '{';
    if (ok) d.p++;
    for (skip_blanks(&d); ok && *d.p != '}'; skip_blanks(&d)) {
        char key[32], value[32];
        ok = quoted(&d, key, sizeof key);
        skip_blanks(&d);
        ok = ok && *d.p == ':';
        if (ok) d.p++;
        skip_blanks(&d);
        if (ok && !strcmp(key, "descr") && !seen[0]++) {
            ok = quoted(&d, value, sizeof value);
            f32 = ok && !strcmp(value, "<f4");
        } else if (ok && !strcmp(key, "fortran_order") && !seen[1]++) {
            c_order = !strncmp(d.p, "False", 5);
            ok = c_order || !strncmp(d.p, "True", 4);
            if (ok) d.p += c_order ? 5 : 4;
        } else if (ok && !strcmp(key, "shape") && !seen[2]++) {
            ok = shape_tuple(&d, a);
        } else {
            ok = 0; /* another key, or one given twice */
        }
        skip_blanks(&d);
        if (ok && *d.p == ',') d.p++;
        else ok = ok && *d.p == '}';
    }
    if (ok) d.p++;
    while (ok && (*d.p == ' ' || *d.p == '\n')) d.p++;
    if (!ok || *d.p || !seen[0] || !seen[1] || !seen[2])
        return SOWER_FAIL(SOWER_EINPUT, "%s: the .npy header is not the dict numpy writes ('descr', 'fortran_order' "
                                        "and 'shape', each once)", path);
    if (!f32 || !c_order)
        return SOWER_FAIL(SOWER_EINPUT, "%s: expected float32 little-endian C-order data", path);
    a->data_offset = 10 + hlen;
    return SOWER_OK;
}

int npy_open_f32(const char *path, NpyArray *a)
{
    memset(a, 0, sizeof *a);
    a->fp = regular_file_fopen(path);
    if (!a->fp) return SOWER_FAIL(SOWER_EPATH, "%s: cannot open: %s", path, regular_file_why(errno));
    unsigned char head[10 + 65536];
    const size_t n = fread(head, 1, sizeof head, a->fp);
    int status = parse_header(path, head, n, a);
    struct stat st;
    if (status == SOWER_OK && (fstat(fileno(a->fp), &st) != 0 ||
                               (uint64_t)st.st_size != a->data_offset + (uint64_t)a->numel * sizeof(float)))
        status = SOWER_FAIL(SOWER_EINPUT, "%s: %lld data bytes, the shape needs %zu", path,
                            (long long)st.st_size - (long long)a->data_offset, a->numel * sizeof(float));
    if (status != SOWER_OK) npy_close(a);
    return status;
}

int npy_read_rows(const char *path, const NpyArray *a, uint64_t r0, uint64_t n, float *out)
{
    const size_t per = a->ndim ? a->numel / (a->shape[0] ? (size_t)a->shape[0] : 1) : 1;
    if (a->ndim == 0 || r0 + n > (uint64_t)a->shape[0])
        return SOWER_FAIL(SOWER_EINPUT, "%s: rows %llu..%llu are past its %lld", path, (unsigned long long)r0,
                          (unsigned long long)(r0 + n), a->ndim ? (long long)a->shape[0] : 0LL);
    if (fseeko(a->fp, (off_t)(a->data_offset + r0 * per * sizeof(float)), SEEK_SET) != 0 ||
        fread(out, sizeof(float), per * n, a->fp) != per * n)
        return SOWER_FAIL(SOWER_EIO, "%s: cannot read rows %llu..%llu", path, (unsigned long long)r0,
                          (unsigned long long)(r0 + n));
    return SOWER_OK;
}

void npy_close(NpyArray *a)
{
    if (a->fp) fclose(a->fp);
    memset(a, 0, sizeof *a);
}

int npy_read_f32(const char *path, float **data, int64_t *shape, int *ndim)
{
    unsigned char *bytes = NULL;
    size_t n = 0;
    *data = NULL;
    SOWER_TRY(file_read_all(path, NPY_MAX_FILE, &bytes, &n));
    NpyArray a = {0};
    int status = parse_header(path, bytes, n, &a);
    if (status == SOWER_OK && a.data_offset + a.numel * sizeof(float) != n)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: %zu data bytes, the shape needs %zu", path, n - a.data_offset,
                            a.numel * sizeof(float));
    if (status == SOWER_OK) {
        *data = malloc(a.numel * sizeof(float) + 1);
        if (!*data) status = SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", path);
    }
    if (status == SOWER_OK) {
        memcpy(*data, bytes + a.data_offset, a.numel * sizeof(float));
        memcpy(shape, a.shape, sizeof(int64_t) * (size_t)a.ndim);
        *ndim = a.ndim;
    }
    free(bytes);
    return status;
}
