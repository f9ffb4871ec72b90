/* dpm_sde.c: diffusers 0.31's DPMSolverSDEScheduler (scheduling_dpmsolver_sde.py; k-diffusion's sample_dpmpp_sde,
 * A1111's "DPM++ SDE"): each step but the last is two UNet calls, an ancestral DPM-Solver++ step to the log-midpoint
 * sigma and a second one over the whole step from the kept start; 2N - 1 calls in all, noise added at every call but
 * the last. The noise is not the seed generator's: it is the increment of a Brownian motion in sigma over the call's
 * span, from a torchsde Brownian tree (brownian.h) whose entropy diffusers takes from noise_sampler_seed. sower gives
 * each sample its own tree (diffusers' BatchedBrownianTree with a list of seeds), of entropy the config's
 * noise_sampler_seed or, where that is null (diffusers then draws one at random), the sample's seed: what diffusers
 * renders with noise_sampler_seed=[seed of each image] and those generators. Tables in diffusers' layout (sigmas
 * 2N, indexed by call); every scalar float32 with torch's own log, exp and expm1, in diffusers' order. */
#include <math.h>
#include <stdlib.h>

#include "schedulers/schedulers.h"
#include "schedulers/torch_math.h"

#define SCHED_KEYS_DPM_SDE                                                                                   \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |             \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_PREDICTION_TYPE) |         \
     SCHED_KEY(KEY_USE_KARRAS_SIGMAS) | SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | SCHED_KEY(KEY_USE_BETA_SIGMAS) | \
     SCHED_KEY(KEY_NOISE_SAMPLER_SEED) | SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_STEPS_OFFSET))

enum { SDE_SLOT_SAMPLE, SDE_SLOTS }; /* per value: self.sample, the first call's start */

static void dpm_sde_defaults(SchedulerConfig *cfg)
{
    cfg->timestep_spacing = SPACING_LINSPACE;
    cfg->beta_start = 0.00085, cfg->beta_end = 0.012; /* "sensible defaults" in its __init__ */
}

/* What step() works out for call i: sigma and sigma_next (a first-order call's from the table at i, a second-order
 * call's one place back), t = -log(sigma), t_next, and the log-midpoint t_proposed. */
typedef struct {
    int first; /* state_in_first_order */
    float sigma, sigma_next, t, t_next, t_proposed;
} CallSigmas;

static void call_sigmas(const Scheduler *s, int i, CallSigmas *c)
{
    const RngKernel k = s->cfg.torch_kernel;
    c->first = i % 2 == 0;
    c->sigma = s->sigmas[c->first ? i : i - 1];
    c->sigma_next = s->sigmas[c->first ? i + 1 : i];
    c->t = -torch_logf(c->sigma, k); /* t_fn: sigma.log().neg() */
    c->t_next = -torch_logf(c->sigma_next, k);
    c->t_proposed = c->t + (c->t_next - c->t) * 0.5f; /* t + delta_time * midpoint_ratio */
}

static float sigma_fn(const Scheduler *s, float t) { return torch_expf(-t, s->cfg.torch_kernel); } /* t.neg().exp() */

/* The sigmas call i's noise spans: noise_sampler(sigma_fn(t), sigma_fn(t_next)), t_next a first call's midpoint. */
static void noise_span(const Scheduler *s, int i, float *from, float *to)
{
    CallSigmas c;
    call_sigmas(s, i, &c);
    *from = sigma_fn(s, c.t);
    *to = sigma_fn(s, c.first ? c.t_proposed : c.t_next);
}

/* Every call adds noise but the one that steps to sigma 0 (an Euler step). */
static int dpm_sde_draws_noise_at(const Scheduler *s, int i)
{
    CallSigmas c;
    call_sigmas(s, i, &c);
    return c.sigma_next != 0.0f;
}

/* scale_model_input: sigmas[i] at a first call, the midpoint sigma_fn(t_proposed) at a second. */
static float dpm_sde_input_sigma(const Scheduler *s, int i)
{
    CallSigmas c;
    call_sigmas(s, i, &c);
    return c.first ? c.sigma : sigma_fn(s, c.t_proposed);
}

