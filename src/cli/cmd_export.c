/* cmd_export.c: `sower export OUT.h5|OUT.npy --png FILE [--rows a-b] [--columns N]`: a contact sheet of
 * rendered samples (a run's output, or sample's array with its record, export_source.h); `--pngs DIR` / `--imagefolder DIR`: one PNG per row (export_images.h). Pixel-space samples are post-processed as diffusers' pipelines do,
 * (x / 2 + 0.5).clamp(0, 1) * 255 rounded; 3 channels become RGB, 1 channel grey; other channel
 * counts show channel 0 in grey. Rows are laid out left to right, top to bottom, 2 px apart. The
 * file is read through h5read.h, which refuses anything but a finished output of this format. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <png.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cpu_load.h"
#include "seeds.h"
#include "commands.h"
#include "digest.h"
#include "export_images.h"
#include "vae.h"
#include "gemm.h"
#include "outfile.h"
#include "output_lock.h"

enum { GAP = 2, GAP_GREY = 128, MAX_EXPORT_ROWS = 4096, MAX_DIR_ROWS = 1 << 24 };


/* The sheet's file must not be what is exported (OUT.h5, or OUT.npy and its record, through any link):
 * writing it would replace the rows it shows. An existing FILE is replaced only with --force. */
static int check_png_target(const char *png_path, const char *path, int force)
{
    struct stat target, source;
    SOWER_TRY(output_lock_check_command_output(png_path, "--png"));
    if (stat(png_path, &target) != 0) return SOWER_OK; /* new (or a dangling link, which the write follows) */
    char record[4200];
    snprintf(record, sizeof record, "%s.json", path);
    const char *inputs[] = {path, record};
    for (int i = 0; i < 2; i++)
        if (stat(inputs[i], &source) == 0 && source.st_dev == target.st_dev && source.st_ino == target.st_ino)
            return SOWER_FAIL(SOWER_EUSAGE, "--png %s: that is %s, the file being exported: choose another FILE",
                              png_path, inputs[i]);
    if (!force)
        return SOWER_FAIL(SOWER_EPATH, "--png %s: the file exists; export never replaces a file unless --force",
                          png_path);
    return SOWER_OK;
}

static int write_png(const char *path, const unsigned char *pixels, int width, int height, int channels, int force)
{
    OutFile f; /* without --force, the commit also refuses a FILE made meanwhile */
    SOWER_TRY(force ? outfile_open(&f, path) : outfile_open_new(&f, path));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        outfile_free(&f);
        return SOWER_FAIL(SOWER_EIO, "cannot write PNG '%s'", path);
    }
    png_init_io(png, f.fp);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    int status = outfile_commit(&f);
    outfile_free(&f);
    SOWER_TRY(status);
    return SOWER_OK;
}

typedef struct {
    const char *path, *png_path, *rows_text, *dir, *model_dir;
    int layout, n_layouts; /* ExportLayout of the one folder option given */
    int force;             /* --png: replace an existing FILE */
    long columns, threads, shard_size, scale;
} ExportOptions;

enum { OPT_PNG, OPT_ROWS, OPT_COLUMNS, OPT_PNGS, OPT_IMAGEFOLDER, OPT_WEBDATASET, OPT_NPY, OPT_THREADS,
       OPT_SHARD_SIZE, OPT_SCALE, OPT_MODEL, OPT_FORCE, N_EXPORT_OPTS };
static const CliOption export_options[N_EXPORT_OPTS] = {
    [OPT_PNG] = {"--png", NULL, 1},           [OPT_ROWS] = {"--rows", NULL, 1},
    [OPT_COLUMNS] = {"--columns", NULL, 1},   [OPT_PNGS] = {"--pngs", NULL, 1},
    [OPT_IMAGEFOLDER] = {"--imagefolder", NULL, 1}, [OPT_WEBDATASET] = {"--webdataset", NULL, 1},
    [OPT_NPY] = {"--npy", NULL, 1},
    [OPT_THREADS] = {"--threads", NULL, 1},   [OPT_SHARD_SIZE] = {"--shard-size", NULL, 1},
    [OPT_SCALE] = {"--scale", NULL, 1},       [OPT_MODEL] = {"--model", NULL, 1},
    [OPT_FORCE] = {"--force", NULL, 0}};

