/* test_torch_math: torch_logf / torch_expf / torch_expm1f (src/model/schedulers/torch_math.c) against torch 1.13's
 * own torch.log / torch.exp / torch.expm1 of float32 tensors, bit for bit, under both torch CPU kernels (AVX2:
 * Sleef; DEFAULT: the C library), over tests/data/torch_math_reference.json (validate/make_torch_math_reference.py:
 * 600 inputs, specials included); numpy_logf and numpy_expf against numpy 1.24's np.log and np.exp of a float32 array. Exit 0 when every
 * value matches. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "reference_file.h"
#include "schedulers/torch_math.h"


static float float_of_hex(const cJSON *item)
{
    const uint32_t bits = (uint32_t)strtoul(cJSON_GetStringValue(item) ? cJSON_GetStringValue(item) : "", NULL, 16);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b)); }

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_torch_math tests/data/torch_math_reference.json\n");
        return 2;
    }
    char *text = reference_file_read(argv[1]);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs"),
                *outputs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
    if (!cJSON_IsArray(inputs) || !cJSON_IsObject(outputs)) {
        fprintf(stderr, "%s: not a sower-torch-math-reference file; regenerate it with "
                        "validate/make_torch_math_reference.py\n", argv[1]);
        cJSON_Delete(root);
        return 1;
    }
    const char *kernel_names[] = {"avx2", "default"};
    const RngKernel kernels[] = {RNG_KERNEL_TORCH_CPU, RNG_KERNEL_TORCH_CPU_SCALAR};
    const char *function_names[] = {"log", "exp", "expm1"};
    float (*const functions[])(float, RngKernel) = {torch_logf, torch_expf, torch_expm1f};
    const int n = cJSON_GetArraySize(inputs);
    for (int k = 0; k < 2; k++)
        for (int f = 0; f < 3; f++) {
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(outputs, kernel_names[k]), function_names[f]);
            int differ = 0;
            CHECK(cJSON_GetArraySize(want) == n, "%s %s: %d values for %d inputs", kernel_names[k],
                  function_names[f], cJSON_GetArraySize(want), n);
            for (int i = 0; i < n && i < cJSON_GetArraySize(want); i++) {
                const float x = float_of_hex(cJSON_GetArrayItem(inputs, i)), w = float_of_hex(cJSON_GetArrayItem(want, i));
                const float got = functions[f](x, kernels[k]);
                if (!same_bits(got, w) && differ++ < 5)
                    CHECK(0, "%s %s(%.9g): %.9g, torch %.9g", kernel_names[k], function_names[f], (double)x,
                          (double)got, (double)w);
            }
            CHECK(differ == 0, "%s %s: %d of %d values differ", kernel_names[k], function_names[f], differ, n);
            printf("%s %s: %d of %d values as torch's\n", kernel_names[k], function_names[f], n - differ, n);
        }
    /* numpy_logf against np.log of the inputs' magnitudes (a float32 array: numpy's AVX2/AVX-512 loop) */
    const cJSON *np_log = cJSON_GetObjectItemCaseSensitive(root, "numpy_log_of_abs"),
                *want = cJSON_GetObjectItemCaseSensitive(np_log, "log");
    int differ = 0;
    CHECK(cJSON_GetArraySize(want) == n, "numpy log: %d values for %d inputs", cJSON_GetArraySize(want), n);
    for (int i = 0; i < n && i < cJSON_GetArraySize(want); i++) {
        const float x = fabsf(float_of_hex(cJSON_GetArrayItem(inputs, i))), w = float_of_hex(cJSON_GetArrayItem(want, i));
        const float got = numpy_logf(x, RNG_KERNEL_TORCH_CPU);
        if (!same_bits(got, w) && differ++ < 5)
            CHECK(0, "numpy log(%.9g): %.9g, numpy %.9g", (double)x, (double)got, (double)w);
    }
    CHECK(differ == 0, "numpy log: %d of %d values differ", differ, n);
    printf("numpy (%s) log: %d of %d values as np.log's\n", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(np_log, "simd")),
           n - differ, n);
    /* numpy_expf against np.exp of the inputs (a float32 array) */
    const cJSON *want_exp = cJSON_GetObjectItemCaseSensitive(np_log, "exp");
    differ = 0;
    CHECK(cJSON_GetArraySize(want_exp) == n, "numpy exp: %d values for %d inputs", cJSON_GetArraySize(want_exp), n);
    for (int i = 0; i < n && i < cJSON_GetArraySize(want_exp); i++) {
        const float x = float_of_hex(cJSON_GetArrayItem(inputs, i)), w = float_of_hex(cJSON_GetArrayItem(want_exp, i));
        const float got = numpy_expf(x, RNG_KERNEL_TORCH_CPU);
        if (!same_bits(got, w) && differ++ < 5)
            CHECK(0, "numpy exp(%.9g): %.9g, numpy %.9g", (double)x, (double)got, (double)w);
    }
    CHECK(differ == 0, "numpy exp: %d of %d values differ", differ, n);
    printf("numpy exp: %d of %d values as np.exp's\n", n - differ, n);
    cJSON_Delete(root);
    return check_exit("test_torch_math");
}
