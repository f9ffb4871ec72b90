/* safetensors_write.c: see safetensors_write.h. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors_write.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int by_name(const void *a, const void *b)
{
    return strcmp(((const StWriteTensor *)a)->name, ((const StWriteTensor *)b)->name);
}

static const char *dtype_text(StDtype d)
{
    return d == ST_F16 ? "F16" : d == ST_BF16 ? "BF16" : "F32";
}

/* {"__metadata__": {"format": "pt"}, NAME: {"dtype", "shape", "data_offsets"}, ...}, unformatted. Items
 * are attached as they are made (cJSON_Add*ToObject), so a failure leaks nothing: root holds all. */
static char *header_json(const StWriteTensor *t, int n)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    int ok = meta && cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t at = 0;
    for (int i = 0; ok && i < n; i++) {
        cJSON *entry = cJSON_AddObjectToObject(root, t[i].name);
        cJSON *shape = entry ? cJSON_AddArrayToObject(entry, "shape") : NULL;
        cJSON *offsets = entry ? cJSON_AddArrayToObject(entry, "data_offsets") : NULL;
        ok = shape && offsets && cJSON_AddStringToObject(entry, "dtype", dtype_text(t[i].dtype));
        for (int d = 0; ok && d < t[i].ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        ok = ok && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)at)) &&
             cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(at + t[i].n_bytes)));
        at += t[i].n_bytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

static int write_all(int fd, const void *data, uint64_t bytes)
{
    const unsigned char *p = data;
    while (bytes) {
        const size_t chunk = bytes > (1u << 30) ? (1u << 30) : (size_t)bytes;
        ssize_t w = write(fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, bytes -= (uint64_t)w;
    }
    return 0;
}

int safetensors_write(const char *path, StWriteTensor *tensors, int n)
{
    qsort(tensors, (size_t)n, sizeof *tensors, by_name);
    for (int i = 1; i < n; i++)
        if (strcmp(tensors[i - 1].name, tensors[i].name) == 0)
            return SOWER_FAIL(SOWER_EINPUT, "%s: two tensors would be named '%s' (an input holding a tensor under two "
                                            "names?)", path, tensors[i].name);
    char *header = header_json(tensors, n);
    if (!header) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the header of '%s'", path);
    /* The data section starts 8-byte aligned: the header is padded with spaces, as the format allows. */
    const size_t len = strlen(header), padded = (len + 7) / 8 * 8;
    unsigned char size[8];
    for (int i = 0; i < 8; i++)
        size[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        free(header);
        return SOWER_FAIL(SOWER_EIO, "cannot create '%s': %s", path, strerror(errno));
    }
    static const char spaces[8] = "        ";
    int failed = write_all(fd, size, 8) || write_all(fd, header, len) || write_all(fd, spaces, padded - len);
    for (int i = 0; i < n && !failed; i++)
        failed = write_all(fd, tensors[i].bytes, tensors[i].n_bytes);
    const int err = errno;
    failed = close(fd) != 0 || failed;
    free(header);
    if (failed) return SOWER_FAIL(SOWER_EIO, "cannot write '%s': %s", path, strerror(err ? err : errno));
    return SOWER_OK;
}
