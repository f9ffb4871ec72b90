/* dpm_multistep.c: diffusers 0.31's DPMSolverMultistepScheduler (scheduling_dpmsolver_multistep.py):
 * DPM-Solver++ (or DPM-Solver, or DPM-Solver++ SDE: dpm++2m-sde) of order 1, 2 or 3 (the SDE 1 or 2), midpoint or
 * Heun, over the interpolated or Karras sigma schedule, warming up one order per step and lower at the end where the
 * config says so. The step's scalars are float32 0-d tensor operations (log and exp as torch computes them:
 * torch_math.h); the per-value ones float32 in diffusers' order. The history is two slots per value: the previous
 * steps' converted model outputs. */
#include <math.h>
#include <stdlib.h>

#include "schedulers/schedulers.h"
#include "schedulers/torch_math.h"

#define SCHED_KEYS_DPM                                                                                          \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |                 \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_SOLVER_ORDER) |                \
     SCHED_KEY(KEY_PREDICTION_TYPE) | SCHED_KEY(KEY_THRESHOLDING) | SCHED_KEY(KEY_DYNAMIC_THRESHOLDING_RATIO) |  \
     SCHED_KEY(KEY_SAMPLE_MAX_VALUE) | SCHED_KEY(KEY_ALGORITHM_TYPE) | SCHED_KEY(KEY_SOLVER_TYPE) |             \
     SCHED_KEY(KEY_LOWER_ORDER_FINAL) | SCHED_KEY(KEY_EULER_AT_FINAL) | SCHED_KEY(KEY_USE_KARRAS_SIGMAS) |      \
     SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | SCHED_KEY(KEY_USE_BETA_SIGMAS) | SCHED_KEY(KEY_USE_LU_LAMBDAS) |   \
     SCHED_KEY(KEY_FINAL_SIGMAS_TYPE) | SCHED_KEY(KEY_LAMBDA_MIN_CLIPPED) | SCHED_KEY(KEY_VARIANCE_TYPE) |      \
     SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_STEPS_OFFSET) | SCHED_KEY(KEY_RESCALE_BETAS_ZERO_SNR))

/* the previous step's converted model output (x0, or eps for "dpmsolver"), and the one before (third order) */
enum { SLOT_PREVIOUS_OUTPUT, SLOT_OLDER_OUTPUT, DPM_SLOTS };

static void dpm_defaults(SchedulerConfig *cfg) { cfg->timestep_spacing = SPACING_LINSPACE; }

int scheduler_dpm_final_sigma_validate(const SchedulerConfig *cfg, const char *path)
{
    if (cfg->algorithm_sde && cfg->solver_order > 2) /* diffusers 0.31's third-order updates have no SDE form */
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: key 'solver_order': expected 1..2 with algorithm_type \"sde-dpmsolver++\" (diffusers "
                          "0.31 has no third-order SDE update: its step fails), found %d",
                          path, cfg->solver_order);
    if (cfg->final_sigmas_type == FINAL_SIGMA_ZERO && (cfg->algorithm_type == DPM_ALGORITHM_PLAIN || cfg->algorithm_deis))
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: key 'final_sigmas_type': \"zero\" with algorithm_type \"%s\" (diffusers "
                          "0.31 refuses the pair)",
                          path, cfg->algorithm_deis ? "deis" : "dpmsolver");
    return SOWER_OK;
}

int scheduler_dpm_ode_validate(const SchedulerConfig *cfg, const char *path)
{
    if (cfg->algorithm_sde) /* what each name runs is fixed: the job key and provenance name the scheduler */
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: key 'algorithm_type': expected \"dpmsolver++\", \"dpmsolver\" or \"deis\" with the "
                          "%s scheduler (\"sde-dpmsolver++\" draws noise every step: name %s-sde), found "
                          "\"sde-dpmsolver++\"",
                          path, scheduler_kind_name(cfg->kind), scheduler_kind_name(cfg->kind));
    return scheduler_dpm_final_sigma_validate(cfg, path);
}

