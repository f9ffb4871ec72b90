/* pipeline.h: render seeds as diffusers' DDIMPipeline / DDPMPipeline / StableDiffusionPipeline
 * (output_type="latent") do with one CPU generator per seed, returning the raw final samples (the
 * scheduler's last prev_sample).
 *
 * Per seed: generator = torch.Generator("cpu").manual_seed(seed) (or "cuda": RNG_KERNEL_TORCH_CUDA, made
 * by the backend); x = randn((1, C, H, W));
 * for each timestep: eps = unet(x, t); x = scheduler.step(eps, t, x, eta, generator). Seeds are
 * processed `batch` at a time; a seed's bits do not depend on the batch it is in (ops.h, gemm.h).
 * Stable Diffusion: eps = unet(x, t, text embeddings); with guidance > 1 the UNet also sees x with the
 * negative prompt's embeddings, eps_u, and eps = eps_u + guidance * (eps - eps_u) (classifier-free
 * guidance, the pipeline's batch [uncond rows, cond rows]). */
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
    int trace_replace;     /* 1: a trace file already there is replaced (sample --force); 0: refused */
    int torch_log1p;      /* torch >= 2.0 small-tensor normal formula (never matters for latents) */
    int (*should_stop)(void); /* NULL, or polled before every step: non-zero abandons the batch
                               * with SOWER_ESTOPPED (a signal; the rows are rendered again later) */
    void (*on_step)(void *ctx, int done, int steps); /* NULL, or told after each denoising step */
    void *on_step_ctx;
    /* Stable Diffusion only (a UNet2DConditionModel) */
    float guidance;        /* diffusers' guidance_scale: > 1 runs the negative prompt too */
    double guidance_rescale; /* diffusers' guidance_rescale (0..1; 0: off), with guidance > 1 only */
    int text_tokens;       /* rows of every text embedding (77) */
} RenderSettings;

/* One row's conditioning (Stable Diffusion): embeddings (text_tokens, cross_attention_dim) each. */
typedef struct {
    const float *cond;   /* the prompt's */
    const float *uncond; /* the negative prompt's ("" by default); unused when guidance <= 1 */
} RowText;

/* out (n_seeds, C, H, W): the final sample of each seed, in the order given. */
int render_seeds(const RenderSettings *rs, const uint64_t *seeds, int n_seeds, float *out) SOWER_MUST_CHECK;
/* The same with each row's text, texts (n_rows,) (NULL for an unconditional model). */
int render_seeds_text(const RenderSettings *rs, const uint64_t *seeds, const RowText *texts, int n_rows,
                float *out) SOWER_MUST_CHECK;

#endif /* SOWER_PIPELINE_H */
