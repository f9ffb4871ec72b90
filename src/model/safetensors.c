/* safetensors.c: map, validate and index a .safetensors file. */
#define _DEFAULT_SOURCE /* madvise: glibc's posix_madvise ignores POSIX_MADV_DONTNEED */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"
#include "json_keys.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "mapped_file.h"
#include "regular_file.h"

enum { ST_MAX_TENSORS = 1 << 20 };

typedef struct {
    uint64_t begin, end; /* byte offsets into the data section */
    int index;           /* into f->tensors */
} Extent;

static int extent_cmp(const void *a, const void *b)
{
    const Extent *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int tensor_name_cmp(const void *a, const void *b)
{
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact (a power-of-two scaling of a small integer) */
        const float magnitude = (float)mant * 0x1p-24f;
        memcpy(&bits, &magnitude, sizeof bits);
    } else if (exp == 31) {
        const float magnitude = mant ? NAN : INFINITY;
        memcpy(&bits, &magnitude, sizeof bits);
    } else { /* 2^(exp - 15) * (1 + mant / 1024): float's exponent exp - 15 + 127, mantissa mant << 13 */
        bits = (exp + 112u) << 23 | mant << 13;
    }
    bits |= sign;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* Integer and boolean tensors are indexed (so the exact-coverage check sees their bytes) but never
 * converted: data stays NULL and a model that binds one is refused (weight_bind.c). Real checkpoints
 * carry such buffers, e.g. CLIP's int64 text_model.embeddings.position_ids in SD 1.5. */
static const struct {
    const char *name;
    int bytes;
} integer_dtypes[] = {{"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U64", 8}, {"U32", 4},
                      {"U16", 2}, {"U8", 1}, {"BOOL", 1}};

static int parse_dtype(const StFile *f, const char *name, const cJSON *dtype, StDtype *out, int *elem_bytes)
{
    if (!cJSON_IsString(dtype))
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': 'dtype' must be a string", f->path, name);
    if (strcmp(dtype->valuestring, "F32") == 0) {
        *out = ST_F32, *elem_bytes = 4;
        return SOWER_OK;
    }
    if (strcmp(dtype->valuestring, "F16") == 0) {
        *out = ST_F16, *elem_bytes = 2;
        return SOWER_OK;
    }
    if (strcmp(dtype->valuestring, "BF16") == 0) {
        *out = ST_BF16, *elem_bytes = 2;
        return SOWER_OK;
    }
    for (size_t i = 0; i < sizeof integer_dtypes / sizeof integer_dtypes[0]; i++)
        if (strcmp(dtype->valuestring, integer_dtypes[i].name) == 0) {
            *out = ST_INTEGER, *elem_bytes = integer_dtypes[i].bytes;
            return SOWER_OK;
        }
    return SOWER_FAIL(SOWER_EMODEL,
                      "%s: tensor '%s': dtype %s is not supported (expected F32, F16 or BF16 weights, or an integer "
                      "buffer)", f->path, name, dtype->valuestring);
}

const char *safetensors_dtype_name(StDtype dtype)
{
    switch (dtype) {
    case ST_F32: return "F32";
    case ST_F16: return "F16";
    case ST_BF16: return "BF16";
    case ST_INTEGER: return "an integer dtype";
    }
    return "?";
}

static int parse_offset(const StFile *f, const char *name, const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': data_offsets must be non-negative integers", f->path, name);
    *out = (uint64_t)v->valuedouble;
    return SOWER_OK;
}

/* Fills t (shape, dtype) and its extent from one header entry. */
static int parse_entry(const StFile *f, const cJSON *entry, StTensor *t, Extent *ext, int *elem_bytes)
{
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': expected an object with dtype, shape, data_offsets",
                          f->path, name);
    const cJSON *key;
    cJSON_ArrayForEach(key, entry)
    {
        if (strcmp(key->string, "dtype") && strcmp(key->string, "shape") && strcmp(key->string, "data_offsets"))
            return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': unexpected key '%s'", f->path, name, key->string);
    }
    SOWER_TRY(parse_dtype(f, name, cJSON_GetObjectItemCaseSensitive(entry, "dtype"), &t->file_dtype, elem_bytes));
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > ST_MAX_DIMS)
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': 'shape' must be an array of at most %d sizes", f->path,
                          name, ST_MAX_DIMS);
    t->ndim = 0;
    t->numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape)
    {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble != floor(d->valuedouble) ||
            d->valuedouble > (double)(1ll << 40))
            return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': shape entries must be non-negative integers", f->path,
                              name);
        t->shape[t->ndim++] = (int64_t)d->valuedouble;
        if (t->shape[t->ndim - 1] && t->numel > (1ll << 40) / t->shape[t->ndim - 1])
            return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': too many elements", f->path, name);
        t->numel *= t->shape[t->ndim - 1];
    }
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': 'data_offsets' must be [begin, end]", f->path, name);
    SOWER_TRY(parse_offset(f, name, cJSON_GetArrayItem(offsets, 0), &ext->begin));
    SOWER_TRY(parse_offset(f, name, cJSON_GetArrayItem(offsets, 1), &ext->end));
    if (ext->end < ext->begin)
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': data_offsets end %llu is before begin %llu", f->path, name,
                          (unsigned long long)ext->end, (unsigned long long)ext->begin);
    if (ext->end - ext->begin != (uint64_t)t->numel * (uint64_t)*elem_bytes)
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': %llu data bytes, but its shape and dtype need %llu", f->path,
                          name, (unsigned long long)(ext->end - ext->begin),
                          (unsigned long long)t->numel * (unsigned long long)*elem_bytes);
    return SOWER_OK;
}

