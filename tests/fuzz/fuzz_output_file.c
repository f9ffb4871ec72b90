/* fuzz_output_file.c: the output-file reader behind verify, export, --resume-auto and --stitch (h5read.h,
 * h5out_is_finished), on damaged copies of a real output.
 *
 * The input is not the file's bytes (that would fuzz HDF5's own parser, which sower does not own): it is a
 * list of edits made through the HDF5 API to a copy of a finished sower output (the template: an SD run's
 * file, with prompts, made by `sower run` before the test; path in SOWER_FUZZ_OUTPUT_TEMPLATE): string
 * attributes replaced or deleted, dataset elements overwritten with arbitrary bytes, datasets deleted or
 * replaced by others of arbitrary shape and element type. Each edit is 8 bytes + payload:
 *     op (1), which (1), index (4, little-endian), payload length (1), reserved (1), payload.
 * Then every reader runs on the copy. Contract: each succeeds with a result inside the file's bounds, or
 * fails with a bad-input status (exit 2) whose message names the file; never a crash or a read past a
 * buffer (the sanitizers watch). The unedited template must read back whole. */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <unistd.h>

#include "fuzz.h"
#include "h5_layout.h"
#include "h5out.h"
#include "h5read.h"
#include "outfile.h"

static const char *const ATTRS[] = {
    LAYOUT_ATTR_FORMAT,         LAYOUT_ATTR_FORMAT_VERSION, LAYOUT_ATTR_MANIFEST,         LAYOUT_ATTR_MANIFEST_SHA256,
    LAYOUT_ATTR_JOB_KEY,        LAYOUT_ATTR_JOB_SHA256,     LAYOUT_ATTR_MODEL_CONFIG,     LAYOUT_ATTR_WEIGHTS_SHA256,
    LAYOUT_ATTR_PIPELINE,       LAYOUT_ATTR_GENERATOR,      LAYOUT_ATTR_BACKEND_IDENTITY, LAYOUT_ATTR_SLICE,
    LAYOUT_ATTR_SCHEDULER_CONFIG};
static const char *const DATASETS[] = {
    LAYOUT_LATENTS, LAYOUT_SEEDS, LAYOUT_DIGEST, LAYOUT_DONE, LAYOUT_PROMPTS, LAYOUT_NEGATIVE_PROMPTS,
    LAYOUT_PROMPT_INDEX, LAYOUT_VERIFY "/" LAYOUT_VERIFY_ROWS, LAYOUT_VERIFY "/" LAYOUT_VERIFY_MATCH,
    LAYOUT_VERIFY "/" LAYOUT_VERIFY_SEEDS};
enum { N_ATTRS = sizeof ATTRS / sizeof ATTRS[0], N_DATASETS = sizeof DATASETS / sizeof DATASETS[0] };

static char template_path[4096], copy_path[4200];
static unsigned char *template_bytes;
static size_t template_size;
static char job_key[65536], job_sha[80], manifest_sha[80], weights_sha[80], identity[1024];

