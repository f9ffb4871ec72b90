/* scheduler.h: diffusers 0.31's schedulers. DDIMScheduler and DDPMScheduler bit for bit (torch 1.13 on
 * the CPU); PNDM, Euler, Euler ancestral, Heun, LMS, KDPM2 (and ancestral), DPMSolverMultistepScheduler and
 * DPMSolverSinglestepScheduler (dpmsolver++, dpmsolver and sde-dpmsolver++), DEIS and UniPC with the same float32
 * operations in diffusers' order (their numpy sigma schedules in double as numpy computes them, torch's and numpy's
 * own log/exp: schedulers/torch_math.h; see schedulers/sigmas.c for where bits may differ).
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
 *   - rescale_betas_zero_snr: rescale_zero_terminal_snr(betas) in float32 (cumprod, sqrt, shift, scale,
 *     square, ratios), then the tables as above; Euler's, DPM's and UniPC's classes set alphas_cumprod[T - 1] to
 *     2**-24 as diffusers does. A step that divides by sqrt(alphas_cumprod[t]) = 0 (epsilon prediction
 *     at train step T - 1 with DDIM or DDPM) is refused: diffusers renders NaN there.
 * Not supported (refused with SOWER_EMODEL when a config asks for it): thresholding, trained_betas,
 * the "sigmoid" beta schedule and the fixed_small_log / fixed_large_log /
 * learned / learned_range variance types of DDPM, custom timesteps, use_clipped_model_output. */
#ifndef SOWER_SCHEDULER_H
#define SOWER_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"
#include "scheduler_step.h"
#include "schedulers/brownian.h"

enum {
    SCHEDULER_MAX_TRAIN_TIMESTEPS = 100000, /* cap on num_train_timesteps from a config */
    SCHEDULER_MAX_DISABLED_CORRECTORS = 64, /* UniPC's disable_corrector list */
    SCHEDULER_MAX_KINDS = 32,               /* registered classes (scheduler_registry.c checks it): for name lists */
};

/* A scheduler class: its index in the registry (scheduler_registry.c). The first two are named
 * because tests and defaults use them; a scheduler added later needs no constant. */
typedef int SchedulerKind;
enum { SCHED_DDIM, SCHED_DDPM };
typedef enum { BETA_LINEAR, BETA_SCALED_LINEAR, BETA_SQUAREDCOS_CAP_V2 } BetaSchedule;
typedef enum { PRED_EPSILON, PRED_V_PREDICTION, PRED_SAMPLE } PredictionType;
typedef enum { SPACING_LEADING, SPACING_TRAILING, SPACING_LINSPACE } TimestepSpacing;
typedef enum { VARIANCE_FIXED_SMALL, VARIANCE_FIXED_LARGE } VarianceType;
typedef enum { FINAL_SIGMA_ZERO, FINAL_SIGMA_MIN } FinalSigmasType;
typedef enum { DPM_ALGORITHM_PLUS_PLUS, DPM_ALGORITHM_PLAIN } DpmAlgorithm; /* "dpmsolver++", "dpmsolver" */
typedef enum { DPM_SOLVER_MIDPOINT, DPM_SOLVER_HEUN } DpmSolverType;

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
    KEY_SKIP_PRK_STEPS,      /* PNDM */
    KEY_USE_KARRAS_SIGMAS,   /* Euler, DPM */
    KEY_USE_EXPONENTIAL_SIGMAS,
    KEY_USE_BETA_SIGMAS,
    KEY_SIGMA_MIN,           /* Euler */
    KEY_SIGMA_MAX,
    KEY_INTERPOLATION_TYPE,
    KEY_TIMESTEP_TYPE,
    KEY_FINAL_SIGMAS_TYPE,   /* Euler, DPM */
    KEY_SOLVER_ORDER,        /* DPM */
    KEY_ALGORITHM_TYPE,
    KEY_SOLVER_TYPE,
    KEY_LOWER_ORDER_FINAL,
    KEY_EULER_AT_FINAL,
    KEY_USE_LU_LAMBDAS,
    KEY_LAMBDA_MIN_CLIPPED,
    KEY_PREDICT_X0,          /* UniPC */
    KEY_DISABLE_CORRECTOR,
    KEY_SOLVER_P,
    KEY_NOISE_SAMPLER_SEED,  /* DPMSolverSDEScheduler */
    KEY_COUNT
} ConfigKey;

