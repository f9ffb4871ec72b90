/* pipeline.c: the denoising loop over batches of seeds. */
#include "pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

/* Trace files for one seed: the sample after every step and the model output at every step. */
static int write_traces(const RenderSettings *rs, uint64_t seed, const float *samples, const float *outputs,
                        int steps, int c)
{
    char path[4200];
    int64_t shape[4] = {steps, c, rs->height, rs->width};
    snprintf(path, sizeof path, "%s/seed_%llu_samples.npy", rs->trace_dir, (unsigned long long)seed);
    SOWER_TRY(npy_write_f32_opt(path, samples, shape, 4, rs->trace_replace));
    snprintf(path, sizeof path, "%s/seed_%llu_model_outputs.npy", rs->trace_dir, (unsigned long long)seed);
    SOWER_TRY(npy_write_f32_opt(path, outputs, shape, 4, rs->trace_replace));
    return SOWER_OK;
}

/* One seed's generator: torch's CPU generator, or the seed and offset of a torch.Generator("cuda")
 * (whose draws the backend makes: ComputeBackend.randn_torch_cuda). */
typedef struct {
    TorchRng cpu;
    uint64_t seed, offset; /* torch-cuda: CUDAGeneratorImpl's seed_ and philox_offset_per_thread_ */
} SeedGenerator;

static void generator_seed(SeedGenerator *g, const RenderSettings *rs, uint64_t seed)
{
    g->cpu.radius_log1p = rs->torch_log1p;
    rng_seed(&g->cpu, seed);
    g->seed = seed, g->offset = 0;
}

/* torch.randn(per, generator=g) into host (per,); be_scratch (per,) is backend memory a torch-cuda
 * draw is made in before it comes to the host (its scheduler steps and scaling stay the pipeline's). */
static int generator_draw(SeedGenerator *g, const RenderSettings *rs, const ComputeBackend *be, float *host,
                          float *be_scratch, size_t per)
{
    if (rs->generator != RNG_KERNEL_TORCH_CUDA) {
        rng_randn_f32(&g->cpu, rs->generator, host, per);
        return SOWER_OK;
    }
    if (!be->randn_torch_cuda)
        return SOWER_FAIL(SOWER_EUSAGE, "generator torch-cuda needs backend cuda (its noise is made on the GPU, "
                                        "with the GPU's own sin/cos); backend %s cannot make it", be->identity);
    TorchCudaLaunch launch;
    SOWER_TRY(be->randn_torch_cuda(be->ctx, g->seed, g->offset, per, be_scratch, &launch));
    g->offset += launch.counter_offset;
    return be->ops->download(be->ctx, host, be_scratch, per);
}

/* A fresh torch.Generator's randn for a Brownian tree node (schedulers/brownian.h): the CPU generator, or
 * torch.Generator("cuda") made on the backend and brought to the host, as the samples' own generator is. */
typedef struct {
    const RenderSettings *rs;
    const ComputeBackend *be;
    float *be_scratch; /* (per,) backend memory for a torch-cuda draw */
} TreeDraw;

static int tree_draw(void *ctx, uint64_t seed, float *out, size_t n)
{
    const TreeDraw *d = ctx;
    SeedGenerator g = {0};
    generator_seed(&g, d->rs, seed);
    return generator_draw(&g, d->rs, d->be, out, d->be_scratch, n);
}

/* Renders seeds[0..nb) as one batch into out (nb, C, H, W). The samples stay in the backend's
 * memory from the first noise to the last step (on a GPU: no copy per step but each step's noise
 * up, drawn on the host by each seed's own generator, or for torch-cuda made on the device and
 * passed through the host, where the CPU path's scaling and host steps read it). */
/* The UNet's text input for a batch: (mb, tokens, dim) host rows [uncond of each row, cond of each row]
 * with guidance, [cond of each row] without, uploaded as unet_context_upload lays them out. */
static int upload_texts(const RenderSettings *rs, const ComputeBackend *be, const RowText *texts, int nb,
                        int guided, Act *context)
{
    const size_t per = (size_t)rs->text_tokens * rs->model->unet.cfg.cross_attention_dim;
    const int mb = guided ? 2 * nb : nb;
    float *host = malloc(per * mb * sizeof *host); /* (mb, tokens, dim) */
    if (!host) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the text embeddings of %d rows", nb);
    for (int b = 0; b < nb; b++) {
        if (guided) memcpy(host + per * b, texts[b].uncond, per * sizeof *host);
        memcpy(host + per * (guided ? nb + b : b), texts[b].cond, per * sizeof *host);
    }
    int status = unet_context_upload(be, host, mb, rs->text_tokens, context);
    free(host);
    return status;
}

