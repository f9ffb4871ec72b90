/* cmd_noise.c: `sower noise`, the renderer's initial noise as raw little-endian values, so that
 * anyone can compare it with torch.randn(..., generator=torch.Generator("cpu").manual_seed(S)). */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "digest.h"
#include "npy.h"
#include "outfile.h"
#include "output_lock.h"
#include "regular_file.h"
#include "rng.h"

enum {
    NOISE_MAX_CALLS = 256,
};
#define NOISE_MAX_NUMEL (UINT64_C(1) << 31) /* per call: 8 GiB of float32 */

typedef enum { DTYPE_F32, DTYPE_F64 } NoiseDtype;

typedef struct {
    uint64_t numel;
    NoiseDtype dtype;
    int64_t dims[CLI_MAX_DIMS]; /* (ndims,) the --shape sizes */
    int ndims;
} NoiseCall;

typedef struct {
    uint64_t seed;
    int have_seed;
    const char *state_in;
    const char *state_out;
    const char *output;
    RngKernel kernel;
    int radius_log1p;
    int quiet;
    int force; /* replace an existing FILE (and --state-out FILE) */
    int npy; /* the output is a .npy file (one call): a header before the values */
    NoiseCall calls[NOISE_MAX_CALLS];
    int n_calls;
} NoiseOptions;

static const char noise_usage[] =
    "usage: sower noise (--seed S | --state-in FILE) --shape D1,D2,...[:f32|:f64] [--shape ...]\n"
    "                   [--generator torch-cpu|torch-cpu-scalar] [--dtype f32|f64]\n"
    "                   [--torch-version V] [--state-out FILE] [--quiet] [--force] [-o FILE]\n"
    "\n"
    "Writes the noise of torch.randn(shape, generator=torch.Generator('cpu').manual_seed(S)),\n"
    "bit for bit: one generator, one randn call per --shape in order, the raw little-endian values\n"
    "of all calls concatenated into FILE ('-' for standard output); a FILE ending in .npy gets a\n"
    "NumPy header (np.load reads it; one --shape only).\n"
    "\n"
    "  --seed S          generator seed, 0..2^64-1; negative seeds are two's complement, as in torch.\n"
    "                    torch seeds MT19937 with the low 32 bits only: S and S+2^32 give the same noise.\n"
    "  --state-in FILE   start from a torch get_state() image (5056 bytes) instead of a seed\n"
    "  --shape DIMS      one randn call; ':f64' or ':f32' after the sizes overrides --dtype for it\n"
    "  --generator NAME  torch-cpu (default): torch's AVX2 kernel, as x86-64 builds run it;\n"
    "                    torch-cpu-scalar: torch's non-AVX2 kernel (aarch64, ATEN_CPU_CAPABILITY=default)\n"
    "  --dtype T         f32 (default) or f64\n"
    "  --torch-version V torch release to match for calls of fewer than 16 values (default 1.13;\n"
    "                    2.0 and later use log1p in that path, changing ~3% of float64 values)\n"
    "  --state-out FILE  write the generator's get_state() image after the last call\n"
    "  --quiet           no summary line on standard error\n"
    "  --force           replace an existing FILE (a device or FIFO is written to as it is)\n"
    "  -o, --output FILE where to write the values (default: standard output, unless it is a terminal)\n";

static int parse_dtype(const char *option, const char *text, NoiseDtype *dtype)
{
    if (strcmp(text, "f32") == 0 || strcmp(text, "float32") == 0)
        *dtype = DTYPE_F32;
    else if (strcmp(text, "f64") == 0 || strcmp(text, "float64") == 0)
        *dtype = DTYPE_F64;
    else
        return SOWER_FAIL(SOWER_EUSAGE, "%s: expected f32 or f64, found '%s'", option, text);
    return SOWER_OK;
}

