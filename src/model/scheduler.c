/* scheduler.c: the tables every scheduler class shares (betas, alphas_cumprod, DDIM's timestep spacing),
 * set_timesteps, and stepping, bit for bit with torch 1.13 (the config reader is scheduler_config.c; the
 * classes' own parts are in schedulers/). See scheduler.h for what is reproduced; the source lines quoted
 * below are diffusers 0.31's schedulers/scheduling_ddim.py and scheduling_ddpm.py. Built with
 * -ffp-contract=off: every float expression rounds where torch rounds; the only fused multiply-adds are
 * the explicit fmaf() calls that reproduce GCC's contraction inside torch's AVX2 linspace kernel. */
#include "scheduler.h"
#include "schedulers/schedulers.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double PYTHON_PI = 3.141592653589793; /* math.pi */

/* ---- betas, alphas_cumprod ------------------------------------------------------------------ */

/* The scalar formula of torch 1.13's linspace kernel (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp):
 * from the start for the first half, from the end for the second. The AVX2 build of that file is
 * compiled with FMA and GCC contracts both products into fused multiply-adds; the DEFAULT build
 * has no FMA. */
static float linspace_at(float start, float end, float step, int64_t steps, int64_t idx, int fused)
{
    if (idx < steps / 2)
        return fused ? fmaf(step, (float)idx, start) : start + step * (float)idx;
    float back = (float)(steps - idx - 1);
    return fused ? fmaf(-step, back, end) : end - step * back;
}

/* torch.linspace(start, end, steps, dtype=float32) on one thread. Up to 32768 values (at::GRAIN_SIZE)
 * torch always uses one; beyond, it splits the range across its threads, each part restarting the
 * blocks of 16, so its bits then depend on torch.get_num_threads(): this reproduces one thread.
 * cpu_serial_kernel_vec handles blocks of two 8-float vectors: each vector is
 * Vectorized<float>::arange(base, step) = base + k*step (k = 0..7, not fused), base from the scalar
 * formula at its first index; the remainder (steps % 16 values) uses the scalar formula. */
void torch_linspace(float *out /* (steps,) */, double start_d, double end_d, int64_t steps, RngKernel kernel)
{
    const float start = (float)start_d, end = (float)end_d;
    if (steps == 1) { /* result.fill_(start) */
        out[0] = start;
        return;
    }
    const float step = (end - start) / (float)(steps - 1);
    const int fused = kernel == RNG_KERNEL_TORCH_CPU;
    enum { VEC = 8 };
    int64_t i = 0;
    for (; i + 2 * VEC <= steps; i += 2 * VEC)
        for (int64_t v = i; v < i + 2 * VEC; v += VEC) {
            const float base = linspace_at(start, end, step, steps, v, fused);
            for (int k = 0; k < VEC; k++)
                out[v + k] = base + (float)k * step;
        }
    for (; i < steps; i++)
        out[i] = linspace_at(start, end, step, steps, i, fused);
}

/* Python's float ** float is libm pow(); volatile keeps the compiler from turning pow(x, 2.0) into x*x. */
static double python_pow(double x, double y)
{
    volatile double exponent = y;
    return pow(x, exponent);
}

/* betas_for_alpha_bar(T) with the cosine transform, in Python doubles, then torch.tensor(float32). */
static void betas_squaredcos(float *betas /* (T,) */, int T)
{
    for (int i = 0; i < T; i++) {
        double t1 = (double)i / (double)T, t2 = (double)(i + 1) / (double)T;
        double a1 = python_pow(cos((t1 + 0.008) / 1.008 * PYTHON_PI / 2), 2.0);
        double a2 = python_pow(cos((t2 + 0.008) / 1.008 * PYTHON_PI / 2), 2.0);
        double beta = 1 - a2 / a1;
        if (0.999 < beta) /* min(beta, max_beta) */
            beta = 0.999;
        betas[i] = (float)beta;
    }
}

