/* pipeline.h: render seeds as diffusers' DDIMPipeline / DDPMPipeline do with one CPU generator
 * per seed, returning the raw final samples (the scheduler's last prev_sample).
 *
 * Per seed: generator = torch.Generator("cpu").manual_seed(seed); x = randn((1, C, H, W));
 * for each timestep: eps = unet(x, t); x = scheduler.step(eps, t, x, eta, generator). Seeds are
 * processed `batch` at a time; a seed's bits do not depend on the batch it is in (ops.h, gemm.h). */
#ifndef SOWER_PIPELINE_H
#define SOWER_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "model.h"
#include "rng.h"
#include "scheduler.h"

typedef struct {
    const Model *model;
    const ComputeBackend *backend; /* runs the UNet (backends/backend_open.h) */
    const Scheduler *scheduler;
    float eta;            /* DDIM only */
    RngKernel generator;
    int batch;            /* seeds per forward pass, >= 1 */
    int height, width;    /* sample size */
    const char *trace_dir; /* NULL, or where per-seed traces go */
    int torch_log1p;      /* torch >= 2.0 small-tensor normal formula (never matters for latents) */
    int (*should_stop)(void); /* NULL, or polled before every step: non-zero abandons the batch
                               * with SOWER_ESTOPPED (a signal; the rows are rendered again later) */
} RenderSettings;

/* out (n_seeds, C, H, W): the final sample of each seed, in the order given. */
int render_seeds(const RenderSettings *rs, const uint64_t *seeds, int n_seeds, float *out) SOWER_MUST_CHECK;

#endif /* SOWER_PIPELINE_H */