#define SCHED_KEY(k) (UINT64_C(1) << (k))

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
    int rescale_betas_zero_snr;    /* betas rescaled to zero terminal SNR (Lin et al. 2023, rescale_zero_terminal_snr) */
    VarianceType variance_type;    /* DDPM only */
    int skip_prk_steps;            /* PNDM: PLMS from the first step (else 12 Runge-Kutta calls first) */
    int use_karras_sigmas;         /* Euler, DPM: Karras et al.'s sigma schedule (rho 7) */
    int use_exponential_sigmas;    /* Euler, Heun, LMS, KDPM2, DPM SDE: log-linear sigmas between the ends */
    int use_beta_sigmas;           /* the same classes: sigmas at the Beta(0.6, 0.6) quantiles between the ends */
    double sigma_min, sigma_max;   /* Euler's karras bounds; NaN: None (the schedule's own ends) */
    FinalSigmasType final_sigmas_type; /* Euler, DPM: the sigma after the last step */
    int solver_order;              /* DPM, DPM singlestep, DEIS, UniPC: 1..3 */
    DpmAlgorithm algorithm_type;
    int algorithm_sde;             /* DPM: "sde-dpmsolver++" (DPM-Solver++ with a noise draw every step) */
    int algorithm_deis;            /* DPM: "deis" was named (run as dpmsolver++, but refused with a final zero sigma) */
    DpmSolverType solver_type;
    int solver_bh1;                /* UniPC: solver_type "bh1" (B(h) = h); else "bh2" (B(h) = e^h - 1) */
    int predict_x0;                /* UniPC: the data (x0) form; else the noise form */
    int n_disable_corrector;       /* UniPC: steps whose following step runs no corrector */
    int disable_corrector[SCHEDULER_MAX_DISABLED_CORRECTORS];
    int lower_order_final, euler_at_final;
    double lambda_min_clipped;     /* DPM: -inf (no clipping) unless set */
    int has_noise_sampler_seed;    /* DPM SDE (Brownian tree): the config's noise_sampler_seed is every sample's tree */
    uint64_t noise_sampler_seed;   /* entropy; else (null, the default) each sample's own seed is its tree's */
    /* Not a diffusers key: the torch CPU kernel whose torch.linspace bits to reproduce (the same
     * choice as the noise generator's). Defaults to RNG_KERNEL_TORCH_CPU (AVX2 dispatch). */
    RngKernel torch_kernel;
} SchedulerConfig;

/* Defaults of the class's __init__ (diffusers 0.31). */
void scheduler_config_defaults(SchedulerKind kind, SchedulerConfig *cfg);

/* The sigma schedule a render asks for over the folder's config (--sigmas, pipeline.sigmas), as
 * from_config(config, use_X_sigmas=True) sets it; SIGMAS_CONFIG: the config's own (interpolated unless the file sets
 * a use_*_sigmas key). */
typedef enum { SIGMAS_CONFIG, SIGMAS_KARRAS, SIGMAS_EXPONENTIAL, SIGMAS_BETA } SigmaSchedule;
#define SIGMA_SCHEDULE_NAMES {"config", "karras", "exponential", "beta", NULL}
const char *sigma_schedule_name(SigmaSchedule s); /* "karras", ...; "config" for SIGMAS_CONFIG */
/* "karras", "exponential" or "beta" -> *out; -1 for any other name (SIGMAS_CONFIG is never asked for by name). */
int sigma_schedule_parse(const char *name, SigmaSchedule *out);
/* Whether a job's text, pipeline attribute, sample record and export metadata name s under "sigmas": exponential and
 * beta only (karras keeps its own key, the config's own schedule none), so earlier jobs' text is unchanged. */
int sigma_schedule_named(SigmaSchedule s);
ConfigKey sigma_schedule_key(SigmaSchedule s);    /* KEY_USE_KARRAS_SIGMAS, ...; not for SIGMAS_CONFIG */
/* cfg with schedule s forced on (from_config(config, use_X_sigmas=True)); SOWER_EMODEL when the config sets another
 * one (diffusers raises: one schedule at a time), naming config_path. */
int scheduler_config_force_sigmas(SchedulerConfig *cfg, SigmaSchedule s, const char *config_path) SOWER_MUST_CHECK;

