/* bench_sgemm.c: this machine's SGEMM peak through the same BLIS path the UNet uses.
 * usage: bench_sgemm THREADS [SECONDS]; prints GFLOP/s for square and UNet-shaped products. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm.h"

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    gemm_set_threads(threads);
    static const int shapes[][3] = {{2048, 2048, 2048}, {4096, 4096, 1024}, {256, 8192, 2304}, {128, 8192, 1152}};
    double best = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = calloc((size_t)m * k, 4), *b = calloc((size_t)k * n, 4), *c = calloc((size_t)m * n, 4);
        for (size_t i = 0; i < (size_t)m * k; i++)
            a[i] = (float)(i % 7) * 0.25f;
        for (size_t i = 0; i < (size_t)k * n; i++)
            b[i] = (float)(i % 5) * 0.5f;
        gemm_f32(m, n, k, a, k, b, n, c, n, 0);
        int reps = 0;
        double start = omp_get_wtime(), elapsed;
        do {
            gemm_f32(m, n, k, a, k, b, n, c, n, 0);
            reps++;
            elapsed = omp_get_wtime() - start;
        } while (elapsed < seconds);
        double gflops = 2.0 * m * n * k * reps / elapsed / 1e9;
        best = gflops > best ? gflops : best;
        printf("sgemm %dx%dx%d threads %d: %.1f GFLOP/s\n", m, n, k, threads, gflops);
        free(a), free(b), free(c);
    }
    printf("sgemm peak threads %d: %.1f GFLOP/s (%s)\n", threads, best, gemm_backend_identity());
    return 0;
}