/* set_timesteps' float64 timesteps (N,): np.linspace(0, T - 1, N, dtype=float)[::-1] (fractional, not Euler's
 * float32 ones), or DDIM's leading / trailing integers. */
static int sde_timesteps(const Scheduler *s, double *ts)
{
    const int N = s->num_inference_steps, T = s->cfg.num_train_timesteps;
    if (s->cfg.timestep_spacing == SPACING_LINSPACE) {
        for (int i = 0; i < N; i++)
            ts[N - 1 - i] = numpy_linspace_at(0.0, (double)(T - 1), N, i);
        return SOWER_OK;
    }
    float *whole = malloc((size_t)N * sizeof *whole); /* (N,) */
    if (!whole)
        return SOWER_FAIL(SOWER_ENOMEM, "scheduler timesteps");
    const int status = scheduler_euler_timesteps(s, whole);
    for (int i = 0; status == SOWER_OK && i < N; i++)
        ts[i] = (double)whole[i];
    free(whole);
    return status;
}

/* The tree's range: self.sigmas[self.sigmas > 0].min(), self.sigmas.max(). */
static void tree_range(const Scheduler *s, float *lo, float *hi)
{
    *lo = INFINITY, *hi = 0.0f;
    for (int i = 0; i < s->num_sigmas; i++) {
        *lo = s->sigmas[i] > 0.0f && s->sigmas[i] < *lo ? s->sigmas[i] : *lo;
        *hi = s->sigmas[i] > *hi ? s->sigmas[i] : *hi;
    }
}

/* The tree over its range and each drawing call's query, in call order (query i is call i's). Calls whose span is
 * empty are refused: diffusers divides their increment by 0. */
static int plan_tree(Scheduler *s)
{
    float lo, hi;
    tree_range(s, &lo, &hi);
    if (!(s->brownian = brownian_plan_new((double)lo, (double)hi)))
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the Brownian tree");
    for (int i = 0; i < s->num_steps && dpm_sde_draws_noise_at(s, i); i++) {
        float from, to;
        noise_span(s, i, &from, &to);
        if (!(fabsf(to - from) > 0.0f) || !isfinite(to - from))
            return SOWER_FAIL(SOWER_EINPUT, "%d steps of this noise schedule give %s's UNet call %d of %d (step %d) no "
                                            "sigma span to draw its noise over (sigma %g to %g), and diffusers divides "
                                            "its noise by 0 there: choose fewer steps or another scheduler",
                              s->num_inference_steps, scheduler_kind_name(s->cfg.kind), i, s->num_steps, i / 2,
                              (double)from, (double)to);
        int query;
        SOWER_TRY(brownian_plan_query(s->brownian, from < to ? from : to, from < to ? to : from, &query));
        if (query != i) /* dpm_sde_tree_noise reads call i's increment as query i */
            return SOWER_FAIL(SOWER_EINTERNAL, "Brownian query %d made for call %d", query, i);
    }
    return SOWER_OK;
}

/* Every sigma a call reads finite (the last 0), every timestep finite, and the first timestep not recurring
 * (diffusers' _init_step_index would start at its second place). */
static int dpm_sde_check(const Scheduler *s, const double *timesteps /* (calls,) */)
{
    for (int i = 0; i < s->num_sigmas; i++)
        if (!isfinite(s->sigmas[i]) || (i < s->num_sigmas - 1 && !(s->sigmas[i] > 0.0f)))
            return SOWER_FAIL(SOWER_EINPUT, "%d steps of this noise schedule give %s a sigma of %g (place %d of %d)",
                              s->num_inference_steps, scheduler_kind_name(s->cfg.kind), (double)s->sigmas[i], i,
                              s->num_sigmas);
    for (int c = 0; c < s->num_steps; c++) {
        if (!isfinite(timesteps[c]))
            return SOWER_FAIL(SOWER_EINPUT, "%d steps of this noise schedule give %s's UNet call %d of %d a timestep that "
                                            "is not finite",
                              s->num_inference_steps, scheduler_kind_name(s->cfg.kind), c, s->num_steps);
        if (c > 0 && timesteps[c] == timesteps[0])
            return SOWER_FAIL(SOWER_EINPUT, "%d steps of this noise schedule visit their first timestep (%g) twice, "
                                            "which diffusers' %s cannot run: choose fewer steps",
                              s->num_inference_steps, timesteps[0], scheduler_class_name(s->cfg.kind));
    }
    return SOWER_OK;
}