/* from_config semantics: start from `kind`'s defaults; take every key of the JSON object (text of a
 * scheduler_config.json) that `kind`'s __init__ knows; silently drop keys it does not know (e.g.
 * variance_type for DDIM, set_alpha_to_one for DDPM, _class_name, _diffusers_version), exactly as
 * diffusers' ConfigMixin.from_config does. Unsupported values of known keys fail with SOWER_EMODEL
 * and a message "PATH: key 'NAME': expected ..., found ...". `path` is only used in messages. */
int scheduler_config_parse(const char *json_text, size_t len, const char *path, SchedulerKind kind,
                           SchedulerConfig *cfg) SOWER_MUST_CHECK;

typedef struct {
    SchedulerConfig cfg;
    int num_inference_steps;   /* N, as asked */
    int num_steps;             /* len(scheduler.timesteps): the UNet calls (N; PNDM N + 1 or N + 9) */
    int64_t step_ratio;        /* T // N: the distance to the previous timestep in step() */
    int64_t *timesteps;        /* (num_steps,) integer timesteps in the order the pipeline runs them;
                                * NULL for Euler's, which are fractional */
    float *unet_timesteps;     /* (num_steps,) the t the UNet sees (float32, as its embedding casts it) */
    float *sigmas;             /* (num_sigmas,) Euler, Euler a, DPM: each step's sigma and the final
                                * one; NULL for the others */
    int num_sigmas;            /* num_steps + 1, but KDPM2's 2N + 2 (diffusers' own layout, indexed by call) */
    float *sigmas_interpol;    /* (num_sigmas,) KDPM2: the log-midpoint sigmas of its second-order calls */
    float *sigmas_up, *sigmas_down; /* (num_sigmas,) KDPM2 ancestral: the noise added, the sigma stepped to */
    float init_noise_sigma;    /* the first latents are the noise times this: 1 but for Euler's */
    float *alphas_cumprod;     /* (T,) */
    float final_alpha_cumprod; /* alpha_prod_t_prev when t - T//N < 0: DDIM 1 or alphas_cumprod[0], DDPM 1 */
    BrownianPlan *brownian;    /* DPM SDE: the Brownian tree's shape and the calls' queries (NULL for the others) */
} Scheduler;

/* Builds the tables and set_timesteps(N). N must be 1..T, and every timestep must fall in 0..T-1
 * with exactly the count diffusers makes (diffusers itself misbehaves otherwise: leading spacing with
 * a steps_offset that pushes t to T, or trailing spacing where numpy's arange yields N+1 values);
 * else SOWER_EINPUT. On failure *s is left zeroed. */
/* Refuses (SOWER_EMODEL naming path) betas a render cannot use: ones that leave no signal (alphas_cumprod
 * reaching 0 in float32: beta 0.9999 throughout, or 40,000 train steps of SD's betas) or add no noise (every
 * beta 0): each makes the steps' coefficients 0/0 or infinite, and diffusers renders NaN from both without a
 * word. Checked when a model folder is loaded (the table itself is computed for any config). */
int scheduler_check_noise_schedule(const SchedulerConfig *cfg, const char *path) SOWER_MUST_CHECK;

/* The config's betas (T = num_train_timesteps) and their float32 cumulative product, as diffusers makes
 * them: the table every scheduler class starts from. */
void scheduler_alphas_cumprod(const SchedulerConfig *cfg, float *betas /* (T,) scratch */,
                              float *alphas_cumprod /* (T,) */);
int scheduler_init(Scheduler *s, const SchedulerConfig *cfg, int num_inference_steps) SOWER_MUST_CHECK;
/* Safe on a zeroed struct; leaves it zeroed. */
void scheduler_free(Scheduler *s);

/* Whether step i consumes per-sample noise from the seed's generator (DDIM: eta > 0, at EVERY step
 * including the last; DDPM: timesteps[i] > 0; Euler ancestral and DPM-Solver++ SDE: every step). */
int scheduler_step_needs_noise(const Scheduler *s, int i, float eta);

/* Whether the class's noise comes from a Brownian tree per sample (scheduler_tree_noise: DPMSolverSDEScheduler)
 * rather than from the seed's generator. */
