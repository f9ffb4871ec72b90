/* placement.c: device choice from the launcher's environment (placement.h). */
#include "placement.h"

#include <stdlib.h>

int placement_local_rank(void)
{
    static const char *const vars[] = {"SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        char *end;
        long k = v ? strtol(v, &end, 10) : -1;
        if (v && *v && !*end && k >= 0 && k < 1 << 20)
            return (int)k;
    }
    return -1;
}

int placement_gpu_index(int local, int visible) { return local < 0 || visible <= 0 ? 0 : local % visible; }
