/* kdpm2.c: diffusers 0.31's KDPM2DiscreteScheduler and KDPM2AncestralDiscreteScheduler
 * (scheduling_k_dpm_2_discrete.py, scheduling_k_dpm_2_ancestral_discrete.py; k-diffusion's "DPM2" and "DPM2 a"):
 * each step but the last is two UNet calls, an Euler step to a log-midpoint sigma and a second-order step from
 * there; 2N - 1 calls in all. The tables keep diffusers' own layout (sigmas, sigmas_interpol and the ancestral
 * class's sigmas_up and sigmas_down, 2N + 2 each, indexed by call), so the step reads them with diffusers'
 * indices. Every per-value operation is float32 in diffusers' order; sigmas_interpol is
 * sigmas.log().lerp(other.log(), 0.5).exp() with torch's own log and exp, and the midpoint timesteps read numpy's
 * log of the sigma table (torch_math.h): all bit for bit. */
#include <math.h>
#include <stdlib.h>

#include "schedulers/schedulers.h"
#include "schedulers/torch_math.h"

/* The keys of both classes' __init__ (the ancestral one's are the same). */
#define SCHED_KEYS_KDPM2                                                                                    \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |             \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_USE_KARRAS_SIGMAS) |       \
     SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | SCHED_KEY(KEY_USE_BETA_SIGMAS) | SCHED_KEY(KEY_PREDICTION_TYPE) | \
     SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_STEPS_OFFSET))

enum { KDPM2_SLOT_SAMPLE, KDPM2_SLOTS }; /* per value: self.sample, the first-order call's start */

static void kdpm2_defaults(SchedulerConfig *cfg)
{
    cfg->timestep_spacing = SPACING_LINSPACE;
    cfg->beta_start = 0.00085, cfg->beta_end = 0.012; /* "sensible defaults" in its __init__ */
}

static int is_ancestral(const Scheduler *s) { return scheduler_class(s->cfg.kind)->draws_noise; }

/* torch.lerp(a, b, 0.5) on float32 (|weight| < 0.5 is false): b - (b - a) * (1 - 0.5). */
static float lerp_half(float a, float b) { return b - (b - a) * 0.5f; }

/* torch.cat([x[:1], x[1:].repeat_interleave(2), x[-1:]]) of base (N + 1,) -> out (2N + 2,). */
static void interleave(const float *base, int N, float *out)
{
    out[0] = base[0];
    for (int k = 1; k <= N; k++)
        out[2 * k - 1] = out[2 * k] = base[k];
    out[2 * N + 1] = base[N];
}

/* _sigma_to_t of one element of a float32 tensor against the float32 log_sigmas tensor: sower's sigma_to_t but
 * for its last line, (1 - w) * low_idx + w * high_idx, which torch computes in float32. */
static float tensor_sigma_to_t(float sigma, const float *log_sigmas, int T)
{
    int low;
    const float w = sigma_to_t_weight(sigma, log_sigmas, T, &low);
    return (1.0f - w) * (float)low + w * (float)(low + 1);
}

/* The first call's timestep must not recur: diffusers' _init_step_index would start at its second place. And every
 * sigma a call reads must be finite and what it divides by above 0: where diffusers' own tables hold NaN there
 * (the ancestral midpoint of a step that falls more than 4096-fold in sigma: its sigma_down rounds to 0, its log
 * to -inf), its render is NaN. */
static int kdpm2_check(const Scheduler *s)
{
    const int calls = s->num_steps, ancestral = is_ancestral(s);
    for (int c = 1; c < calls; c++)
        if (s->unet_timesteps[c] == s->unet_timesteps[0])
            return SOWER_FAIL(SOWER_EINPUT, "%d steps of this noise schedule visit their first timestep (%g) twice, "
                                            "which diffusers' %s cannot run: choose fewer steps",
                              s->num_inference_steps, (double)s->unet_timesteps[0], scheduler_class_name(s->cfg.kind));
    for (int c = 0; c < calls; c++) {
        const int first = c % 2 == 0;
        /* what call c divides by, and what it steps with */
        const float sigma = first ? s->sigmas[c] : s->sigmas_interpol[ancestral ? c - 1 : c];
        const float other = first ? s->sigmas_interpol[ancestral ? c : c + 1]
                                  : ancestral ? s->sigmas_down[c - 1] + s->sigmas_up[c - 1] : s->sigmas[c];
        if (!(sigma > 0.0f) || !isfinite(sigma) || !isfinite(other) || !isfinite(s->unet_timesteps[c]))
            return SOWER_FAIL(SOWER_EINPUT,
                              "%d steps of this noise schedule give %s's UNet call %d of %d (step %d, from sigma %g to "
                              "%g) a %s (diffusers' own table is NaN there), and every sample would be NaN: choose "
                              "more steps or another scheduler",
                              s->num_inference_steps, scheduler_kind_name(s->cfg.kind), c, calls, c / 2,
                              (double)s->sigmas[c - c % 2], (double)s->sigmas[c - c % 2 + 1],
                              sigma > 0.0f ? "sigma or timestep that is not finite" : "sigma of 0 to divide by");
    }
    return SOWER_OK;
}

