/* h5file.c: see h5file.h. */
#define _POSIX_C_SOURCE 200809L
#include "h5file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "h5_layout.h"

void h5file_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static herr_t find_allocation_failure(unsigned n, const H5E_error2_t *e, void *found)
{
    (void)n;
    if (e->maj_num == H5E_RESOURCE || e->min_num == H5E_CANTALLOC || e->min_num == H5E_NOSPACE) *(int *)found = 1;
    return 0;
}

int h5file_room_to_open(const char *path)
{
    void *room = malloc((size_t)4 << 20); /* (4 MiB,) never touched: address space, as a cap counts it */
    if (!room) return SOWER_FAIL(SOWER_ENOMEM, "out of memory opening %s (HDF5 takes a few MiB to open a file)", path);
    free(room);
    return SOWER_OK;
}

int h5file_ran_out(void)
{
    int found = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_allocation_failure, &found);
    return found;
}

char *h5file_string_attr(hid_t obj, const char *key)
{
    hid_t attr = H5Aexists(obj, key) > 0 ? H5Aopen(obj, key, H5P_DEFAULT) : -1;
    if (attr < 0) return NULL;
    /* One string only: H5Aread writes every element of an array attribute, past a buffer sized for one. */
    hid_t space = H5Aget_space(attr);
    const int scalar = space >= 0 && (H5Sget_simple_extent_type(space) == H5S_SCALAR ||
                                      (H5Sget_simple_extent_type(space) == H5S_SIMPLE && H5Sget_simple_extent_npoints(space) == 1));
    if (space >= 0) H5Sclose(space);
    hid_t type = scalar ? H5Aget_type(attr) : -1;
    char *text = NULL;
    if (type < 0) {
        /* not a single value: no text */
    } else if (H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) > 0) { /* as h5py writes str */
        char *vlen = NULL;
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type)); /* h5py's are UTF-8: HDF5 does not convert between sets */
        if (H5Aread(attr, mem, &vlen) >= 0 && vlen) text = strdup(vlen);
        if (vlen) H5free_memory(vlen);
        H5Tclose(mem);
    } else if (H5Tget_class(type) == H5T_STRING) { /* as sower writes it: fixed length */
        size_t n = H5Tget_size(type);
        text = calloc(n + 1, 1);
        int bad = text && H5Aread(attr, type, text) < 0;
        for (size_t i = text ? strlen(text) : n; !bad && i < n; i++) bad = text[i] != '\0'; /* text after a NUL */
        if (bad) {
            free(text);
            text = NULL;
        }
    }
    if (type >= 0) H5Tclose(type);
    H5Aclose(attr);
    return text;
}

int h5file_read_string_attr(hid_t obj, const char *key, char *out, size_t size)
{
    char *text = h5file_string_attr(obj, key);
    int status = text && strlen(text) < size ? 0 : -1;
    if (status == 0) snprintf(out, size, "%s", text);
    free(text);
    return status;
}

int h5file_check_format(hid_t file, const char *what)
{
    char *format = h5file_string_attr(file, LAYOUT_ATTR_FORMAT);
    char *version = h5file_string_attr(file, LAYOUT_ATTR_FORMAT_VERSION);
    int status = SOWER_OK;
    if (!format)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: not a sower output (%s attribute '%s' missing)", what,
                            LAYOUT_ATTR_FORMAT, LAYOUT_FORMAT_NAME);
    else if (strcmp(format, LAYOUT_FORMAT_NAME) != 0)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: not a sower output (%s attribute '%s', expected '%s')", what,
                            LAYOUT_ATTR_FORMAT, format, LAYOUT_FORMAT_NAME);
    else if (!version || strcmp(version, LAYOUT_FORMAT_VERSION) != 0)
        status = SOWER_FAIL(SOWER_EINPUT, "%s: %s %s%s%s: this sower reads version %s", what,
                            LAYOUT_ATTR_FORMAT_VERSION, version ? "'" : "",
                            version ? version : "missing (or not a string)", version ? "'" : "",
                            LAYOUT_FORMAT_VERSION);
    free(format);
    free(version);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* "(a, b, ...)" of n dims into out. */
static void dims_text(char *out, size_t size, int n, const hsize_t *dims)
{
    size_t used = (size_t)snprintf(out, size, "(");
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, i ? ", %llu" : "%llu", (unsigned long long)dims[i]);
    if (used < size) snprintf(out + used, size - used, n == 1 ? ",)" : ")");
}

/* Dataset `name` must exist with exactly `rank` dims equal to dims, of the type class `cls` with
 * elements of `bytes` bytes (integers unsigned): what sower writes. Readers size their buffers from
 * the job, so a file that says otherwise is refused before anything is read from it. */
