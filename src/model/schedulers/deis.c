/* deis.c: diffusers 0.31's DEISMultistepScheduler (scheduling_deis_multistep.py): DEIS's log-rho multistep solver
 * of order 1, 2 or 3 on the noise prediction, over DPMSolverMultistepScheduler's timesteps (leading, trailing or
 * linspace spacing; Karras too) and sigmas, whose last is sigma_min (the Karras schedule's own last, repeated, with
 * use_karras_sigmas). It warms up one order per step; with lower_order_final below 15 steps, the last step is first
 * order and the one before at most second. The higher orders' coefficients integrate the Lagrange basis in log rho,
 * rho = sigma / alpha, with logs as diffusers takes them (np.log of float32 tensors: numpy_logf), the first order's
 * with torch's log/exp (torch_math.h): bit for bit. The history per value: the two previous steps' converted
 * outputs. */
#include <math.h>
#include <stddef.h>

#include "schedulers/schedulers.h"
#include "schedulers/torch_math.h"

#define SCHED_KEYS_DEIS                                                                                          \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |                  \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_SOLVER_ORDER) |                 \
     SCHED_KEY(KEY_PREDICTION_TYPE) | SCHED_KEY(KEY_THRESHOLDING) | SCHED_KEY(KEY_DYNAMIC_THRESHOLDING_RATIO) |   \
     SCHED_KEY(KEY_SAMPLE_MAX_VALUE) | SCHED_KEY(KEY_ALGORITHM_TYPE) | SCHED_KEY(KEY_SOLVER_TYPE) |              \
     SCHED_KEY(KEY_LOWER_ORDER_FINAL) | SCHED_KEY(KEY_USE_KARRAS_SIGMAS) | SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | \
     SCHED_KEY(KEY_USE_BETA_SIGMAS) | SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_STEPS_OFFSET))

enum { SLOT_PREVIOUS_OUTPUT, SLOT_OLDER_OUTPUT, SLOTS }; /* model_outputs[-2], [-3]: earlier converted outputs */

static void deis_defaults(SchedulerConfig *cfg)
{
    cfg->timestep_spacing = SPACING_LINSPACE;
    cfg->final_sigmas_type = FINAL_SIGMA_MIN; /* not a key: its set_timesteps always ends at sigma_min */
}

static int deis_validate(const SchedulerConfig *cfg, const char *path)
{
    if (cfg->algorithm_sde) /* __init__: "deis", or dpmsolver[++] read as deis; anything else NotImplementedError */
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: key 'algorithm_type': expected \"deis\", \"dpmsolver++\" or \"dpmsolver\" "
                          "(DEISMultistepScheduler runs them all as deis), found \"sde-dpmsolver++\"",
                          path);
    return SOWER_OK;
}

/* DPM-Solver's set_timesteps (no lambda clipping: the class has none), then the Karras schedule's last sigma
 * repeated as the final one (np.concatenate([sigmas, sigmas[-1:]])). */
static int deis_set_timesteps(Scheduler *s)
{
    SOWER_TRY(scheduler_dpm_set_timesteps(s));
    if (s->cfg.use_karras_sigmas)
        s->sigmas[s->num_steps] = s->sigmas[s->num_steps - 1];
    return SOWER_OK;
}

/* ind_fn(t, b, c) = t * (-log(c) + log(t) - 1) / (log(b) - log(c)), float32 as diffusers' tensor arithmetic */
static float ind_fn2(float t, float b, float c, RngKernel k)
{
    const float lt = numpy_logf(t, k), lb = numpy_logf(b, k), lc = numpy_logf(c, k);
    return t * (-lc + lt - 1.0f) / (lb - lc);
}

/* the third order's ind_fn(t, b, c, d) = t * (log(c) * (log(d) - log(t) + 1) - log(d) * log(t) + log(d) + log(t)**2
 * - 2 * log(t) + 2) / ((log(b) - log(c)) * (log(b) - log(d))) */
static float ind_fn3(float t, float b, float c, float d, RngKernel k)
{
    const float lt = numpy_logf(t, k), lb = numpy_logf(b, k), lc = numpy_logf(c, k), ld = numpy_logf(d, k);
    const float numerator = t * (lc * (ld - lt + 1.0f) - ld * lt + ld + lt * lt - 2.0f * lt + 2.0f);
    return numerator / ((lb - lc) * (lb - ld));
}

