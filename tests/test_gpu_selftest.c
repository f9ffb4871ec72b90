/* test_gpu_selftest.c: runs the CUDA backend's self-test on the device this rank would use
 * (placement.h: SLURM_LOCALID / the launcher's local rank, wrapped over the visible devices);
 * exit 77 (skipped) when no device is visible, so CI without a GPU reports SKIPPED, never a
 * vacuous pass. */
#include <stdio.h>

#include "gpu_test.h"
#include "placement.h"

int main(void)
{
    int count = gpu_test_devices_or_skip("test_gpu_selftest");
    char report[512];
    int local = placement_local_rank(), device = placement_gpu_index(local, count);
    printf("test_gpu_selftest: local rank %d of the node, %d device(s) visible: device %d\n", local, count, device);
    if (gpu_selftest(device, report, sizeof report) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 1;
    }
    printf("test_gpu_selftest: %s\n", report);
    return 0;
}