/* set_timesteps: Euler's N timesteps and sigmas (Karras's timesteps rounded), then the interpolated sigmas, their
 * timesteps, and the calls [t0, (t_interp, t1), (t_interp, t2), ...]. */
static int kdpm2_set_timesteps(Scheduler *s)
{
    const int N = s->num_inference_steps, T = s->cfg.num_train_timesteps, calls = 2 * N - 1, ancestral = is_ancestral(s);
    int status = SOWER_OK;
    float *sigma = malloc((size_t)T * sizeof *sigma), *log_sigma = malloc((size_t)T * sizeof *log_sigma); /* (T,) */
    float *ts = malloc((size_t)N * sizeof *ts);                                  /* (N,) the steps' timesteps */
    double *interp = malloc((size_t)N * sizeof *interp);                         /* (N,) their sigmas */
    float *base = malloc((size_t)(N + 1) * 4 * sizeof *base);                    /* (4, N + 1) before interleaving */
    float *b_sigma = base, *b_interpol = base + (N + 1), *b_up = base + 2 * (N + 1), *b_down = base + 3 * (N + 1);
    s->num_steps = calls, s->num_sigmas = 2 * N + 2;
    s->unet_timesteps = malloc((size_t)calls * sizeof *s->unet_timesteps);
    s->sigmas = malloc((size_t)s->num_sigmas * sizeof *s->sigmas);
    s->sigmas_interpol = malloc((size_t)s->num_sigmas * sizeof *s->sigmas_interpol);
    if (ancestral) {
        s->sigmas_up = malloc((size_t)s->num_sigmas * sizeof *s->sigmas_up);
        s->sigmas_down = malloc((size_t)s->num_sigmas * sizeof *s->sigmas_down);
    }
    if (!sigma || !log_sigma || !ts || !interp || !base || !s->unet_timesteps || !s->sigmas || !s->sigmas_interpol ||
        (ancestral && (!s->sigmas_up || !s->sigmas_down))) {
        status = SOWER_FAIL(SOWER_ENOMEM, "scheduler sigmas");
        goto done;
    }
    SOWER_TRY_GOTO(scheduler_euler_timesteps(s, ts), status, done);
    sigma_table(s, sigma);
    log_sigma_table(s, sigma, log_sigma);
    for (int i = 0; i < N; i++)
        interp[i] = numpy_interp_arange((double)ts[i], sigma, T);
    if (s->cfg.use_karras_sigmas || s->cfg.use_exponential_sigmas || s->cfg.use_beta_sigmas) {
        const double lo = isnan(s->cfg.sigma_min) ? interp[N - 1] : s->cfg.sigma_min;
        const double hi = isnan(s->cfg.sigma_max) ? interp[0] : s->cfg.sigma_max;
        SOWER_TRY_GOTO(karras_check(s), status, done);
        SOWER_TRY_GOTO(converted_sigmas(s, lo, hi, N, interp), status, done);
        /* timesteps = np.array([_sigma_to_t(sigma) ...]), .round() for Karras's only */
        for (int i = 0; i < N; i++) {
            ts[i] = (float)(s->cfg.use_karras_sigmas ? nearbyint(sigma_to_t(interp[i], log_sigma, T)) /* as np.round */
                                                     : sigma_to_t_tensor(interp[i], log_sigma, T));
        }
    }
    for (int i = 0; i < N; i++)
        b_sigma[i] = (float)interp[i];
    const RngKernel kern = s->cfg.torch_kernel;
    b_sigma[N] = 0.0f; /* np.concatenate([sigmas, [0.0]]).astype(np.float32) */
    if (!ancestral) { /* sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp(): [0] is NaN (never read) */
        for (int k = 0; k <= N; k++)
            b_interpol[k] = torch_expf(lerp_half(torch_logf(b_sigma[k], kern), torch_logf(b_sigma[k == 0 ? N : k - 1], kern)), kern);
    } else {
        for (int k = 0; k <= N; k++) {
            const float next = k < N ? b_sigma[k + 1] : 0.0f, sq = b_sigma[k] * b_sigma[k], nsq = next * next;
            /* (next**2 * (sigma**2 - next**2) / sigma**2) ** 0.5: [N] is 0/0 (never read) */
            b_up[k] = sqrtf(nsq * (sq - nsq) / sq);
            b_down[k] = k < N ? sqrtf(nsq - b_up[k] * b_up[k]) : 0.0f;
            b_interpol[k] = torch_expf(lerp_half(torch_logf(b_sigma[k], kern), torch_logf(b_down[k], kern)), kern);
        }
        b_interpol[N] = 0.0f; /* sigmas_interpol[-2:] = 0.0 */
        if (N >= 1)
            b_interpol[N - 1] = 0.0f;
        interleave(b_up, N, s->sigmas_up);
        interleave(b_down, N, s->sigmas_down);
    }
    interleave(b_sigma, N, s->sigmas);
    interleave(b_interpol, N, s->sigmas_interpol);
    /* timesteps: [t0] + interleave(timesteps_interpol[1:-1] (ancestral: [:-2]), timesteps[1:]) */
    s->unet_timesteps[0] = ts[0];
    for (int k = 1; k < N; k++) {
        s->unet_timesteps[2 * k - 1] = tensor_sigma_to_t(b_interpol[ancestral ? k - 1 : k], log_sigma, T);
        s->unet_timesteps[2 * k] = ts[k];
    }
    s->init_noise_sigma = sigmas_init_noise_sigma(s, s->num_sigmas);
    status = kdpm2_check(s);
done:
    free(sigma);
    free(log_sigma);
    free(ts);
    free(interp);
    free(base);
    return status;
}

