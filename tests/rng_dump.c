/* rng_dump.c: writes a fixed battery of generator output to stdout (raw bytes). Built several
 * times from the same sources at different optimisation levels (-O0, -O3 -march=native, the
 * project's own flags); test_rng_opt_levels.cmake checks that every build writes the same bytes. */
#include <stdio.h>
#include <stdlib.h>

#include "rng.h"

int main(void)
{
    static const size_t sizes[] = {1, 7, 15, 16, 17, 31, 100, 3 * 32 * 32, 4 * 64 * 64};
    static const uint64_t seeds[] = {0, 1, 42, 4294967301u, UINT64_MAX, 0x9E3779B97F4A7C15u};
    float *f = malloc(4 * 64 * 64 * sizeof *f);   /* (n,) */
    double *d = malloc(4 * 64 * 64 * sizeof *d); /* (n,) */
    if (!f || !d)
        return 3;
    for (int kernel = 0; kernel < 2; kernel++) {
        for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
            TorchRng g = {0};
            rng_seed(&g, seeds[s]);
            for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                rng_randn_f32(&g, (RngKernel)kernel, f, sizes[k]);
                fwrite(f, sizeof *f, sizes[k], stdout);
                rng_randn_f64(&g, d, sizes[k]);
                fwrite(d, sizeof *d, sizes[k], stdout);
            }
        }
    }
    /* Many seeds, one latent each: the renderer's use. */
    for (uint64_t seed = 1000; seed < 1400; seed++) {
        TorchRng g = {0};
        rng_seed(&g, seed);
        rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, f, 3 * 32 * 32);
        fwrite(f, sizeof *f, 3 * 32 * 32, stdout);
    }
    free(f);
    free(d);
    return fflush(stdout) == 0 ? 0 : 3;
}