/* set_timesteps: N timesteps and interpolated (or Karras) sigmas, the midpoint timesteps of
 * _second_order_timesteps, the calls [t0, (t_mid, t1), (t_mid, t2), ...], sigmas
 * [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0]; then the Brownian tree's queries. */
static int dpm_sde_set_timesteps(Scheduler *s)
{
    const int N = s->num_inference_steps, T = s->cfg.num_train_timesteps, calls = 2 * N - 1;
    int status = SOWER_OK;
    float *sigma = malloc((size_t)T * sizeof *sigma), *log_sigma = malloc((size_t)T * sizeof *log_sigma); /* (T,) */
    double *ts = malloc((size_t)N * sizeof *ts), *interp = malloc((size_t)N * sizeof *interp); /* (N,) */
    double *call_ts = malloc((size_t)calls * sizeof *call_ts);                                  /* (calls,) */
    s->num_steps = calls, s->num_sigmas = 2 * N;
    s->unet_timesteps = malloc((size_t)calls * sizeof *s->unet_timesteps);
    s->sigmas = malloc((size_t)s->num_sigmas * sizeof *s->sigmas);
    if (!sigma || !log_sigma || !ts || !interp || !call_ts || !s->unet_timesteps || !s->sigmas) {
        status = SOWER_FAIL(SOWER_ENOMEM, "scheduler sigmas");
        goto done;
    }
    SOWER_TRY_GOTO(sde_timesteps(s, ts), status, done);
    sigma_table(s, sigma);
    log_sigma_table(s, sigma, log_sigma);
    for (int i = 0; i < N; i++)
        interp[i] = numpy_interp_arange(ts[i], sigma, T);
    if (s->cfg.use_karras_sigmas || s->cfg.use_exponential_sigmas || s->cfg.use_beta_sigmas) {
        /* from the interpolated ends; timesteps _sigma_to_t's, not rounded */
        SOWER_TRY_GOTO(karras_check(s), status, done);
        SOWER_TRY_GOTO(converted_sigmas(s, interp[N - 1], interp[0], N, interp), status, done);
        for (int i = 0; i < N; i++) /* Karras's sigmas a numpy array, the others a torch tensor */
            ts[i] = s->cfg.use_karras_sigmas ? sigma_to_t(interp[i], log_sigma, T) : sigma_to_t_tensor(interp[i], log_sigma, T);
    }
    /* the calls' timesteps: the steps', and between them _second_order_timesteps: sigma_fn of the midpoint of
     * t = -np.log(sigmas) in float64, read back as a timestep */
    call_ts[0] = ts[0];
    const int tensor_sigmas = s->cfg.use_exponential_sigmas || s->cfg.use_beta_sigmas;
    for (int k = 1; k < N; k++) {
        double mid;
        if (tensor_sigmas) { /* the schedule is a float32 tensor there: np.log and np.exp of it run in float32 */
            const RngKernel kern = s->cfg.torch_kernel;
            const float t = -numpy_logf((float)interp[k - 1], kern), t_next = -numpy_logf((float)interp[k], kern);
            mid = (double)numpy_expf(-(t + (t_next - t) * 0.5f), kern);
        } else {
            const double t = -log(interp[k - 1]), t_next = -log(interp[k]);
            mid = exp(-(t + (t_next - t) * 0.5));
        }
        call_ts[2 * k - 1] = tensor_sigmas ? sigma_to_t_tensor(mid, log_sigma, T) : sigma_to_t(mid, log_sigma, T);
        call_ts[2 * k] = ts[k];
    }
    for (int c = 0; c < calls; c++)
        s->unet_timesteps[c] = (float)call_ts[c];
    /* np.concatenate([sigmas, [0.0]]).astype(np.float32), its inner values repeated */
    s->sigmas[0] = (float)interp[0];
    for (int k = 1; k < N; k++)
        s->sigmas[2 * k - 1] = s->sigmas[2 * k] = (float)interp[k];
    s->sigmas[2 * N - 1] = 0.0f;
    SOWER_TRY_GOTO(dpm_sde_check(s, call_ts), status, done);
    s->init_noise_sigma = sigmas_init_noise_sigma(s, s->num_sigmas);
    status = plan_tree(s);
done:
    free(sigma);
    free(log_sigma);
    free(ts);
    free(interp);
    free(call_ts);
    return status;
}