static int check_metadata(const StFile *f, const cJSON *meta)
{
    if (!cJSON_IsObject(meta))
        return SOWER_FAIL(SOWER_EMODEL, "%s: '__metadata__' must be an object of strings", f->path);
    const cJSON *v;
    cJSON_ArrayForEach(v, meta)
    {
        if (!cJSON_IsString(v))
            return SOWER_FAIL(SOWER_EMODEL, "%s: '__metadata__' value '%s' must be a string", f->path, v->string);
    }
    return SOWER_OK;
}

/* Validates the header, fills f->tensors; data points into the mapping or into f->converted. */
/* Whether a tensor can be used where it lies in the mapping: F32 at an address aligned for float.
 * The data section starts 8 + header length bytes into the (page-aligned) mapping, and nothing
 * obliges a writer to pad the header to a multiple of 4, so its offsets alone do not say. */
static int maps_as_float(const StTensor *t, const unsigned char *src)
{
    return t->file_dtype == ST_F32 && (uintptr_t)src % _Alignof(float) == 0;
}

/* Gives back the whole pages inside [p, p + bytes) of a read-only file mapping (they refault from the
 * file if read again). */
static void release_range(const void *p, uint64_t bytes)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin = ((uintptr_t)p + page - 1) / page * page, end = ((uintptr_t)p + bytes) / page * page;
    if (end > begin)
        madvise((void *)begin, end - begin, MADV_DONTNEED);
}

