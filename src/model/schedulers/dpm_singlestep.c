/* dpm_singlestep.c: diffusers 0.31's DPMSolverSinglestepScheduler (scheduling_dpmsolver_singlestep.py): DPM-Solver++
 * (or DPM-Solver, or its SDE form) of order 1, 2 or 3 (not the SDE: diffusers has no such update) taken in single
 * steps: the steps go in groups of solver_order (get_order_list), the first of a group a first-order update from
 * the group's start, the next ones second- and third-order updates from that same start over the group's steps so
 * far, with their model outputs. Its timesteps and sigmas are DPMSolverMultistepScheduler's at linspace spacing
 * (the class has no timestep_spacing), Karras too. The history per value: the two previous converted model outputs
 * and the sample its group started from. */
#include <stddef.h>

#include "schedulers/schedulers.h"

#define SCHED_KEYS_DPM_SINGLESTEP                                                                               \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |                 \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_SOLVER_ORDER) |                \
     SCHED_KEY(KEY_PREDICTION_TYPE) | SCHED_KEY(KEY_THRESHOLDING) | SCHED_KEY(KEY_DYNAMIC_THRESHOLDING_RATIO) |  \
     SCHED_KEY(KEY_SAMPLE_MAX_VALUE) | SCHED_KEY(KEY_ALGORITHM_TYPE) | SCHED_KEY(KEY_SOLVER_TYPE) |             \
     SCHED_KEY(KEY_LOWER_ORDER_FINAL) | SCHED_KEY(KEY_USE_KARRAS_SIGMAS) | SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | \
     SCHED_KEY(KEY_USE_BETA_SIGMAS) | SCHED_KEY(KEY_FINAL_SIGMAS_TYPE) | SCHED_KEY(KEY_LAMBDA_MIN_CLIPPED) |    \
     SCHED_KEY(KEY_VARIANCE_TYPE))

enum { SLOT_PREVIOUS_OUTPUT, SLOT_OLDER_OUTPUT, SLOT_GROUP_SAMPLE, SLOTS }; /* model_outputs[-2], [-3]; self.sample */

static void singlestep_defaults(SchedulerConfig *cfg)
{
    cfg->timestep_spacing = SPACING_LINSPACE; /* what its set_timesteps always does */
    cfg->lower_order_final = 0;
}

/* order_list[i] (get_order_list): groups [1, 2, 3], [1, 2] or [1] of solver_order; set_timesteps turns
 * lower_order_final on when N is not a multiple of the order or the final sigma is 0 (register_to_config: a fresh
 * scheduler's), and then the last group is cut short. */
static int step_order(const Scheduler *s, int i)
{
    const SchedulerConfig *c = &s->cfg;
    const int N = s->num_steps, order = c->solver_order;
    const int lower_order_final = c->lower_order_final || N % order != 0 || c->final_sigmas_type == FINAL_SIGMA_ZERO;
    if (order == 1)
        return 1;
    if (order == 2) /* [1, 2] * (N // 2) [+ [1] or, N even, the last pair [1, 1]] */
        return i % 2 == 0 || (lower_order_final && i == N - 1) ? 1 : 2;
    if (!lower_order_final) /* [1, 2, 3] * (N // 3) */
        return i % 3 + 1;
    switch (N % 3) {
    case 0: /* [1, 2, 3] * (N // 3 - 1) + [1, 2] + [1] */
        return i < N - 3 ? i % 3 + 1 : (const int[]){1, 2, 1}[i - (N - 3)];
    case 1: /* [1, 2, 3] * (N // 3) + [1] */
        return i < N - 1 ? i % 3 + 1 : 1;
    default: /* [1, 2, 3] * (N // 3) + [1, 2] */
        return i < N - 2 ? i % 3 + 1 : i == N - 2 ? 1 : 2;
    }
}

/* DPM-Solver's set_timesteps, refusing a schedule whose last step is not first order but goes to sigma 0 (order 3
 * with N % 3 == 2 ends with the group [1, 2]): its h is infinite, r0 = h_0 / h is 0, and diffusers' sample inf. */
static int singlestep_set_timesteps(Scheduler *s)
{
    SOWER_TRY(scheduler_dpm_set_timesteps(s));
    const int N = s->num_steps;
    if (s->sigmas[N] == 0.0f && step_order(s, N - 1) > 1)
        return SOWER_FAIL(SOWER_EINPUT,
                          "%d steps of %s with solver_order %d end with a second-order step to sigma 0, which divides "
                          "by 1 / h = 0 (diffusers' sample is infinite): choose a step count that is not 2 more than a "
                          "multiple of 3, or final_sigmas_type \"sigma_min\"",
                          N, scheduler_kind_name(s->cfg.kind), s->cfg.solver_order);
    return SOWER_OK;
}