/* scale_model_input: sigmas[i] at a first-order call, else the interpolated sigma (the ancestral class's one
 * place back). */
static float kdpm2_input_sigma(const Scheduler *s, int i)
{
    return i % 2 == 0 ? s->sigmas[i] : s->sigmas_interpol[is_ancestral(s) ? i - 1 : i];
}

/* The ancestral class draws at its second-order calls only. */
static int kdpm2_draws_noise_at(const Scheduler *s, int i)
{
    (void)s;
    return i % 2 == 1;
}

/* Call i: even i (state_in_first_order) an Euler step from sigma to the interpolated sigma, its start kept;
 * odd i the derivative at the interpolated sigma, applied to the kept start over the whole step (to the next
 * sigma, or the ancestral class's sigma_down and then noise * sigma_up). */
static void kdpm2_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    const int first = i % 2 == 0, ancestral = is_ancestral(s);
    const float *S = s->sigmas, *I = s->sigmas_interpol;
    float sigma, sigma_interpol, dt, up = 0.0f;
    if (first) {
        sigma = S[i];
        sigma_interpol = ancestral ? I[i] : I[i + 1];
        dt = sigma_interpol - sigma;
    } else {
        sigma = S[i - 1];
        sigma_interpol = ancestral ? I[i - 1] : I[i];
        dt = (ancestral ? s->sigmas_down[i - 1] : S[i]) - sigma;
        up = ancestral ? s->sigmas_up[i - 1] : 0.0f;
    }
    const float sigma_input = first ? sigma : sigma_interpol; /* what x0 is predicted at, and divided by */
    float v_out, v_skip;
    v_scalars(sigma_input, &v_out, &v_skip);
    float *start = r->slots + (size_t)KDPM2_SLOT_SAMPLE * r->n;
    for (size_t j = 0; j < r->n; j++) {
        const float x0 = predicted_x0(s->cfg.prediction_type, m[j], x[j], sigma_input, v_out, v_skip);
        const float derivative = (x[j] - x0) / sigma_input;
        if (first) {
            start[j] = x[j];
            x[j] = x[j] + derivative * dt;
        } else {
            const float prev = start[j] + derivative * dt;
            x[j] = ancestral ? prev + noise[j] * up : prev;
        }
    }
}

const SchedulerClass scheduler_kdpm2 = {
    .name = "dpm2",
    .class_name = "KDPM2DiscreteScheduler",
    .config_keys = SCHED_KEYS_KDPM2,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = kdpm2_defaults,
    .validate = scheduler_refuse_sample_prediction,
    .set_timesteps = kdpm2_set_timesteps,
    .history_slots = KDPM2_SLOTS,
    .scales_input = 1,
    .input_sigma = kdpm2_input_sigma,
    .step = kdpm2_step,
};

const SchedulerClass scheduler_kdpm2_a = {
    .name = "dpm2-a",
    .class_name = "KDPM2AncestralDiscreteScheduler",
    .config_keys = SCHED_KEYS_KDPM2,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX),
    .defaults = kdpm2_defaults,
    .validate = scheduler_refuse_sample_prediction,
    .set_timesteps = kdpm2_set_timesteps,
    .history_slots = KDPM2_SLOTS,
    .draws_noise = 1,
    .draws_noise_at = kdpm2_draws_noise_at,
    .scales_input = 1,
    .input_sigma = kdpm2_input_sigma,
    .step = kdpm2_step,
};