static int check_dataset(hid_t file, const char *what, const char *name, H5T_class_t cls, size_t bytes,
                         int rank, const hsize_t *dims, const char *type_name)
{
    H5L_info_t link;
    const int linked = H5Lexists(file, name, H5P_DEFAULT) > 0 && H5Lget_info(file, name, &link, H5P_DEFAULT) >= 0;
    /* The rows live in this file: an external link, or storage in other files (external raw data, a virtual
     * dataset), would have --resume write into files nobody named and a reader take their bytes as these. */
    if (linked && link.type != H5L_TYPE_HARD && link.type != H5L_TYPE_SOFT)
        return SOWER_FAIL(SOWER_EINPUT, "%s: /%s is a link to another file (sower reads and writes only its own file's "
                                        "datasets): a damaged or altered file", what, name);
    hid_t ds = linked ? H5Dopen2(file, name, H5P_DEFAULT) : -1;
    if (ds < 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: no /%s dataset (not a sower output, or a damaged one)", what,
                          name);
    hid_t dcpl = H5Dget_create_plist(ds);
    const int elsewhere = dcpl < 0 || H5Pget_layout(dcpl) == H5D_VIRTUAL || H5Pget_external_count(dcpl) != 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (elsewhere) {
        H5Dclose(ds);
        return SOWER_FAIL(SOWER_EINPUT, "%s: /%s keeps its data in other files (external or virtual storage; sower "
                                        "reads and writes only its own file's): a damaged or altered file", what, name);
    }
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    hsize_t found[H5S_MAX_RANK];
    int found_rank = H5Sget_simple_extent_ndims(space);
    if (found_rank < 0 || found_rank > H5S_MAX_RANK ||
        H5Sget_simple_extent_dims(space, found, NULL) != found_rank)
        found_rank = -1;
    int shape_ok = found_rank == rank;
    for (int i = 0; shape_ok && i < rank; i++)
        shape_ok = found[i] == dims[i];
    int type_ok = H5Tget_class(type) == cls && H5Tget_size(type) == bytes &&
                  (cls != H5T_INTEGER || H5Tget_sign(type) == H5T_SGN_NONE);
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(ds);
    char want[128], have[128];
    dims_text(want, sizeof want, rank, dims);
    if (!shape_ok) {
        if (found_rank >= 0)
            dims_text(have, sizeof have, found_rank, found);
        else
            snprintf(have, sizeof have, "unreadable");
        return SOWER_FAIL(SOWER_EINPUT, "%s: /%s is %s, expected %s", what, name, have, want);
    }
    if (!type_ok) return SOWER_FAIL(SOWER_EINPUT, "%s: /%s is not %s", what, name, type_name);
    return SOWER_OK;
}

int h5file_check_layout(hid_t file, const char *what, uint64_t rows, int c, int h, int w)
{
    const hsize_t latents[4] = {rows, (hsize_t)c, (hsize_t)h, (hsize_t)w}, digest[2] = {rows, DIGEST_BYTES};
    SOWER_TRY(check_dataset(file, what, LAYOUT_LATENTS, H5T_FLOAT, 4, 4, latents, "float32"));
    SOWER_TRY(check_dataset(file, what, LAYOUT_SEEDS, H5T_INTEGER, 8, 1, latents, "uint64"));
    SOWER_TRY(check_dataset(file, what, LAYOUT_DIGEST, H5T_INTEGER, 1, 2, digest, "uint8"));
    SOWER_TRY(check_dataset(file, what, LAYOUT_DONE, H5T_INTEGER, 1, 1, latents, "uint8"));
    return SOWER_OK;
}

int h5file_check_images(hid_t file, const char *what, uint64_t rows, int has, int c, int h, int w)
{
    const int present = H5Lexists(file, LAYOUT_IMAGES, H5P_DEFAULT) > 0,
              digests = H5Lexists(file, LAYOUT_IMAGE_DIGEST, H5P_DEFAULT) > 0;
    if (!has) {
        if (present || digests)
            return SOWER_FAIL(SOWER_EINPUT, "%s: holds /%s, but its job does not decode (pipeline.decode)", what,
                              present ? LAYOUT_IMAGES : LAYOUT_IMAGE_DIGEST);
        return SOWER_OK;
    }
    const hsize_t images[4] = {rows, (hsize_t)c, (hsize_t)h, (hsize_t)w}, digest[2] = {rows, DIGEST_BYTES};
    SOWER_TRY(check_dataset(file, what, LAYOUT_IMAGES, H5T_INTEGER, 1, 4, images, "uint8"));
    SOWER_TRY(check_dataset(file, what, LAYOUT_IMAGE_DIGEST, H5T_INTEGER, 1, 2, digest, "uint8"));
    return SOWER_OK;
}

