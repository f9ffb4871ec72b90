/* gpu_test.h: how the GPU tests start: the device count, or exit 77 (CTest's SKIPPED) when no
 * device is visible, saying why, so CI without a GPU never reports a vacuous pass. */
#ifndef SOWER_TEST_GPU_TEST_H
#define SOWER_TEST_GPU_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "gpu.h"

/* The number of visible devices (> 0); exits 77 when there is none, 1 when asking fails. */
static inline int gpu_test_devices_or_skip(const char *test_name)
{
    int count = 0;
    if (gpu_device_count(&count) != SOWER_OK) {
        sower_error_print(stderr, 1);
        exit(1);
    }
    if (count == 0) {
        printf("%s: no CUDA device visible (%s): skipped\n", test_name, gpu_no_device_reason());
        exit(77);
    }
    return count;
}

#endif /* SOWER_TEST_GPU_TEST_H */