/* convert 0: no tensor is converted; else those skip() does not name (skip NULL: every one). */
static int index_tensors(StFile *f, const cJSON *header, const unsigned char *data, uint64_t data_bytes, int convert,
                         int (*skip)(const char *name))
{
    int n = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, header)
    {
        if (strcmp(entry->string, "__metadata__") == 0)
            SOWER_TRY(check_metadata(f, entry));
        else
            n++;
    }
    if (n > ST_MAX_TENSORS)
        return SOWER_FAIL(SOWER_EMODEL, "%s: %d tensors, more than the limit of %d", f->path, n, ST_MAX_TENSORS);
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    Extent *ext = calloc((size_t)n + 1, sizeof *ext);
    int *elem = calloc((size_t)n + 1, sizeof *elem);
    int status = SOWER_OK;
    if (!f->tensors || !ext || !elem) {
        status = SOWER_FAIL(SOWER_ENOMEM, "%s: out of memory for the tensor index", f->path);
        goto done;
    }
    int k = 0;
    int64_t converted_numel = 0, in_place = 0;
    cJSON_ArrayForEach(entry, header)
    {
        if (strcmp(entry->string, "__metadata__") == 0)
            continue;
        StTensor *t = &f->tensors[k];
        t->name = strdup(entry->string);
        f->n_tensors = k + 1;
        if (!t->name) {
            status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
            goto done;
        }
        SOWER_TRY_GOTO(parse_entry(f, entry, t, &ext[k], &elem[k]), status, done);
        if (ext[k].end > data_bytes) {
            status = SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': data_offsets end %llu is past the %llu data bytes",
                                f->path, t->name, (unsigned long long)ext[k].end, (unsigned long long)data_bytes);
            goto done;
        }
        t->stored = data + ext[k].begin, t->stored_bytes = ext[k].end - ext[k].begin;
        const int wanted = convert && !(skip && skip(t->name)) && t->file_dtype != ST_INTEGER;
        if (wanted && !maps_as_float(t, data + ext[k].begin)) converted_numel += t->numel;
        if (wanted && maps_as_float(t, data + ext[k].begin)) in_place++;
        ext[k].index = k;
        k++;
    }
    /* The data section must be covered exactly: sorted extents touch, no overlap, no hole. */
    qsort(ext, (size_t)n, sizeof *ext, extent_cmp);
    uint64_t expect = 0;
    for (int i = 0; i < n; i++) {
        const char *name = f->tensors[ext[i].index].name;
        if (ext[i].begin < expect) {
            status = SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s' overlaps another tensor's bytes", f->path, name);
            goto done;
        }
        if (ext[i].begin > expect) {
            status = SOWER_FAIL(SOWER_EMODEL, "%s: %llu unused bytes before tensor '%s' (holes are not allowed)",
                                f->path, (unsigned long long)(ext[i].begin - expect), name);
            goto done;
        }
        expect = ext[i].end;
    }
    if (expect != data_bytes) {
        status = SOWER_FAIL(SOWER_EMODEL, "%s: %llu bytes after the last tensor (expected none)", f->path,
                            (unsigned long long)(data_bytes - expect));
        goto done;
    }
    if (converted_numel) {
        /* 2 MB-aligned and advised as huge pages: a 3 GB table faults in 2 MB at a time, not 4 kB (on a
         * VM, page faults cost more than the conversion). The advice changes no value. */
        enum { HUGE_PAGE = 2 << 20 };
        const size_t bytes = ((size_t)converted_numel * sizeof(float) + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        f->converted = aligned_alloc(HUGE_PAGE, bytes);
        if (f->converted)
            madvise(f->converted, bytes, MADV_HUGEPAGE);
        if (!f->converted) {
            status = SOWER_FAIL(SOWER_ENOMEM, "%s: out of memory converting weights to float32", f->path);
            goto done;
        }
    }
    float *next = f->converted;
    for (int i = 0; i < n && convert; i++) {
        StTensor *t = &f->tensors[ext[i].index];
        const unsigned char *src = data + ext[i].begin;
        if (skip && skip(t->name)) continue; /* data stays NULL: never read but by the digest */
        if (maps_as_float(t, src)) {
            t->data = (const float *)(const void *)src;
            continue;
        }
        if (t->numel == 0 || t->file_dtype == ST_INTEGER) /* data stays NULL: nothing to convert */
            continue;
        for (int64_t j = 0; j < t->numel; j++) {
            if (t->file_dtype == ST_F32) {
                memcpy(&next[j], src + 4 * j, 4);
            } else {
                uint16_t h = (uint16_t)(src[2 * j] | (src[2 * j + 1] << 8));
                next[j] = t->file_dtype == ST_F16 ? half_to_float(h) : bf16_to_float(h);
            }
        }
        t->data = next;
        next += t->numel;
        if (!in_place) /* the source bytes are read no more until the digest: not kept in memory */
            release_range(src, ext[i].end - ext[i].begin);
    }
    qsort(f->tensors, (size_t)n, sizeof *f->tensors, tensor_name_cmp);
    for (int i = 1; i < n; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            status = SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s' appears twice in the header", f->path, f->tensors[i].name);
            goto done;
        }
done:
    free(ext);
    free(elem);
    return status;
}

static int open_file(StFile *f, const char *path, int convert, int (*skip)(const char *name))
{
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int fd = regular_file_open(path);
    if (fd < 0)
        return SOWER_FAIL(SOWER_EMODEL, "cannot open weights '%s': %s", path, regular_file_why(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return SOWER_FAIL(SOWER_EIO, "cannot open weights '%s': %s", path, strerror(err));
    }
    if (st.st_size < 8) {
        close(fd);
        return SOWER_FAIL(SOWER_EMODEL, "%s: %lld bytes is too short for a safetensors file", path, (long long)st.st_size);
    }
    f->map_bytes = (size_t)st.st_size;
    f->map = mmap(NULL, f->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    const int map_errno = errno; /* before close(), which may set errno */
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        if (map_errno == ENOMEM) /* no address space for it (a ulimit -v, a cgroup): a runtime failure like malloc's */
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory mapping weights '%s' (%.1f MiB)", path,
                              (double)f->map_bytes / (1 << 20));
        return SOWER_FAIL(SOWER_EIO, "cannot map weights '%s': %s", path, strerror(map_errno));
    }
    mapped_file_register(path, f->map, f->map_bytes, &st); /* changed under the mapping: named, not a crash */
    const unsigned char *bytes = f->map;
    uint64_t header_bytes = 0;
    for (int i = 0; i < 8; i++)
        header_bytes |= (uint64_t)bytes[i] << (8 * i);
    if (header_bytes > ST_MAX_HEADER_BYTES)
        return SOWER_FAIL(SOWER_EMODEL, "%s: header length %llu exceeds the limit of %u bytes (not a safetensors file?)",
                          path, (unsigned long long)header_bytes, ST_MAX_HEADER_BYTES);
    if (header_bytes > f->map_bytes - 8)
        return SOWER_FAIL(SOWER_EMODEL, "%s: header length %llu runs past the end of the %zu-byte file", path,
                          (unsigned long long)header_bytes, f->map_bytes);
    const char *header_text = (const char *)bytes + 8, *header_end = NULL; /* (header_bytes,), not NUL-ended */
    if (memchr(header_text, '\0', (size_t)header_bytes) || json_has_nul_escape(header_text, (size_t)header_bytes))
        return SOWER_FAIL(SOWER_EMODEL, "%s: a NUL byte in the header (not a safetensors file?)", path);
    size_t bad = 0; /* the format's header is UTF-8 JSON (safetensors refuses other bytes): names are text */
    if (!utf8_valid(header_text, (size_t)header_bytes, &bad))
        return SOWER_FAIL(SOWER_EMODEL, "%s: invalid UTF-8 in the header at byte %zu (not a safetensors file?)", path,
                          (size_t)8 + bad);
    int ran_out;
    cJSON *header = json_parse(header_text, (size_t)header_bytes, &header_end, &ran_out);
    if (ran_out)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading the header of %s (%.1f MiB)", path,
                          (double)header_bytes / (1 << 20));
    if (!header || !cJSON_IsObject(header)) {
        cJSON_Delete(header);
        return SOWER_FAIL(SOWER_EMODEL, "%s: the header is not a JSON object", path);
    }
    /* The format pads the header with spaces and nothing else: text after the object is damage. */
    for (const char *c = header_end; c < header_text + header_bytes; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r') {
            cJSON_Delete(header);
            return SOWER_FAIL(SOWER_EMODEL, "%s: text after the header's JSON object, at byte %zu", path,
                              (size_t)(c - (const char *)bytes));
        }
    int status = index_tensors(f, header, bytes + 8 + header_bytes, f->map_bytes - 8 - header_bytes, convert, skip);
    cJSON_Delete(header);
    SOWER_TRY(status);
    return SOWER_OK;
}

