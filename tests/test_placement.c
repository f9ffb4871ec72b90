/* test_placement.c: the GPU a rank picks from the launcher's environment (src/backends/placement.h). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "placement.h"

static int failures;

static void expect(int got, int want, const char *what)
{
    if (got != want) {
        fprintf(stderr, "FAIL: %s: got %d, want %d\n", what, got, want);
        failures++;
    }
}

int main(void)
{
    unsetenv("SLURM_LOCALID"), unsetenv("OMPI_COMM_WORLD_LOCAL_RANK"), unsetenv("MPI_LOCALRANKID");
    expect(placement_local_rank(), -1, "no launcher");
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2", 1);
    expect(placement_local_rank(), 2, "mpirun's local rank");
    setenv("SLURM_LOCALID", "5", 1);
    expect(placement_local_rank(), 5, "SLURM_LOCALID wins over mpirun's");
    setenv("SLURM_LOCALID", "x5", 1);
    expect(placement_local_rank(), 2, "a malformed SLURM_LOCALID is ignored");
    expect(placement_gpu_index(5, 4), 1, "local 5 of 4 visible");
    expect(placement_gpu_index(3, 1), 0, "one visible device (--gpus-per-task binding)");
    expect(placement_gpu_index(-1, 8), 0, "no launcher: device 0");
    expect(placement_gpu_index(7, 8), 7, "local 7 of 8");
    printf("test_placement: %d failures\n", failures);
    return failures ? 1 : 0;
}