void scheduler_dpm_sde_overrides(SchedulerConfig *cfg)
{
    cfg->algorithm_type = DPM_ALGORITHM_PLUS_PLUS;
    cfg->algorithm_deis = 0;
    cfg->algorithm_sde = 1;
}

int scheduler_dpm_runs_ode(const SchedulerConfig *cfg) { return !cfg->algorithm_sde; }
int scheduler_dpm_runs_sde(const SchedulerConfig *cfg) { return cfg->algorithm_sde; }

/* The last timestep before lambda_min_clipped: T - searchsorted(flip(lambda_t), lambda_min_clipped). */
static int last_timestep(const Scheduler *s)
{
    const int T = s->cfg.num_train_timesteps;
    if (isinf(s->cfg.lambda_min_clipped) && s->cfg.lambda_min_clipped < 0)
        return T;
    const RngKernel k = s->cfg.torch_kernel;
    int below = 0; /* flipped lambda_t ascends: count the values < lambda_min_clipped */
    for (int t = 0; t < T; t++) {
        const float ac = s->alphas_cumprod[t];
        const float lambda = torch_logf(sqrtf(ac), k) - torch_logf(sqrtf(1.0f - ac), k); /* log(alpha_t) - log(sigma_t) */
        below += (double)lambda < s->cfg.lambda_min_clipped;
    }
    return T - below;
}

/* timesteps (N,) int64 descending, from N + 1 points with the last dropped. */
static int dpm_spacing(const Scheduler *s, int last, int64_t *ts)
{
    const int N = s->num_inference_steps, T = s->cfg.num_train_timesteps;
    switch (s->cfg.timestep_spacing) {
    case SPACING_LINSPACE: /* np.linspace(0, last - 1, N + 1).round()[::-1][:-1] */
        for (int k = 0; k < N; k++)
            ts[k] = (int64_t)rint(numpy_linspace_at(0.0, (double)(last - 1), N + 1, N - k));
        break;
    case SPACING_LEADING: { /* (np.arange(0, N + 1) * (last // (N + 1))).round()[::-1][:-1] + steps_offset */
        const int64_t ratio = last / (N + 1);
        for (int k = 0; k < N; k++)
            ts[k] = (int64_t)(N - k) * ratio + s->cfg.steps_offset;
        break;
    }
    case SPACING_TRAILING: /* np.arange(last, 0, -(T / N)).round() - 1 */
        SOWER_TRY(scheduler_trailing_timesteps(last, T, N, ts));
        break;
    }
    for (int k = 0; k < N; k++)
        if (ts[k] < 0 || ts[k] > T - 1)
            return SOWER_FAIL(SOWER_EINPUT,
                              "num_inference_steps %d with this timestep_spacing and steps_offset %d gives "
                              "timestep %lld, outside 0..%d",
                              N, s->cfg.steps_offset, (long long)ts[k], T - 1);
    return SOWER_OK;
}