int safetensors_check_finite(const StFile *f)
{
    enum { CHUNK = 4096 }; /* counted a chunk at a time (vectorised), searched only where one is bad */
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
        if (!t->data) continue;
        for (int64_t at = 0; at < t->numel; at += CHUNK) {
            const int64_t n = t->numel - at < CHUNK ? t->numel - at : CHUNK;
            const float *v = t->data + at; /* (n,) */
            int bad = 0;
            for (int64_t j = 0; j < n; j++) bad += !(fabsf(v[j]) <= FLT_MAX); /* NaN or +-Inf */
            if (!bad) continue;
            int64_t j = 0;
            while (fabsf(v[j]) <= FLT_MAX) j++;
            return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s' holds %s at index %lld: the model would render NaN",
                              f->path, t->name, isnan(v[j]) ? "NaN" : "an infinity", (long long)(at + j));
        }
    }
    return SOWER_OK;
}

int safetensors_open(StFile *f, const char *path)
{
    SOWER_TRY(open_file(f, path, 1, NULL));
    return SOWER_OK;
}

int safetensors_open_except(StFile *f, const char *path, int (*skip)(const char *name))
{
    SOWER_TRY(open_file(f, path, 1, skip));
    return SOWER_OK;
}

int safetensors_open_stored(StFile *f, const char *path)
{
    SOWER_TRY(open_file(f, path, 0, NULL));
    return SOWER_OK;
}

const StTensor *safetensors_find(const StFile *f, const char *name)
{
    StTensor key = {.name = (char *)name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, tensor_name_cmp);
}

static int any_in_place(const StFile *f)
{
    const unsigned char *begin = f->map, *end = begin + f->map_bytes;
    for (int i = 0; i < f->n_tensors; i++) {
        const unsigned char *d = (const unsigned char *)f->tensors[i].data;
        if (d && d >= begin && d < end)
            return 1; /* a tensor used in place: the pages are the weights */
    }
    return 0;
}

void safetensors_release_pages(StFile *f)
{
    if (f->map && !any_in_place(f))
        madvise(f->map, f->map_bytes, MADV_DONTNEED);
}

int safetensors_digest(StFile *f, unsigned char *sha256)
{
    enum { CHUNK = 64 << 20 };
    const int release = !any_in_place(f);
    Digest d = {0};
    SOWER_TRY(digest_init(&d));
    int status = SOWER_OK;
    for (size_t at = 0; at < f->map_bytes && status == SOWER_OK; at += CHUNK) {
        size_t bytes = f->map_bytes - at < CHUNK ? f->map_bytes - at : CHUNK;
        status = digest_update(&d, (const unsigned char *)f->map + at, bytes);
        if (release)
            release_range((const unsigned char *)f->map + at, bytes);
    }
    if (status == SOWER_OK)
        status = digest_final(&d, sha256);
    digest_free(&d);
    return status;
}

void safetensors_close(StFile *f)
{
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->converted);
    if (f->map) {
        mapped_file_unregister(f->map);
        munmap(f->map, f->map_bytes);
    }
    free(f->path);
    memset(f, 0, sizeof *f);
}
