/* scheduler.h: diffusers 0.31's DDIMScheduler and DDPMScheduler, bit for bit (torch 1.13 on the CPU).
 *
 * What is reproduced, and how (checked against the real classes by tests/test_scheduler.c with
 * tests/data/scheduler_reference.json, made by validate/make_scheduler_reference.py):
 *   - config: ConfigMixin.from_config on the text of a scheduler_config.json: the kind's defaults,
 *     then every key its __init__ knows (the last one if a key repeats, as json.loads does), minus
 *     those listed in "_use_default_values"; other keys are dropped silently.
 *   - betas (float32): linear = torch.linspace(b0, b1, T); scaled_linear = linspace(b0**0.5,
 *     b1**0.5, T) ** 2; squaredcos_cap_v2 = betas_for_alpha_bar in double, rounded to float.
 *     torch 1.13's linspace is vectorised (blocks of 16, a base per 8 values plus k*step) and its
 *     bits depend on the CPU kernel torch dispatches to: cfg.torch_kernel picks AVX2 (fused
 *     multiply-adds in the base, as GCC contracts them) or the DEFAULT kernel (no fusing). For
 *     T > 32768 torch splits linspace across its threads and its bits depend on the thread count;
 *     sower reproduces torch.set_num_threads(1) there.
 *   - alphas = 1 - betas (float32); alphas_cumprod = cumprod accumulated in double, each value
 *     rounded to float (torch's CPU cumprod).
 *   - timesteps: numpy's arithmetic for leading / trailing / linspace spacing (round half to even).
 *   - step: every scalar a float32 0-d tensor, every operation float32, in diffusers' order.
 *     The previous timestep is t - T//N for both classes (DDPM's previous_timestep() without
 *     custom timesteps), not the next entry of `timesteps`.
 * Not supported (refused with SOWER_EMODEL when a config asks for it): thresholding, trained_betas,
 * rescale_betas_zero_snr, the "sigmoid" beta schedule and the fixed_small_log / fixed_large_log /
 * learned / learned_range variance types of DDPM, custom timesteps, use_clipped_model_output. */
#ifndef SOWER_SCHEDULER_H
#define SOWER_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"
#include "scheduler_step.h"

enum {
    SCHEDULER_MAX_TRAIN_TIMESTEPS = 100000, /* cap on num_train_timesteps from a config */
};

/* A scheduler class: its index in the registry (scheduler_registry.c). The first two are named
 * because tests and defaults use them; a scheduler added later needs no constant. */
typedef int SchedulerKind;
enum { SCHED_DDIM, SCHED_DDPM };
typedef enum { BETA_LINEAR, BETA_SCALED_LINEAR, BETA_SQUAREDCOS_CAP_V2 } BetaSchedule;
typedef enum { PRED_EPSILON, PRED_V_PREDICTION, PRED_SAMPLE } PredictionType;
typedef enum { SPACING_LEADING, SPACING_TRAILING, SPACING_LINSPACE } TimestepSpacing;
typedef enum { VARIANCE_FIXED_SMALL, VARIANCE_FIXED_LARGE } VarianceType;

/* The config keys the classes' __init__ take (the union, in DDPM's signature order); a class names
 * its own with SCHED_KEY bits. */
typedef enum {
    KEY_NUM_TRAIN_TIMESTEPS,
    KEY_BETA_START,
    KEY_BETA_END,
    KEY_BETA_SCHEDULE,
    KEY_TRAINED_BETAS,
    KEY_VARIANCE_TYPE,
    KEY_CLIP_SAMPLE,
    KEY_SET_ALPHA_TO_ONE,
    KEY_STEPS_OFFSET,
    KEY_PREDICTION_TYPE,
    KEY_THRESHOLDING,
    KEY_DYNAMIC_THRESHOLDING_RATIO,
    KEY_CLIP_SAMPLE_RANGE,
    KEY_SAMPLE_MAX_VALUE,
    KEY_TIMESTEP_SPACING,
    KEY_RESCALE_BETAS_ZERO_SNR,
    KEY_COUNT
} ConfigKey;

#define SCHED_KEY(k) (1u << (k))

typedef struct {
    SchedulerKind kind;
    int num_train_timesteps;       /* T, 1..SCHEDULER_MAX_TRAIN_TIMESTEPS */
    double beta_start, beta_end;   /* Python floats, as in the config */
    BetaSchedule beta_schedule;
    PredictionType prediction_type;
    TimestepSpacing timestep_spacing;
    int steps_offset;              /* leading spacing only, as in diffusers */
    int clip_sample;
    double clip_sample_range;      /* > 0; rounded to float where torch clamps */
    int set_alpha_to_one;          /* DDIM only */
    VarianceType variance_type;    /* DDPM only */
    /* Not a diffusers key: the torch CPU kernel whose torch.linspace bits to reproduce (the same
     * choice as the noise generator's). Defaults to RNG_KERNEL_TORCH_CPU (AVX2 dispatch). */
    RngKernel torch_kernel;
} SchedulerConfig;