/* singlestep_dpm_solver_third_order_update, from the group's start at s2 (scheduler_dpm_third_order) for one value:
 * D0 = m2, D1_0 = (1.0 / r1) * (m1 - m2), D1_1 = (1.0 / r0) * (m0 - m2); the midpoint form adds c1 * D1_1, the heun
 * form c1 * D1 and - c2 * D2, D1 = (r0 * D1_0 - r1 * D1_1) / (r0 - r1), D2 = 2.0 * (D1_1 - D1_0) / (r0 - r1)
 * (dpmsolver: - c1 * ...). */
static float third_order_value(const DpmThirdOrder *u, int heun, float sample, float m0, float m1, float m2)
{
    const float d1_0 = 1.0f / u->r1 * (m1 - m2), d1_1 = 1.0f / u->r0 * (m0 - m2);
    const float base = u->a * sample - u->b * m2;
    if (!heun)
        return u->plus_plus ? base + u->c1 * d1_1 : base - u->c1 * d1_1;
    const float r_diff = u->r0 - u->r1;
    const float d1 = (u->r0 * d1_0 - u->r1 * d1_1) / r_diff, d2 = 2.0f * (d1_1 - d1_0) / r_diff;
    return (u->plus_plus ? base + u->c1 * d1 : base - u->c1 * d1) - u->c2 * d2;
}

/* Step i from sigmas[i] to sigmas[i + 1]: first order from x itself (which starts a group), or second (third)
 * order from the group's start at sigmas[i - 1] (sigmas[i - 2]) with this step's and the group's earlier model
 * outputs (D0 the group's first). */
static void singlestep_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    const SchedulerConfig *c = &s->cfg;
    const int order = step_order(s, i);
    DpmUpdate u = {0};
    DpmThirdOrder third = {0};
    if (order == 3)
        scheduler_dpm_third_order(c, (const float[]){s->sigmas[i + 1], s->sigmas[i], s->sigmas[i - 1], s->sigmas[i - 2]}, 1,
                                  &third);
    else if (order == 2) /* h = lambda_t - lambda_s1, h_0 = lambda_s0 - lambda_s1 */
        scheduler_dpm_update(c, s->sigmas[i + 1], s->sigmas[i - 1], 1, s->sigmas[i], s->sigmas[i - 1], &u);
    else
        scheduler_dpm_update(c, s->sigmas[i + 1], s->sigmas[i], 0, 0.0f, 0.0f, &u);
    float alpha_s0, sigma_s0; /* convert_model_output at sigmas[i] */
    sigma_alpha_sigma(s->sigmas[i], &alpha_s0, &sigma_s0);
    const int plus_plus = c->algorithm_type == DPM_ALGORITHM_PLUS_PLUS;
    float *previous = r->slots + (size_t)SLOT_PREVIOUS_OUTPUT * r->n, *older = r->slots + (size_t)SLOT_OLDER_OUTPUT * r->n;
    float *start = r->slots + (size_t)SLOT_GROUP_SAMPLE * r->n;
    for (size_t j = 0; j < r->n; j++) {
        const float out = converted_output(c->prediction_type, plus_plus, m[j], x[j], alpha_s0, sigma_s0);
        const float z = u.sde ? noise[j] : 0.0f;
        if (order == 3) {
            x[j] = third_order_value(&third, c->solver_type == DPM_SOLVER_HEUN, start[j], out, previous[j], older[j]);
        } else if (order == 2) {
            x[j] = dpm_update_value(&u, start[j], previous[j], out, previous[j], z);
        } else {
            start[j] = x[j];
            x[j] = dpm_update_value(&u, x[j], out, out, out, z);
        }
        older[j] = previous[j], previous[j] = out;
    }
}

const SchedulerClass scheduler_dpm_singlestep = {
    .name = "dpm++2s",
    .class_name = "DPMSolverSinglestepScheduler",
    .config_keys = SCHED_KEYS_DPM_SINGLESTEP,
    .failing_keys = SCHED_KEYS_FAILING_SIGMA_CONVERSIONS,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = singlestep_defaults,
    .validate = scheduler_dpm_ode_validate,
    .runs = scheduler_dpm_runs_ode,
    .set_timesteps = singlestep_set_timesteps,
    .history_slots = SLOTS,
    .max_solver_order = 3,
    .step = singlestep_step,
};

/* Its SDE form (algorithm_type "sde-dpmsolver++"): every step draws noise of the sample's shape from the seed's
 * generator. */
const SchedulerClass scheduler_dpm_singlestep_sde = {
    .name = "dpm++2s-sde",
    .class_name = "DPMSolverSinglestepScheduler",
    .config_keys = SCHED_KEYS_DPM_SINGLESTEP,
    .failing_keys = SCHED_KEYS_FAILING_SIGMA_CONVERSIONS,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX),
    .defaults = singlestep_defaults,
    .overrides = scheduler_dpm_sde_overrides,
    .validate = scheduler_dpm_final_sigma_validate,
    .runs = scheduler_dpm_runs_sde,
    .set_timesteps = singlestep_set_timesteps,
    .history_slots = SLOTS,
    .max_solver_order = 3, /* refused with sde-dpmsolver++ (scheduler_dpm_final_sigma_validate) */
    .draws_noise = 1,
    .step = singlestep_step,
};