/* The unbiased standard deviation of x (n,): torch's std() of a float tensor (Welford in double, rounded to
 * float), which a two-pass sum in double reproduces. */
static float std_of(const float *x, size_t n)
{
    double sum = 0, squares = 0;
    for (size_t j = 0; j < n; j++)
        sum += (double)x[j];
    const double mean = sum / (double)n;
    for (size_t j = 0; j < n; j++)
        squares += ((double)x[j] - mean) * ((double)x[j] - mean);
    return (float)sqrt(squares / (double)(n - 1));
}

/* diffusers' rescale_noise_cfg, on the host: per sample, eps = r * (eps * (std(cond) / std(eps))) + (1 - r) * eps
 * in float32, r = guidance_rescale. eps (nb, per) and cond (nb, per) in backend memory; host (2, nb, per) scratch.
 * A GPU's copies are the latents' size, a few per cent of a step. */
static int rescale_guided(const RenderSettings *rs, const ComputeBackend *be, const float *cond_be, float *eps_be,
                          int nb, size_t per, float *host)
{
    const size_t n = per * nb;
    float *eps = host, *cond = host + n;
    SOWER_TRY(be->ops->download(be->ctx, eps, eps_be, n));
    SOWER_TRY(be->ops->download(be->ctx, cond, cond_be, n));
    const float r = (float)rs->guidance_rescale, keep = (float)(1.0 - rs->guidance_rescale); /* Python floats */
    for (int b = 0; b < nb; b++) {
        float *e = eps + per * b;
        const float ratio = std_of(cond + per * b, per) / std_of(e, per);
        for (size_t j = 0; j < per; j++)
            e[j] = r * (e[j] * ratio) + keep * e[j];
    }
    return be->ops->upload(be->ctx, eps_be, eps, n);
}

/* The UNet's output for step i: eps (nb, C, H, W) backend from the samples x (nb, C, H, W) backend,
 * through scale_model_input (x_in: (mb, C, H, W) backend scratch) and, with guidance, the
 * [uncond, cond] batch mixed by the guidance op (eps2: (2 nb, C, H, W) backend scratch), then rescaled
 * when guidance_rescale > 0 (rescale_host: (2, nb, C, H, W) host scratch). */
static int predict(const RenderSettings *rs, const ComputeBackend *be, int i, const float *x, const Act *context,
                   int nb, float *ts, float *x_in, float *eps2, float *eps, float *rescale_host)
{
    const UNet *unet = &rs->model->unet;
    const Scheduler *sched = rs->scheduler;
    const size_t n = (size_t)unet->cfg.in_channels * rs->height * rs->width * nb;
    const int guided = unet->cfg.conditional && rs->guidance > 1.0f, mb = guided ? 2 * nb : nb;
    for (int b = 0; b < mb; b++)
        ts[b] = sched->unet_timesteps[i];
    /* latent_model_input = scale_model_input(cat([latents] * 2) or latents, t): a division, by 1 (an
     * exact copy) but for Euler's */
    const float divisor = scheduler_input_divisor(sched, i);
    const float *input = x;
    if (guided || divisor != 1.0f) {
        for (int copy = 0; copy < (guided ? 2 : 1); copy++)
            SOWER_TRY(be->ops->divide_scalar(be->ctx, x, divisor, x_in + n * copy, n));
        input = x_in;
    }
    if (!guided)
        return unet_forward_resident_cond(be, input, ts, unet->cfg.conditional ? context : NULL, nb, rs->height,
                                          rs->width, eps);
    SOWER_TRY(unet_forward_resident_cond(be, input, ts, context, mb, rs->height, rs->width, eps2));
    SOWER_TRY(be->ops->guidance(be->ctx, eps2, eps2 + n, rs->guidance, eps, n));
    if (rs->guidance_rescale > 0)
        SOWER_TRY(rescale_guided(rs, be, eps2 + n, eps, nb, n / (size_t)nb, rescale_host));
    return SOWER_OK;
}

