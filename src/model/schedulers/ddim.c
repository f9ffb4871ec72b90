/* ddim.c: diffusers 0.31's DDIMScheduler (scheduling_ddim.py): the step's scalars, as float32 in
 * diffusers' order (scheduler_step.h applies them). */
#include <math.h>

#include "schedulers/schedulers.h"

void scheduler_ddim_coefficients(const Scheduler *s, int i, float eta, StepCoefficients *k)
{
    const int64_t t = s->timesteps[i];
    const int64_t prev_t = t - s->step_ratio; /* timestep - T // N, whatever the spacing */
    const float alpha_prod_t = s->alphas_cumprod[t];
    const float alpha_prod_t_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : s->final_alpha_cumprod;
    const float beta_prod_t = 1.0f - alpha_prod_t;
    k->sqrt_alpha_t = sqrtf(alpha_prod_t), k->sqrt_beta_t = sqrtf(beta_prod_t); /* ** (0.5) */
    /* _get_variance: (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev) */
    const float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;
    const float variance = (beta_prod_t_prev / beta_prod_t) * (1.0f - alpha_prod_t / alpha_prod_t_prev);
    k->std_dev_t = eta * sqrtf(variance); /* Python float * float32 tensor: eta as float32 */
    /* (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) */
    k->direction_coeff = sqrtf((1.0f - alpha_prod_t_prev) - k->std_dev_t * k->std_dev_t);
    k->sqrt_alpha_prev = sqrtf(alpha_prod_t_prev);
    k->add_noise = eta > 0;
}

/* torch.tensor(1.0) if set_alpha_to_one else alphas_cumprod[0] */
float scheduler_ddim_final_alpha_cumprod(const SchedulerConfig *cfg, const float *alphas_cumprod)
{
    return cfg->set_alpha_to_one ? 1.0f : alphas_cumprod[0];
}

const SchedulerClass scheduler_ddim = {
    .name = "ddim",
    .class_name = "DDIMScheduler",
    .config_keys = SCHED_KEYS_DDIM,
    .takes_eta = 1,
    .divides_by_noise = 1,
    .final_alpha_cumprod = scheduler_ddim_final_alpha_cumprod,
    .coefficients = scheduler_ddim_coefficients,
};