herr_t h5file_transfer_rows(hid_t ds, hid_t memtype, int rank, const hsize_t *row_dims, uint64_t row0,
                            uint64_t n, void *data, int write)
{
    hid_t fspace = H5Dget_space(ds);
    hsize_t start[4] = {row0, 0, 0, 0}, count[4];
    for (int i = 0; i < rank; i++)
        count[i] = i == 0 ? n : row_dims[i];
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mspace = H5Screate_simple(rank, count, NULL);
    herr_t status = write ? H5Dwrite(ds, memtype, mspace, fspace, H5P_DEFAULT, data)
                          : H5Dread(ds, memtype, mspace, fspace, H5P_DEFAULT, data);
    H5Sclose(mspace);
    H5Sclose(fspace);
    return status;
}

/* Reads rows [r0, r0 + n) of dataset `name` of file into data. */
static herr_t read_rows(hid_t file, const char *name, hid_t memtype, int rank, const hsize_t *row_dims,
                        uint64_t r0, uint64_t n, void *data)
{
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    herr_t status = h5file_transfer_rows(ds, memtype, rank, row_dims, r0, n, data, 0);
    H5Dclose(ds);
    return status;
}

int h5file_read_block(hid_t file, const char *what, uint64_t r0, uint64_t n, int c, int h, int w,
                      float *latents, uint64_t *seeds, unsigned char *digests, uint8_t *done)
{
    const hsize_t ldims[4] = {0, (hsize_t)c, (hsize_t)h, (hsize_t)w}, ddims[2] = {0, DIGEST_BYTES},
                  one[1] = {0};
    if ((latents && read_rows(file, LAYOUT_LATENTS, H5T_NATIVE_FLOAT, 4, ldims, r0, n, latents) < 0) ||
        (seeds && read_rows(file, LAYOUT_SEEDS, H5T_NATIVE_UINT64, 1, one, r0, n, seeds) < 0) ||
        (digests && read_rows(file, LAYOUT_DIGEST, H5T_NATIVE_UINT8, 2, ddims, r0, n, digests) < 0) ||
        (done && read_rows(file, LAYOUT_DONE, H5T_NATIVE_UINT8, 1, one, r0, n, done) < 0))
        return h5file_ran_out() ? SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", what)
                                : SOWER_FAIL(SOWER_EINPUT, "%s: cannot read rows %llu..%llu (a damaged file?)", what,
                                             (unsigned long long)r0, (unsigned long long)(r0 + n - 1));
    return SOWER_OK;
}

int h5file_read_images(hid_t file, const char *what, uint64_t r0, uint64_t n, int c, int h, int w,
                       unsigned char *images, unsigned char *digests)
{
    const hsize_t idims[4] = {0, (hsize_t)c, (hsize_t)h, (hsize_t)w}, ddims[2] = {0, DIGEST_BYTES};
    if ((images && read_rows(file, LAYOUT_IMAGES, H5T_NATIVE_UINT8, 4, idims, r0, n, images) < 0) ||
        (digests && read_rows(file, LAYOUT_IMAGE_DIGEST, H5T_NATIVE_UINT8, 2, ddims, r0, n, digests) < 0))
        return h5file_ran_out() ? SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", what)
                                : SOWER_FAIL(SOWER_EINPUT, "%s: cannot read the images of rows %llu..%llu (a damaged file?)",
                                             what, (unsigned long long)r0, (unsigned long long)(r0 + n - 1));
    return SOWER_OK;
}

int h5file_count_not_done(hid_t file, const char *what, uint64_t rows, uint64_t *not_done)
{
    enum { BLOCK = 1 << 20 };
    uint8_t *done = malloc(BLOCK); /* (BLOCK,) */
    if (!done) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int status = SOWER_OK;
    *not_done = 0;
    for (uint64_t r0 = 0; r0 < rows && status == SOWER_OK; r0 += BLOCK) {
        const uint64_t n = rows - r0 < BLOCK ? rows - r0 : BLOCK;
        status = h5file_read_block(file, what, r0, n, 0, 0, 0, NULL, NULL, NULL, done);
        for (uint64_t i = 0; i < n && status == SOWER_OK; i++)
            *not_done += done[i] != 1;
    }
    free(done);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* The length of /verify/NAME when it is a vector of unsigned integers of `bytes` bytes, else -1. */
static long long verify_vector_length(hid_t file, const char *name, size_t bytes)
{
    char path[64];
    snprintf(path, sizeof path, "%s/%s", LAYOUT_VERIFY, name);
    if (H5Lexists(file, path, H5P_DEFAULT) <= 0) return -1;
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT), space = ds >= 0 ? H5Dget_space(ds) : -1, type = ds >= 0 ? H5Dget_type(ds) : -1;
    hsize_t n = 0;
    const int ok = space >= 0 && type >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
                   H5Sget_simple_extent_dims(space, &n, NULL) == 1 && H5Tget_class(type) == H5T_INTEGER &&
                   H5Tget_size(type) == bytes && H5Tget_sign(type) == H5T_SGN_NONE;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    return ok ? (long long)n : -1;
}

