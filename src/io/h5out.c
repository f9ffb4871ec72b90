/* h5out.c: the output file through the HDF5 C API (serial access from the writer rank). */
#define _POSIX_C_SOURCE 200809L
#include "h5out.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"

#define H5_TRY(call, what)                                                                      \
    do {                                                                                        \
        if ((call) < 0)                                                                         \
            return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to %s", o->partial_path, what);        \
    } while (0)

static hid_t no_times_dcpl(void)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    return dcpl;
}

static int string_attr(H5Out *o, hid_t obj, const char *key, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) > 0 ? strlen(value) : 1);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, key, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w = attr < 0 ? -1 : H5Awrite(attr, type, value[0] ? value : "");
    if (attr >= 0)
        H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    H5_TRY(w, "write an attribute");
    return SOWER_OK;
}

/* Unfiltered datasets get all their chunks at creation, so writing rows never changes the file's
 * metadata: a process killed mid-write leaves a file whose structure is the last flushed one. */
static hid_t make_dataset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                          const hsize_t *chunk, int gzip)
{
    hid_t dcpl = no_times_dcpl();
    H5Pset_chunk(dcpl, rank, chunk);
    if (gzip) {
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, 4);
    } else {
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    }
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Sclose(space);
    H5Pclose(dcpl);
    return ds;
}

static int write_rows(H5Out *o, hid_t ds, hid_t memtype, int rank, const hsize_t *row_dims, uint64_t row0,
                      uint64_t n, const void *data, const char *what);
static void close_all(H5Out *o);

/* Fills the shape and the two paths (PATH and PATH.partial) of a new or resumed output. */
static int start(H5Out *o, const char *path, uint64_t rows, int c, int h, int w)
{
    memset(o, 0, sizeof *o);
    o->rows = rows, o->c = c, o->h = h, o->w = w;
    o->path = strdup(path);
    o->partial_path = malloc(strlen(path) + 16);
    if (!o->path || !o->partial_path)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    sprintf(o->partial_path, "%s.partial", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported by sower, not printed by HDF5 */
    return SOWER_OK;
}

int h5out_create(H5Out *o, const char *path, uint64_t rows, int c, int h, int w, int chunk_rows, int gzip,
                 H5SeedOf seed_of, const void *seed_ctx, const H5Attr *attrs, int n_attrs)
{
    SOWER_TRY(start(o, path, rows, c, h, w));
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    o->file = H5Fcreate(o->partial_path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (o->file < 0)
        return SOWER_FAIL(SOWER_EPATH, "cannot create output '%s' (is the directory there and writable?)",
                          o->partial_path);
    hsize_t chunk = (hsize_t)chunk_rows < rows ? (hsize_t)chunk_rows : (rows ? rows : 1);
    hsize_t ldims[4] = {rows, (hsize_t)c, (hsize_t)h, (hsize_t)w}, lchunk[4] = {chunk, (hsize_t)c, (hsize_t)h, (hsize_t)w};
    hsize_t ddims[2] = {rows, 32}, dchunk[2] = {chunk, 32};
    o->latents = make_dataset(o->file, "latents", H5T_IEEE_F32LE, 4, ldims, lchunk, gzip);
    o->seeds = make_dataset(o->file, "seeds", H5T_STD_U64LE, 1, ldims, lchunk, gzip);
    o->digest = make_dataset(o->file, "digest", H5T_STD_U8LE, 2, ddims, dchunk, gzip);
    o->done = make_dataset(o->file, "done", H5T_STD_U8LE, 1, ldims, lchunk, 0);
    if (o->latents < 0 || o->seeds < 0 || o->digest < 0 || o->done < 0)
        return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create the datasets", o->partial_path);
    enum { SEED_BLOCK = 1 << 16 };
    uint64_t *block = malloc(sizeof *block * SEED_BLOCK); /* (SEED_BLOCK,) */
    if (!block)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int seeds_status = SOWER_OK;
    for (uint64_t r0 = 0; r0 < rows && seeds_status == SOWER_OK; r0 += SEED_BLOCK) {
        uint64_t n = rows - r0 < SEED_BLOCK ? rows - r0 : SEED_BLOCK;
        for (uint64_t i = 0; i < n; i++)
            block[i] = seed_of(seed_ctx, r0 + i);
        hsize_t one_dim[1] = {0};
        seeds_status = write_rows(o, o->seeds, H5T_NATIVE_UINT64, 1, one_dim, r0, n, block, "write /seeds");
    }
    free(block);
    SOWER_TRY(seeds_status);
    hid_t root = H5Gopen2(o->file, "/", H5P_DEFAULT);
    for (int i = 0; i < n_attrs; i++) {
        int status = string_attr(o, root, attrs[i].key, attrs[i].value);
        if (status != SOWER_OK) {
            H5Gclose(root);
            return sower_trace(status, __FILE__, __LINE__, __func__);
        }
    }
    H5Gclose(root);
    SOWER_TRY(string_attr(o, o->digest, "algorithm", "sha256 of the row's little-endian float32 latent bytes"));
    SOWER_TRY(string_attr(o, o->done, "meaning", "1 once the row's latents and digest are written"));
    H5_TRY(H5Fflush(o->file, H5F_SCOPE_LOCAL), "flush the new file");
    return SOWER_OK;
}

/* Reads (write = 0) or writes rows [row0, row0 + n) of dataset ds; row_dims (rank,) holds a row's
 * shape after dimension 0, data (n, row_dims[1..]). */
static herr_t transfer_rows(hid_t ds, hid_t memtype, int rank, const hsize_t *row_dims, uint64_t row0, uint64_t n,
                            void *data, int write)
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

static int write_rows(H5Out *o, hid_t ds, hid_t memtype, int rank, const hsize_t *row_dims, uint64_t row0,
                      uint64_t n, const void *data, const char *what)
{
    H5_TRY(transfer_rows(ds, memtype, rank, row_dims, row0, n, (void *)data, 1), what);
    return SOWER_OK;
}

char *h5out_string_attr(int64_t obj, const char *key)
{
    hid_t attr = H5Aopen((hid_t)obj, key, H5P_DEFAULT);
    if (attr < 0)
        return NULL;
    hid_t type = H5Aget_type(attr);
    char *text = NULL;
    if (H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) > 0) { /* as h5py writes str */
        char *vlen = NULL;
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type)); /* h5py's are UTF-8: HDF5 does not convert between sets */
        if (H5Aread(attr, mem, &vlen) >= 0 && vlen)
            text = strdup(vlen);
        if (vlen)
            H5free_memory(vlen);
        H5Tclose(mem);
    } else if (H5Tget_class(type) == H5T_STRING) { /* as sower writes it: fixed length */
        size_t n = H5Tget_size(type);
        text = calloc(n + 1, 1);
        if (text && H5Aread(attr, type, text) < 0) {
            free(text);
            text = NULL;
        }
    }
    H5Tclose(type);
    H5Aclose(attr);
    return text;
}