/* "MAJOR.MINOR[...]": torch >= 2.0 computes the small-tensor radius with log1p. */
static int parse_torch_version(const char *text, int *radius_log1p)
{
    /* torch.__version__: MAJOR.MINOR, then a patch, pre-release or local part ("2.5.1+cu121", "2.6.0a0",
     * "2.6.0.dev20241112") */
    char *end = NULL, *minor_end = NULL;
    const long major = isdigit((unsigned char)text[0]) ? strtol(text, &end, 10) : -1;
    const int minor_ok = major >= 1 && *end == '.' && isdigit((unsigned char)end[1]) &&
                         (strtol(end + 1, &minor_end, 10), 1);
    if (!minor_ok || !(*minor_end == '\0' || *minor_end == '.' || *minor_end == '+' || islower((unsigned char)*minor_end)))
        return SOWER_FAIL(SOWER_EUSAGE, "--torch-version: expected a torch release like 1.13 or 2.5 (torch.__version__, "
                                        "e.g. 2.5.1+cu121), found '%s'", text);
    *radius_log1p = major >= 2;
    return SOWER_OK;
}

/* Shapes are parsed after all options, so that --dtype applies wherever it stands. */
static int parse_shape_arg(const char *text, NoiseDtype default_dtype, NoiseCall *call)
{
    char dims_text[256];
    const char *colon = strchr(text, ':');
    size_t dims_len = colon ? (size_t)(colon - text) : strlen(text);
    if (dims_len >= sizeof dims_text)
        return SOWER_FAIL(SOWER_EUSAGE, "--shape: '%s' is too long", text);
    memcpy(dims_text, text, dims_len);
    dims_text[dims_len] = '\0';
    call->dtype = default_dtype;
    if (colon)
        SOWER_TRY(parse_dtype("--shape", colon + 1, &call->dtype));
    SOWER_TRY(cli_parse_shape("--shape", dims_text, call->dims, &call->ndims, NOISE_MAX_NUMEL, &call->numel));
    return SOWER_OK;
}

enum { NOISE_SEED, NOISE_SHAPE, NOISE_GENERATOR, NOISE_DTYPE, NOISE_TORCH_VERSION, NOISE_STATE_IN, NOISE_STATE_OUT,
       NOISE_QUIET, NOISE_OUTPUT, NOISE_FORCE, N_NOISE_OPTS };
static const CliOption noise_options[N_NOISE_OPTS] = {
    [NOISE_SEED] = {"--seed", NULL, 1},           [NOISE_SHAPE] = {"--shape", NULL, 1},
    [NOISE_GENERATOR] = {"--generator", NULL, 1}, [NOISE_DTYPE] = {"--dtype", NULL, 1},
    [NOISE_TORCH_VERSION] = {"--torch-version", NULL, 1}, [NOISE_STATE_IN] = {"--state-in", NULL, 1},
    [NOISE_STATE_OUT] = {"--state-out", NULL, 1}, [NOISE_QUIET] = {"--quiet", NULL, 0},
    [NOISE_OUTPUT] = {"--output", "-o", 1},    [NOISE_FORCE] = {"--force", NULL, 0},
};

typedef struct {
    NoiseOptions *opt;
    const char *shapes[NOISE_MAX_CALLS]; /* the --shape values, in order */
    int n_shapes;
    NoiseDtype default_dtype;
} NoiseParse;