int scheduler_dpm_set_timesteps(Scheduler *s)
{
    const int N = s->num_inference_steps, T = s->cfg.num_train_timesteps;
    int status = SOWER_OK;
    float *sigma = malloc((size_t)T * sizeof *sigma), *log_sigma = malloc((size_t)T * sizeof *log_sigma); /* (T,) */
    double *karras = malloc((size_t)N * sizeof *karras); /* (N,) */
    s->num_steps = N;
    s->timesteps = malloc((size_t)N * sizeof *s->timesteps);
    s->sigmas = malloc((size_t)(N + 1) * sizeof *s->sigmas);
    if (!sigma || !log_sigma || !karras || !s->timesteps || !s->sigmas) {
        status = SOWER_FAIL(SOWER_ENOMEM, "scheduler sigmas");
        goto done;
    }
    sigma_table(s, sigma);
    if (s->cfg.use_karras_sigmas) {
        SOWER_TRY_GOTO(karras_check(s), status, done);
        /* in_sigmas = np.flip(sigma): its ends are sigma[0] (min) and sigma[T - 1] (max), unless the config
         * gives them */
        karras_sigmas(isnan(s->cfg.sigma_min) ? (double)sigma[0] : s->cfg.sigma_min,
                      isnan(s->cfg.sigma_max) ? (double)sigma[T - 1] : s->cfg.sigma_max, N, karras);
        log_sigma_table(s, sigma, log_sigma);
        for (int i = 0; i < N; i++) {
            const double t = sigma_to_t(karras[i], log_sigma, T);
            if (!isfinite(t)) { /* a NaN has no int64 (and diffusers' would be garbage) */
                status = karras_not_finite(s, i);
                goto done;
            }
            s->timesteps[i] = (int64_t)rint(t); /* .round(), int64 */
            s->sigmas[i] = (float)karras[i];
        }
    } else {
        SOWER_TRY_GOTO(dpm_spacing(s, last_timestep(s), s->timesteps), status, done);
        for (int i = 0; i < N; i++) /* np.interp at whole timesteps: sigma[t] itself */
            s->sigmas[i] = (float)numpy_interp_arange((double)s->timesteps[i], sigma, T);
    }
    s->sigmas[N] = final_sigma(&s->cfg, sigma);
    SOWER_TRY_GOTO(sigmas_check(s, s->timesteps, NULL, s->cfg.solver_order >= 2), status, done);
done:
    free(sigma);
    free(log_sigma);
    free(karras);
    return status;
}

/* log(alpha) - log(sigma) of the alpha, sigma pair of `sigma`, with torch's log. */
static float lambda_of_sigma(float sigma, RngKernel k)
{
    float alpha_t, sigma_t;
    sigma_alpha_sigma(sigma, &alpha_t, &sigma_t);
    return torch_logf(alpha_t, k) - torch_logf(sigma_t, k);
}

void scheduler_dpm_update(const SchedulerConfig *c, float sigma_to, float sigma_from, int second_order, float sigma_hi,
                          float sigma_lo, DpmUpdate *u)
{
    const RngKernel k = c->torch_kernel;
    const int plus_plus = c->algorithm_type == DPM_ALGORITHM_PLUS_PLUS, sde = c->algorithm_sde;
    float alpha_s, sigma_s, alpha_t, sigma_t;
    sigma_alpha_sigma(sigma_from, &alpha_s, &sigma_s);
    sigma_alpha_sigma(sigma_to, &alpha_t, &sigma_t);
    const float h = lambda_of_sigma(sigma_to, k) - lambda_of_sigma(sigma_from, k);
    *u = (DpmUpdate){.sde = sde, .second_order = second_order};
    if (sde) { /* sigma_t / sigma_s * exp(-h), alpha_t * (1 - exp(-2.0 * h)), sigma_t * sqrt(1.0 - exp(-2 * h)) */
        const float decay = 1.0f - torch_expf(-2.0f * h, k);
        u->a = sigma_t / sigma_s * torch_expf(-h, k);
        u->b = alpha_t * decay;
        u->z = sigma_t * sqrtf(decay);
    } else if (plus_plus) {
        u->a = sigma_t / sigma_s;
        u->b = alpha_t * (torch_expf(-h, k) - 1.0f);
    } else {
        u->a = alpha_t / alpha_s;
        u->b = sigma_t * (torch_expf(h, k) - 1.0f);
    }
    if (!second_order)
        return;
    const float h_0 = lambda_of_sigma(sigma_hi, k) - lambda_of_sigma(sigma_lo, k), r0 = h_0 / h;
    u->inv_r0 = 1.0f / r0; /* (1.0 / r0): reciprocal, then * 1.0 */
    if (c->solver_type == DPM_SOLVER_MIDPOINT)
        u->c1 = 0.5f * u->b;
    else if (sde) /* heun: + (alpha_t * ((1.0 - exp(-2.0 * h)) / (-2.0 * h) + 1.0)) * D1 */
        u->c1 = alpha_t * ((1.0f - torch_expf(-2.0f * h, k)) / (-2.0f * h) + 1.0f);
    else if (plus_plus) /* heun: + (alpha_t * ((exp(-h) - 1.0) / h + 1.0)) * D1 */
        u->c1 = alpha_t * ((torch_expf(-h, k) - 1.0f) / h + 1.0f);
    else /* - (sigma_t * ((exp(h) - 1.0) / h - 1.0)) * D1 */
        u->c1 = sigma_t * ((torch_expf(h, k) - 1.0f) / h - 1.0f);
    u->add_d1 = sde || (c->solver_type == DPM_SOLVER_HEUN && plus_plus); /* the "+" forms */
}

