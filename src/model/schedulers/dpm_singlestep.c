/* dpm_singlestep.c: diffusers 0.31's DPMSolverSinglestepScheduler (scheduling_dpmsolver_singlestep.py): DPM-Solver++
 * (or DPM-Solver, or its SDE form) of order 1 or 2 taken in single steps: the steps go in groups of solver_order
 * (get_order_list), the first of a group a first-order update from the group's start, the second a second-order
 * update from that same start over both steps, with the two model outputs. Its timesteps and sigmas are
 * DPMSolverMultistepScheduler's at linspace spacing (the class has no timestep_spacing), Karras too. The history
 * per value: the previous converted model output and the sample its group started from. */
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

enum { SLOT_PREVIOUS_OUTPUT, SLOT_GROUP_SAMPLE, SLOTS }; /* model_outputs[-2]; self.sample */

static void singlestep_defaults(SchedulerConfig *cfg)
{
    cfg->timestep_spacing = SPACING_LINSPACE; /* what its set_timesteps always does */
    cfg->lower_order_final = 0;
}

/* order_list[i] (get_order_list): groups [1, 2] (order 2) or [1]; set_timesteps turns lower_order_final on when N
 * is not a multiple of the order or the final sigma is 0 (register_to_config: a fresh scheduler's), and then the last
 * step is first order. */
static int step_order(const Scheduler *s, int i)
{
    const SchedulerConfig *c = &s->cfg;
    const int N = s->num_steps;
    const int lower_order_final = c->lower_order_final || N % c->solver_order != 0 || c->final_sigmas_type == FINAL_SIGMA_ZERO;
    if (c->solver_order == 1 || i % 2 == 0 || (lower_order_final && i == N - 1))
        return 1;
    return 2;
}

/* Step i from sigmas[i] to sigmas[i + 1]: first order from x itself (which starts a group), or second order from
 * the group's start at sigmas[i - 1] with this step's and the previous step's model outputs (D0 the earlier one). */
static void singlestep_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    const SchedulerConfig *c = &s->cfg;
    const int second = step_order(s, i) == 2;
    DpmUpdate u;
    if (second) /* h = lambda_t - lambda_s1, h_0 = lambda_s0 - lambda_s1 */
        scheduler_dpm_update(c, s->sigmas[i + 1], s->sigmas[i - 1], 1, s->sigmas[i], s->sigmas[i - 1], &u);
    else
        scheduler_dpm_update(c, s->sigmas[i + 1], s->sigmas[i], 0, 0.0f, 0.0f, &u);
    float alpha_s0, sigma_s0; /* convert_model_output at sigmas[i] */
    sigma_alpha_sigma(s->sigmas[i], &alpha_s0, &sigma_s0);
    const int plus_plus = c->algorithm_type == DPM_ALGORITHM_PLUS_PLUS;
    float *previous = r->slots + (size_t)SLOT_PREVIOUS_OUTPUT * r->n, *start = r->slots + (size_t)SLOT_GROUP_SAMPLE * r->n;
    for (size_t j = 0; j < r->n; j++) {
        const float out = converted_output(c->prediction_type, plus_plus, m[j], x[j], alpha_s0, sigma_s0);
        const float z = u.sde ? noise[j] : 0.0f;
        if (second) {
            x[j] = dpm_update_value(&u, start[j], previous[j], out, previous[j], z);
        } else {
            start[j] = x[j];
            x[j] = dpm_update_value(&u, x[j], out, out, out, z);
        }
        previous[j] = out;
    }
}

const SchedulerClass scheduler_dpm_singlestep = {
    .name = "dpm++2s",
    .class_name = "DPMSolverSinglestepScheduler",
    .config_keys = SCHED_KEYS_DPM_SINGLESTEP,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = singlestep_defaults,
    .validate = scheduler_dpm_ode_validate,
    .runs = scheduler_dpm_runs_ode,
    .set_timesteps = scheduler_dpm_set_timesteps,
    .history_slots = SLOTS,
    .step = singlestep_step,
};

/* Its SDE form (algorithm_type "sde-dpmsolver++"): every step draws noise of the sample's shape from the seed's
 * generator. */
const SchedulerClass scheduler_dpm_singlestep_sde = {
    .name = "dpm++2s-sde",
    .class_name = "DPMSolverSinglestepScheduler",
    .config_keys = SCHED_KEYS_DPM_SINGLESTEP,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX),
    .defaults = singlestep_defaults,
    .overrides = scheduler_dpm_sde_overrides,
    .validate = scheduler_dpm_final_sigma_validate,
    .runs = scheduler_dpm_runs_sde,
    .set_timesteps = scheduler_dpm_set_timesteps,
    .history_slots = SLOTS,
    .draws_noise = 1,
    .step = singlestep_step,
};
