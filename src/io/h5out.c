/* h5out.c: writing the output file through the HDF5 C API (serial access from the writer rank); its
 * names are h5_layout.h's, the checks and row reads shared with h5read.c are h5file.c's. */
#define _POSIX_C_SOURCE 200809L
#include "regular_file.h"
#include "h5out.h"

#include <hdf5_hl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "digest.h"
#include "h5_layout.h"
#include "h5file.h"
#include "outfile.h"

/* errno survives HDF5's own calls after a failed write(2): a full disk or quota is named as such. */
#define H5_TRY(call, what)                                                                                   \
    do {                                                                                                     \
        errno = 0;                                                                                           \
        if ((call) < 0) return h5_failure(o, what, errno);                                                   \
    } while (0)

static int h5_failure(const H5Out *o, const char *what, int err)
{
    if (err == ENOSPC || err == EDQUOT)
        return SOWER_FAIL(SOWER_EIO,
                          "%s: HDF5 failed to %s: %s (the rows marked done so far are kept: make room, then "
                          "run again with --resume)",
                          o->partial_path, what, strerror(err));
    return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to %s%s%s", o->partial_path, what, err ? ": " : "",
                      err ? strerror(err) : "");
}

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
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    H5_TRY(w, "write an attribute");
    return SOWER_OK;
}

