/* dpm_multistep.c: diffusers 0.31's DPMSolverMultistepScheduler (scheduling_dpmsolver_multistep.py):
 * DPM-Solver++ (or DPM-Solver, or DPM-Solver++ SDE: dpm++2m-sde) of order 1 or 2, midpoint or Heun,
 * over the interpolated or Karras sigma schedule, first order at the first step and at the last where the config says so. The step's
 * scalars are float32 0-d tensor operations (log and exp as torch computes them: torch_math.h); the per-value ones float32 in diffusers' order. The history is one slot per value:
 * the previous step's converted model output. */
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

enum { SLOT_PREVIOUS_OUTPUT }; /* the previous step's converted model output (x0, or eps for "dpmsolver") */

static void dpm_defaults(SchedulerConfig *cfg) { cfg->timestep_spacing = SPACING_LINSPACE; }

int scheduler_dpm_final_sigma_validate(const SchedulerConfig *cfg, const char *path)
{
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
        for (int t = 0; t < T; t++)
            log_sigma[t] = logf(sigma[t]);
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
    SOWER_TRY_GOTO(sigmas_check(s, s->timesteps, NULL, s->cfg.solver_order == 2), status, done);
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

static void dpm_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    const SchedulerConfig *c = &s->cfg;
    const int last = i == s->num_steps - 1;
    const int lower_order_final =
        last && (c->euler_at_final || (c->lower_order_final && s->num_steps < 15) ||
                 c->final_sigmas_type == FINAL_SIGMA_ZERO);
    /* lower_order_nums < 1 only at the first step (it counts steps up to solver_order) */
    const int first_order = c->solver_order == 1 || i == 0 || lower_order_final;
    /* from sigmas[i] to sigmas[i + 1]; the second order's r0 from the step before */
    DpmUpdate u;
    scheduler_dpm_update(c, s->sigmas[i + 1], s->sigmas[i], !first_order, s->sigmas[i], first_order ? 0 : s->sigmas[i - 1],
                         &u);
    float alpha_s0, sigma_s0; /* convert_model_output at sigmas[i] */
    sigma_alpha_sigma(s->sigmas[i], &alpha_s0, &sigma_s0);
    const int plus_plus = c->algorithm_type == DPM_ALGORITHM_PLUS_PLUS;
    float *previous = r->slots + (size_t)SLOT_PREVIOUS_OUTPUT * r->n; /* (n,) */
    for (size_t j = 0; j < r->n; j++) {
        /* the converted model output: x0 (dpmsolver++) or epsilon (dpmsolver); D0 = it, D1 = (it - previous) / r0 */
        const float out = converted_output(c->prediction_type, plus_plus, m[j], x[j], alpha_s0, sigma_s0);
        x[j] = dpm_update_value(&u, x[j], out, out, previous[j], u.sde ? noise[j] : 0.0f);
        previous[j] = out;
    }
}

const SchedulerClass scheduler_dpm_multistep = {
    .name = "dpm++2m",
    .class_name = "DPMSolverMultistepScheduler",
    .config_keys = SCHED_KEYS_DPM,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = dpm_defaults,
    .validate = scheduler_dpm_ode_validate,
    .runs = scheduler_dpm_runs_ode,
    .set_timesteps = scheduler_dpm_set_timesteps,
    .history_slots = 1,
    .floors_terminal_alpha = 1,
    .step = dpm_step,
};

/* DPM-Solver++ (2M) SDE: the same class with algorithm_type "sde-dpmsolver++"; every step, the last
 * included, draws noise of the sample's shape from the seed's generator (randn_tensor, float32). */
const SchedulerClass scheduler_dpm_multistep_sde = {
    .name = "dpm++2m-sde",
    .class_name = "DPMSolverMultistepScheduler",
    .config_keys = SCHED_KEYS_DPM,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX),
    .defaults = dpm_defaults,
    .overrides = scheduler_dpm_sde_overrides,
    .validate = scheduler_dpm_final_sigma_validate,
    .runs = scheduler_dpm_runs_sde,
    .set_timesteps = scheduler_dpm_set_timesteps,
    .history_slots = 1,
    .draws_noise = 1,
    .floors_terminal_alpha = 1,
    .step = dpm_step,
};
