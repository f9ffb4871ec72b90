/* fuzz_cli_values.c: the readers of command-line values (seed lists, shapes, integers, numbers).
 * The first byte picks the reader, the rest is the value as argv would carry it. Each either
 * gives a value within its stated limits or fails with exit code 2 naming the option. */
#include "cli.h"
#include "fuzz.h"

enum { MAX_SEEDS = 1 << 16 };
#define MAX_NUMEL (UINT64_C(1) << 30)

static void fuzz_seed_list(const char *text)
{
    uint64_t *seeds = NULL;
    size_t n = 0;
    int status = cli_parse_seed_list("--seeds", text, MAX_SEEDS, &seeds, &n);
    if (status == SOWER_OK)
        FUZZ_ASSERT(n >= 1 && n <= MAX_SEEDS && seeds != NULL, "%zu seeds", n);
    else
        fuzz_expect_input_error(status, "--seeds");
    free(seeds);
}

static void fuzz_shape(const char *text)
{
    int64_t dims[CLI_MAX_DIMS];
    int ndims = 0;
    uint64_t numel = 0;
    int status = cli_parse_shape("--shape", text, dims, &ndims, MAX_NUMEL, &numel);
    if (status != SOWER_OK) {
        fuzz_expect_input_error(status, "--shape");
        return;
    }
    FUZZ_ASSERT(ndims >= 1 && ndims <= CLI_MAX_DIMS, "%d dims", ndims);
    uint64_t product = 1;
    for (int i = 0; i < ndims; i++) {
        FUZZ_ASSERT(dims[i] >= 0, "dim %d is %lld", i, (long long)dims[i]);
        product *= (uint64_t)dims[i];
    }
    FUZZ_ASSERT(numel <= MAX_NUMEL && product == numel, "numel %llu, product %llu", (unsigned long long)numel,
                (unsigned long long)product);
}

static void fuzz_numbers(const char *text)
{
    uint64_t u;
    int status = cli_parse_u64("--seed", text, 1, &u);
    if (status != SOWER_OK)
        fuzz_expect_input_error(status, "--seed");
    long v;
    status = cli_parse_int("--steps", text, 1, 1000, &v);
    if (status == SOWER_OK)
        FUZZ_ASSERT(v >= 1 && v <= 1000, "--steps %ld", v);
    else
        fuzz_expect_input_error(status, "--steps");
    double d;
    status = cli_parse_double("--eta", text, 0.0, 1.0, &d);
    if (status == SOWER_OK)
        FUZZ_ASSERT(d >= 0.0 && d <= 1.0, "--eta %g", d);
    else
        fuzz_expect_input_error(status, "--eta");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = fuzz_string(data + 1, size - 1);
    switch (data[0] % 3) {
    case 0: fuzz_seed_list(text); break;
    case 1: fuzz_shape(text); break;
    default: fuzz_numbers(text); break;
    }
    free(text);
    return 0;
}