static int on_export_option(void *ctx, int which, const char *v)
{
    ExportOptions *o = ctx;
    switch (which) {
    case OPT_PNG: o->png_path = v; break;
    case OPT_ROWS: o->rows_text = v; break;
    case OPT_PNGS:
    case OPT_IMAGEFOLDER:
    case OPT_WEBDATASET:
    case OPT_NPY:
        o->dir = v, o->n_layouts++;
        o->layout = which == OPT_PNGS          ? EXPORT_PNGS
                    : which == OPT_IMAGEFOLDER ? EXPORT_IMAGEFOLDER
                    : which == OPT_NPY         ? EXPORT_NPY
                                               : EXPORT_WEBDATASET;
        break;
    case OPT_THREADS: SOWER_TRY(cli_parse_int("--threads", v, 1, 1024, &o->threads)); break;
    case OPT_SHARD_SIZE: SOWER_TRY(cli_parse_int("--shard-size", v, 1, 1000000, &o->shard_size)); break;
    case OPT_SCALE: SOWER_TRY(cli_parse_int("--scale", v, 1, 16, &o->scale)); break;
    case OPT_MODEL: o->model_dir = v; break;
    case OPT_FORCE: o->force = 1; break;
    default: SOWER_TRY(cli_parse_int("--columns", v, 1, 1024, &o->columns)); break;
    }
    return SOWER_OK;
}

static const char export_usage[] =
    "usage: sower export OUT.h5|OUT.npy --png FILE [--rows A-B] [--columns N] [--scale S] [--force]\n"
    "       sower export OUT.h5|OUT.npy --pngs DIR | --imagefolder DIR | --webdataset DIR | --npy DIR [--shard-size N]\n"
    "                    [--rows A-B] [--threads T] [--model DIR]\n"
    "\n"
    "--png FILE: a contact sheet of the rows A..B (default: the first 64), post-processed as diffusers\n"
    "does for pixel-space models ((x/2+0.5) clamped to [0,1]); --scale S draws each pixel as SxS. An\n"
    "existing FILE is replaced only with --force (never the file being exported).\n"
    "--pngs DIR: one PNG per row (default: every row), DIR/rowRRRRRRRR_seedS.png; a Stable Diffusion\n"
    "output's latents are decoded by its model's VAE (vae.decode(latents / scaling_factor), one at a\n"
    "time, on the CPU; the model the run recorded, or --model DIR); each PNG carries its generation\n"
    "parameters in a `parameters` text chunk (as AUTOMATIC1111 writes it) and its provenance as JSON in a\n"
    "`sower` chunk.\n"
    "--imagefolder DIR: the same plus DIR/metadata.jsonl (file_name, prompt, seed, row, digests, ...), the\n"
    "layout Hugging Face datasets loads with load_dataset(\"imagefolder\", data_dir=DIR).\n"
    "--webdataset DIR: tar shards DIR/shard-NNNNNN.tar of N rows each (default 1000), each row as\n"
    "KEY.png and KEY.json (its metadata line), KEY = rowRRRRRRRR_seedS: the WebDataset layout.\n"
    "--npy DIR: the latents themselves for latent-space training, DIR/shard-NNNNNN.npy (N rows, C, h, w)\n"
    "float32 of N rows each (default 1000) and DIR/shard-NNNNNN.jsonl (a line per row: index, row, seed,\n"
    "prompt, ..., latents_sha256). Shard k holds rows k*N..(k+1)*N-1: --rows gives whole shards.\n"
    "DIR must be new, empty, or an export of the same job, layout and shard size (run again after an\n"
    "interruption: PNGs and shards already there are kept; other --rows merge into metadata.jsonl).\n"
    "DIR/SHA256SUMS gives every file's SHA-256 (sha256sum -c SHA256SUMS).\n"
    "--threads T: threads of the VAE decoding (default: the CPUs it may run on that other work\n"
    "does not keep busy); the bits do not depend on it.\n"
    "OUT.h5: a finished output of sower run; another file, an unfinished or damaged one, or another\n"
    "format_version exits 2. OUT.npy: an array of sower sample with the record it writes beside it,\n"
    "OUT.npy.json (model, settings, prompt, seeds, each row's SHA-256); a row that does not match its\n"
    "record, or an array without one, exits 2.\n";

static int on_export_path(void *ctx, const char *arg) { return cli_one_positional(&((ExportOptions *)ctx)->path, arg); }

/* --rows: one row "A" or one inclusive range "A-B" of the n_rows rows (a list would be taken for its
 * ends), of at most max_rows rows. */
static int parse_row_range(const char *text, uint64_t n_rows, uint64_t max_rows, uint64_t *first, uint64_t *last)
{
    uint64_t lo = 0, hi = 0;
    const int parsed = text[0] == '-' ? -1 : seed_item_parse(text, strlen(text), &lo, &hi);
    if (parsed != 0 || hi >= n_rows)
        return SOWER_FAIL(SOWER_EUSAGE, "--rows %s: expected one row A or one range A-B within 0-%llu", text,
                          (unsigned long long)n_rows - 1);
    if (hi - lo >= max_rows)
        return SOWER_FAIL(SOWER_EUSAGE, "--rows %s: more than %llu rows at once", text, (unsigned long long)max_rows);
    *first = lo, *last = hi;
    return SOWER_OK;
}