static int on_noise_option(void *ctx, int which, const char *v)
{
    NoiseParse *np = ctx;
    NoiseOptions *opt = np->opt;
    switch (which) {
    case NOISE_SEED:
        SOWER_TRY(cli_parse_u64("--seed", v, 1, &opt->seed));
        opt->have_seed = 1;
        break;
    case NOISE_SHAPE:
        if (np->n_shapes == NOISE_MAX_CALLS)
            return SOWER_FAIL(SOWER_EUSAGE, "noise: at most %d --shape options", NOISE_MAX_CALLS);
        np->shapes[np->n_shapes++] = v;
        break;
    case NOISE_GENERATOR:
        if (rng_kernel_parse(v, &opt->kernel) != SOWER_OK)
            return SOWER_FAIL(SOWER_EUSAGE, "--generator: expected torch-cpu or torch-cpu-scalar, found '%s'", v);
        if (opt->kernel == RNG_KERNEL_TORCH_CUDA)
            return SOWER_FAIL(SOWER_EUSAGE, "--generator torch-cuda: torch's CUDA noise comes from the GPU's own sin/cos "
                                            "(cuRAND's __sincosf), which no CPU reproduces bit for bit; `sower sample "
                                            "--backend cuda --generator torch-cuda` makes it there");
        break;
    case NOISE_DTYPE: SOWER_TRY(parse_dtype("--dtype", v, &np->default_dtype)); break;
    case NOISE_TORCH_VERSION: SOWER_TRY(parse_torch_version(v, &opt->radius_log1p)); break;
    case NOISE_STATE_IN: opt->state_in = v; break;
    case NOISE_STATE_OUT: opt->state_out = v; break;
    case NOISE_QUIET: opt->quiet = 1; break;
    case NOISE_OUTPUT: opt->output = v; break;
    case NOISE_FORCE: opt->force = 1; break;
    }
    return SOWER_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int parse_noise_options(int argc, char **argv, NoiseOptions *opt, int *help)
{
    memset(opt, 0, sizeof *opt);
    opt->kernel = RNG_KERNEL_TORCH_CPU;
    NoiseParse np = {.opt = opt, .default_dtype = DTYPE_F32};
    const CliParser parser = {"noise", noise_options, N_NOISE_OPTS, on_noise_option, NULL, &np};
    SOWER_TRY(cli_parse(&parser, argc, argv, help));
    if (*help)
        return SOWER_OK;
    const int n_shapes = np.n_shapes;
    const char *const *shapes = np.shapes;
    const NoiseDtype default_dtype = np.default_dtype;
    if (opt->have_seed == (opt->state_in != NULL))
        return SOWER_FAIL(SOWER_EUSAGE, "noise: give exactly one of --seed S or --state-in FILE");
    if (n_shapes == 0)
        return SOWER_FAIL(SOWER_EUSAGE, "noise: at least one --shape is required, e.g. --shape 1,4,64,64");
    if (!opt->output) { /* standard output, as -o - (DESIGN: -o is optional); raw floats never go to a terminal */
        if (isatty(STDOUT_FILENO))
            return SOWER_FAIL(SOWER_EUSAGE, "noise: standard output is a terminal: give -o FILE, or redirect it");
        opt->output = "-";
    }
    for (int k = 0; k < n_shapes; k++)
        SOWER_TRY(parse_shape_arg(shapes[k], default_dtype, &opt->calls[k]));
    opt->n_calls = n_shapes;
    if (opt->state_out && strcmp(opt->output, "-") == 0 && strcmp(opt->state_out, "-") == 0)
        return SOWER_FAIL(SOWER_EUSAGE, "noise: -o - and --state-out - both name standard output, where the state's "
                                        "bytes would follow the values': give --state-out a file");
    if (strcmp(opt->output, "-") != 0) SOWER_TRY(output_lock_check_command_output(opt->output, "-o"));
    if (opt->state_out && strcmp(opt->state_out, "-") != 0)
        SOWER_TRY(output_lock_check_command_output(opt->state_out, "--state-out"));
    if (opt->state_out && strcmp(opt->output, "-") != 0 && path_same_file(opt->state_out, opt->output))
        return SOWER_FAIL(SOWER_EUSAGE, "noise: --state-out %s names the output -o %s: give them different files",
                          opt->state_out, opt->output);
    opt->npy = ends_with(opt->output, ".npy");
    if (opt->npy && n_shapes != 1)
        return SOWER_FAIL(SOWER_EUSAGE, "noise: -o %s: a .npy file holds one array: give one --shape (or write raw "
                                        "values to a name not ending in .npy)", opt->output);
    return SOWER_OK;
}

static int start_generator(const NoiseOptions *opt, TorchRng *g)
{
    memset(g, 0, sizeof *g);
    g->radius_log1p = opt->radius_log1p;
    if (opt->have_seed) {
        rng_seed(g, opt->seed);
        if (opt->seed > UINT32_MAX)
            fprintf(stderr,
                    "sower: warning: seed %llu gives the same noise as seed %lu: torch seeds its generator "
                    "with the low 32 bits only\n",
                    (unsigned long long)opt->seed, (unsigned long)rng_seed_key(opt->seed));
        return SOWER_OK;
    }
    unsigned char *image = NULL;
    size_t bytes = 0;
    SOWER_TRY(file_read_all(opt->state_in, RNG_STATE_IMAGE_BYTES, &image, &bytes));
    int status = rng_set_state(g, image, bytes);
    free(image);
    if (status != SOWER_OK) {
        return SOWER_FAIL(SOWER_EINPUT, "--state-in '%s': %s", opt->state_in, sower_error_message());
    }
    return SOWER_OK;
}

/* Runs every call, streaming each call's values to out and into the digest. */
static int run_calls(const NoiseOptions *opt, TorchRng *g, OutFile *out, Digest *digest, uint64_t *total_bytes)
{
    int status = SOWER_OK;
    void *values = NULL; /* (numel,) float or double, reused by the calls */
    size_t capacity = 0;
    *total_bytes = 0;
    for (int k = 0; k < opt->n_calls; k++) {
        const NoiseCall *c = &opt->calls[k];
        size_t elem = c->dtype == DTYPE_F32 ? sizeof(float) : sizeof(double);
        size_t bytes = (size_t)c->numel * elem;
        if (bytes > capacity) {
            free(values);
            values = malloc(bytes);
            capacity = bytes;
            if (!values) {
                status = SOWER_FAIL(SOWER_ENOMEM, "noise: cannot allocate %zu bytes for call %d", bytes, k + 1);
                goto done;
            }
        }
        if (c->dtype == DTYPE_F32)
            rng_randn_f32(g, opt->kernel, values, (size_t)c->numel);
        else
            rng_randn_f64(g, values, (size_t)c->numel);
        /* The host is little-endian (CMake checks it), so the in-memory bytes are the file's. */
        SOWER_TRY_GOTO(outfile_write(out, values, bytes), status, done);
        SOWER_TRY_GOTO(digest_update(digest, values, bytes), status, done);
        *total_bytes += bytes;
    }
done:
    free(values);
    return status;
}

static int write_state_image(const char *path, const TorchRng *g, int force)
{
    unsigned char image[RNG_STATE_IMAGE_BYTES];
    rng_get_state(g, image);
    OutFile f;
    int status = force ? outfile_open(&f, path) : outfile_open_new(&f, path);
    if (status == SOWER_OK)
        status = outfile_write(&f, image, sizeof image);
    if (status == SOWER_OK)
        status = outfile_commit(&f);
    outfile_free(&f);
    SOWER_TRY(status);
    return SOWER_OK;
}

int cmd_noise(int argc, char **argv)
{
    NoiseOptions opt;
    int help = 0;
    SOWER_TRY(parse_noise_options(argc, argv, &opt, &help));
    if (help) {
        fputs(noise_usage, stdout);
        return SOWER_OK;
    }
    TorchRng g;
    SOWER_TRY(start_generator(&opt, &g));

    OutFile out;
    Digest digest = {0};
    uint64_t total_bytes = 0;
    unsigned char sha[DIGEST_BYTES];
    int status = opt.force ? outfile_open(&out, opt.output) : outfile_open_new(&out, opt.output);
    if (status == SOWER_OK)
        status = digest_init(&digest);
    if (status == SOWER_OK && opt.npy) { /* the digest stays the values' own, as for a raw file */
        unsigned char header[NPY_HEADER_MAX];
        const NoiseCall *c = &opt.calls[0];
        size_t n = npy_header(header, c->dtype == DTYPE_F32 ? "<f4" : "<f8", c->dims, c->ndims);
        status = outfile_write(&out, header, n);
    }
    if (status == SOWER_OK)
        status = run_calls(&opt, &g, &out, &digest, &total_bytes);
    if (status == SOWER_OK)
        status = digest_final(&digest, sha);
    if (status == SOWER_OK && opt.state_out)
        status = write_state_image(opt.state_out, &g, opt.force);
    if (status == SOWER_OK)
        status = outfile_commit(&out);
    digest_free(&digest);
    outfile_free(&out);
    SOWER_TRY(status);

    if (!opt.quiet) {
        char hex[DIGEST_HEX_CHARS];
        digest_hex(sha, hex);
        fprintf(stderr, "sower noise: %d call%s, %llu bytes, generator %s, sha256 %s -> %s\n", opt.n_calls,
                opt.n_calls == 1 ? "" : "s", (unsigned long long)total_bytes, rng_kernel_name(opt.kernel), hex,
                opt.output);
    }
    return SOWER_OK;
}