int h5file_count_verify_mismatches(hid_t file, const char *what, uint64_t rows, uint64_t *mismatched)
{
    *mismatched = 0;
    const char *name = LAYOUT_VERIFY "/" LAYOUT_VERIFY_MATCH;
    if (H5Lexists(file, LAYOUT_VERIFY, H5P_DEFAULT) <= 0 || H5Lexists(file, name, H5P_DEFAULT) <= 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s has no /%s, " LAYOUT_VERIFY_MISSING "; not taking it as finished, nor "
                                        "replacing it (pass --force)", what, name);
    /* as sower verify reads it (h5read_verify_table): match uint8, rows and seeds uint64, one per row re-rendered */
    const long long n = verify_vector_length(file, LAYOUT_VERIFY_MATCH, 1);
    if (n < 0 || (uint64_t)n > rows || verify_vector_length(file, LAYOUT_VERIFY_ROWS, 8) != n ||
        verify_vector_length(file, LAYOUT_VERIFY_SEEDS, 8) != n)
        return SOWER_FAIL(SOWER_EINPUT, "%s: /%s is not the record sower writes (match uint8, rows and seeds uint64, "
                                        "of one length, at most the file's %llu rows): a damaged file; not taking it "
                                        "as finished, nor replacing it (pass --force)",
                          what, LAYOUT_VERIFY, (unsigned long long)rows);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    uint8_t *match = malloc(n ? (size_t)n : 1); /* (n,) 1: the re-render's bits were equal */
    int ok = ds >= 0 && match && H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, match) >= 0;
    const int ran_out = !match || (!ok && h5file_ran_out());
    for (long long i = 0; ok && i < n; i++) *mismatched += match[i] != 1;
    free(match);
    if (ds >= 0) H5Dclose(ds);
    if (ran_out) return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", what);
    if (!ok) return SOWER_FAIL(SOWER_EINPUT, "%s: cannot read /%s (a damaged file?)", what, name);
    return SOWER_OK;
}

int h5file_read_texts(hid_t file, const char *what, const char *name, size_t max_n, char ***texts, size_t *n)
{
    *texts = NULL, *n = 0;
    hid_t ds = H5Lexists(file, name, H5P_DEFAULT) > 0 ? H5Dopen2(file, name, H5P_DEFAULT) : -1;
    hid_t stored = ds >= 0 ? H5Dget_type(ds) : -1, space = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t count = 0;
    int ok = stored >= 0 && space >= 0 && H5Tget_class(stored) == H5T_STRING && H5Tis_variable_str(stored) > 0 &&
             H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, &count, NULL) == 1 &&
             count <= max_n;
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    char **read = ok ? calloc(count ? count : 1, sizeof *read) : NULL; /* (count,) HDF5's strings */
    const int got = ok && read && H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, read) >= 0;
    int ran_out = ok && (!read || (!got && h5file_ran_out())); /* not the file's fault: exit 3, not "damaged" */
    char **copies = got ? calloc(count ? count : 1, sizeof *copies) : NULL; /* (count,) ours */
    ran_out = ran_out || (got && !copies);
    ok = copies != NULL;
    for (hsize_t i = 0; ok && i < count; i++) {
        ok = read[i] && (copies[i] = strdup(read[i])) != NULL;
        ran_out = ran_out || (read[i] && !copies[i]);
    }
    if (got) H5Dvlen_reclaim(type, space, H5P_DEFAULT, read);
    free(read);
    if (space >= 0) H5Sclose(space);
    if (stored >= 0) H5Tclose(stored);
    if (ds >= 0) H5Dclose(ds);
    H5Tclose(type);
    if (!ok) {
        for (hsize_t i = 0; copies && i < count; i++) free(copies[i]);
        free(copies);
        if (ran_out) return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading /%s of %s", name, what);
        return SOWER_FAIL(SOWER_EINPUT, "%s: /%s is not a list of at most %zu UTF-8 strings (not a sower output, or a damaged one)",
                          what, name, max_n);
    }
    *texts = copies, *n = (size_t)count;
    return SOWER_OK;
}