void scheduler_dpm_third_order(const SchedulerConfig *c, const float sigmas[4], int from_s2, DpmThirdOrder *u)
{
    const RngKernel k = c->torch_kernel;
    float alpha[4], sigma[4], lambda[4];
    for (int q = 0; q < 4; q++) {
        sigma_alpha_sigma(sigmas[q], &alpha[q], &sigma[q]);
        lambda[q] = lambda_of_sigma(sigmas[q], k);
    }
    const int base = from_s2 ? 3 : 1; /* the sample's sigma */
    const float h = lambda[0] - lambda[base];
    /* multistep: h_0 = lambda_s0 - lambda_s1, h_1 = lambda_s1 - lambda_s2; singlestep: both against lambda_s2 */
    const float h_0 = lambda[1] - lambda[from_s2 ? 3 : 2], h_1 = lambda[2] - lambda[3];
    u->r0 = h_0 / h, u->r1 = h_1 / h;
    u->plus_plus = c->algorithm_type == DPM_ALGORITHM_PLUS_PLUS;
    if (u->plus_plus) {
        const float e = torch_expf(-h, k) - 1.0f; /* exp(-h) - 1.0 */
        u->a = sigma[0] / sigma[base];
        u->b = alpha[0] * e;
        u->c1 = alpha[0] * (e / h + 1.0f);
        u->c2 = alpha[0] * ((e + h) / (h * h) - 0.5f); /* (exp(-h) - 1.0 + h) / h**2 - 0.5 */
    } else {
        const float e = torch_expf(h, k) - 1.0f;
        u->a = alpha[0] / alpha[base];
        u->b = sigma[0] * e;
        u->c1 = sigma[0] * (e / h - 1.0f);
        u->c2 = sigma[0] * ((e - h) / (h * h) - 0.5f); /* (exp(h) - 1.0 - h) / h**2 - 0.5 */
    }
}