int cmd_export(int argc, char **argv)
{
    ExportOptions o = {0};
    int help = 0;
    const CliParser parser = {"export", export_options, N_EXPORT_OPTS, on_export_option, on_export_path, &o};
    SOWER_TRY(cli_parse(&parser, argc, argv, &help));
    if (help) {
        fputs(export_usage, stdout);
        return SOWER_OK;
    }
    const char *path = o.path, *png_path = o.png_path, *rows_text = o.rows_text;
    const char *dir = o.dir;
    long columns = o.columns;
    if (!path || (!png_path == !dir) || o.n_layouts > 1)
        return SOWER_FAIL(SOWER_EUSAGE, "sower export: give OUT.h5 (or sample's OUT.npy) and one of --png FILE, --pngs DIR, --imagefolder DIR, "
                                        "--webdataset DIR, --npy DIR (see sower export --help)");
    if (o.shard_size && o.layout != EXPORT_WEBDATASET && o.layout != EXPORT_NPY)
        return SOWER_FAIL(SOWER_EUSAGE, "--shard-size applies to --webdataset and --npy");
    if ((o.scale || o.columns) && dir) return SOWER_FAIL(SOWER_EUSAGE, "--scale and --columns apply to --png");
    if (o.force && dir)
        return SOWER_FAIL(SOWER_EUSAGE, "--force applies to --png (a folder export adds to an export of the same "
                                        "job and never replaces another's files)");
    if (png_path) SOWER_TRY(check_png_target(png_path, path, o.force));
    const int scale = o.scale ? (int)o.scale : 1;
    const long threads = o.threads ? cpu_load_cap_threads((int)o.threads, "export", "--threads", 1)
                                   : cpu_load_default_threads("export");
    omp_set_num_threads((int)threads);
    gemm_set_threads((int)threads);
    /* A finished sower output only (format, version, layout for the recorded model, every row done), or a
     * sample's array with its record. */
    ExportSource in;
    SOWER_TRY(export_source_open(&in, path));
    int status = SOWER_OK;
    float *data = NULL;
    unsigned char *sheet = NULL;
    if (in.rows == 0) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: no rows to export", path);
        goto done;
    }
    uint64_t first = 0, last = dir ? in.rows - 1 : in.rows < 64 ? in.rows - 1 : 63;
    if (rows_text)
        SOWER_TRY_GOTO(parse_row_range(rows_text, in.rows, dir ? MAX_DIR_ROWS : MAX_EXPORT_ROWS, &first, &last),
                       status, done);
    if (dir) {
        status = export_images(&in, dir, (ExportLayout)o.layout, first, last,
                               o.shard_size ? (uint64_t)o.shard_size : 1000, o.model_dir);
        goto done;
    }
    const int n = (int)(last - first + 1), c = in.c, h = in.h, w = in.w;
    const int out_channels = c == 3 ? 3 : 1;
    if (!columns)
        columns = (long)ceil(sqrt((double)n));
    const int grid_rows = (int)((n + columns - 1) / columns);
    const int cell_w = w * scale, cell_h = h * scale; /* a row's tile */
    const int width = (int)columns * (cell_w + GAP) - GAP, height = grid_rows * (cell_h + GAP) - GAP;
    data = malloc(sizeof(float) * (size_t)n * c * h * w);     /* (n, c, h, w) */
    sheet = malloc((size_t)width * height * out_channels); /* (height, width, out_channels) */
    if (!data || !sheet) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for the contact sheet");
        goto done;
    }
    memset(sheet, GAP_GREY, (size_t)width * height * out_channels); /* the gaps: mid grey, apart from any tile */
    /* A row is drawn only when its bytes are the ones its digest records: a damaged row is named. */
    for (int k = 0; k < n; k++) {
        uint64_t seed;
        SOWER_TRY_GOTO(export_source_row(&in, first + (uint64_t)k, data + (size_t)k * c * h * w, &seed, NULL),
                       status, done);
    }
    for (int k = 0; k < n; k++) {
        int x0 = (int)(k % columns) * (cell_w + GAP), y0 = (int)(k / columns) * (cell_h + GAP);
        const float *img = data + (size_t)k * c * h * w; /* (C, H, W) */
        for (int y = 0; y < cell_h; y++)
            for (int x = 0; x < cell_w; x++)
                for (int ch = 0; ch < out_channels; ch++)
                    sheet[((size_t)(y0 + y) * width + x0 + x) * out_channels + ch] =
                        vae_pixel_byte(img[((size_t)ch * h + y / scale) * w + x / scale]);
    }
    SOWER_TRY_GOTO(write_png(png_path, sheet, width, height, out_channels, o.force), status, done);
    fprintf(stderr, "sower export: rows %llu-%llu (%dx%d, %d channel%s) -> %s (%dx%d)\n",
            (unsigned long long)first, (unsigned long long)last, h, w, c, c == 1 ? "" : "s", png_path, width,
            height);
done:
    free(data);
    free(sheet);
    export_source_close(&in);
    return status;
}
