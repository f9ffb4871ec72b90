/* bench_vae.c: AutoencoderKL decode time of sower's CPU backend (vae.h), load excluded.
 * usage: bench_vae SD_DIR LATENT_H LATENT_W BATCH THREADS [--profile]
 * Decodes BATCH latents (torch.randn of seed 0, (BATCH, latent_channels, H, W)) once and prints one
 * JSON line: {"load": s, "decode": s, "per_image": s}; --profile adds the per-operation profile on
 * stderr. Never asserts (bench/vae_vs_torch.py runs it beside diffusers). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "gemm.h"
#include "ops.h"
#include "rng.h"
#include "vae.h"

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: bench_vae SD_DIR LATENT_H LATENT_W BATCH THREADS [--profile]\n");
        return 2;
    }
    const int h = atoi(argv[2]), w = atoi(argv[3]), batch = atoi(argv[4]), threads = atoi(argv[5]);
    const int profile = argc > 6 && strcmp(argv[6], "--profile") == 0;
    omp_set_num_threads(threads);
    gemm_set_threads(threads);
    Vae vae;
    ComputeBackend be = {0};
    double t0 = omp_get_wtime();
    if (vae_load(&vae, argv[1]) != SOWER_OK || compute_backend_cpu(&be, NULL) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 1;
    }
    const double load = omp_get_wtime() - t0;
    const int f = vae.cfg.scale_factor;
    const size_t in = (size_t)batch * vae.cfg.latent_channels * h * w;
    float *latents = malloc(in * sizeof *latents); /* (batch, latent_channels, h, w) */
    float *images = malloc((size_t)batch * vae.cfg.out_channels * h * f * w * f * sizeof *images); /* (batch, 3, H, W) */
    TorchRng g;
    rng_seed(&g, 0);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, latents, in);
    ops_profile_enable(profile);
    t0 = omp_get_wtime();
    if (vae_decode(&be, &vae, latents, batch, h, w, images) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 1;
    }
    const double decode = omp_get_wtime() - t0;
    if (profile) ops_profile_report(stderr);
    printf("{\"load\": %.3f, \"decode\": %.3f, \"per_image\": %.3f}\n", load, decode, decode / batch);
    free(latents), free(images);
    compute_backend_close(&be);
    vae_free(&vae);
    return 0;
}
