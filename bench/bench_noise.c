/* bench_noise.c: throughput of the torch-compatible generator, values per second.
 * usage: bench_noise [SECONDS_PER_CASE]   (prints one line per case: name numel values/s)
 * bench/noise_vs_torch.py runs this and torch.randn side by side. Never asserts anything. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rng.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef struct {
    const char *name;
    size_t numel;
    int f64;
    RngKernel kernel;
} Case;

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    static const Case cases[] = {
        {"f32_1x3x32x32 torch-cpu", 3 * 32 * 32, 0, RNG_KERNEL_TORCH_CPU},
        {"f32_1x4x64x64 torch-cpu", 4 * 64 * 64, 0, RNG_KERNEL_TORCH_CPU},
        {"f32_1x4x128x128 torch-cpu", 4 * 128 * 128, 0, RNG_KERNEL_TORCH_CPU},
        {"f32_1x4x64x64 torch-cpu-scalar", 4 * 64 * 64, 0, RNG_KERNEL_TORCH_CPU_SCALAR},
        {"f64_1x4x64x64", 4 * 64 * 64, 1, RNG_KERNEL_TORCH_CPU},
        {"f32_8", 8, 0, RNG_KERNEL_TORCH_CPU},
    };
    void *buf = malloc(4 * 128 * 128 * sizeof(double)); /* (numel,) of the largest case */
    if (!buf)
        return 3;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const Case *k = &cases[c];
        /* One fresh generator per call, as the renderer seeds one per sample. */
        size_t calls = 0;
        double start = now(), elapsed;
        do {
            for (int rep = 0; rep < 16; rep++, calls++) {
                TorchRng g = {0};
                rng_seed(&g, calls);
                if (k->f64)
                    rng_randn_f64(&g, buf, k->numel);
                else
                    rng_randn_f32(&g, k->kernel, buf, k->numel);
            }
            elapsed = now() - start;
        } while (elapsed < seconds);
        printf("%-32s %9zu %12.4g\n", k->name, k->numel, (double)calls * k->numel / elapsed);
    }
    free(buf);
    return 0;
}