/* alphas_cumprod (T,) = torch.cumprod(1.0 - betas): the CPU kernel accumulates in double. */
static void cumprod_of_alphas(const float *betas, int T, float *alphas_cumprod)
{
    double acc = 1.0;
    for (int i = 0; i < T; i++) {
        float alpha = 1.0f - betas[i];
        acc *= (double)alpha;
        alphas_cumprod[i] = (float)acc;
    }
}

/* rescale_zero_terminal_snr(betas), in place, every operation float32 as torch does it: sqrt(alphas_cumprod),
 * shifted so the last is 0 and scaled so the first is unchanged, squared (x ** 2 is x * x), back to betas
 * through the ratios of consecutive values. alphas_bar (T,) is scratch. */
static void rescale_zero_terminal_snr(float *betas /* (T,) */, int T, float *alphas_bar /* (T,) */)
{
    cumprod_of_alphas(betas, T, alphas_bar);
    for (int i = 0; i < T; i++)
        alphas_bar[i] = sqrtf(alphas_bar[i]); /* alphas_bar_sqrt */
    const float first = alphas_bar[0], last = alphas_bar[T - 1];
    const float scale = first / (first - last); /* 0-d tensors */
    for (int i = 0; i < T; i++) {
        const float shifted = alphas_bar[i] - last;
        const float scaled = shifted * scale;
        alphas_bar[i] = scaled * scaled;
    }
    betas[0] = 1.0f - alphas_bar[0]; /* alphas = cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]]) */
    for (int i = 1; i < T; i++)
        betas[i] = 1.0f - alphas_bar[i] / alphas_bar[i - 1];
}

void scheduler_alphas_cumprod(const SchedulerConfig *cfg, float *betas /* (T,) scratch */,
                               float *alphas_cumprod /* (T,) */)
{
    const int T = cfg->num_train_timesteps;
    switch (cfg->beta_schedule) {
    case BETA_LINEAR:
        torch_linspace(betas, cfg->beta_start, cfg->beta_end, T, cfg->torch_kernel);
        break;
    case BETA_SCALED_LINEAR:
        torch_linspace(betas, python_pow(cfg->beta_start, 0.5), python_pow(cfg->beta_end, 0.5), T,
                       cfg->torch_kernel);
        for (int i = 0; i < T; i++)
            betas[i] = betas[i] * betas[i]; /* ** 2 */
        break;
    case BETA_SQUAREDCOS_CAP_V2:
        betas_squaredcos(betas, T);
        break;
    }
    if (cfg->rescale_betas_zero_snr) /* alphas_cumprod is the scratch: it is rewritten below */
        rescale_zero_terminal_snr(betas, T, alphas_cumprod);
    cumprod_of_alphas(betas, T, alphas_cumprod); /* alphas = 1.0 - betas (float32) */
}

/* ---- timesteps (numpy) ---------------------------------------------------------------------- */

int scheduler_trailing_timesteps(int start, int T, int N, int64_t *ts)
{
    const double delta = -((double)T / (double)N);
    /* _calc_length: ceil((stop - start) / step); then a[0] = start, a[1] = start + step, and
     * DOUBLE_fill: a[i] = a[0] + i*(a[1] - a[0]). */
    const double length = ceil((double)(-start) / delta);
    if (length != (double)N)
        return SOWER_FAIL(SOWER_EINPUT,
                          "num_inference_steps %d with timestep_spacing \"trailing\" and num_train_timesteps %d: "
                          "numpy's arange makes %.0f timesteps in diffusers 0.31, not %d; choose another step count",
                          N, T, length, N);
    const double a0 = (double)start, a1 = (double)start + delta, d = a1 - a0;
    for (int i = 0; i < N; i++) {
        double a = i == 0 ? a0 : i == 1 ? a1 : a0 + (double)i * d;
        ts[i] = (int64_t)rint(a) - 1;
    }
    return SOWER_OK;
}

