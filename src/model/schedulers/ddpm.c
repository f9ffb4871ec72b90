/* ddpm.c: diffusers 0.31's DDPMScheduler (scheduling_ddpm.py): the step's scalars, as float32 in
 * diffusers' order (scheduler_step.h applies them). */
#include <math.h>

#include "schedulers/schedulers.h"

void scheduler_ddpm_coefficients(const Scheduler *s, int i, float eta, StepCoefficients *k)
{
    (void)eta; /* DDPM has none */
    k->ddpm = 1;
    const int64_t t = s->timesteps[i];
    const int64_t prev_t = t - s->step_ratio; /* previous_timestep() without custom timesteps */
    const float alpha_prod_t = s->alphas_cumprod[t];
    const float alpha_prod_t_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : 1.0f; /* self.one */
    const float beta_prod_t = 1.0f - alpha_prod_t;
    const float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;
    const float current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
    const float current_beta_t = 1.0f - current_alpha_t;
    k->sqrt_alpha_t = sqrtf(alpha_prod_t), k->sqrt_beta_t = sqrtf(beta_prod_t);
    k->x0_coeff = (sqrtf(alpha_prod_t_prev) * current_beta_t) / beta_prod_t;
    k->sample_coeff = sqrtf(current_alpha_t) * beta_prod_t_prev / beta_prod_t;
    k->add_noise = t > 0;
    if (k->add_noise) {
        /* _get_variance: (1 - a_prev) / (1 - a_t) * current_beta_t, clamped at 1e-20 (fixed_small);
         * fixed_large takes current_beta_t unclamped. Then variance ** 0.5 * noise. */
        float variance = (1.0f - alpha_prod_t_prev) / (1.0f - alpha_prod_t) * current_beta_t;
        variance = variance < 1e-20f ? 1e-20f : variance;
        if (s->cfg.variance_type == VARIANCE_FIXED_LARGE)
            variance = current_beta_t;
        k->noise_scale = sqrtf(variance);
    }
}

/* self.one: the step past the first timestep uses alpha 1 */
float scheduler_ddpm_final_alpha_cumprod(const SchedulerConfig *cfg, const float *alphas_cumprod)
{
    (void)cfg, (void)alphas_cumprod;
    return 1.0f;
}

const SchedulerClass scheduler_ddpm = {
    .name = "ddpm",
    .class_name = "DDPMScheduler",
    .config_keys = SCHED_KEYS_DDPM,
    .divides_by_noise = 1,
    .final_alpha_cumprod = scheduler_ddpm_final_alpha_cumprod,
    .coefficients = scheduler_ddpm_coefficients,
};