/* The string attribute key of obj into out (size); -1 when absent, not a string, or too long. */
static int read_string_attr(hid_t obj, const char *key, char *out, size_t size)
{
    char *text = h5out_string_attr(obj, key);
    int status = text && strlen(text) < size ? 0 : -1;
    if (status == 0)
        snprintf(out, size, "%s", text);
    free(text);
    return status;
}

/* The file's manifest_sha256, weights_sha256 and backend_identity attributes must equal key's;
 * `what` starts the message ("--resume: 'x.partial'"). */
static int check_same_job(hid_t file, const char *what, const H5JobKey *key)
{
    char found[80], identity[1024] = "";
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    int manifest_same = read_string_attr(root, "manifest_sha256", found, sizeof found) == 0 &&
                        strcmp(found, key->manifest_sha256) == 0;
    int weights_same = read_string_attr(root, "weights_sha256", found, sizeof found) == 0 &&
                       strcmp(found, key->weights_sha256) == 0;
    if (key->backend_identity && read_string_attr(root, "backend_identity", identity, sizeof identity) != 0)
        snprintf(identity, sizeof identity, "(none recorded)");
    int identity_same = !key->backend_identity || strcmp(identity, key->backend_identity) == 0;
    H5Gclose(root);
    if (!manifest_same)
        return SOWER_FAIL(SOWER_EINPUT, "%s was made from a different manifest (manifest_sha256 differs)", what);
    if (!weights_same)
        return SOWER_FAIL(SOWER_EINPUT, "%s was made with different model weights (weights_sha256 differs)", what);
    if (!identity_same)
        return SOWER_FAIL(SOWER_EINPUT, "%s was rendered by another backend ('%s'; this run: '%s'): bits compare only "
                                        "between equal backend identities, so its rows cannot join this run's",
                          what, identity, key->backend_identity);
    return SOWER_OK;
}