/* Defaults of the class's __init__ (diffusers 0.31). */
void scheduler_config_defaults(SchedulerKind kind, SchedulerConfig *cfg);

/* from_config semantics: start from `kind`'s defaults; take every key of the JSON object (text of a
 * scheduler_config.json) that `kind`'s __init__ knows; silently drop keys it does not know (e.g.
 * variance_type for DDIM, set_alpha_to_one for DDPM, _class_name, _diffusers_version), exactly as
 * diffusers' ConfigMixin.from_config does. Unsupported values of known keys fail with SOWER_EMODEL
 * and a message "PATH: key 'NAME': expected ..., found ...". `path` is only used in messages. */
int scheduler_config_parse(const char *json_text, size_t len, const char *path, SchedulerKind kind,
                           SchedulerConfig *cfg) SOWER_MUST_CHECK;

typedef struct {
    SchedulerConfig cfg;
    int num_inference_steps;   /* N */
    int64_t step_ratio;        /* T // N: the distance to the previous timestep in step() */
    int64_t *timesteps;        /* (N,) in the order the pipeline runs them */
    float *alphas_cumprod;     /* (T,) */
    float final_alpha_cumprod; /* alpha_prod_t_prev when t - T//N < 0: DDIM 1 or alphas_cumprod[0], DDPM 1 */
} Scheduler;

/* Builds the tables and set_timesteps(N). N must be 1..T, and every timestep must fall in 0..T-1
 * with exactly N of them (diffusers itself misbehaves otherwise: leading spacing with a
 * steps_offset that pushes t to T, or trailing spacing where numpy's arange yields N+1 values);
 * else SOWER_EINPUT. On failure *s is left zeroed. */
int scheduler_init(Scheduler *s, const SchedulerConfig *cfg, int num_inference_steps) SOWER_MUST_CHECK;
/* Safe on a zeroed struct; leaves it zeroed. */
void scheduler_free(Scheduler *s);

/* Whether step i consumes per-sample noise from the seed's generator (DDIM: eta > 0, at EVERY step
 * including the last; DDPM: timesteps[i] > 0). */
int scheduler_step_needs_noise(const Scheduler *s, int i, float eta);

/* One step for ONE sample of n values: model_output (n,), sample (n,), noise (n,) or NULL when
 * scheduler_step_needs_noise() is false -> prev_sample (n,). prev_sample may alias sample (or
 * model_output). eta is DDIM's (ignored by DDPM); diffusers passes it as a Python float that torch
 * rounds to float32, so a float here loses nothing. */
void scheduler_step(const Scheduler *s, int i, float eta, const float *model_output, const float *sample,
                    const float *noise, float *prev_sample, size_t n);
/* The scalars of step i (scheduler_step_value, scheduler_step.h, applies them to each value): what
 * a backend needs to run the step where the samples live. */
void scheduler_step_coefficients(const Scheduler *s, int i, float eta, StepCoefficients *k);

/* ---- the registry: one descriptor per scheduler class --------------------------------------- */

/* Adding a scheduler: a file in schedulers/ defining its SchedulerClass, and one line in
 * scheduler_registry.c's table. Names, class names, manifest and CLI choices, the eta rule and the
 * config keys all come from here. */
typedef struct {
    const char *name;       /* "ddim": what --scheduler and pipeline.scheduler say */
    const char *class_name; /* "DDIMScheduler": what a folder's scheduler_config.json says */
    unsigned config_keys;   /* SCHED_KEY bits: the keys its __init__ takes (from_config keeps only those) */
    int takes_eta;          /* DDIM's eta applies (else eta must be 0) */
    /* alpha_prod_t_prev once t - T//N < 0 */
    float (*final_alpha_cumprod)(const SchedulerConfig *cfg, const float *alphas_cumprod);
    /* step i's scalars (class-specific part; scheduler_step_coefficients fills the common ones) */
    void (*coefficients)(const Scheduler *s, int i, float eta, StepCoefficients *k);
} SchedulerClass;

/* The class of kind k (a valid kind: from scheduler_kind_parse or scheduler_kind_of_class). */
const SchedulerClass *scheduler_class(SchedulerKind k);
int scheduler_kind_count(void);
const char *scheduler_kind_name(SchedulerKind k); /* "ddim" */
const char *scheduler_class_name(SchedulerKind k); /* "DDIMScheduler" */
/* A registered name ("ddim") -> kind; SOWER_EINPUT listing the names otherwise. */
int scheduler_kind_parse(const char *name, SchedulerKind *k) SOWER_MUST_CHECK;
/* A diffusers class name ("DDIMScheduler") -> kind; SOWER_EINPUT otherwise. */
int scheduler_kind_of_class(const char *class_name, SchedulerKind *k) SOWER_MUST_CHECK;
/* "ddim, ddpm, ..." (the registered names, for messages and help); "DDIMScheduler, ..." with classes. */
const char *scheduler_names(int classes);

#endif /* SOWER_SCHEDULER_H */