static void deis_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    (void)noise;
    const SchedulerConfig *c = &s->cfg;
    const int N = s->num_steps;
    const int lower_order_final = i == N - 1 && c->lower_order_final && N < 15;
    const int lower_order_second = i == N - 2 && c->lower_order_final && N < 15;
    /* lower_order_nums counts the steps taken, up to solver_order: < 1 at the first step, < 2 at the second */
    const int order = c->solver_order == 1 || i == 0 || lower_order_final          ? 1
                      : c->solver_order == 2 || i == 1 || lower_order_second       ? 2
                                                                                   : 3;
    float alpha_s0, sigma_s0, alpha_t, sigma_t;
    sigma_alpha_sigma(s->sigmas[i], &alpha_s0, &sigma_s0);
    sigma_alpha_sigma(s->sigmas[i + 1], &alpha_t, &sigma_t);
    DpmUpdate first = {0}; /* deis_first_order_update is DPM-Solver's (dpmsolver) first order */
    float coef1 = 0.0f, coef2 = 0.0f, coef3 = 0.0f;
    const RngKernel k = c->torch_kernel;
    if (order == 1) {
        SchedulerConfig plain = *c;
        plain.algorithm_type = DPM_ALGORITHM_PLAIN;
        plain.algorithm_sde = 0;
        scheduler_dpm_update(&plain, s->sigmas[i + 1], s->sigmas[i], 0, 0.0f, 0.0f, &first);
    } else {
        float alpha_s1, sigma_s1;
        sigma_alpha_sigma(s->sigmas[i - 1], &alpha_s1, &sigma_s1);
        const float rho_t = sigma_t / alpha_t, rho_s0 = sigma_s0 / alpha_s0, rho_s1 = sigma_s1 / alpha_s1;
        if (order == 2) {
            coef1 = ind_fn2(rho_t, rho_s0, rho_s1, k) - ind_fn2(rho_s0, rho_s0, rho_s1, k);
            coef2 = ind_fn2(rho_t, rho_s1, rho_s0, k) - ind_fn2(rho_s0, rho_s1, rho_s0, k);
        } else {
            float alpha_s2, sigma_s2;
            sigma_alpha_sigma(s->sigmas[i - 2], &alpha_s2, &sigma_s2);
            const float rho_s2 = sigma_s2 / alpha_s2;
            coef1 = ind_fn3(rho_t, rho_s0, rho_s1, rho_s2, k) - ind_fn3(rho_s0, rho_s0, rho_s1, rho_s2, k);
            coef2 = ind_fn3(rho_t, rho_s1, rho_s2, rho_s0, k) - ind_fn3(rho_s0, rho_s1, rho_s2, rho_s0, k);
            coef3 = ind_fn3(rho_t, rho_s2, rho_s0, rho_s1, k) - ind_fn3(rho_s0, rho_s2, rho_s0, rho_s1, k);
        }
    }
    float *previous = r->slots + (size_t)SLOT_PREVIOUS_OUTPUT * r->n; /* (n,) model_outputs[-2] */
    float *older = r->slots + (size_t)SLOT_OLDER_OUTPUT * r->n;       /* (n,) model_outputs[-3] */
    for (size_t j = 0; j < r->n; j++) {
        /* convert_model_output: x0 first, then the noise from it, (sample - alpha_t * x0) / sigma_t */
        const float x0 = converted_output(c->prediction_type, 1, m[j], x[j], alpha_s0, sigma_s0);
        const float eps = (x[j] - alpha_s0 * x0) / sigma_s0;
        if (order == 1)
            x[j] = dpm_update_value(&first, x[j], eps, eps, eps, 0.0f);
        else if (order == 2) /* alpha_t * (sample / alpha_s0 + coef1 * m0 + coef2 * m1) */
            x[j] = alpha_t * (x[j] / alpha_s0 + coef1 * eps + coef2 * previous[j]);
        else /* ... + coef3 * m2 */
            x[j] = alpha_t * (x[j] / alpha_s0 + coef1 * eps + coef2 * previous[j] + coef3 * older[j]);
        older[j] = previous[j], previous[j] = eps;
    }
}

const SchedulerClass scheduler_deis = {
    .name = "deis",
    .class_name = "DEISMultistepScheduler",
    .config_keys = SCHED_KEYS_DEIS,
    .failing_keys = SCHED_KEYS_FAILING_SIGMA_CONVERSIONS,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = deis_defaults,
    .validate = deis_validate,
    .set_timesteps = deis_set_timesteps,
    .history_slots = SLOTS,
    .max_solver_order = 3,
    .step = deis_step,
};