/* set_timesteps(N): leading, trailing and linspace spacing as numpy computes them (DDIM's). */
int scheduler_spacing_timesteps(const SchedulerConfig *cfg, int N, int64_t *ts /* (N,) */)
{
    const int T = cfg->num_train_timesteps;
    switch (cfg->timestep_spacing) {
    case SPACING_LEADING: { /* (np.arange(0, N) * (T // N)).round()[::-1] + steps_offset */
        const int64_t ratio = T / N;
        for (int i = 0; i < N; i++)
            ts[i] = (int64_t)(N - 1 - i) * ratio + cfg->steps_offset;
        break;
    }
    case SPACING_TRAILING: /* np.round(np.arange(T, 0, -(T / N))).astype(int64) - 1 */
        SOWER_TRY(scheduler_trailing_timesteps(T, T, N, ts));
        break;
    case SPACING_LINSPACE: { /* np.linspace(0, T - 1, N).round()[::-1] */
        const double step = N > 1 ? (double)(T - 1) / (double)(N - 1) : 0.0;
        for (int i = 0; i < N; i++) {
            double y = i == N - 1 && N > 1 ? (double)(T - 1) : (double)i * step + 0.0;
            ts[N - 1 - i] = (int64_t)rint(y);
        }
        break;
    }
    }
    for (int i = 0; i < N; i++)
        if (ts[i] < 0 || ts[i] > T - 1)
            return SOWER_FAIL(SOWER_EINPUT,
                              "num_inference_steps %d with timestep_spacing \"%s\" and steps_offset %d gives "
                              "timestep %lld, outside 0..%d (diffusers 0.31 would index past alphas_cumprod)",
                              N, (const char *const[]){"leading", "trailing", "linspace"}[cfg->timestep_spacing],
                              cfg->steps_offset, (long long)ts[i], T - 1);
    return SOWER_OK;
}

/* ---- init / free ---------------------------------------------------------------------------- */

/* DDIM's set_timesteps: N integer timesteps, descending. */
static int default_timesteps(Scheduler *s)
{
    s->num_steps = s->num_inference_steps;
    s->timesteps = malloc((size_t)s->num_steps * sizeof *s->timesteps);
    if (!s->timesteps)
        return SOWER_FAIL(SOWER_ENOMEM, "scheduler timesteps");
    return scheduler_spacing_timesteps(&s->cfg, s->num_steps, s->timesteps);
}

