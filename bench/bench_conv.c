/* bench_conv.c: one 3x3 "same" convolution, direct (conv2d_packed) vs Winograd F(2x2, 3x3)
 * (conv2d_winograd), for the layer shapes of the ddpm-cifar10-32 UNet at batch 1 and 8. What
 * WINOGRAD_MIN_PIXELS and WINOGRAD_MIN_CHANNELS (src/cpu/winograd.h) were chosen from; timing only.
 *
 * usage: bench_conv [THREADS] [SECONDS_PER_CASE]   (defaults 2 and 0.5) */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "conv.h"
#include "gemm.h"
#include "ops.h"
#include "winograd.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef int (*ConvRoute)(const ConvParams *p, const Act *in, Act *out, Scratch *scratch);

static int direct(const ConvParams *p, const Act *in, Act *out, Scratch *scratch)
{
    return conv2d_packed(p, (ConvGeometry){1, 1, 1, 1, 1}, in, out, scratch);
}

/* Best seconds per call over `seconds` of calls (after one warm-up call). */
static double time_route(ConvRoute route, const ConvParams *p, const Act *in, Act *out, Scratch *scratch,
                         double seconds)
{
    double best = 1e30, start = now();
    if (route(p, in, out, scratch) != SOWER_OK)
        return -1;
    do {
        double t0 = now();
        if (route(p, in, out, scratch) != SOWER_OK)
            return -1;
        double t = now() - t0;
        best = t < best ? t : best;
    } while (now() - start < seconds);
    return best;
}

int main(int argc, char **argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const double seconds = argc > 2 ? atof(argv[2]) : 0.5;
    if (!gemm_packing()) {
        fprintf(stderr, "bench_conv: this BLIS has no packed microkernel (no Winograd route)\n");
        return 2;
    }
    gemm_set_threads(threads);
    static const int layers[][3] = {{128, 128, 32}, {256, 256, 16}, {256, 256, 8}, {256, 256, 4}, {3, 128, 32},
                                    {128, 3, 32}, {16, 16, 32}, {32, 32, 32}, {64, 64, 32}, {32, 128, 32},
                                    {128, 32, 32}};
    printf("3x3 same conv, %d threads, %s; ms per sample (best of %.1f s)\n", threads, gemm_backend_identity(),
           seconds);
    printf("%5s %5s %7s %5s %10s %10s %8s\n", "cin", "cout", "image", "batch", "direct", "winograd", "speedup");
    static const int batches[] = {1, 8};
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++)
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            const int cin = layers[l][0], cout = layers[l][1], hw = layers[l][2], batch = batches[bi];
            float *weight = malloc(sizeof(float) * cout * cin * 9), *bias = calloc(cout, sizeof(float));
            Act in = {0}, out = {0};
            Scratch scratch = {0};
            if (!weight || !bias || act_alloc(&in, cin, batch, hw, hw) || act_alloc(&out, cout, batch, hw, hw))
                return 3;
            for (size_t i = 0; i < (size_t)cout * cin * 9; i++)
                weight[i] = (float)((i * 7919 % 1000) - 500) * 1e-4f;
            for (size_t i = 0; i < act_numel(&in); i++)
                in.data[i] = (float)((i * 104729 % 1000) - 500) * 1e-3f;
            ConvParams p = {weight, bias, cout, cin, 3};
            double td = time_route(direct, &p, &in, &out, &scratch, seconds);
            double tw = time_route(conv2d_winograd, &p, &in, &out, &scratch, seconds);
            printf("%5d %5d %3dx%-3d %5d %10.3f %10.3f %7.2fx\n", cin, cout, hw, hw, batch, 1e3 * td / batch,
                   1e3 * tw / batch, td / tw);
            scratch_free(&scratch);
            act_free(&in), act_free(&out);
            free(weight), free(bias);
        }
    return 0;
}