static void dpm_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    const SchedulerConfig *c = &s->cfg;
    const int N = s->num_steps, last = i == N - 1;
    const int lower_order_final =
        last && (c->euler_at_final || (c->lower_order_final && N < 15) || c->final_sigmas_type == FINAL_SIGMA_ZERO);
    const int lower_order_second = i == N - 2 && c->lower_order_final && N < 15;
    /* lower_order_nums counts the steps taken, up to solver_order: < 1 at the first step, < 2 at the second */
    const int order = c->solver_order == 1 || i == 0 || lower_order_final                     ? 1
                      : c->solver_order == 2 || i == 1 || lower_order_second                  ? 2
                                                                                              : 3;
    float alpha_s0, sigma_s0; /* convert_model_output at sigmas[i] */
    sigma_alpha_sigma(s->sigmas[i], &alpha_s0, &sigma_s0);
    const int plus_plus = c->algorithm_type == DPM_ALGORITHM_PLUS_PLUS;
    float *previous = r->slots + (size_t)SLOT_PREVIOUS_OUTPUT * r->n; /* (n,) model_outputs[-2] */
    float *older = r->slots + (size_t)SLOT_OLDER_OUTPUT * r->n;       /* (n,) model_outputs[-3] (third order) */
    if (order == 3) { /* multistep_dpm_solver_third_order_update */
        DpmThirdOrder u;
        scheduler_dpm_third_order(c, (const float[]){s->sigmas[i + 1], s->sigmas[i], s->sigmas[i - 1], s->sigmas[i - 2]}, 0,
                                  &u);
        /* D1_0 = (1.0 / r0) * (m0 - m1), D1_1 = (1.0 / r1) * (m1 - m2), D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1),
         * D2 = (1.0 / (r0 + r1)) * (D1_0 - D1_1) */
        const float inv_r0 = 1.0f / u.r0, inv_r1 = 1.0f / u.r1, w = u.r0 / (u.r0 + u.r1), inv_sum = 1.0f / (u.r0 + u.r1);
        for (size_t j = 0; j < r->n; j++) {
            const float m0 = converted_output(c->prediction_type, plus_plus, m[j], x[j], alpha_s0, sigma_s0);
            const float m1 = previous[j], m2 = older[j];
            const float d1_0 = inv_r0 * (m0 - m1), d1_1 = inv_r1 * (m1 - m2);
            const float d1 = d1_0 + w * (d1_0 - d1_1), d2 = inv_sum * (d1_0 - d1_1);
            const float base = u.a * x[j] - u.b * m0;
            x[j] = (u.plus_plus ? base + u.c1 * d1 : base - u.c1 * d1) - u.c2 * d2;
            older[j] = m1, previous[j] = m0;
        }
        return;
    }
    /* from sigmas[i] to sigmas[i + 1]; the second order's r0 from the step before */
    DpmUpdate u;
    scheduler_dpm_update(c, s->sigmas[i + 1], s->sigmas[i], order == 2, s->sigmas[i], order == 2 ? s->sigmas[i - 1] : 0,
                         &u);
    for (size_t j = 0; j < r->n; j++) {
        /* the converted model output: x0 (dpmsolver++) or epsilon (dpmsolver); D0 = it, D1 = (it - previous) / r0 */
        const float out = converted_output(c->prediction_type, plus_plus, m[j], x[j], alpha_s0, sigma_s0);
        x[j] = dpm_update_value(&u, x[j], out, out, previous[j], u.sde ? noise[j] : 0.0f);
        if (c->solver_order == 3)
            older[j] = previous[j];
        previous[j] = out;
    }
}

const SchedulerClass scheduler_dpm_multistep = {
    .name = "dpm++2m",
    .class_name = "DPMSolverMultistepScheduler",
    .config_keys = SCHED_KEYS_DPM,
    .failing_keys = SCHED_KEYS_FAILING_SIGMA_CONVERSIONS,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = dpm_defaults,
    .validate = scheduler_dpm_ode_validate,
    .runs = scheduler_dpm_runs_ode,
    .set_timesteps = scheduler_dpm_set_timesteps,
    .history_slots = DPM_SLOTS,
    .max_solver_order = 3,
    .floors_terminal_alpha = 1,
    .step = dpm_step,
};

/* DPM-Solver++ (2M) SDE: the same class with algorithm_type "sde-dpmsolver++"; every step, the last
 * included, draws noise of the sample's shape from the seed's generator (randn_tensor, float32). */
const SchedulerClass scheduler_dpm_multistep_sde = {
    .name = "dpm++2m-sde",
    .class_name = "DPMSolverMultistepScheduler",
    .config_keys = SCHED_KEYS_DPM,
    .failing_keys = SCHED_KEYS_FAILING_SIGMA_CONVERSIONS,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX),
    .defaults = dpm_defaults,
    .overrides = scheduler_dpm_sde_overrides,
    .validate = scheduler_dpm_final_sigma_validate,
    .runs = scheduler_dpm_runs_sde,
    .set_timesteps = scheduler_dpm_set_timesteps,
    .history_slots = DPM_SLOTS,
    .max_solver_order = 3,
    .draws_noise = 1,
    .floors_terminal_alpha = 1,
    .step = dpm_step,
};
