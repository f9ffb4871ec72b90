/* bench_unet.c: UNet forward time of one of sower's backends, and where the time goes.
 * usage: bench_unet MODEL_DIR THREADS BATCH [SECONDS] [--profile] [--backend cpu|cuda]
 *                   [--precision fp32|tf32|bf16|fp16] (--tf32: --precision tf32)
 * A UNet2DConditionModel (Stable Diffusion) runs with 77 tokens of text embeddings per sample (random,
 * already in the backend's memory): BATCH 2N is one classifier-free-guided step of N images.
 * A forward pass is timed on samples already in the backend's memory, as the pipeline runs it
 * between steps, up to its last kernel's end (on cuda one value is read back, which waits).
 * Prints one line: batch, ms per forward, ms per sample, GFLOP/s (with --gflop-per-sample G from the
 * caller, else the figure is left out), then the per-operation profile if asked. Never asserts. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "backend_open.h"
#include "cpu_backend.h"
#include "model.h"
#include "ops.h"
#include "rng.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_unet MODEL_DIR THREADS BATCH [SECONDS] [--profile] [--backend cpu|cuda] "
                        "[--precision fp32|tf32|bf16|fp16]\n");
        return 2;
    }
    int threads = atoi(argv[2]), batch = atoi(argv[3]);
    double seconds = argc > 4 && argv[4][0] != '-' ? atof(argv[4]) : 3.0;
    int profile = 0;
    Backend kind = BACKEND_CPU;
    Precision precision = PRECISION_FP32;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--profile") == 0)
            profile = 1;
        else if (strcmp(argv[i], "--tf32") == 0)
            precision = PRECISION_TF32;
        else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc) {
            if (!precision_from_name(argv[++i], &precision)) {
                fprintf(stderr, "bench_unet: --precision: expected fp32, tf32, bf16 or fp16, found '%s'\n", argv[i]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            kind = strcmp(argv[++i], "cuda") == 0 ? BACKEND_CUDA : BACKEND_CPU;
    }
    omp_set_num_threads(threads);
    gemm_set_threads(threads);
    Model m;
    if (model_load(&m, argv[1]) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 2;
    }
    const UNetConfig *cfg = &m.unet.cfg;
    const size_t per = (size_t)cfg->in_channels * cfg->sample_height * cfg->sample_width;
    float *x = malloc(per * batch * sizeof(float)), *y = malloc(per * batch * sizeof(float)); /* (B, C, H, W) */
    float *t = malloc(sizeof(float) * batch); /* (B,) */
    for (int b = 0; b < batch; b++) {
        TorchRng g = {0};
        rng_seed(&g, (uint64_t)b);
        rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, x + per * b, per);
        t[b] = 500;
    }
    const int tokens = 77, dim = cfg->conditional ? cfg->cross_attention_dim : 0;
    float *emb = NULL; /* (B, tokens, dim): random text embeddings of a conditional model */
    Act context = {0}; /* the same in the backend's memory */
    if (cfg->conditional) {
        emb = malloc(sizeof(float) * batch * tokens * dim);
        TorchRng g = {0};
        rng_seed(&g, 77);
        rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, emb, (size_t)batch * tokens * dim);
    }
    ComputeBackend be;
    if (compute_backend_open(&be, kind, precision, &m.unet) != SOWER_OK ||
        (emb && unet_context_upload(&be, emb, batch, tokens, &context) != SOWER_OK) ||
        (emb ? unet_forward_on_cond(&be, x, t, emb, tokens, batch, cfg->sample_height, cfg->sample_width, y)
             : unet_forward_on(&be, x, t, batch, cfg->sample_height, cfg->sample_width, y)) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 3;
    }
    /* Timed: forward passes on samples already in the backend's memory, as the pipeline runs them
     * between steps, each waited for (one value read back). */
    float *x_be = NULL, *y_be = NULL, last; /* (B, C, H, W) backend memory */
    if (be.ops->buffer_alloc(be.ctx, &x_be, per * batch) != SOWER_OK ||
        be.ops->buffer_alloc(be.ctx, &y_be, per * batch) != SOWER_OK ||
        be.ops->upload(be.ctx, x_be, x, per * batch) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 3;
    }
    ops_profile_enable(profile);
    int reps = 0;
    double start = omp_get_wtime(), elapsed, fastest = 1e30; /* fastest: the least disturbed forward */
    do {
        double t0 = omp_get_wtime();
        if (unet_forward_resident_cond(&be, x_be, t, emb ? &context : NULL, batch, cfg->sample_height,
                                       cfg->sample_width, y_be) != SOWER_OK ||
            be.ops->download(be.ctx, &last, y_be, 1) != SOWER_OK) {
            sower_error_print(stderr, 1);
            return 3;
        }
        reps++;
        elapsed = omp_get_wtime() - start;
        fastest = elapsed - (t0 - start) < fastest ? elapsed - (t0 - start) : fastest;
    } while (elapsed < seconds);
    double ms = 1e3 * elapsed / reps;
    printf("batch %d threads %d: %.2f ms/forward, %.2f ms/sample (%d reps, %s); fastest forward %.2f ms/sample\n",
           batch, threads, ms, ms / batch, reps, be.identity, 1e3 * fastest / batch);
    if (profile) {
        printf("profile over %d forwards (%.3f s wall):\n", reps, elapsed);
        ops_profile_report(stdout);
    }
    be.ops->buffer_free(be.ctx, x_be);
    be.ops->buffer_free(be.ctx, y_be);
    be.ops->act_free(be.ctx, &context);
    free(emb);
    compute_backend_close(&be);
    free(x), free(y), free(t);
    model_free(&m);
    return 0;
}
