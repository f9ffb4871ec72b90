/* test_gpu_selftest.c: runs the CUDA backend's self-test on device 0; exit 77 (skipped) when
 * no device is visible, so CI without a GPU reports SKIPPED, never a vacuous pass. */
#include <stdio.h>

#include "gpu.h"

int main(void)
{
    int count = 0;
    if (gpu_device_count(&count) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 1;
    }
    if (count == 0) {
        printf("test_gpu_selftest: no CUDA device visible: skipped\n");
        return 77;
    }
    char report[512];
    if (gpu_selftest(0, report, sizeof report) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 1;
    }
    printf("test_gpu_selftest: %s\n", report);
    return 0;
}