static int int_attr(H5Out *o, hid_t obj, const char *key, int64_t value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, key, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w = attr < 0 ? -1 : H5Awrite(attr, H5T_NATIVE_INT64, &value);
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
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

/* /seeds from o->seed_of, a block at a time (no rows-sized array). */
static int write_seeds(H5Out *o)
{
    enum { SEED_BLOCK = 1 << 16 };
    uint64_t *block = malloc(sizeof *block * SEED_BLOCK); /* (SEED_BLOCK,) */
    if (!block) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int status = SOWER_OK;
    for (uint64_t r0 = 0; r0 < o->rows && status == SOWER_OK; r0 += SEED_BLOCK) {
        uint64_t n = o->rows - r0 < SEED_BLOCK ? o->rows - r0 : SEED_BLOCK;
        for (uint64_t i = 0; i < n; i++)
            block[i] = o->seed_of(o->seed_ctx, r0 + i);
        hsize_t one_dim[1] = {0};
        status = write_rows(o, o->seeds, H5T_NATIVE_UINT64, 1, one_dim, r0, n, block, "write /" LAYOUT_SEEDS);
    }
    free(block);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* Fills the shape and the two paths (PATH and PATH.partial) of a new or resumed output. */
static int start(H5Out *o, const char *path, uint64_t rows, int c, int h, int w)
{
    memset(o, 0, sizeof *o);
    o->rows = rows, o->c = c, o->h = h, o->w = w;
    o->path = strdup(path);
    o->partial_path = malloc(strlen(path) + 16);
    if (!o->path || !o->partial_path) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    sprintf(o->partial_path, "%s.partial", path);
    h5file_quiet(); /* errors are reported by sower, not printed by HDF5 */
    return SOWER_OK;
}

/* Records which file o->file is (its device and inode, through HDF5's descriptor), for h5out_finish. */
static void note_open_file(H5Out *o)
{
    int *fd = NULL;
    struct stat st;
    o->file_dev = o->file_ino = 0;
    if (H5Fget_vfd_handle(o->file, H5P_DEFAULT, (void **)&fd) >= 0 && fd && fstat(*fd, &st) == 0)
        o->file_dev = (uint64_t)st.st_dev, o->file_ino = (uint64_t)st.st_ino;
}

/* Whether path still names the file this run opened (1 when that is not known): a file another process
 * put there meanwhile is neither renamed into place nor removed as this run's. */
static int still_ours(const H5Out *o, const char *path)
{
    struct stat st;
    if (!o->file_ino) return 1;
    return lstat(path, &st) == 0 && (uint64_t)st.st_dev == o->file_dev && (uint64_t)st.st_ino == o->file_ino;
}

/* SOWER_EPATH when something other than a regular file is at path (a FIFO there would block H5Fopen
 * for ever, a device would be read as a file): `what` names it in the message. */
static int check_regular_if_present(const char *path, const char *what)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return SOWER_FAIL(SOWER_EPATH, "%s '%s' is %s", what, path,
                          S_ISDIR(st.st_mode) ? "a directory" : "not a regular file (a FIFO, socket or device)");
    return SOWER_OK;
}

/* Named dimensions, as netCDF-4 writes them (HDF5 dimension scales that are dimensions only: no
 * values, so no storage): netCDF readers such as xarray see latents(sample, channel, y, x),
 * seeds(sample), digest(sample, digest_byte) and done(sample), with /seeds the coordinate of the
 * samples (the CF `coordinates` attribute of /latents). */
static int name_dimensions(H5Out *o)
{
    static const char *const names[] = {LAYOUT_DIM_SAMPLE, LAYOUT_DIM_CHANNEL, LAYOUT_DIM_Y, LAYOUT_DIM_X,
                                        LAYOUT_DIM_DIGEST_BYTE};
    const hsize_t sizes[] = {o->rows, (hsize_t)o->c, (hsize_t)o->h, (hsize_t)o->w, DIGEST_BYTES};
    hid_t scales[5];
    herr_t ok = 0;
    int made = 0;
    for (; made < 5 && ok >= 0; made++) {
        char netcdf_name[80];
        snprintf(netcdf_name, sizeof netcdf_name, "This is a netCDF dimension but not a netCDF variable.%10llu",
                 (unsigned long long)sizes[made]);
        hid_t dcpl = no_times_dcpl(), space = H5Screate_simple(1, &sizes[made], NULL);
        scales[made] = H5Dcreate2(o->file, names[made], H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        H5Sclose(space);
        H5Pclose(dcpl);
        ok = scales[made] < 0 ? -1 : H5DSset_scale(scales[made], netcdf_name);
    }
    const struct {
        hid_t ds;
        int dim, scale;
    } attach[] = {{o->latents, 0, 0}, {o->latents, 1, 1}, {o->latents, 2, 2}, {o->latents, 3, 3},
                  {o->seeds, 0, 0},   {o->digest, 0, 0},  {o->digest, 1, 4},  {o->done, 0, 0}};
    for (size_t i = 0; i < sizeof attach / sizeof attach[0] && ok >= 0; i++)
        ok = H5DSattach_scale(attach[i].ds, scales[attach[i].scale], (unsigned)attach[i].dim);
    for (int i = 0; i < made; i++)
        if (scales[i] >= 0) H5Dclose(scales[i]);
    H5_TRY(ok, "name the dimensions");
    return SOWER_OK;
}

/* pipeline.decode: /images uint8 (rows, ic, ih, iw) chunked and filtered as /latents, /image_digest
 * (rows, 32); dimensions (sample, image_channel, image_y, image_x) and (sample, digest_byte). */
static int make_images(H5Out *o, hsize_t chunk, int gzip)
{
    /* Image chunks of about 1 MB at most (one 512x512 image is 768 kB): HDF5's chunk cache is 1 MB, and a
     * batch written into a larger gzip chunk would recompress all of it each time. */
    const hsize_t image_bytes = (hsize_t)o->ic * o->ih * o->iw, fit = image_bytes < (1u << 20) ? (1u << 20) / image_bytes : 1;
    const hsize_t idims[4] = {o->rows, (hsize_t)o->ic, (hsize_t)o->ih, (hsize_t)o->iw},
                  ichunk[4] = {chunk < fit ? chunk : fit, (hsize_t)o->ic, (hsize_t)o->ih, (hsize_t)o->iw},
                  ddims[2] = {o->rows, 32},
                  dchunk[2] = {chunk, 32};
    o->images = make_dataset(o->file, LAYOUT_IMAGES, H5T_STD_U8LE, 4, idims, ichunk, gzip);
    o->image_digest = make_dataset(o->file, LAYOUT_IMAGE_DIGEST, H5T_STD_U8LE, 2, ddims, dchunk, gzip);
    if (o->images < 0 || o->image_digest < 0)
        return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create /%s", o->partial_path, LAYOUT_IMAGES);
    static const char *const names[] = {LAYOUT_DIM_IMAGE_CHANNEL, LAYOUT_DIM_IMAGE_Y, LAYOUT_DIM_IMAGE_X};
    hid_t scales[5] = {H5Dopen2(o->file, LAYOUT_DIM_SAMPLE, H5P_DEFAULT), -1, -1, -1,
                       H5Dopen2(o->file, LAYOUT_DIM_DIGEST_BYTE, H5P_DEFAULT)};
    herr_t ok = scales[0] < 0 || scales[4] < 0 ? -1 : 0;
    for (int k = 0; k < 3 && ok >= 0; k++) {
        char netcdf_name[80];
        snprintf(netcdf_name, sizeof netcdf_name, "This is a netCDF dimension but not a netCDF variable.%10llu",
                 (unsigned long long)idims[k + 1]);
        hid_t dcpl = no_times_dcpl(), space = H5Screate_simple(1, &idims[k + 1], NULL);
        scales[k + 1] = H5Dcreate2(o->file, names[k], H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        H5Sclose(space), H5Pclose(dcpl);
        ok = scales[k + 1] < 0 ? -1 : H5DSset_scale(scales[k + 1], netcdf_name);
    }
    for (int d = 0; d < 4 && ok >= 0; d++)
        ok = H5DSattach_scale(o->images, scales[d], (unsigned)d);
    if (ok >= 0) ok = H5DSattach_scale(o->image_digest, scales[0], 0);
    if (ok >= 0) ok = H5DSattach_scale(o->image_digest, scales[4], 1);
    for (int k = 0; k < 5; k++)
        if (scales[k] >= 0) H5Dclose(scales[k]);
    H5_TRY(ok, "name the images' dimensions");
    SOWER_TRY(string_attr(o, o->images, LAYOUT_LATENTS_MEANING,
                          "each row's image as StableDiffusionPipeline returns it (output_type='np', times 255 "
                          "and rounded: the PIL image's bytes): vae.decode(latents / scaling_factor).sample, then "
                          "(x / 2 + 0.5).clamp(0, 1); uint8 (sample, channel, y, x), RGB"));
    SOWER_TRY(string_attr(o, o->images, LAYOUT_LATENTS_COORDINATES, LAYOUT_SEEDS));
    SOWER_TRY(string_attr(o, o->image_digest, LAYOUT_DIGEST_ALGORITHM, "sha256 of the row's image bytes"));
    return SOWER_OK;
}

/* A variable-length UTF-8 string dataset (n,) of texts, along dimension scale `dim`. */
static int write_texts(H5Out *o, const char *name, const char *const *texts, size_t n, hid_t dim, const char *meaning)
{
    hsize_t dims[1] = {n};
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t dcpl = no_times_dcpl(), space = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(o->file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t w = ds < 0 ? -1 : H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, texts);
    if (w >= 0) w = H5DSattach_scale(ds, dim, 0);
    int status = w >= 0 ? string_attr(o, ds, LAYOUT_PROMPTS_MEANING, meaning) : SOWER_OK;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space), H5Pclose(dcpl), H5Tclose(type);
    H5_TRY(w, name);
    return status;
}

/* /prompts, /negative_prompts and /prompt_index (a block of rows at a time), with their dimensions. */
static int write_prompts(H5Out *o, const H5Prompts *p, hsize_t chunk)
{
    enum { BLOCK = 1 << 16 };
    const hsize_t count = p->n;
    char netcdf_name[80];
    snprintf(netcdf_name, sizeof netcdf_name, "This is a netCDF dimension but not a netCDF variable.%10llu",
             (unsigned long long)count);
    hid_t dcpl = no_times_dcpl(), space = H5Screate_simple(1, &count, NULL);
    hid_t dim = H5Dcreate2(o->file, LAYOUT_DIM_PROMPT, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Sclose(space), H5Pclose(dcpl);
    if (dim < 0 || H5DSset_scale(dim, netcdf_name) < 0) {
        if (dim >= 0) H5Dclose(dim);
        return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create /" LAYOUT_DIM_PROMPT, o->partial_path);
    }
    int status = write_texts(o, LAYOUT_PROMPTS, p->prompts, p->n, dim, "the job's prompts, in the manifest's order");
    if (status == SOWER_OK)
        status = write_texts(o, LAYOUT_NEGATIVE_PROMPTS, p->negatives, p->n, dim,
                             "the negative prompt of each prompt (\"\" where none was given)");
    H5Dclose(dim);
    SOWER_TRY(status);
    const hsize_t dims[1] = {o->rows}, chunks[1] = {chunk};
    hid_t index = make_dataset(o->file, LAYOUT_PROMPT_INDEX, H5T_STD_U32LE, 1, dims, chunks, 0);
    if (index < 0) return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create /" LAYOUT_PROMPT_INDEX, o->partial_path);
    uint32_t *block = malloc(sizeof *block * BLOCK); /* (BLOCK,) */
    status = block ? SOWER_OK : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    for (uint64_t r0 = 0; r0 < o->rows && status == SOWER_OK; r0 += BLOCK) {
        const uint64_t n = o->rows - r0 < BLOCK ? o->rows - r0 : BLOCK;
        for (uint64_t i = 0; i < n; i++)
            block[i] = (uint32_t)p->prompt_of(o->seed_ctx, r0 + i);
        hsize_t one_dim[1] = {0};
        status = write_rows(o, index, H5T_NATIVE_UINT32, 1, one_dim, r0, n, block, "write /" LAYOUT_PROMPT_INDEX);
    }
    free(block);
    if (status == SOWER_OK)
        status = string_attr(o, index, LAYOUT_PROMPTS_MEANING,
                             "the prompt of each row: an index into prompts (rows are every (prompt, seed) pair, "
                             "prompt-major)");
    hid_t sample = status == SOWER_OK ? H5Dopen2(o->file, LAYOUT_DIM_SAMPLE, H5P_DEFAULT) : -1;
    if (status == SOWER_OK && (sample < 0 || H5DSattach_scale(index, sample, 0) < 0))
        status = SOWER_FAIL(SOWER_EIO, "%s: name the dimension of /" LAYOUT_PROMPT_INDEX, o->partial_path);
    if (sample >= 0) H5Dclose(sample);
    H5Dclose(index);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* Rows of a file read a block at a time: latents, seeds, digests, /done and, with images, the images
 * and their digests. One set of buffers for the readers that check or copy rows. */
typedef struct {
    uint64_t cap;              /* rows the buffers hold */
    int c, h, w, ic, ih, iw;   /* a row's latent shape; its image's (ic 0: no images) */
    size_t per, image_bytes;   /* floats of a row's latents; bytes of its image */
    float *lat;                /* (cap, c, h, w) */
    uint64_t *seeds;           /* (cap,) */
    unsigned char *dig;        /* (cap, 32) */
    uint8_t *fin;              /* (cap,) /done */
    unsigned char *pixels;     /* (cap, ic, ih, iw); NULL without images */
    unsigned char *pixel_dig;  /* (cap, 32); NULL without images */
} RowBlock;

static void row_block_free(RowBlock *b)
{
    free(b->lat), free(b->seeds), free(b->dig), free(b->fin), free(b->pixels), free(b->pixel_dig);
    memset(b, 0, sizeof *b);
}

/* Buffers for cap rows (0: as many as fit in 16 MB, at least 1) of latents (c, h, w) and, with img,
 * images. */
static int row_block_init(RowBlock *b, int c, int h, int w, const H5ImageShape *img, uint64_t cap)
{
    memset(b, 0, sizeof *b);
    b->c = c, b->h = h, b->w = w;
    if (img) b->ic = img->c, b->ih = img->h, b->iw = img->w;
    b->per = (size_t)c * h * w, b->image_bytes = (size_t)b->ic * b->ih * b->iw;
    const size_t row_bytes = b->per * sizeof(float) + b->image_bytes;
    b->cap = cap ? cap : row_bytes >= (16u << 20) ? 1 : (16u << 20) / row_bytes;
    b->lat = malloc(sizeof(float) * b->per * b->cap);
    b->seeds = malloc(sizeof *b->seeds * b->cap);
    b->dig = malloc(DIGEST_BYTES * b->cap);
    b->fin = malloc(b->cap);
    b->pixels = b->image_bytes ? malloc(b->image_bytes * b->cap) : NULL;
    b->pixel_dig = b->image_bytes ? malloc(DIGEST_BYTES * b->cap) : NULL;
    if (!b->lat || !b->seeds || !b->dig || !b->fin || (b->image_bytes && (!b->pixels || !b->pixel_dig))) {
        row_block_free(b);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    }
    return SOWER_OK;
}

/* Rows [r0, r0 + n) of file into the buffers from their row `at` on. */
static int row_block_read(RowBlock *b, hid_t file, const char *what, uint64_t r0, uint64_t n, uint64_t at)
{
    SOWER_TRY(h5file_read_block(file, what, r0, n, b->c, b->h, b->w, b->lat + b->per * at, b->seeds + at,
                                b->dig + DIGEST_BYTES * at, b->fin + at));
    if (b->image_bytes)
        SOWER_TRY(h5file_read_images(file, what, r0, n, b->ic, b->ih, b->iw, b->pixels + b->image_bytes * at,
                                     b->pixel_dig + DIGEST_BYTES * at));
    return SOWER_OK;
}

/* 1 when buffered row i's latents (and image) hash to their stored digests. */
static int row_block_matches(const RowBlock *b, uint64_t i, int *matches)
{
    unsigned char d[DIGEST_BYTES];
    SOWER_TRY(digest_buffer(b->lat + b->per * i, sizeof(float) * b->per, d));
    *matches = memcmp(d, b->dig + DIGEST_BYTES * i, DIGEST_BYTES) == 0;
    if (*matches && b->image_bytes) {
        SOWER_TRY(digest_buffer(b->pixels + b->image_bytes * i, b->image_bytes, d));
        *matches = memcmp(d, b->pixel_dig + DIGEST_BYTES * i, DIGEST_BYTES) == 0;
    }
    return SOWER_OK;
}

/* Row i of the buffers written to o as rows [row, row + n). */
static int row_block_write(H5Out *o, const RowBlock *b, uint64_t row, uint64_t i, uint64_t n)
{
    SOWER_TRY(h5out_write_rows(o, row, n, b->lat + b->per * i, b->dig + DIGEST_BYTES * i,
                               b->image_bytes ? b->pixels + b->image_bytes * i : NULL,
                               b->image_bytes ? b->pixel_dig + DIGEST_BYTES * i : NULL));
    return SOWER_OK;
}

/* Copies the rows carry->done marks from carry->path into the new file, a run of consecutive rows
 * (at most a block) at a time, images too when the file has them. Every such row was read and
 * checked by h5out_resume. */
static int carry_rows(H5Out *o, const H5Carry *carry)
{
    SOWER_TRY(h5file_room_to_open(carry->path));
    hid_t in = H5Fopen(carry->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in < 0) return SOWER_FAIL(SOWER_EIO, "cannot open '%s' again to copy its rows", carry->path);
    const H5ImageShape img = {o->ic, o->ih, o->iw};
    RowBlock b;
    int status = row_block_init(&b, o->c, o->h, o->w, o->ic ? &img : NULL, 0);
    char what[4200];
    snprintf(what, sizeof what, "--resume: '%s'", carry->path);
    for (uint64_t r0 = 0; r0 < o->rows && status == SOWER_OK;) {
        if (carry->done[r0] != 1) {
            r0++;
            continue;
        }
        uint64_t n = 1;
        while (n < b.cap && r0 + n < o->rows && carry->done[r0 + n] == 1)
            n++;
        status = row_block_read(&b, in, what, r0, n, 0);
        if (status == SOWER_OK) status = row_block_write(o, &b, r0, 0, n);
        r0 += n;
    }
    H5Fclose(in);
    o->rows_written = 0; /* copies, not this run's rendering */
    row_block_free(&b);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5out_create(H5Out *o, const char *path, uint64_t rows, int c, int h, int w, int chunk_rows, int gzip,
                 H5SeedOf seed_of, const void *seed_ctx, const H5Prompts *prompts, const H5Attr *attrs,
                 int n_attrs, const H5ImageShape *images, const H5Carry *carry)
{
    SOWER_TRY(start(o, path, rows, c, h, w));
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    /* Made as PATH.partial.new and renamed when whole: a process killed while creating it leaves no
     * .partial that a resume would find unreadable (the next creation, under the lock, replaces it). */
    o->creating_path = malloc(strlen(o->partial_path) + 8);
    if (!o->creating_path) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    sprintf(o->creating_path, "%s.new", o->partial_path);
    const int room = h5file_room_to_open(o->creating_path);
    if (room != SOWER_OK) {
        H5Pclose(fcpl);
        return room;
    }
    o->file = H5Fcreate(o->creating_path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (o->file < 0)
        return SOWER_FAIL(SOWER_EPATH, "cannot create output '%s' (is the directory there and writable?)",
                          o->creating_path);
    o->created = 1;
    note_open_file(o);
    o->seed_of = seed_of, o->seed_ctx = seed_ctx;
    hsize_t chunk = (hsize_t)chunk_rows < rows ? (hsize_t)chunk_rows : (rows ? rows : 1);
    hsize_t ldims[4] = {rows, (hsize_t)c, (hsize_t)h, (hsize_t)w},
            lchunk[4] = {chunk, (hsize_t)c, (hsize_t)h, (hsize_t)w};
    hsize_t ddims[2] = {rows, 32}, dchunk[2] = {chunk, 32};
    o->latents = make_dataset(o->file, LAYOUT_LATENTS, H5T_IEEE_F32LE, 4, ldims, lchunk, gzip);
    o->seeds = make_dataset(o->file, LAYOUT_SEEDS, H5T_STD_U64LE, 1, ldims, lchunk, gzip);
    o->digest = make_dataset(o->file, LAYOUT_DIGEST, H5T_STD_U8LE, 2, ddims, dchunk, gzip);
    o->done = make_dataset(o->file, LAYOUT_DONE, H5T_STD_U8LE, 1, ldims, lchunk, 0);
    if (o->latents < 0 || o->seeds < 0 || o->digest < 0 || o->done < 0)
        return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create the datasets", o->partial_path);
    SOWER_TRY(write_seeds(o));
    hid_t root = H5Gopen2(o->file, "/", H5P_DEFAULT);
    for (int i = 0; i < n_attrs; i++) {
        int status = string_attr(o, root, attrs[i].key, attrs[i].value);
        if (status != SOWER_OK) {
            H5Gclose(root);
            return sower_trace(status, __FILE__, __LINE__, __func__);
        }
    }
    H5Gclose(root);
    SOWER_TRY(name_dimensions(o));
    if (prompts) SOWER_TRY(write_prompts(o, prompts, chunk));
    if (images) {
        o->ic = images->c, o->ih = images->h, o->iw = images->w;
        SOWER_TRY(make_images(o, chunk, gzip));
    }
    SOWER_TRY(string_attr(o, o->latents, LAYOUT_LATENTS_MEANING,
                          "the denoised sample of each seed as the pipeline returns it before any decoding "
                          "(diffusers output_type='latent'): for a pixel-space model the image, nominally in "
                          "[-1, 1] and not clipped, before diffusers' (x / 2 + 0.5).clamp(0, 1); float32 "
                          "(sample, channel, y, x), row i of seed seeds[i]"));
    SOWER_TRY(string_attr(o, o->latents, LAYOUT_LATENTS_COORDINATES, LAYOUT_SEEDS));
    SOWER_TRY(string_attr(o, o->seeds, LAYOUT_SEEDS_MEANING,
                          "the torch.Generator seed of each sample (manual_seed(seed)); row i is job row i"));
    SOWER_TRY(string_attr(o, o->digest, LAYOUT_DIGEST_ALGORITHM,
                          "sha256 of the row's little-endian float32 latent bytes"));
    SOWER_TRY(
        string_attr(o, o->done, LAYOUT_DONE_MEANING, "1 once the row's latents and digest are written"));
    if (carry) {
        SOWER_TRY(carry_rows(o, carry));
        o->created = 0; /* it holds an earlier run's rows: kept whatever happens next */
    }
    H5_TRY(H5Fflush(o->file, H5F_SCOPE_LOCAL), "flush the new file");
    if (rename(o->creating_path, o->partial_path) != 0)
        return SOWER_FAIL(SOWER_EIO, "cannot rename '%s' to '%s': %s", o->creating_path, o->partial_path,
                          strerror(errno));
    free(o->creating_path);
    o->creating_path = NULL;
    return SOWER_OK;
}

static int write_rows(H5Out *o, hid_t ds, hid_t memtype, int rank, const hsize_t *row_dims, uint64_t row0,
                      uint64_t n, const void *data, const char *what)
{
    H5_TRY(h5file_transfer_rows(ds, memtype, rank, row_dims, row0, n, (void *)data, 1), what);
    return SOWER_OK;
}

/* sha256 hex of root attribute `key` (a string) into hex; -1 when absent. */
static int attr_digest_hex(hid_t root, const char *key, char *hex)
{
    char *text = h5file_string_attr(root, key);
    unsigned char d[DIGEST_BYTES];
    int ok = text && digest_buffer(text, strlen(text), d) == SOWER_OK;
    if (ok) digest_hex(d, hex);
    free(text);
    return ok ? 0 : -1;
}

/* The stored manifest and job key must match their recorded digests: else the file was altered. */
static int check_recorded_digests(hid_t root, const char *what)
{
    static const char *const pairs[][2] = {{LAYOUT_ATTR_MANIFEST, LAYOUT_ATTR_MANIFEST_SHA256},
                                           {LAYOUT_ATTR_JOB_KEY, LAYOUT_ATTR_JOB_SHA256}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char recorded[80], computed[DIGEST_HEX_CHARS];
        int has_text = H5Aexists(root, pairs[i][0]) > 0, has_digest = H5Aexists(root, pairs[i][1]) > 0;
        if (!has_text && !has_digest && i > 0) continue; /* job keys came later than format 1 */
        if (h5file_read_string_attr(root, pairs[i][1], recorded, sizeof recorded) != 0 ||
            attr_digest_hex(root, pairs[i][0], computed) != 0 || strcmp(recorded, computed) != 0)
            return SOWER_FAIL(SOWER_EINPUT,
                              "%s: its attribute '%s' does not match '%s' (the file was altered, or damaged)",
                              what, pairs[i][0], pairs[i][1]);
    }
    return SOWER_OK;
}

/* The first line where two job keys differ, as "'A' there, 'B' in this job" into out. */
static void first_difference(const char *theirs, const char *ours, char *out, size_t size)
{
    while (*theirs && *ours) {
        size_t a = strcspn(theirs, "\n"), b = strcspn(ours, "\n");
        if (a != b || strncmp(theirs, ours, a) != 0) {
            snprintf(out, size, "'%.*s' there, '%.*s' in this job", (int)a, theirs, (int)b, ours);
            return;
        }
        theirs += a + (theirs[a] == '\n'), ours += b + (ours[b] == '\n');
    }
    if (*theirs || *ours) { /* a line only one of them has (a setting such as pipeline.decode) */
        const char *extra = *theirs ? theirs : ours;
        snprintf(out, size, "'%.*s' %s", (int)strcspn(extra, "\n"), extra, *theirs ? "there, not in this job" : "in this job, not there");
        return;
    }
    snprintf(out, size, "its job key is altered");
}

/* Same job: job key (or, for files without one, the manifest's bytes), weights, backend identity.
 * `what` starts the message ("--resume: 'x.partial'"). */
static int check_same_job(hid_t file, const char *what, const H5JobKey *key)
{
    char found[80], identity[1024] = "";
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    int status = check_recorded_digests(root, what);
    char *job_key = h5file_string_attr(root, LAYOUT_ATTR_JOB_KEY);
    if (status == SOWER_OK && job_key) {
        if (strcmp(job_key, key->job_key) != 0) {
            char diff[1200];
            first_difference(job_key, key->job_key, diff, sizeof diff);
            status = SOWER_FAIL(SOWER_EINPUT,
                                "%s was made for a job whose rows differ from this one's: %s (settings that "
                                "change no bit, such as comments, threads, batch, verify or slurm, may differ)",
                                what, diff);
        }
    } else if (status == SOWER_OK) {
        if (h5file_read_string_attr(root, LAYOUT_ATTR_MANIFEST_SHA256, found, sizeof found) != 0 ||
            strcmp(found, key->manifest_sha256) != 0)
            status = SOWER_FAIL(SOWER_EINPUT,
                                "%s was made from a different manifest (manifest_sha256 differs; the file has "
                                "no job_key, so its manifest must be byte-identical)",
                                what);
    }
    free(job_key);
    int weights_same = h5file_read_string_attr(root, LAYOUT_ATTR_WEIGHTS_SHA256, found, sizeof found) == 0 &&
                       strcmp(found, key->weights_sha256) == 0;
    if (key->backend_identity &&
        h5file_read_string_attr(root, LAYOUT_ATTR_BACKEND_IDENTITY, identity, sizeof identity) != 0)
        snprintf(identity, sizeof identity, "(none recorded)");
    int identity_same = !key->backend_identity || strcmp(identity, key->backend_identity) == 0;
    H5Gclose(root);
    SOWER_TRY(status);
    if (!weights_same)
        return SOWER_FAIL(SOWER_EINPUT, "%s was made with different model weights (weights_sha256 differs)",
                          what);
    if (!identity_same)
        return SOWER_FAIL(SOWER_EINPUT,
                          "%s was rendered by another backend ('%s'; this run: '%s'): bits compare only "
                          "between equal backend identities, so its rows cannot join this run's",
                          what, identity, key->backend_identity);
    return SOWER_OK;
}

/* Rows claimed done (done (rows,) entries of 1; done NULL: every row) are checked against the
 * file: the sha256 of the row's latents must be its stored digest, its seed seed_of's, and with
 * images (img not NULL) the sha256 of its image its image digest. A row that fails is unmarked in
 * done (when given) and counted in *bad; the first ones are listed in `which` ("3, 17, 20, ...").
 * Reads a block of rows at a time, skipping blocks with nothing done. */
static int recheck_done_rows(hid_t file, const char *what, uint64_t rows, int c, int h, int w,
                             const H5ImageShape *img, H5SeedOf seed_of, const void *seed_ctx, uint8_t *done,
                             uint64_t *bad, char *which, size_t which_size)
{
    RowBlock b;
    int status = row_block_init(&b, c, h, w, img, 0);
    size_t used = 0;
    *bad = 0;
    which[0] = '\0';
    for (uint64_t r0 = 0; r0 < rows && status == SOWER_OK; r0 += b.cap) {
        const uint64_t n = rows - r0 < b.cap ? rows - r0 : b.cap;
        int any = !done;
        for (uint64_t i = 0; i < n && !any; i++)
            any = done[r0 + i] == 1;
        if (!any) continue;
        /* A block HDF5 cannot read (a write cut short by a full disk) is read a row at a time: the
         * rows that cannot be read fail their check like any other. */
        const int whole = row_block_read(&b, file, what, r0, n, 0) == SOWER_OK;
        if (!whole) sower_error_clear();
        for (uint64_t i = 0; i < n && status == SOWER_OK; i++) {
            if (done && done[r0 + i] != 1) continue;
            const int readable = whole || row_block_read(&b, file, what, r0 + i, 1, i) == SOWER_OK;
            if (!readable) sower_error_clear();
            int matches = 0;
            if (readable) status = row_block_matches(&b, i, &matches);
            if (status != SOWER_OK || (matches && (!seed_of || b.seeds[i] == seed_of(seed_ctx, r0 + i)))) continue;
            if (done) done[r0 + i] = 0;
            if (++*bad <= 8 && used < which_size)
                used += (size_t)snprintf(which + used, which_size - used, "%s%llu", *bad > 1 ? ", " : "",
                                         (unsigned long long)(r0 + i));
            else if (*bad == 9 && used < which_size)
                used += (size_t)snprintf(which + used, which_size - used, ", ...");
        }
    }
    row_block_free(&b);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* /done into done (rows,), less the rows that fail recheck_done_rows (a warning names them). */
static int read_done_rows(hid_t file, hid_t done_ds, const char *what, uint64_t rows, int c, int h, int w,
                          const H5ImageShape *img, H5SeedOf seed_of, const void *seed_ctx, uint8_t *done,
                          uint64_t *bad)
{
    if (H5Dread(done_ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, done) < 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: cannot read /" LAYOUT_DONE, what);
    /* Trust no row for its mark: a file edited or damaged since is re-rendered where it fails. */
    char which[160];
    SOWER_TRY(recheck_done_rows(file, what, rows, c, h, w, img, seed_of, seed_ctx, done, bad, which, sizeof which));
    if (*bad)
        fprintf(stderr,
                "sower run: warning: %s: %llu row%s marked done fail%s the check of bytes against digest and "
                "seed against the job (row%s %s): rendering %s again\n",
                what, (unsigned long long)*bad, *bad == 1 ? "" : "s", *bad == 1 ? "s" : "", *bad == 1 ? "" : "s",
                which, *bad == 1 ? "it" : "them");
    return SOWER_OK;
}

/* 1 when /latents is stored through filters (gzip): its chunks are allocated as rows are written. */
static int latents_filtered(hid_t file)
{
    hid_t ds = H5Dopen2(file, LAYOUT_LATENTS, H5P_DEFAULT);
    hid_t dcpl = ds >= 0 ? H5Dget_create_plist(ds) : -1;
    const int filtered = dcpl >= 0 && H5Pget_nfilters(dcpl) > 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ds >= 0) H5Dclose(ds);
    return filtered;
}

static int resume_open(H5Out *o, const char *path, uint64_t rows, int c, int h, int w, const H5ImageShape *img,
                       const H5JobKey *key, H5SeedOf seed_of, const void *seed_ctx, uint8_t *done, int *rebuild)
{
    SOWER_TRY(start(o, path, rows, c, h, w));
    o->seed_of = seed_of, o->seed_ctx = seed_ctx;
    char what[4200];
    snprintf(what, sizeof what, "--resume: '%s'", o->partial_path);
    struct stat st;
    if (lstat(o->partial_path, &st) == 0 && S_ISLNK(st.st_mode)) /* a run makes it a file: a link is someone's */
        return SOWER_FAIL(SOWER_EPATH, "%s: a link, not the file an interrupted run leaves: not resuming through it "
                                       "(move the file it points to here to resume it)", what);
    if (stat(o->partial_path, &st) != 0)
        return SOWER_FAIL(SOWER_EPATH, "%s: no such file (no interrupted run of this output to resume)", what);
    if (!S_ISREG(st.st_mode))
        return SOWER_FAIL(SOWER_EPATH, "%s: not a regular file (a FIFO, socket or device): not replacing it without "
                                       "--force", what);
    /* Checked read-only first: HDF5 would write a superblock into an empty or foreign file opened
     * for writing, and a refused file must stay exactly as it was. */
    SOWER_TRY(h5file_room_to_open(o->partial_path));
    hid_t probe = st.st_size > 0 ? H5Fopen(o->partial_path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (probe < 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: %s: not replacing it without --force", what,
                          st.st_size ? "not an HDF5 file sower can open (damaged, or another kind of file)"
                                     : "an empty file (the run died before writing it)");
    int status = h5file_check_format(probe, what);
    if (status == SOWER_OK) status = check_same_job(probe, what, key);
    if (status == SOWER_OK) status = h5file_check_layout(probe, what, rows, c, h, w);
    if (status == SOWER_OK)
        status = h5file_check_images(probe, what, rows, img != NULL, img ? img->c : 0, img ? img->h : 0, img ? img->w : 0);
    if (img) o->ic = img->c, o->ih = img->h, o->iw = img->w;
    *rebuild = status == SOWER_OK && latents_filtered(probe);
    uint64_t bad = 0;
    if (*rebuild) { /* the rows are read here, and copied into a new file by the caller */
        hid_t done_ds = H5Dopen2(probe, LAYOUT_DONE, H5P_DEFAULT);
        status = read_done_rows(probe, done_ds, what, rows, c, h, w, img, seed_of, seed_ctx, done, &bad);
        H5Dclose(done_ds);
    }
    H5Fclose(probe);
    SOWER_TRY(status);
    if (*rebuild) return SOWER_OK;
    SOWER_TRY(h5file_room_to_open(o->partial_path));
    o->file = H5Fopen(o->partial_path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (o->file < 0) return SOWER_FAIL(SOWER_EPATH, "%s: cannot open it for writing", what);
    note_open_file(o);
    o->latents = H5Dopen2(o->file, LAYOUT_LATENTS, H5P_DEFAULT);
    o->seeds = H5Dopen2(o->file, LAYOUT_SEEDS, H5P_DEFAULT);
    o->digest = H5Dopen2(o->file, LAYOUT_DIGEST, H5P_DEFAULT);
    o->done = H5Dopen2(o->file, LAYOUT_DONE, H5P_DEFAULT);
    if (img) {
        o->images = H5Dopen2(o->file, LAYOUT_IMAGES, H5P_DEFAULT);
        o->image_digest = H5Dopen2(o->file, LAYOUT_IMAGE_DIGEST, H5P_DEFAULT);
    }
    if (o->latents < 0 || o->seeds < 0 || o->digest < 0 || o->done < 0 || o->images < 0 || o->image_digest < 0)
        return SOWER_FAIL(SOWER_EIO, "%s: cannot open its datasets", what);
    SOWER_TRY(read_done_rows(o->file, o->done, what, rows, c, h, w, img, seed_of, seed_ctx, done, &bad));
    if (bad) SOWER_TRY(write_seeds(o)); /* a row whose seed was altered gets the job's back */
    /* A previous run may have died while writing its run facts or verification: start those anew. */
    if (H5Lexists(o->file, LAYOUT_RUN, H5P_DEFAULT) > 0) H5Ldelete(o->file, LAYOUT_RUN, H5P_DEFAULT);
    if (H5Lexists(o->file, LAYOUT_VERIFY, H5P_DEFAULT) > 0) H5Ldelete(o->file, LAYOUT_VERIFY, H5P_DEFAULT);
    return SOWER_OK;
}

int h5out_resume(H5Out *o, const char *path, uint64_t rows, int c, int h, int w, const H5ImageShape *images,
                 const H5JobKey *key, H5SeedOf seed_of, const void *seed_ctx, uint8_t *done, int *rebuild)
{
    *rebuild = 0;
    int status = resume_open(o, path, rows, c, h, w, images, key, seed_of, seed_ctx, done, rebuild);
    /* A refused resume leaves the user's file as it was (never abandoned); a rebuild starts anew. */
    if (status != SOWER_OK || *rebuild) h5out_keep_partial(o);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5out_write_rows(H5Out *o, uint64_t row0, uint64_t n, const float *latents, const unsigned char *digests,
                     const unsigned char *images, const unsigned char *image_digests)
{
    hsize_t ldims[4] = {0, (hsize_t)o->c, (hsize_t)o->h, (hsize_t)o->w}, ddims[2] = {0, 32}, one[1] = {0};
    if ((o->images > 0) != (images != NULL) || (images != NULL) != (image_digests != NULL))
        return SOWER_FAIL(SOWER_EINTERNAL, "%s: rows %s images for a file %s them", o->partial_path,
                          images ? "with" : "without", o->images > 0 ? "with" : "without");
    if (images) {
        const hsize_t idims[4] = {0, (hsize_t)o->ic, (hsize_t)o->ih, (hsize_t)o->iw};
        SOWER_TRY(write_rows(o, o->images, H5T_NATIVE_UINT8, 4, idims, row0, n, images, "write /" LAYOUT_IMAGES));
        SOWER_TRY(write_rows(o, o->image_digest, H5T_NATIVE_UINT8, 2, ddims, row0, n, image_digests,
                             "write /" LAYOUT_IMAGE_DIGEST));
    }
    SOWER_TRY(
        write_rows(o, o->latents, H5T_NATIVE_FLOAT, 4, ldims, row0, n, latents, "write /" LAYOUT_LATENTS));
    SOWER_TRY(
        write_rows(o, o->digest, H5T_NATIVE_UINT8, 2, ddims, row0, n, digests, "write /" LAYOUT_DIGEST));
    /* The data reaches the file before the rows are marked done: never done without data. */
    H5_TRY(H5Fflush(o->file, H5F_SCOPE_LOCAL), "flush rows");
    uint8_t *ones = malloc(n ? n : 1);
    if (!ones) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    memset(ones, 1, n);
    int status = write_rows(o, o->done, H5T_NATIVE_UINT8, 1, one, row0, n, ones, "write /" LAYOUT_DONE);
    free(ones);
    SOWER_TRY(status);
    o->rows_written += n;
    H5_TRY(H5Fflush(o->file, H5F_SCOPE_LOCAL), "flush the completion record");
    return SOWER_OK;
}

int h5out_read_image_digest(H5Out *o, uint64_t row, unsigned char *digest)
{
    const hsize_t ddims[2] = {0, DIGEST_BYTES};
    H5_TRY(h5file_transfer_rows(o->image_digest, H5T_NATIVE_UINT8, 2, ddims, row, 1, digest, 0),
           "read /" LAYOUT_IMAGE_DIGEST " back");
    return SOWER_OK;
}

int h5out_read_row(H5Out *o, uint64_t row, float *latent)
{
    hsize_t ldims[4] = {0, (hsize_t)o->c, (hsize_t)o->h, (hsize_t)o->w};
    H5_TRY(h5file_transfer_rows(o->latents, H5T_NATIVE_FLOAT, 4, ldims, row, 1, latent, 0),
           "read /" LAYOUT_LATENTS " back");
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
    if (ds >= 0) H5Dclose(ds);
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

int h5out_write_run(H5Out *o, const H5Attr *attrs, int n_attrs, const H5IntAttr *ints, int n_ints,
                    const uint64_t *slices, int world)
{
    hid_t g = make_group(o->file, LAYOUT_RUN);
    if (g < 0) return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create /" LAYOUT_RUN, o->partial_path);
    int status = SOWER_OK;
    for (int i = 0; i < n_attrs && status == SOWER_OK; i++)
        status = string_attr(o, g, attrs[i].key, attrs[i].value);
    for (int i = 0; i < n_ints && status == SOWER_OK; i++)
        status = int_attr(o, g, ints[i].key, ints[i].value);
    if (status == SOWER_OK)
        status = write_vector(o, g, LAYOUT_RUN_RANK_SLICES, H5T_STD_U64LE, H5T_NATIVE_UINT64,
                              (uint64_t)world + 1, slices);
    H5Gclose(g);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5out_write_verify(H5Out *o, uint64_t n, const uint64_t *rows, const uint64_t *seeds,
                       const int32_t *renderer, const int32_t *verifier, const uint8_t *match,
                       const float *max_abs_diff)
{
    hid_t g = make_group(o->file, LAYOUT_VERIFY);
    if (g < 0) return SOWER_FAIL(SOWER_EIO, "%s: HDF5 failed to create /" LAYOUT_VERIFY, o->partial_path);
    int status = write_vector(o, g, LAYOUT_VERIFY_ROWS, H5T_STD_U64LE, H5T_NATIVE_UINT64, n, rows);
    if (status == SOWER_OK)
        status = write_vector(o, g, LAYOUT_VERIFY_SEEDS, H5T_STD_U64LE, H5T_NATIVE_UINT64, n, seeds);
    if (status == SOWER_OK)
        status = write_vector(o, g, LAYOUT_VERIFY_RENDERER, H5T_STD_I32LE, H5T_NATIVE_INT32, n, renderer);
    if (status == SOWER_OK)
        status = write_vector(o, g, LAYOUT_VERIFY_VERIFIER, H5T_STD_I32LE, H5T_NATIVE_INT32, n, verifier);
    if (status == SOWER_OK)
        status = write_vector(o, g, LAYOUT_VERIFY_MATCH, H5T_STD_U8LE, H5T_NATIVE_UINT8, n, match);
    if (status == SOWER_OK)
        status =
            write_vector(o, g, LAYOUT_VERIFY_MAX_ABS_DIFF, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, n, max_abs_diff);
    H5Gclose(g);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* Checks that an open slice file (`what` names it in messages) is slice `tag` of this job, complete
 * and of shape (hi - lo, c, h, w). */
static int check_slice(H5Out *o, hid_t in, const char *what, const char *tag, uint64_t lo, uint64_t hi,
                       const H5JobKey *key)
{
    char found[64];
    SOWER_TRY(h5file_check_format(in, what));
    SOWER_TRY(check_same_job(in, what, key));
    hid_t root = H5Gopen2(in, "/", H5P_DEFAULT);
    int has_tag = h5file_read_string_attr(root, LAYOUT_ATTR_SLICE, found, sizeof found) == 0;
    H5Gclose(root);
    if (!has_tag || strcmp(found, tag) != 0)
        return SOWER_FAIL(SOWER_EINPUT, "%s: expected slice %s of the job, found %s", what, tag,
                          has_tag ? found : "a file without a slice attribute");
    SOWER_TRY(h5file_check_layout(in, what, hi - lo, o->c, o->h, o->w));
    SOWER_TRY(h5file_check_images(in, what, hi - lo, o->ic > 0, o->ic, o->ih, o->iw));
    return SOWER_OK;
}

int h5out_copy_slice(H5Out *o, const char *slice_path, const char *slice_tag, uint64_t lo, uint64_t hi,
                     const H5JobKey *key, uint8_t *done)
{
    SOWER_TRY(check_regular_if_present(slice_path, "slice"));
    SOWER_TRY(h5file_room_to_open(slice_path));
    hid_t in = H5Fopen(slice_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in < 0)
        return SOWER_FAIL(SOWER_EPATH,
                          "cannot open slice '%s' (did array task %s finish? a '.partial' beside it "
                          "means it was interrupted: resubmit that task)",
                          slice_path, slice_tag);
    const H5ImageShape img = {o->ic, o->ih, o->iw};
    RowBlock b;
    int status = row_block_init(&b, o->c, o->h, o->w, o->ic ? &img : NULL, 64);
    char what[4200];
    snprintf(what, sizeof what, "slice '%s'", slice_path);
    const uint64_t rendered = o->rows_written; /* copies are not this run's work: the slices keep them */
    if (status == SOWER_OK) status = check_slice(o, in, what, slice_tag, lo, hi, key);
    for (uint64_t r0 = lo; r0 < hi && status == SOWER_OK; r0 += b.cap) {
        uint64_t n = hi - r0 < b.cap ? hi - r0 : b.cap, at = r0 - lo;
        status = row_block_read(&b, in, what, at, n, 0);
        for (uint64_t i = 0; i < n && status == SOWER_OK; i++) {
            int matches = 0;
            status = row_block_matches(&b, i, &matches);
            const int seed_ok = !o->seed_of || b.seeds[i] == o->seed_of(o->seed_ctx, r0 + i);
            if (status == SOWER_OK && (b.fin[i] != 1 || !matches || !seed_ok))
                status = SOWER_FAIL(SOWER_EINPUT, "slice '%s': row %llu (job row %llu) is %s", slice_path,
                                    (unsigned long long)(at + i), (unsigned long long)(r0 + i),
                                    b.fin[i] != 1 ? "not marked done (the slice is incomplete)"
                                    : !seed_ok    ? "of another seed than the job's"
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
            status = row_block_write(o, &b, r0 + i, i, j - i);
            for (uint64_t k = i; k < j; k++)
                done[r0 + k] = 1;
            i = j;
        }
    }
    H5Fclose(in);
    o->rows_written = rendered;
    row_block_free(&b);
    SOWER_TRY(status);
    return SOWER_OK;
}

int h5out_is_finished(const char *path, const H5JobKey *key, uint64_t rows, int c, int h, int w,
                      const H5ImageShape *images, H5SeedOf seed_of, const void *seed_ctx, int *finished,
                      uint64_t *verify_mismatches)
{
    *finished = 0;
    *verify_mismatches = 0;
    FILE *probe = regular_file_fopen(path);
    if (!probe && errno != ENOENT)
        return SOWER_FAIL(SOWER_EPATH, "output '%s' exists and cannot be read (%s): not replacing it (pass --force)",
                          path, regular_file_why(errno));
    struct stat link;
    if (!probe && lstat(path, &link) == 0) /* a dangling link: not a file to make, the user's link to keep */
        return SOWER_FAIL(SOWER_EPATH, "output '%s' is a link to a missing file: not replacing it (pass --force)", path);
    if (!probe) return SOWER_OK;
    fclose(probe);
    h5file_quiet();
    SOWER_TRY(h5file_room_to_open(path));
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return SOWER_FAIL(
            SOWER_EPATH, "output '%s' exists and is not an HDF5 file: not replacing it (pass --force)", path);
    char what[4200];
    snprintf(what, sizeof what, "output '%s' (exists; not replacing it without --force)", path);
    int status = h5file_check_format(file, what);
    if (status == SOWER_OK) status = check_same_job(file, what, key);
    /* Only a complete file counts as finished: one damaged since (a partial copy, say) is refused. */
    snprintf(what, sizeof what, "output '%s'", path);
    if (status == SOWER_OK) status = h5file_check_layout(file, what, rows, c, h, w);
    if (status == SOWER_OK)
        status = h5file_check_images(file, what, rows, images != NULL, images ? images->c : 0, images ? images->h : 0,
                                     images ? images->w : 0);
    uint64_t not_done = 0;
    if (status == SOWER_OK) status = h5file_count_not_done(file, what, rows, &not_done);
    if (status == SOWER_OK && not_done)
        status = SOWER_FAIL(SOWER_EINPUT,
                            "%s exists, but %llu of its %llu rows are not marked done (a damaged "
                            "file?): not taking it as finished, nor replacing it (pass --force)",
                            what, (unsigned long long)not_done, (unsigned long long)rows);
    uint64_t bad = 0;
    char which[160];
    if (status == SOWER_OK)
        status = recheck_done_rows(file, what, rows, c, h, w, images, seed_of, seed_ctx, NULL, &bad, which, sizeof which);
    if (status == SOWER_OK && bad)
        status = SOWER_FAIL(SOWER_EINPUT,
                            "%s exists, but %llu of its rows fail the check of bytes against digest and seed "
                            "against the job (row%s %s): a damaged file; not taking it as finished, nor "
                            "replacing it (pass --force)",
                            what, (unsigned long long)bad, bad == 1 ? "" : "s", which);
    if (status == SOWER_OK) status = h5file_count_verify_mismatches(file, what, rows, verify_mismatches);
    H5Fclose(file);
    SOWER_TRY(status);
    *finished = 1;
    return SOWER_OK;
}

void h5out_keep_partial(H5Out *o)
{
    close_all(o);
    free(o->creating_path);
    free(o->path);
    free(o->partial_path);
    memset(o, 0, sizeof *o);
}

static void close_all(H5Out *o)
{
    hid_t *handles[] = {&o->latents, &o->seeds, &o->digest, &o->done, &o->images, &o->image_digest};
    for (int i = 0; i < 6; i++)
        if (*handles[i] > 0) H5Dclose(*handles[i]), *handles[i] = 0;
    if (o->file > 0) H5Fclose(o->file), o->file = 0;
}

int h5out_finish(H5Out *o, int replace)
{
    close_all(o);
    if (!still_ours(o, o->partial_path))
        return SOWER_FAIL(SOWER_EIO,
                          "'%s' is no longer the file this run wrote (another process replaced or removed it "
                          "while the run went on): what is there now is not renamed to '%s'",
                          o->partial_path, o->path);
    /* Without --force, OUT did not exist when the run began: a file there now is another program's. */
    const int moved = replace ? rename(o->partial_path, o->path) : rename_no_replace(o->partial_path, o->path);
    if (moved != 0 && !replace && errno == EEXIST)
        return SOWER_FAIL(SOWER_EIO,
                          "'%s' appeared while this run wrote it (another program put it there): not replacing "
                          "it without --force. Every row is in '%s': move '%s' away and run again with --resume "
                          "to finish",
                          o->path, o->partial_path, o->path);
    if (moved != 0)
        return SOWER_FAIL(SOWER_EIO, "cannot rename '%s' to '%s': %s", o->partial_path, o->path, strerror(errno));
    free(o->path);
    free(o->partial_path);
    memset(o, 0, sizeof *o);
    return SOWER_OK;
}

void h5out_abandon(H5Out *o)
{
    close_all(o);
    if (o->creating_path) {
        if (still_ours(o, o->creating_path)) remove(o->creating_path);
    } else if (o->partial_path && o->created && o->rows_written == 0 && still_ours(o, o->partial_path))
        remove(o->partial_path);
    free(o->creating_path);
    free(o->path);
    free(o->partial_path);
    memset(o, 0, sizeof *o);
}

int h5out_partial_progress(const char *partial_path, uint64_t *done, uint64_t *rows)
{
    *done = *rows = 0;
    SOWER_TRY(check_regular_if_present(partial_path, "the interrupted run's file"));
    h5file_quiet();
    SOWER_TRY(h5file_room_to_open(partial_path));
    hid_t file = H5Fopen(partial_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return SOWER_FAIL(SOWER_EINPUT, "'%s' is not an HDF5 file sower can open (damaged, or another kind of file)",
                          partial_path);
    hid_t ds = H5Lexists(file, LAYOUT_DONE, H5P_DEFAULT) > 0 ? H5Dopen2(file, LAYOUT_DONE, H5P_DEFAULT) : -1;
    hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t dims[1] = {0};
    int status = space >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
                         H5Sget_simple_extent_dims(space, dims, NULL) == 1
                     ? SOWER_OK
                     : SOWER_FAIL(SOWER_EINPUT, "'%s' has no readable /%s (not a sower output, or a damaged one)",
                                  partial_path, LAYOUT_DONE);
    if (space >= 0) H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    uint64_t not_done = 0;
    if (status == SOWER_OK) status = h5file_count_not_done(file, partial_path, dims[0], &not_done);
    H5Fclose(file);
    SOWER_TRY(status);
    *rows = dims[0], *done = dims[0] - not_done;
    return SOWER_OK;
}