int scheduler_noise_is_tree(const Scheduler *s);
/* Call i's noise for the sample of `seed` (n values): its tree's increment over the call's sigmas, scaled as
 * diffusers' BrownianTreeNoiseSampler scales it. The tree's entropy is the config's noise_sampler_seed, else the
 * seed; draw makes each tree node's torch.randn from a fresh generator. */
int scheduler_tree_noise(const Scheduler *s, int i, uint64_t seed, BrownianDrawFn draw, void *ctx, float *out,
                         size_t n) SOWER_MUST_CHECK;

/* What scale_model_input divides step i's sample by before the UNet sees it: sqrt(sigma^2 + 1) for
 * Euler's, 1 (the identity) for the others. */
float scheduler_input_divisor(const Scheduler *s, int i);

/* One step for ONE sample of n values: model_output (n,), sample (n,), noise (n,) or NULL when
 * scheduler_step_needs_noise() is false -> prev_sample (n,). prev_sample may alias sample (or
 * model_output). eta is DDIM's (ignored by DDPM); diffusers passes it as a Python float that torch
 * rounds to float32, so a float here loses nothing. */
void scheduler_step(const Scheduler *s, int i, float eta, const float *model_output, const float *sample,
                    const float *noise, float *prev_sample, size_t n);
/* The scalars of step i (scheduler_step_value, scheduler_step.h, applies them to each value): what
 * a backend needs to run the step where the samples live. */
void scheduler_step_coefficients(const Scheduler *s, int i, float eta, StepCoefficients *k);

/* ---- stepping on the host, with the state of multistep classes -------------------------------- */

/* One batch's pass through the steps: the classes that remember earlier model outputs (PNDM, DPM)
 * keep them here, per value, so a value's result never depends on the others in its batch. */
typedef struct {
    size_t n;      /* values per slot: the batch's */
    float *slots;  /* (history_slots, n): the class's history (schedulers/ say what each slot holds) */
    int next_step; /* steps must come in order: the i of the next call */
    int stored;    /* the class's own count (PNDM: model outputs it has kept) */
} SchedulerRun;

/* For n values. SOWER_ENOMEM if the history does not fit; on failure *r is left zeroed. */
int scheduler_run_init(SchedulerRun *r, const Scheduler *s, size_t n) SOWER_MUST_CHECK;
void scheduler_run_free(SchedulerRun *r);
/* Step i (the next one) in place: sample (n,) <- step(model_output (n,), sample, noise (n,) or NULL
 * when scheduler_step_needs_noise is false). Any class; DDIM/DDPM through scheduler_step. */
void scheduler_run_step(const Scheduler *s, SchedulerRun *r, int i, float eta, const float *model_output,
                        float *sample, const float *noise);
/* Whether the class steps through a backend op (scheduler_step_coefficients: DDIM, DDPM) rather than
 * on the host with scheduler_run_step. */
int scheduler_steps_on_backend(const Scheduler *s);

/* ---- the registry: one descriptor per scheduler class --------------------------------------- */

/* Adding a scheduler: a file in schedulers/ defining its SchedulerClass, and one line in
 * scheduler_registry.c's table (the guide: ARCHITECTURE.md, "Adding a scheduler"). Names, class names, manifest and CLI choices, the eta rule and the
 * config keys all come from here. */