static int render_batch(const RenderSettings *rs, const ComputeBackend *be, const uint64_t *seeds,
                        const RowText *texts, int nb, float *out)
{
    const UNet *unet = &rs->model->unet;
    const UNetOps *ops = be->ops;
    void *bc = be->ctx;
    const Scheduler *sched = rs->scheduler;
    const int c_in = unet->cfg.in_channels, c_out = unet->cfg.out_channels;
    const size_t per = (size_t)c_in * rs->height * rs->width; /* values per sample */
    const size_t n = per * nb;
    const int steps = sched->num_steps;
    const int conditional = unet->cfg.conditional, guided = conditional && rs->guidance > 1.0f;
    const int mb = guided ? 2 * nb : nb; /* the UNet's batch */
    /* DDIM/DDPM step where the samples live; the others on the host, out (nb, C, H, W) holding x */
    const int on_backend = scheduler_steps_on_backend(sched);
    int status = SOWER_OK;
    if (conditional && !texts)
        return SOWER_FAIL(SOWER_EINTERNAL, "a UNet2DConditionModel render without text embeddings");
    if (c_in != c_out)
        return SOWER_FAIL(SOWER_EMODEL,
                          "model '%s': in_channels %d != out_channels %d: not a denoiser sower can "
                          "sample from",
                          rs->model->dir, c_in, c_out);
    SchedulerRun run = {0};
    SeedGenerator *gens = calloc((size_t)nb, sizeof *gens);
    float *noise = malloc(n * sizeof(float)); /* (nb, C, H, W) host: one step's draws */
    float *ts = malloc((size_t)mb * sizeof *ts); /* (mb,) */
    float *x_be = NULL, *eps_be = NULL,
          *noise_be = NULL; /* (nb, C, H, W) backend: samples, model outputs, noise */
    float *x_in_be = NULL,
          *eps2_be = NULL; /* (mb, C, H, W) backend: the UNet's scaled input; (2 nb, ...) its guided output */
    Act context = {0};     /* the text embeddings (conditional models) */
    float *eps = NULL;     /* (nb, C, H, W) host, for traces and host steps */
    float *rescale_host = NULL; /* (2, nb, C, H, W) host: guidance_rescale's copies */
    float *trace_samples = NULL, *trace_outputs = NULL; /* (nb, steps, C, H, W) */
    if (rs->trace_dir || !on_backend)
        eps = malloc(n * sizeof(float));
    const int rescales = guided && rs->guidance_rescale > 0;
    if (rescales)
        rescale_host = malloc(2 * n * sizeof(float));
    if (rs->trace_dir) {
        trace_samples = malloc(per * steps * nb * sizeof(float));
        trace_outputs = malloc(per * steps * nb * sizeof(float));
    }
    if (!gens || !noise || !ts || ((rs->trace_dir || !on_backend) && !eps) || (rescales && !rescale_host) ||
        (rs->trace_dir && (!trace_samples || !trace_outputs))) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for a batch of %d samples", nb);
        goto done;
    }
    if (!on_backend)
        SOWER_TRY_GOTO(scheduler_run_init(&run, sched, n), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &x_be, n), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &eps_be, n), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &noise_be, n), status, done);
    if (guided || scheduler_class(sched->cfg.kind)->scales_input)
        SOWER_TRY_GOTO(ops->buffer_alloc(bc, &x_in_be, (size_t)mb * per), status, done);
    if (guided)
        SOWER_TRY_GOTO(ops->buffer_alloc(bc, &eps2_be, 2 * n), status, done);
    if (conditional) SOWER_TRY_GOTO(upload_texts(rs, be, texts, nb, guided, &context), status, done);
    for (int b = 0; b < nb; b++) {
        generator_seed(&gens[b], rs, seeds[b]);
        SOWER_TRY_GOTO(generator_draw(&gens[b], rs, be, out + per * b, noise_be + per * b, per), status, done);
    }
    if (sched->init_noise_sigma != 1.0f) /* latents * scheduler.init_noise_sigma */
        for (size_t j = 0; j < n; j++)
            out[j] = out[j] * sched->init_noise_sigma;
    SOWER_TRY_GOTO(ops->upload(bc, x_be, out, n), status, done);
    for (int i = 0; i < steps; i++) {
        if (rs->should_stop && rs->should_stop()) {
            status = SOWER_FAIL(SOWER_ESTOPPED, "stopped by a signal at UNet call %d of %d (%d steps)", i, steps,
                                sched->num_inference_steps);
            goto done;
        }
        SOWER_TRY_GOTO(predict(rs, be, i, x_be, &context, nb, ts, x_in_be, eps2_be, eps_be, rescale_host), status, done);
        const int draws = scheduler_step_needs_noise(sched, i, rs->eta);
        for (int b = 0; draws && b < nb; b++) {
            if (scheduler_noise_is_tree(sched)) { /* each sample's Brownian tree, not its generator */
                TreeDraw d = {.rs = rs, .be = be, .be_scratch = noise_be + per * b};
                SOWER_TRY_GOTO(scheduler_tree_noise(sched, i, seeds[b], tree_draw, &d, noise + per * b, per), status,
                               done);
            } else {
                SOWER_TRY_GOTO(generator_draw(&gens[b], rs, be, noise + per * b, noise_be + per * b, per), status, done);
            }
        }
        if (on_backend) {
            StepCoefficients k;
            scheduler_step_coefficients(sched, i, rs->eta, &k);
            if (draws && rs->generator != RNG_KERNEL_TORCH_CUDA) /* torch-cuda's is made in noise_be */
                SOWER_TRY_GOTO(ops->upload(bc, noise_be, noise, n), status, done);
            SOWER_TRY_GOTO(ops->scheduler_step(bc, &k, eps_be, x_be, draws ? noise_be : NULL, n), status, done);
        } else { /* out holds x on the host from the first noise on */
            SOWER_TRY_GOTO(ops->download(bc, eps, eps_be, n), status, done);
            scheduler_run_step(sched, &run, i, rs->eta, eps, out, draws ? noise : NULL);
            SOWER_TRY_GOTO(ops->upload(bc, x_be, out, n), status, done);
        }
        if (rs->trace_dir) {
            if (on_backend) {
                SOWER_TRY_GOTO(ops->download(bc, out, x_be, n), status, done);
                SOWER_TRY_GOTO(ops->download(bc, eps, eps_be, n), status, done);
            }
            for (int b = 0; b < nb; b++) {
                memcpy(trace_samples + per * ((size_t)b * steps + i), out + per * b, per * sizeof(float));
                memcpy(trace_outputs + per * ((size_t)b * steps + i), eps + per * b, per * sizeof(float));
            }
        }
        if (rs->on_step) rs->on_step(rs->on_step_ctx, i + 1, steps);
    }
    SOWER_TRY_GOTO(ops->download(bc, out, x_be, n), status, done);
    for (int b = 0; rs->trace_dir && b < nb; b++)
        SOWER_TRY_GOTO(write_traces(rs, seeds[b], trace_samples + per * steps * b,
                                    trace_outputs + per * steps * b, steps, c_in),
                       status, done);