int scheduler_init(Scheduler *s, const SchedulerConfig *cfg, int num_inference_steps)
{
    memset(s, 0, sizeof *s);
    const int T = cfg->num_train_timesteps;
    if (T < 1 || T > SCHEDULER_MAX_TRAIN_TIMESTEPS)
        return SOWER_FAIL(SOWER_EINPUT, "num_train_timesteps: expected 1..%d, found %d",
                          SCHEDULER_MAX_TRAIN_TIMESTEPS, T);
    if (num_inference_steps < 1 || num_inference_steps > T)
        return SOWER_FAIL(SOWER_EINPUT, "num_inference_steps: expected 1..%d (num_train_timesteps), found %d", T,
                          num_inference_steps);
    if (!(cfg->clip_sample_range > 0.0))
        return SOWER_FAIL(SOWER_EINPUT, "clip_sample_range: expected a number > 0, found %g", cfg->clip_sample_range);
    if (cfg->steps_offset < 0)
        return SOWER_FAIL(SOWER_EINPUT, "steps_offset: expected >= 0, found %d", cfg->steps_offset);
    assert(cfg->kind >= 0 && cfg->kind < scheduler_kind_count());
    assert((unsigned)cfg->beta_schedule <= BETA_SQUAREDCOS_CAP_V2);
    assert((unsigned)cfg->prediction_type <= PRED_SAMPLE);
    assert((unsigned)cfg->timestep_spacing <= SPACING_LINSPACE);
    assert((unsigned)cfg->variance_type <= VARIANCE_FIXED_LARGE);
    const SchedulerClass *c = scheduler_class(cfg->kind);

    int status = SOWER_OK;
    float *betas = malloc((size_t)T * sizeof *betas); /* (T,) */
    s->alphas_cumprod = malloc((size_t)T * sizeof *s->alphas_cumprod);
    if (!betas || !s->alphas_cumprod) {
        status = SOWER_FAIL(SOWER_ENOMEM, "scheduler tables for %d train timesteps", T);
        goto fail;
    }
    s->cfg = *cfg;
    s->num_inference_steps = num_inference_steps;
    s->step_ratio = T / num_inference_steps;
    s->init_noise_sigma = 1.0f;
    scheduler_alphas_cumprod(cfg, betas, s->alphas_cumprod);
    if (cfg->rescale_betas_zero_snr && c->floors_terminal_alpha) /* "so first sigma is not inf" */
        s->alphas_cumprod[T - 1] = 0x1p-24f;
    s->final_alpha_cumprod = c->final_alpha_cumprod ? c->final_alpha_cumprod(cfg, s->alphas_cumprod) : 1.0f;
    SOWER_TRY_GOTO(c->set_timesteps ? c->set_timesteps(s) : default_timesteps(s), status, fail);
    if (s->sigmas && !s->num_sigmas)
        s->num_sigmas = s->num_steps + 1;
    if (!s->sigmas && c->divides_by_noise) /* DDIM's and DDPM's variance is 0/0 at a step with no noise: NaN */
        for (int i = 0; i < s->num_steps; i++)
            if (s->timesteps[i] >= 0 && s->timesteps[i] < T && s->alphas_cumprod[s->timesteps[i]] >= 1.0f) {
                status = SOWER_FAIL(SOWER_EINPUT,
                                    "train step %lld, which %d steps visit, has no noise (alphas_cumprod 1: beta_start "
                                    "%g): %s's variance there is 0/0, and every sample would be NaN",
                                    (long long)s->timesteps[i], num_inference_steps, cfg->beta_start, c->name);
                goto fail;
            }
    if (!s->sigmas && cfg->prediction_type == PRED_EPSILON) /* x0 = (x - sqrt(1 - a) eps) / sqrt(a): x / 0 */
        for (int i = 0; i < s->num_steps; i++)
            if (s->timesteps[i] >= 0 && s->timesteps[i] < T && s->alphas_cumprod[s->timesteps[i]] <= 0.0f) {
                status = SOWER_FAIL(SOWER_EINPUT,
                                    "train step %lld, which %d steps with timestep_spacing \"%s\" visit, has no signal "
                                    "left (rescale_betas_zero_snr: alphas_cumprod 0): %s's x0 of an epsilon prediction "
                                    "there divides by 0, and every sample would be NaN; zero-SNR models predict "
                                    "v (prediction_type \"v_prediction\"), or choose a spacing that stops short of it",
                                    (long long)s->timesteps[i], num_inference_steps,
                                    (const char *const[]){"leading", "trailing", "linspace"}[cfg->timestep_spacing],
                                    c->name);
                goto fail;
            }
    if (!s->unet_timesteps) { /* integer timesteps: the UNet sees them as float32 (exact below 2^24) */
        s->unet_timesteps = malloc((size_t)s->num_steps * sizeof *s->unet_timesteps);
        if (!s->unet_timesteps) {
            status = SOWER_FAIL(SOWER_ENOMEM, "scheduler timesteps");
            goto fail;
        }
        for (int i = 0; i < s->num_steps; i++)
            s->unet_timesteps[i] = (float)s->timesteps[i];
    }
    free(betas);
    return SOWER_OK;
fail:
    free(betas);
    scheduler_free(s);
    return status;
}

void scheduler_free(Scheduler *s)
{
    if (!s)
        return;
    free(s->timesteps);
    free(s->unet_timesteps);
    free(s->sigmas);
    free(s->sigmas_interpol);
    free(s->sigmas_up);
    free(s->sigmas_down);
    free(s->alphas_cumprod);
    brownian_plan_free(s->brownian);
    memset(s, 0, sizeof *s);
}

/* ---- step ----------------------------------------------------------------------------------- */

_Static_assert((int)PRED_EPSILON == (int)STEP_PRED_EPSILON && (int)PRED_V_PREDICTION == (int)STEP_PRED_V_PREDICTION &&
                   (int)PRED_SAMPLE == (int)STEP_PRED_SAMPLE,
               "scheduler_step.h numbers the prediction types as scheduler.h does");