/* "(a, b, ...)" of n dims into out. */
static void dims_text(char *out, size_t size, int n, const hsize_t *dims)
{
    size_t used = (size_t)snprintf(out, size, "(");
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, i ? ", %llu" : "%llu", (unsigned long long)dims[i]);
    if (used < size)
        snprintf(out + used, size - used, n == 1 ? ",)" : ")");
}

/* Dataset `name` must exist with exactly `rank` dims equal to dims, of the type class `cls` with
 * elements of `bytes` bytes (integers unsigned): what sower writes. Readers size their buffers from
 * the job, so a file that says otherwise is refused before anything is read from it. */
static int check_dataset(hid_t file, const char *what, const char *name, H5T_class_t cls, size_t bytes, int rank,
                         const hsize_t *dims, const char *type_name)
{
    hid_t ds = H5Lexists(file, name, H5P_DEFAULT) > 0 ? H5Dopen2(file, name, H5P_DEFAULT) : -1;
    if (ds < 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: no /%s dataset (not a sower output, or a damaged one)", what, name);
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    hsize_t found[H5S_MAX_RANK];
    int found_rank = H5Sget_simple_extent_ndims(space);
    if (found_rank < 0 || found_rank > H5S_MAX_RANK || H5Sget_simple_extent_dims(space, found, NULL) != found_rank)
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
    if (!type_ok)
        return SOWER_FAIL(SOWER_EINPUT, "%s: /%s is not %s", what, name, type_name);
    return SOWER_OK;
}

int h5out_check_layout(int64_t file, const char *what, uint64_t rows, int c, int h, int w)
{
    const hsize_t latents[4] = {rows, (hsize_t)c, (hsize_t)h, (hsize_t)w}, digest[2] = {rows, DIGEST_BYTES};
    SOWER_TRY(check_dataset((hid_t)file, what, "latents", H5T_FLOAT, 4, 4, latents, "float32"));
    SOWER_TRY(check_dataset((hid_t)file, what, "seeds", H5T_INTEGER, 8, 1, latents, "uint64"));
    SOWER_TRY(check_dataset((hid_t)file, what, "digest", H5T_INTEGER, 1, 2, digest, "uint8"));
    SOWER_TRY(check_dataset((hid_t)file, what, "done", H5T_INTEGER, 1, 1, latents, "uint8"));
    return SOWER_OK;
}

static int resume_open(H5Out *o, const char *path, uint64_t rows, int c, int h, int w, const H5JobKey *key,
                       uint8_t *done)
{
    SOWER_TRY(start(o, path, rows, c, h, w));
    o->file = H5Fopen(o->partial_path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (o->file < 0)
        return SOWER_FAIL(SOWER_EPATH, "--resume: cannot open '%s' (no interrupted run of this output to resume)",
                          o->partial_path);
    char what[4200];
    snprintf(what, sizeof what, "--resume: '%s'", o->partial_path);
    SOWER_TRY(check_same_job(o->file, what, key));
    SOWER_TRY(h5out_check_layout(o->file, what, rows, c, h, w));
    o->latents = H5Dopen2(o->file, "latents", H5P_DEFAULT);
    o->seeds = H5Dopen2(o->file, "seeds", H5P_DEFAULT);
    o->digest = H5Dopen2(o->file, "digest", H5P_DEFAULT);
    o->done = H5Dopen2(o->file, "done", H5P_DEFAULT);
    if (o->latents < 0 || o->seeds < 0 || o->digest < 0 || o->done < 0)
        return SOWER_FAIL(SOWER_EIO, "%s: cannot open its datasets", what);
    H5_TRY(H5Dread(o->done, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, done), "read /done");
    /* A previous run may have died while writing its run facts or verification: start those anew. */
    if (H5Lexists(o->file, "run", H5P_DEFAULT) > 0)
        H5Ldelete(o->file, "run", H5P_DEFAULT);
    if (H5Lexists(o->file, "verify", H5P_DEFAULT) > 0)
        H5Ldelete(o->file, "verify", H5P_DEFAULT);
    return SOWER_OK;
}

int h5out_resume(H5Out *o, const char *path, uint64_t rows, int c, int h, int w, const H5JobKey *key,
                 uint8_t *done)
{
    int status = resume_open(o, path, rows, c, h, w, key, done);
    if (status != SOWER_OK) /* a refused resume leaves the user's file as it was: never abandoned */
        h5out_keep_partial(o);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5out_write_rows(H5Out *o, uint64_t row0, uint64_t n, const float *latents, const unsigned char *digests)
{
    hsize_t ldims[4] = {0, (hsize_t)o->c, (hsize_t)o->h, (hsize_t)o->w}, ddims[2] = {0, 32}, one[1] = {0};
    SOWER_TRY(write_rows(o, o->latents, H5T_NATIVE_FLOAT, 4, ldims, row0, n, latents, "write /latents"));
    SOWER_TRY(write_rows(o, o->digest, H5T_NATIVE_UINT8, 2, ddims, row0, n, digests, "write /digest"));
    /* The data reaches the file before the rows are marked done: never done without data. */
    H5_TRY(H5Fflush(o->file, H5F_SCOPE_LOCAL), "flush rows");
    uint8_t *ones = malloc(n ? n : 1);
    if (!ones)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    memset(ones, 1, n);
    int status = write_rows(o, o->done, H5T_NATIVE_UINT8, 1, one, row0, n, ones, "write /done");
    free(ones);
    SOWER_TRY(status);
    H5_TRY(H5Fflush(o->file, H5F_SCOPE_LOCAL), "flush the completion record");
    return SOWER_OK;
}

int h5out_read_row(H5Out *o, uint64_t row, float *latent)
{
    hsize_t ldims[4] = {0, (hsize_t)o->c, (hsize_t)o->h, (hsize_t)o->w};
    H5_TRY(transfer_rows(o->latents, H5T_NATIVE_FLOAT, 4, ldims, row, 1, latent, 0), "read /latents back");
    return SOWER_OK;
}

static int write_vector(H5Out *o, hid_t group, const char *name, hid_t filetype, hid_t memtype, uint64_t n,
                        const void *data)
{
    hsize_t dims[1] = {n};
    hid_t dcpl = no_times_dcpl();
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(group, name, filetype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t w = ds < 0 ? -1 : (n ? H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0);
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5_TRY(w, name);
    return SOWER_OK;
}

static hid_t make_group(hid_t file, const char *name)
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    H5Pclose(gcpl);
    return g;
}

int h5out_write_run(H5Out *o, const H5Attr *attrs, int n_attrs, const uint64_t *slices, int world)
{
    hid_t g = make_group(o->file, "run");
    if (g < 0)
        return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create /run", o->partial_path);
    int status = SOWER_OK;
    for (int i = 0; i < n_attrs && status == SOWER_OK; i++)
        status = string_attr(o, g, attrs[i].key, attrs[i].value);
    if (status == SOWER_OK)
        status = write_vector(o, g, "rank_slices", H5T_STD_U64LE, H5T_NATIVE_UINT64, (uint64_t)world + 1, slices);
    H5Gclose(g);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5out_write_verify(H5Out *o, uint64_t n, const uint64_t *rows, const uint64_t *seeds, const int32_t *renderer,
                       const int32_t *verifier, const uint8_t *match, const float *max_abs_diff)
{
    hid_t g = make_group(o->file, "verify");
    if (g < 0)
        return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create /verify", o->partial_path);
    int status = write_vector(o, g, "rows", H5T_STD_U64LE, H5T_NATIVE_UINT64, n, rows);
    if (status == SOWER_OK)
        status = write_vector(o, g, "seeds", H5T_STD_U64LE, H5T_NATIVE_UINT64, n, seeds);
    if (status == SOWER_OK)
        status = write_vector(o, g, "renderer_rank", H5T_STD_I32LE, H5T_NATIVE_INT32, n, renderer);
    if (status == SOWER_OK)
        status = write_vector(o, g, "verifier_rank", H5T_STD_I32LE, H5T_NATIVE_INT32, n, verifier);
    if (status == SOWER_OK)
        status = write_vector(o, g, "match", H5T_STD_U8LE, H5T_NATIVE_UINT8, n, match);
    if (status == SOWER_OK)
        status = write_vector(o, g, "max_abs_diff", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, n, max_abs_diff);
    H5Gclose(g);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* Reads rows [r0, r0 + n) of dataset `name` of file into data. */
static herr_t read_rows(hid_t file, const char *name, hid_t memtype, int rank, const hsize_t *row_dims, uint64_t r0,
                        uint64_t n, void *data)
{
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    herr_t status = transfer_rows(ds, memtype, rank, row_dims, r0, n, data, 0);
    H5Dclose(ds);
    return status;
}

/* Checks that an open slice file (`what` names it in messages) is slice `tag` of this job, complete
 * and of shape (hi - lo, c, h, w). */
static int check_slice(H5Out *o, hid_t in, const char *what, const char *tag, uint64_t lo, uint64_t hi,
                       const H5JobKey *key)
{
    char found[64];
    SOWER_TRY(check_same_job(in, what, key));
    hid_t root = H5Gopen2(in, "/", H5P_DEFAULT);
    int has_tag = read_string_attr(root, "slice", found, sizeof found) == 0;
    H5Gclose(root);
    if (!has_tag || strcmp(found, tag) != 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: expected slice %s of the job, found %s", what, tag,
                          has_tag ? found : "a file without a slice attribute");
    SOWER_TRY(h5out_check_layout(in, what, hi - lo, o->c, o->h, o->w));
    return SOWER_OK;
}

int h5out_read_block(int64_t file, const char *what, uint64_t r0, uint64_t n, int c, int h, int w, float *latents,
                     uint64_t *seeds, unsigned char *digests, uint8_t *done)
{
    const hsize_t ldims[4] = {0, (hsize_t)c, (hsize_t)h, (hsize_t)w}, ddims[2] = {0, DIGEST_BYTES}, one[1] = {0};
    if ((latents && read_rows((hid_t)file, "latents", H5T_NATIVE_FLOAT, 4, ldims, r0, n, latents) < 0) ||
        (seeds && read_rows((hid_t)file, "seeds", H5T_NATIVE_UINT64, 1, one, r0, n, seeds) < 0) ||
        (digests && read_rows((hid_t)file, "digest", H5T_NATIVE_UINT8, 2, ddims, r0, n, digests) < 0) ||
        (done && read_rows((hid_t)file, "done", H5T_NATIVE_UINT8, 1, one, r0, n, done) < 0))
        return SOWER_FAIL(SOWER_EINPUT, "%s: cannot read rows %llu..%llu (a damaged file?)", what,
                          (unsigned long long)r0, (unsigned long long)(r0 + n - 1));
    return SOWER_OK;
}

int h5out_copy_slice(H5Out *o, const char *slice_path, const char *slice_tag, uint64_t lo, uint64_t hi,
                     const H5JobKey *key, uint8_t *done)
{
    hid_t in = H5Fopen(slice_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in < 0)
        return SOWER_FAIL(SOWER_EPATH, "cannot open slice '%s' (did array task %s finish? a '.partial' beside it "
                                       "means it was interrupted: resubmit that task)", slice_path, slice_tag);
    enum { BLOCK = 64 };
    const size_t per = (size_t)o->c * o->h * o->w;
    float *lat = malloc(sizeof(float) * per * BLOCK);      /* (BLOCK, c, h, w) */
    unsigned char *dig = malloc(32 * BLOCK);                /* (BLOCK, 32) */
    uint8_t *fin = malloc(BLOCK);                           /* (BLOCK,) the slice's /done */
    int status = lat && dig && fin ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    char what[4200];
    snprintf(what, sizeof what, "slice '%s'", slice_path);
    if (status == SOWER_OK)
        status = check_slice(o, in, what, slice_tag, lo, hi, key);
    for (uint64_t r0 = lo; r0 < hi && status == SOWER_OK; r0 += BLOCK) {
        uint64_t n = hi - r0 < BLOCK ? hi - r0 : BLOCK, at = r0 - lo;
        status = h5out_read_block(in, what, at, n, o->c, o->h, o->w, lat, NULL, dig, fin);
        if (status != SOWER_OK)
            break;
        for (uint64_t i = 0; i < n && status == SOWER_OK; i++) {
            unsigned char d[32];
            status = digest_buffer(lat + per * i, sizeof(float) * per, d);
            if (status == SOWER_OK && (fin[i] != 1 || memcmp(d, dig + 32 * i, 32) != 0))
                status = SOWER_FAIL(SOWER_EINPUT, "slice '%s': row %llu (job row %llu) is %s", slice_path,
                                    (unsigned long long)(at + i), (unsigned long long)(r0 + i),
                                    fin[i] != 1 ? "not marked done (the slice is incomplete)"
                                                : "corrupt (its bytes do not match its digest)");
        }
        /* Rows already done (a resumed stitch) are left as they are; the rest go in as runs. */
        for (uint64_t i = 0; i < n && status == SOWER_OK;) {
            if (done[r0 + i]) {
                i++;
                continue;
            }
            uint64_t j = i;
            while (j < n && !done[r0 + j])
                j++;
            status = h5out_write_rows(o, r0 + i, j - i, lat + per * i, dig + 32 * i);
            for (uint64_t k = i; k < j; k++)
                done[r0 + k] = 1;
            i = j;
        }
    }
    H5Fclose(in);
    free(lat), free(dig), free(fin);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* Rows of file's /done (rows,) that are not 1, read a block at a time. */
static int count_not_done(hid_t file, const char *what, uint64_t rows, int c, int h, int w, uint64_t *not_done)
{
    enum { BLOCK = 1 << 20 };
    uint8_t *done = malloc(BLOCK); /* (BLOCK,) */
    if (!done)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int status = SOWER_OK;
    *not_done = 0;
    for (uint64_t r0 = 0; r0 < rows && status == SOWER_OK; r0 += BLOCK) {
        const uint64_t n = rows - r0 < BLOCK ? rows - r0 : BLOCK;
        status = h5out_read_block(file, what, r0, n, c, h, w, NULL, NULL, NULL, done);
        for (uint64_t i = 0; i < n && status == SOWER_OK; i++)
            *not_done += done[i] != 1;
    }
    free(done);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5out_is_finished(const char *path, const H5JobKey *key, uint64_t rows, int c, int h, int w, int *finished)
{
    *finished = 0;
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return SOWER_OK;
    fclose(probe);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return SOWER_FAIL(SOWER_EPATH, "output '%s' exists and is not an HDF5 file: not replacing it (pass --force)",
                          path);
    char what[4200];
    snprintf(what, sizeof what, "output '%s' exists and", path);
    int status = check_same_job(file, what, key);
    /* Only a complete file counts as finished: one damaged since (a partial copy, say) is refused. */
    snprintf(what, sizeof what, "output '%s'", path);
    if (status == SOWER_OK)
        status = h5out_check_layout(file, what, rows, c, h, w);
    uint64_t not_done = 0;
    if (status == SOWER_OK)
        status = count_not_done(file, what, rows, c, h, w, &not_done);
    if (status == SOWER_OK && not_done)
        status = SOWER_FAIL(SOWER_EINPUT, "%s exists, but %llu of its %llu rows are not marked done (a damaged "
                                          "file?): not taking it as finished, nor replacing it (pass --force)",
                            what, (unsigned long long)not_done, (unsigned long long)rows);
    H5Fclose(file);
    SOWER_TRY(status);
    *finished = 1;
    return SOWER_OK;
}

void h5out_keep_partial(H5Out *o)
{
    close_all(o);
    free(o->path);
    free(o->partial_path);
    memset(o, 0, sizeof *o);
}

static void close_all(H5Out *o)
{
    hid_t *handles[] = {&o->latents, &o->seeds, &o->digest, &o->done};
    for (int i = 0; i < 4; i++)
        if (*handles[i] > 0)
            H5Dclose(*handles[i]), *handles[i] = 0;
    if (o->file > 0)
        H5Fclose(o->file), o->file = 0;
}

int h5out_finish(H5Out *o)
{
    close_all(o);
    if (rename(o->partial_path, o->path) != 0)
        return SOWER_FAIL(SOWER_EIO, "cannot rename '%s' to '%s'", o->partial_path, o->path);
    free(o->path);
    free(o->partial_path);
    memset(o, 0, sizeof *o);
    return SOWER_OK;
}

void h5out_abandon(H5Out *o)
{
    close_all(o);
    if (o->partial_path)
        remove(o->partial_path);
    free(o->path);
    free(o->partial_path);
    memset(o, 0, sizeof *o);
}