done:
    scheduler_run_free(&run);
    ops->act_free(bc, &context);
    ops->buffer_free(bc, x_in_be);
    ops->buffer_free(bc, eps2_be);
    ops->buffer_free(bc, x_be);
    ops->buffer_free(bc, eps_be);
    ops->buffer_free(bc, noise_be);
    free(gens);
    free(noise);
    free(eps);
    free(rescale_host);
    free(ts);
    free(trace_samples);
    free(trace_outputs);
    return status;
}

int render_seeds(const RenderSettings *rs, const uint64_t *seeds, int n_seeds, float *out)
{
    return render_seeds_text(rs, seeds, NULL, n_seeds, out);
}

int render_seeds_text(const RenderSettings *rs, const uint64_t *seeds, const RowText *texts, int n_seeds,
                      float *out)
{
    const size_t per = (size_t)rs->model->unet.cfg.in_channels * rs->height * rs->width;
    const ComputeBackend *be = rs->backend;
    if (!be)
        return SOWER_FAIL(SOWER_EINTERNAL, "render_seeds: no backend (backends/backend_open.h opens one)");
    int status = SOWER_OK;
    for (int s = 0; s < n_seeds && status == SOWER_OK; s += rs->batch) {
        int nb = n_seeds - s < rs->batch ? n_seeds - s : rs->batch;
        status = render_batch(rs, be, seeds + s, texts ? texts + s : NULL, nb, out + per * s);
    }
    SOWER_TRY(status);
    return SOWER_OK;
}