void scheduler_step_coefficients(const Scheduler *s, int i, float eta, StepCoefficients *k)
{
    assert(i >= 0 && i < s->num_steps);
    assert(scheduler_steps_on_backend(s));
    memset(k, 0, sizeof *k);
    k->prediction = (int)s->cfg.prediction_type;
    k->clip = s->cfg.clip_sample;
    k->hi = (float)s->cfg.clip_sample_range, k->lo = (float)-s->cfg.clip_sample_range;
    scheduler_class(s->cfg.kind)->coefficients(s, i, eta, k);
}

int scheduler_steps_on_backend(const Scheduler *s) { return scheduler_class(s->cfg.kind)->coefficients != NULL; }

int scheduler_step_needs_noise(const Scheduler *s, int i, float eta)
{
    if (!scheduler_steps_on_backend(s)) {
        const SchedulerClass *c = scheduler_class(s->cfg.kind);
        return c->draws_noise && (!c->draws_noise_at || c->draws_noise_at(s, i));
    }
    StepCoefficients k;
    scheduler_step_coefficients(s, i, eta, &k);
    return k.add_noise;
}

int scheduler_noise_is_tree(const Scheduler *s) { return scheduler_class(s->cfg.kind)->tree_noise != NULL; }

int scheduler_tree_noise(const Scheduler *s, int i, uint64_t seed, BrownianDrawFn draw, void *ctx, float *out,
                         size_t n)
{
    assert(scheduler_noise_is_tree(s) && i >= 0 && i < s->num_steps);
    const uint64_t entropy = s->cfg.has_noise_sampler_seed ? s->cfg.noise_sampler_seed : seed;
    return scheduler_class(s->cfg.kind)->tree_noise(s, i, entropy, draw, ctx, out, n);
}

float scheduler_input_divisor(const Scheduler *s, int i)
{
    assert(i >= 0 && i < s->num_steps);
    const SchedulerClass *c = scheduler_class(s->cfg.kind);
    if (!c->scales_input)
        return 1.0f;
    const float sigma = c->input_sigma ? c->input_sigma(s, i) : s->sigmas[i];
    return sqrtf(sigma * sigma + 1.0f); /* (sigma**2 + 1) ** 0.5 on a float32 0-d tensor */
}

void scheduler_step(const Scheduler *s, int i, float eta, const float *model_output, const float *sample,
                    const float *noise, float *prev_sample, size_t n)
{
    StepCoefficients k;
    scheduler_step_coefficients(s, i, eta, &k);
    assert(!k.add_noise || noise);
    for (size_t j = 0; j < n; j++)
        prev_sample[j] = scheduler_step_value(&k, model_output[j], sample[j], k.add_noise ? noise[j] : 0.0f);
}

/* ---- host stepping -------------------------------------------------------------------------- */

int scheduler_run_init(SchedulerRun *r, const Scheduler *s, size_t n)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    const int slots = scheduler_class(s->cfg.kind)->history_slots;
    if (slots > 0 && !(r->slots = calloc((size_t)slots * n, sizeof *r->slots))) {
        memset(r, 0, sizeof *r);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the scheduler history of %zu values (%d copies)", n,
                          slots);
    }
    return SOWER_OK;
}

void scheduler_run_free(SchedulerRun *r)
{
    free(r->slots);
    memset(r, 0, sizeof *r);
}

void scheduler_run_step(const Scheduler *s, SchedulerRun *r, int i, float eta, const float *model_output,
                        float *sample, const float *noise)
{
    assert(i == r->next_step && i < s->num_steps);
    assert(!scheduler_step_needs_noise(s, i, eta) || noise);
    if (scheduler_steps_on_backend(s))
        scheduler_step(s, i, eta, model_output, sample, noise, sample, r->n);
    else
        scheduler_class(s->cfg.kind)->step(s, r, i, model_output, sample, noise);
    r->next_step++;
}