static void read_attr(hid_t file, const char *key, char *out, size_t size)
{
    hid_t a = H5Aopen(file, key, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    out[0] = '\0';
    if (t >= 0 && H5Tis_variable_str(t) > 0) {
        char *v = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        if (H5Aread(a, mt, &v) >= 0 && v) snprintf(out, size, "%s", v);
        H5free_memory(v);
        H5Tclose(mt);
    } else if (t >= 0) {
        size_t n = H5Tget_size(t);
        char *v = calloc(n + 1, 1);
        if (v && H5Aread(a, t, v) >= 0) snprintf(out, size, "%s", v);
        free(v);
    }
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
}

/* Once: the template's bytes and its job key, as a run of the same job would hold them. */
static void load_template(void)
{
    if (template_bytes) return;
    const char *path = getenv("SOWER_FUZZ_OUTPUT_TEMPLATE");
    FUZZ_ASSERT(path && *path, "set SOWER_FUZZ_OUTPUT_TEMPLATE to a finished sower output");
    snprintf(template_path, sizeof template_path, "%s", path);
    FUZZ_ASSERT(file_read_all(path, 64u << 20, &template_bytes, &template_size) == SOWER_OK, "cannot read %s", path);
    snprintf(copy_path, sizeof copy_path, "%s.fuzz-%ld.h5", path, (long)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    FUZZ_ASSERT(f >= 0, "cannot open the template %s", path);
    read_attr(f, LAYOUT_ATTR_JOB_KEY, job_key, sizeof job_key);
    read_attr(f, LAYOUT_ATTR_JOB_SHA256, job_sha, sizeof job_sha);
    read_attr(f, LAYOUT_ATTR_MANIFEST_SHA256, manifest_sha, sizeof manifest_sha);
    read_attr(f, LAYOUT_ATTR_WEIGHTS_SHA256, weights_sha, sizeof weights_sha);
    read_attr(f, LAYOUT_ATTR_BACKEND_IDENTITY, identity, sizeof identity);
    H5Fclose(f);
}

static void set_string_attr(hid_t obj, const char *key, const char *value)
{
    if (H5Aexists(obj, key) > 0) H5Adelete(obj, key);
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t a = H5Acreate2(obj, key, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) H5Awrite(a, t, &value), H5Aclose(a);
    H5Sclose(s), H5Tclose(t);
}

/* Overwrites elements of ds from element `index` with the payload's bytes, in the dataset's own type
 * (variable-length strings: one new string). */
static void overwrite(hid_t ds, uint32_t index, const uint8_t *payload, size_t n)
{
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    hsize_t dims[8] = {0};
    const int rank = H5Sget_simple_extent_ndims(space);
    hssize_t total = H5Sget_simple_extent_npoints(space);
    if (rank >= 1 && rank <= 8 && total > 0) {
        H5Sget_simple_extent_dims(space, dims, NULL);
        const int vlen = H5Tis_variable_str(type) > 0;
        const size_t elem = vlen ? sizeof(char *) : H5Tget_size(type);
        hsize_t count = vlen ? 1 : (elem ? n / elem : 0), start = index % (hsize_t)total;
        if (count > (hsize_t)total - start) count = (hsize_t)total - start;
        if (count > 0) {
            /* the elements as a flat run: a 1-D selection of the flattened dataset, point by point */
            hsize_t *coords = calloc((size_t)count * (size_t)rank, sizeof *coords);
            for (hsize_t i = 0; coords && i < count; i++) {
                hsize_t flat = start + i;
                for (int d = rank - 1; d >= 0; d--) coords[i * (hsize_t)rank + (hsize_t)d] = flat % dims[d], flat /= dims[d];
            }
            hid_t mem = H5Screate_simple(1, &count, NULL);
            if (coords && H5Sselect_elements(space, H5S_SELECT_SET, (size_t)count, coords) >= 0) {
                if (vlen) {
                    char *text = calloc(n + 1, 1);
                    if (text) memcpy(text, payload, n);
                    hid_t mt = H5Tcopy(H5T_C_S1);
                    H5Tset_size(mt, H5T_VARIABLE);
                    if (text) H5Dwrite(ds, mt, mem, space, H5P_DEFAULT, &text);
                    H5Tclose(mt);
                    free(text);
                } else {
                    H5Dwrite(ds, type, mem, space, H5P_DEFAULT, payload);
                }
            }
            H5Sclose(mem);
            free(coords);
        }
    }
    H5Tclose(type), H5Sclose(space);
}

/* Replaces dataset `name` with one of 1..4 dimensions (sizes from the payload, 0..7 each) of one of a
 * few element types, filled with zeros. */
static void replace_dataset(hid_t file, const char *name, uint32_t index, const uint8_t *payload, size_t n)
{
    if (H5Lexists(file, name, H5P_DEFAULT) > 0) H5Ldelete(file, name, H5P_DEFAULT);
    const int rank = 1 + (int)(index % 4);
    hsize_t dims[4];
    for (int d = 0; d < rank; d++) dims[d] = n > (size_t)d ? payload[d] % 8 : 1;
    const hid_t types[] = {H5T_NATIVE_FLOAT, H5T_NATIVE_UINT8, H5T_NATIVE_UINT64, H5T_NATIVE_INT32, H5T_NATIVE_DOUBLE};
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, types[(index / 4) % 5], space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
}

/* Applies the input's edits to the copy; 0 when the copy cannot be made or opened. */
static int edit_copy(const uint8_t *data, size_t size)
{
    FILE *f = fopen(copy_path, "wb");
    FUZZ_ASSERT(f && fwrite(template_bytes, 1, template_size, f) == template_size && fclose(f) == 0, "copy");
    hid_t file = H5Fopen(copy_path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) return 0;
    for (size_t at = 0; at + 8 <= size;) {
        const uint8_t op = data[at], which = data[at + 1];
        const uint32_t index = (uint32_t)data[at + 2] | (uint32_t)data[at + 3] << 8 | (uint32_t)data[at + 4] << 16 |
                               (uint32_t)data[at + 5] << 24;
        size_t n = data[at + 6];
        at += 8;
        if (n > size - at) n = size - at;
        const uint8_t *payload = data + at;
        at += n;
        char text[256];
        memcpy(text, payload, n), text[n] = '\0';
        switch (op % 6) {
        case 0: set_string_attr(file, ATTRS[which % N_ATTRS], text); break;
        case 1:
            if (H5Aexists(file, ATTRS[which % N_ATTRS]) > 0) H5Adelete(file, ATTRS[which % N_ATTRS]);
            break;
        case 2: {
            hid_t ds = H5Lexists(file, DATASETS[which % N_DATASETS], H5P_DEFAULT) > 0
                           ? H5Dopen2(file, DATASETS[which % N_DATASETS], H5P_DEFAULT)
                           : -1;
            if (ds >= 0) overwrite(ds, index, payload, n), H5Dclose(ds);
            break;
        }
        case 3:
            if (H5Lexists(file, DATASETS[which % N_DATASETS], H5P_DEFAULT) > 0)
                H5Ldelete(file, DATASETS[which % N_DATASETS], H5P_DEFAULT);
            break;
        case 4:
            if (strchr(DATASETS[which % N_DATASETS], '/') == NULL) /* the root's datasets */
                replace_dataset(file, DATASETS[which % N_DATASETS], index, payload, n);
            break;
        default: { /* an attribute of /latents */
            hid_t ds = H5Lexists(file, LAYOUT_LATENTS, H5P_DEFAULT) > 0 ? H5Dopen2(file, LAYOUT_LATENTS, H5P_DEFAULT) : -1;
            if (ds >= 0) set_string_attr(ds, which % 2 ? LAYOUT_LATENTS_MEANING : LAYOUT_LATENTS_COORDINATES, text),
                H5Dclose(ds);
        }
        }
    }
    H5Fclose(file);
    return 1;
}

static void expect(int status, int edited)
{
    if (status == SOWER_OK) return;
    FUZZ_ASSERT(edited, "the unedited template failed: %s", sower_error_message());
    fuzz_expect_input_error(status, copy_path);
}

static uint64_t seed_of_row(const void *ctx, uint64_t row) { return job_seed_at(ctx, row); }

/* The readers, in the order verify and export use them. */
static void read_everything(int edited)
{
    OutputReader r;
    int status = h5read_open_finished(&r, copy_path);
    expect(status, edited);
    if (status == SOWER_OK) {
        FUZZ_ASSERT(r.rows == r.hi - r.lo && r.hi <= r.job.n_rows && r.c > 0 && r.h > 0 && r.w > 0, "bounds");
        const size_t per = (size_t)r.c * r.h * r.w;
        float *latents = malloc(per * sizeof *latents);
        uint64_t seed;
        unsigned char digest[32];
        uint8_t done;
        for (uint64_t i = 0; i < r.rows && status == SOWER_OK; i++) {
            status = h5read_rows(&r, i, 1, latents, &seed, digest, &done);
            expect(status, edited);
        }
        free(latents);
        VerifyTable t;
        int present = 0;
        status = h5read_verify_table(&r, &t, &present);
        expect(status, edited);
        FUZZ_ASSERT(status != SOWER_OK || !present || t.n <= r.rows, "%llu verify entries for %llu rows",
                    (unsigned long long)t.n, (unsigned long long)r.rows);
        verify_table_free(&t);
        /* --resume-auto's question: is it this job's finished output? */
        const H5JobKey key = {job_key, job_sha, manifest_sha, weights_sha, identity};
        int finished = 0;
        uint64_t mismatched = 0;
        status = h5out_is_finished(copy_path, &key, r.job.n_rows, r.c, r.h, r.w, NULL, seed_of_row, &r.job, &finished,
                                   &mismatched);
        expect(status, edited);
        FUZZ_ASSERT(edited || finished, "the unedited template is not finished");
        FUZZ_ASSERT(edited || !mismatched, "the unedited template records %llu mismatches",
                    (unsigned long long)mismatched);
        h5read_close(&r);
    }
    status = h5read_open(&r, copy_path);
    expect(status, edited);
    if (status == SOWER_OK) expect(h5read_refuse_unfinished(&r), edited);
    h5read_close(&r);
    sower_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_template();
    if (edit_copy(data, size)) read_everything(size >= 8);
    unlink(copy_path);
    return 0;
}
