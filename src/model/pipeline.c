/* pipeline.c: the denoising loop over batches of seeds. */
#include "pipeline.h"

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
    SOWER_TRY(npy_write_f32(path, samples, shape, 4));
    snprintf(path, sizeof path, "%s/seed_%llu_model_outputs.npy", rs->trace_dir, (unsigned long long)seed);
    SOWER_TRY(npy_write_f32(path, outputs, shape, 4));
    return SOWER_OK;
}

/* Renders seeds[0..nb) as one batch into out (nb, C, H, W). The samples stay in the backend's
 * memory from the first noise to the last step (on a GPU: no copy per step but each step's noise
 * up, drawn on the host by each seed's own generator). */
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
    const int steps = sched->num_inference_steps;
    const int conditional = unet->cfg.conditional, guided = conditional && rs->guidance > 1.0f;
    const int mb = guided ? 2 * nb : nb; /* the UNet's batch */
    int status = SOWER_OK;
    if (conditional && !texts)
        return SOWER_FAIL(SOWER_EINTERNAL, "a UNet2DConditionModel render without text embeddings");
    if (c_in != c_out)
        return SOWER_FAIL(SOWER_EMODEL,
                          "model '%s': in_channels %d != out_channels %d: not a denoiser sower can "
                          "sample from",
                          rs->model->dir, c_in, c_out);
    TorchRng *gens = calloc((size_t)nb, sizeof *gens);
    float *noise = malloc(n * sizeof(float));      /* (nb, C, H, W) host: one step's draws */
    int64_t *ts = malloc((size_t)mb * sizeof *ts); /* (mb,) */
    float *x_be = NULL, *eps_be = NULL,
          *noise_be = NULL; /* (nb, C, H, W) backend: samples, model outputs, noise */
    float *x_in_be = NULL,
          *eps2_be = NULL; /* (2 nb, C, H, W) backend, with guidance: the UNet's input and output */
    Act context = {0};     /* the text embeddings (conditional models) */
    float *eps = NULL;     /* (nb, C, H, W) host, for traces */
    float *trace_samples = NULL, *trace_outputs = NULL; /* (nb, steps, C, H, W) */
    if (rs->trace_dir) {
        eps = malloc(n * sizeof(float));
        trace_samples = malloc(per * steps * nb * sizeof(float));
        trace_outputs = malloc(per * steps * nb * sizeof(float));
    }
    if (!gens || !noise || !ts || (rs->trace_dir && (!eps || !trace_samples || !trace_outputs))) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for a batch of %d samples", nb);
        goto done;
    }
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &x_be, n), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &eps_be, n), status, done);
    SOWER_TRY_GOTO(ops->buffer_alloc(bc, &noise_be, n), status, done);
    if (guided) {
        SOWER_TRY_GOTO(ops->buffer_alloc(bc, &x_in_be, 2 * n), status, done);
        SOWER_TRY_GOTO(ops->buffer_alloc(bc, &eps2_be, 2 * n), status, done);
    }
    if (conditional) SOWER_TRY_GOTO(upload_texts(rs, be, texts, nb, guided, &context), status, done);
    for (int b = 0; b < nb; b++) {
        gens[b].radius_log1p = rs->torch_log1p;
        rng_seed(&gens[b], seeds[b]);
        rng_randn_f32(&gens[b], rs->generator, out + per * b, per);
    }
    SOWER_TRY_GOTO(ops->upload(bc, x_be, out, n), status, done);
    for (int i = 0; i < steps; i++) {
        if (rs->should_stop && rs->should_stop()) {
            status = SOWER_FAIL(SOWER_ESTOPPED, "stopped by a signal at step %d of %d", i, steps);
            goto done;
        }
        for (int b = 0; b < mb; b++)
            ts[b] = sched->timesteps[i];
        if (guided) {
            /* cat([latents] * 2) through scale_model_input, the identity for DDIM/DDPM: a division by 1 is
             * an exact copy */
            SOWER_TRY_GOTO(ops->divide_scalar(bc, x_be, 1.0f, x_in_be, n), status, done);
            SOWER_TRY_GOTO(ops->divide_scalar(bc, x_be, 1.0f, x_in_be + n, n), status, done);
            SOWER_TRY_GOTO(
                unet_forward_resident_cond(be, x_in_be, ts, &context, mb, rs->height, rs->width, eps2_be),
                status, done);
            SOWER_TRY_GOTO(ops->guidance(bc, eps2_be, eps2_be + n, rs->guidance, eps_be, n), status, done);
        } else {
            SOWER_TRY_GOTO(unet_forward_resident_cond(be, x_be, ts, conditional ? &context : NULL, nb,
                                                      rs->height, rs->width, eps_be),
                           status, done);
        }
        StepCoefficients k;
        scheduler_step_coefficients(sched, i, rs->eta, &k);
        if (k.add_noise) {
            for (int b = 0; b < nb; b++)
                rng_randn_f32(&gens[b], rs->generator, noise + per * b, per);
            SOWER_TRY_GOTO(ops->upload(bc, noise_be, noise, n), status, done);
        }
        SOWER_TRY_GOTO(ops->scheduler_step(bc, &k, eps_be, x_be, k.add_noise ? noise_be : NULL, n), status,
                       done);
        if (rs->trace_dir) {
            SOWER_TRY_GOTO(ops->download(bc, out, x_be, n), status, done);
            SOWER_TRY_GOTO(ops->download(bc, eps, eps_be, n), status, done);
            for (int b = 0; b < nb; b++) {
                memcpy(trace_samples + per * ((size_t)b * steps + i), out + per * b, per * sizeof(float));
                memcpy(trace_outputs + per * ((size_t)b * steps + i), eps + per * b, per * sizeof(float));
            }
        }
    }
    SOWER_TRY_GOTO(ops->download(bc, out, x_be, n), status, done);
    for (int b = 0; rs->trace_dir && b < nb; b++)
        SOWER_TRY_GOTO(write_traces(rs, seeds[b], trace_samples + per * steps * b,
                                    trace_outputs + per * steps * b, steps, c_in),
                       status, done);
done:
    ops->act_free(bc, &context);
    ops->buffer_free(bc, x_in_be);
    ops->buffer_free(bc, eps2_be);
    ops->buffer_free(bc, x_be);
    ops->buffer_free(bc, eps_be);
    ops->buffer_free(bc, noise_be);
    free(gens);
    free(noise);
    free(eps);
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