/* BrownianTreeNoiseSampler(sigma_fn(t), sigma_fn(t_next)): the tree's increment over the span, signed as
 * BatchedBrownianTree signs it (its own sign, + for a tree built low to high, times - for a query from high to low),
 * over sqrt(|to - from|). */
static int dpm_sde_tree_noise(const Scheduler *s, int i, uint64_t entropy, BrownianDrawFn draw, void *ctx, float *out,
                              size_t n)
{
    float from, to;
    noise_span(s, i, &from, &to);
    SOWER_TRY(brownian_increment(s->brownian, i, entropy, draw, ctx, out, n));
    float lo, hi;
    tree_range(s, &lo, &hi);
    const int tree_sign = lo < hi ? 1 : -1; /* BatchedBrownianTree.sort(min, max) at its build */
    const float sign = (float)(tree_sign * (from < to ? 1 : -1));
    const float spread = sqrtf(fabsf(to - from)); /* (t1 - t0).abs().sqrt() */
    for (size_t j = 0; j < n; j++)
        out[j] = out[j] * sign / spread;
    return SOWER_OK;
}

/* Call i: the data prediction at sigma (a second call's at the midpoint); stepping to sigma 0 an Euler step, else
 * from sigma_fn(t) to sigma_fn(t_next) (a first call's midpoint) ancestrally: to sigma_down, plus noise * sigma_up;
 * a second call from the first's start. */
static void dpm_sde_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    const RngKernel k = s->cfg.torch_kernel;
    CallSigmas c;
    call_sigmas(s, i, &c);
    const float sigma_input = c.first ? c.sigma : sigma_fn(s, c.t_proposed);
    float v_out, v_skip;
    v_scalars(sigma_input, &v_out, &v_skip);
    if (c.sigma_next == 0.0f) {
        const float dt = c.sigma_next - c.sigma;
        for (size_t j = 0; j < r->n; j++) {
            const float x0 = predicted_x0(s->cfg.prediction_type, m[j], x[j], sigma_input, v_out, v_skip);
            const float derivative = (x[j] - x0) / c.sigma;
            x[j] = x[j] + derivative * dt;
        }
        return;
    }
    const float from = sigma_fn(s, c.t), to = sigma_fn(s, c.first ? c.t_proposed : c.t_next);
    const float up_bound = sqrtf(to * to * (from * from - to * to) / (from * from));
    const float up = up_bound < to ? up_bound : to; /* min(sigma_to, ...): Python's min keeps the first unless less */
    const float down = sqrtf(to * to - up * up);
    const float ancestral_t = -torch_logf(down, k);
    const float a = sigma_fn(s, ancestral_t) / sigma_fn(s, c.t), b = torch_expm1f(c.t - ancestral_t, k);
    float *start = r->slots + (size_t)SDE_SLOT_SAMPLE * r->n;
    for (size_t j = 0; j < r->n; j++) {
        const float x0 = predicted_x0(s->cfg.prediction_type, m[j], x[j], sigma_input, v_out, v_skip);
        const float from_sample = c.first ? x[j] : start[j];
        const float prev = a * from_sample - b * x0;
        if (c.first)
            start[j] = x[j];
        x[j] = prev + noise[j] * 1.0f * up; /* noise * s_noise * sigma_up */
    }
}

const SchedulerClass scheduler_dpm_sde = {
    .name = "dpm++sde",
    .class_name = "DPMSolverSDEScheduler",
    .config_keys = SCHED_KEYS_DPM_SDE,
    .defaults = dpm_sde_defaults,
    .validate = scheduler_refuse_sample_prediction,
    .set_timesteps = dpm_sde_set_timesteps,
    .history_slots = SDE_SLOTS,
    .draws_noise = 1,
    .draws_noise_at = dpm_sde_draws_noise_at,
    .tree_noise = dpm_sde_tree_noise,
    .scales_input = 1,
    .input_sigma = dpm_sde_input_sigma,
    .step = dpm_sde_step,
};
