/* schedulers.h: the pieces of the built-in scheduler classes that a variant may reuse (a class that
 * differs only by name, or by one scalar). Each class's own file defines its SchedulerClass
 * descriptor `scheduler_NAME`; scheduler_registry.c lists them. */
#ifndef SOWER_SCHEDULERS_H
#define SOWER_SCHEDULERS_H

#include "scheduler.h"

void scheduler_ddim_coefficients(const Scheduler *s, int i, float eta, StepCoefficients *k);
float scheduler_ddim_final_alpha_cumprod(const SchedulerConfig *cfg, const float *alphas_cumprod);
void scheduler_ddpm_coefficients(const Scheduler *s, int i, float eta, StepCoefficients *k);
float scheduler_ddpm_final_alpha_cumprod(const SchedulerConfig *cfg, const float *alphas_cumprod);

/* The __init__ keys of DDIMScheduler and DDPMScheduler (diffusers 0.31). */
#define SCHED_KEYS_DDIM                                                                                                  \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |                  \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_CLIP_SAMPLE) |                   \
     SCHED_KEY(KEY_SET_ALPHA_TO_ONE) | SCHED_KEY(KEY_STEPS_OFFSET) | SCHED_KEY(KEY_PREDICTION_TYPE) |              \
     SCHED_KEY(KEY_THRESHOLDING) | SCHED_KEY(KEY_DYNAMIC_THRESHOLDING_RATIO) | SCHED_KEY(KEY_CLIP_SAMPLE_RANGE) |  \
     SCHED_KEY(KEY_SAMPLE_MAX_VALUE) | SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_RESCALE_BETAS_ZERO_SNR))

#define SCHED_KEYS_DDPM                                                                                                  \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |                  \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_VARIANCE_TYPE) |                 \
     SCHED_KEY(KEY_CLIP_SAMPLE) | SCHED_KEY(KEY_STEPS_OFFSET) | SCHED_KEY(KEY_PREDICTION_TYPE) |                  \
     SCHED_KEY(KEY_THRESHOLDING) | SCHED_KEY(KEY_DYNAMIC_THRESHOLDING_RATIO) | SCHED_KEY(KEY_CLIP_SAMPLE_RANGE) |  \
     SCHED_KEY(KEY_SAMPLE_MAX_VALUE) | SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_RESCALE_BETAS_ZERO_SNR))

#endif /* SOWER_SCHEDULERS_H */