typedef struct {
    const char *name;       /* "ddim": what --scheduler and pipeline.scheduler say */
    const char *class_name; /* "DDIMScheduler": what a folder's scheduler_config.json says */
    uint64_t config_keys;   /* SCHED_KEY bits: the keys its __init__ takes (from_config keeps only those) */
    uint64_t hidden_keys;   /* SCHED_KEY bits it reads from its config without taking them (DPM's sigma_min,
                             * sigma_max: from_config keeps them as hidden config) */
    uint64_t failing_keys;  /* SCHED_KEY bits of config_keys whose true value diffusers 0.31's set_timesteps fails
                             * on (DPM-Solver's, DEIS's and UniPC's use_exponential_sigmas, use_beta_sigmas): refused */
    int takes_eta;          /* DDIM's eta applies (else eta must be 0) */
    int divides_by_noise;   /* its step divides by 1 - alphas_cumprod[t] (DDIM's and DDPM's variance): a visited
                             * step without noise is refused (NaN) */
    /* alpha_prod_t_prev once t - T//N < 0 */
    float (*final_alpha_cumprod)(const SchedulerConfig *cfg, const float *alphas_cumprod);
    /* step i's scalars (class-specific part; scheduler_step_coefficients fills the common ones), for
     * classes whose step is one formula per value; NULL for those stepped by `step` */
    void (*coefficients)(const Scheduler *s, int i, float eta, StepCoefficients *k);
    /* Optional hooks (NULL: DDIM's behaviour). */
    void (*defaults)(SchedulerConfig *cfg);  /* the class's __init__ defaults where they differ */
    /* values its step cannot take: SOWER_EMODEL "PATH: key 'K': ..." */
    int (*validate)(const SchedulerConfig *cfg, const char *path);
    /* keyword arguments its name implies, set over the config's own values, as from_config(config, **kwargs)
     * sets them (dpm++2m-sde: algorithm_type="sde-dpmsolver++") */
    void (*overrides)(SchedulerConfig *cfg);
    /* for a class name several entries share: whether a config of that class, read as it is, is this entry's
     * (DPMSolverMultistepScheduler's algorithm_type picks dpm++2m or dpm++2m-sde) */
    int (*runs)(const SchedulerConfig *cfg);
    int (*set_timesteps)(Scheduler *s);      /* fills num_steps, timesteps, unet_timesteps, sigmas, ... */
    int history_slots;                       /* per-value floats its SchedulerRun keeps */
    int max_solver_order;                    /* the largest solver_order it runs (0: 2), for classes taking the key */
    int draws_noise;                         /* every step draws noise from the seed's generator (or those
                                              * draws_noise_at says) */
    int scales_input;                        /* scale_model_input divides by sqrt(sigma^2 + 1) */
    /* the sigma call i's input is scaled by, where it is not sigmas[i] (KDPM2's second-order calls) */
    float (*input_sigma)(const Scheduler *s, int i);
    /* whether call i draws noise, for a class that draws at some calls only (KDPM2 ancestral) */
    int (*draws_noise_at)(const Scheduler *s, int i);
    /* call i's noise for one sample from its tree (entropy), where it is not the seed generator's (DPM SDE) */
    int (*tree_noise)(const Scheduler *s, int i, uint64_t entropy, BrownianDrawFn draw, void *ctx, float *out,
                      size_t n);
    int floors_terminal_alpha;               /* with rescale_betas_zero_snr, alphas_cumprod[T - 1] = 2**-24 (so
                                              * the first sigma is finite: Euler's, DPM's) */
    void (*step)(const Scheduler *s, SchedulerRun *r, int i, const float *model_output, float *sample,
                 const float *noise);
} SchedulerClass;

/* The class of kind k (a valid kind: from scheduler_kind_parse or scheduler_kind_of_class). */
const SchedulerClass *scheduler_class(SchedulerKind k);
int scheduler_kind_count(void);
const char *scheduler_kind_name(SchedulerKind k); /* "ddim" */
const char *scheduler_class_name(SchedulerKind k); /* "DDIMScheduler" */
/* A registered name ("ddim") -> kind; SOWER_EINPUT listing the names otherwise. */
int scheduler_kind_parse(const char *name, SchedulerKind *k) SOWER_MUST_CHECK;
/* A diffusers class name ("DDIMScheduler") -> kind (its first entry); SOWER_EINPUT otherwise. */
int scheduler_kind_of_class(const char *class_name, SchedulerKind *k) SOWER_MUST_CHECK;
/* The kind that runs a config of class_name (a scheduler_config.json's text) as diffusers would: the entry
 * of the class whose `runs` takes the config as read (scheduler_kind_of_class's for a class with one entry).
 * SOWER_EINPUT for a class not registered; a config that does not parse fails as scheduler_config_parse. */
int scheduler_kind_of_config(const char *class_name, const char *json_text, size_t len, const char *path,
                             SchedulerKind *k) SOWER_MUST_CHECK;
/* "ddim, ddpm, ..." (the registered names, for messages and help); "DDIMScheduler, ..." with classes. */
const char *scheduler_names(int classes);
/* "euler, dpm++2m and ..." : the registered names whose class takes config key `key` (for messages). */
const char *scheduler_names_taking(ConfigKey key);
/* Whether kind's class takes key and runs it (in config_keys, not in failing_keys). */
int scheduler_runs_key(SchedulerKind kind, ConfigKey key);

#endif /* SOWER_SCHEDULER_H */
