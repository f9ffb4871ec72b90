/* schedulers.h: the pieces of the built-in scheduler classes that a variant may reuse (a class that
 * differs only by name, or by one scalar). Each class's own file defines its SchedulerClass
 * descriptor `scheduler_NAME`; scheduler_registry.c lists them. */
#ifndef SOWER_SCHEDULERS_H
#define SOWER_SCHEDULERS_H

#include <math.h>

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

/* DDIM's set_timesteps(N) spacing (leading, trailing, linspace; descending), range-checked; scheduler.c. */
int scheduler_spacing_timesteps(const SchedulerConfig *cfg, int N, int64_t *ts /* (N,) */) SOWER_MUST_CHECK;

/* np.round(np.arange(start, 0, -(T / N))).astype(int64) - 1 (trailing spacing from `start`, descending);
 * SOWER_EINPUT unless numpy makes exactly N values. */
int scheduler_trailing_timesteps(int start, int T, int N, int64_t *ts /* (N,) */) SOWER_MUST_CHECK;

/* _sigma_to_alpha_sigma_t (DPM-Solver, UniPC): alpha_t = 1 / (sigma**2 + 1) ** 0.5, sigma_t = sigma * alpha_t, as
 * float32 0-d tensors. */
static inline void sigma_alpha_sigma(float sigma, float *alpha_t, float *sigma_t)
{
    *alpha_t = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *sigma_t = sigma * *alpha_t;
}

/* convert_model_output (DPM-Solver, UniPC) at (alpha_t, sigma_t): the data prediction x0 (dpmsolver++, UniPC's
 * predict_x0) or the noise epsilon, from the model output m of sample x, float32 in diffusers' order. */
static inline float converted_output(PredictionType p, int data, float m, float x, float alpha_t, float sigma_t)
{
    if (data)
        return p == PRED_EPSILON ? (x - sigma_t * m) / alpha_t : p == PRED_V_PREDICTION ? alpha_t * x - sigma_t * m : m;
    return p == PRED_EPSILON ? m : p == PRED_V_PREDICTION ? alpha_t * m + sigma_t * x : (x - alpha_t * m) / sigma_t;
}

/* ---- Euler's family (euler.c, kdpm2.c): sigma-space steps ------------------------------------------------ */

/* Euler's, Heun's, LMS's and KDPM2's timesteps as float32 (N,), descending: linspace = np.linspace(0, T - 1, N,
 * dtype=float32)[::-1] (fractional), leading and trailing DDIM's integers. */
int scheduler_euler_timesteps(const Scheduler *s, float *ts /* (N,) */) SOWER_MUST_CHECK;

/* SOWER_EMODEL naming the key for prediction_type "sample", which Euler ancestral's and KDPM2's step() cannot
 * take (NotImplementedError). */
int scheduler_refuse_sample_prediction(const SchedulerConfig *cfg, const char *path) SOWER_MUST_CHECK;

/* pred_original_sample for model output m and sample x at sigma (s_churn 0: sigma_hat = sigma). */
static inline float predicted_x0(PredictionType p, float m, float x, float sigma, float v_out, float v_skip)
{
    if (p == PRED_EPSILON)
        return x - sigma * m;
    if (p == PRED_V_PREDICTION)
        return m * v_out + x / v_skip; /* model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1) */
    return m; /* "sample" */
}

/* The v-prediction scalars: -sigma / (sigma**2 + 1) ** 0.5 and sigma**2 + 1. */
static inline void v_scalars(float sigma, float *v_out, float *v_skip)
{
    *v_skip = sigma * sigma + 1.0f;
    *v_out = -sigma / sqrtf(*v_skip);
}

/* DPM-Solver's config checks and name hooks (dpm_multistep.c), shared by its multistep and singlestep classes:
 * final_sigmas_type "zero" refused with dpmsolver or deis (as diffusers refuses it); the ODE names refuse
 * sde-dpmsolver++ (their -sde twin runs it); from_config(config, algorithm_type="sde-dpmsolver++"); which of a
 * class's two entries a config read as it is belongs to. */
int scheduler_dpm_final_sigma_validate(const SchedulerConfig *cfg, const char *path) SOWER_MUST_CHECK;
int scheduler_dpm_ode_validate(const SchedulerConfig *cfg, const char *path) SOWER_MUST_CHECK;
void scheduler_dpm_sde_overrides(SchedulerConfig *cfg);
int scheduler_dpm_runs_ode(const SchedulerConfig *cfg);
int scheduler_dpm_runs_sde(const SchedulerConfig *cfg);

/* The scalars of DPM-Solver's update of a sample at sigma_from to sigma_to (diffusers' dpm_solver_first_order_update
 * and, with second_order, its second-order updates, whose r0 = (lambda(sigma_hi) - lambda(sigma_lo)) / h):
 * ODE x_t = a * sample - b * D0 [- or + (add_d1)] c1 * D1; SDE x_t = a * sample + b * D0 + c1 * D1 + z * noise. */
typedef struct {
    float a, b, c1, inv_r0, z;
    int add_d1, sde, second_order;
} DpmUpdate;
void scheduler_dpm_update(const SchedulerConfig *c, float sigma_to, float sigma_from, int second_order, float sigma_hi,
                          float sigma_lo, DpmUpdate *u);

/* The third-order updates' scalars (diffusers' dpmsolver++ or dpmsolver; it has no SDE third order) over the log-SNR
 * step h from the sample's sigma to sigmas[0] (t): from sigmas[1] (s0) for the multistep update, whose r0 = (lambda_s0
 * - lambda_s1) / h and r1 = (lambda_s1 - lambda_s2) / h; from sigmas[3] (s2, the group's start) for the singlestep
 * one (from_s2), whose r0 = (lambda_s0 - lambda_s2) / h, r1 = (lambda_s1 - lambda_s2) / h. x_t = a * sample - b * D0
 * [+ (dpmsolver++) or -] c1 * D1 - c2 * D2, each class forming its own D's. */
typedef struct {
    float a, b, c1, c2, r0, r1;
    int plus_plus;
} DpmThirdOrder;
void scheduler_dpm_third_order(const SchedulerConfig *c, const float sigmas[4] /* t, s0, s1, s2 */, int from_s2,
                               DpmThirdOrder *u);

/* One value's update: D0 = d0, D1 = (m0 - m1) / r0 (read only at second order), noise read only for the SDE. */
static inline float dpm_update_value(const DpmUpdate *u, float sample, float d0, float m0, float m1, float noise)
{
    float next = u->sde ? u->a * sample + u->b * d0 : u->a * sample - u->b * d0;
    if (u->second_order) {
        const float d1 = u->inv_r0 * (m0 - m1);
        next = u->add_d1 ? next + u->c1 * d1 : next - u->c1 * d1;
    }
    return u->sde ? next + u->z * noise : next;
}

/* DPMSolverMultistepScheduler's set_timesteps (integer timesteps up to lambda_min_clipped, interpolated or Karras
 * sigmas, the final one); UniPC's is the same but for its Karras "sigma_min" final sigma (dpm_multistep.c). */
int scheduler_dpm_set_timesteps(Scheduler *s) SOWER_MUST_CHECK;

/* ---- sigma schedules (sigmas.c): numpy's and torch's arithmetic as Euler's and DPM's set_timesteps use it */

/* ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5, float32 as torch computes it: sigma (T,). */
void sigma_table(const Scheduler *s, float *sigma /* (T,) */);
/* np.log of that table (numpy's own float32 log): log_sigmas (T,), what _sigma_to_t reads. */
void log_sigma_table(const Scheduler *s, const float *sigma /* (T,) */, float *log_sigma /* (T,) */);
/* np.linspace(start, stop, num)[i] in double (numpy: i * step + start, the last exactly stop). */
double numpy_linspace_at(double start, double stop, int num, int i);
/* np.interp(x, np.arange(T), fp): fp (T,) float32 values, read as doubles. */
double numpy_interp_arange(double x, const float *fp, int T);
/* torch.linspace(start, end, steps) in float32 as torch 1.13's CPU kernel computes it on one thread (scheduler.c). */
void torch_linspace(float *out /* (steps,) */, double start, double end, int64_t steps, RngKernel kernel);
/* _convert_to_karras: out (n,) = (max^(1/7) + ramp * (min^(1/7) - max^(1/7)))^7, ramp = linspace(0, 1, n). */
void karras_sigmas(double sigma_min, double sigma_max, int n, double *out /* (n,) */);
/* The schedule a config's use_karras_sigmas, use_exponential_sigmas or use_beta_sigmas makes of the interpolated
 * schedule's ends (sigma_min, sigma_max), descending, into out: Karras's (float64), _convert_to_exponential's
 * torch.linspace(math.log(max), math.log(min), n).exp() (float32: the kernel's linspace and Sleef exp), or
 * _convert_to_beta's min + scipy.stats.beta.ppf(1 - np.linspace(0, 1, n), 0.6, 0.6) * (max - min) (float64,
 * then torch.Tensor's float32). Out untouched when the config asks for none. */
int converted_sigmas(const Scheduler *s, double sigma_min, double sigma_max, int n, double *out /* (n,) */)
    SOWER_MUST_CHECK;
/* _sigma_to_t of a sigma that is a 0-d float32 torch tensor (the exponential and beta schedules are tensors, Karras's
 * a numpy array): torch's promotion finds the interval in float32, as sigma_to_t does, but computes the weight in
 * float64. */
double sigma_to_t_tensor(double sigma, const float *log_sigmas /* (T,) */, int T);
/* The keys DPM-Solver multistep and singlestep, DEIS and UniPC take but whose set_timesteps fails on them in diffusers
 * 0.31 (TypeError: linspace() steps None; NameError: log_sigmas): their SchedulerClass.failing_keys. */
#define SCHED_KEYS_FAILING_SIGMA_CONVERSIONS (SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | SCHED_KEY(KEY_USE_BETA_SIGMAS))
/* scipy.stats.beta.ppf(q, a, b) (the inverse of the regularised incomplete beta function I_x(a, b)) to a few
 * float64 ulps; a, b > 0. */
double beta_ppf(double q, double a, double b);
/* _sigma_to_t(sigma, log_sigmas): the fractional timestep of sigma; log_sigmas (T,) float32. */
double sigma_to_t(double sigma, const float *log_sigmas, int T);
/* Its parts: the clipped float32 weight w toward low_idx + 1, and low_idx. */
float sigma_to_t_weight(double sigma, const float *log_sigmas, int T, int *low_idx);
/* init_noise_sigma of the sigma-space classes (Euler's, KDPM2's, DPM SDE's): sigmas.max() over the first `count`
 * sigmas, or (max**2 + 1) ** 0.5 (float32) for leading spacing. */
float sigmas_init_noise_sigma(const Scheduler *s, int count);
/* The sigma after the last step: 0 ("zero") or sigma[0] ("sigma_min"). */
float final_sigma(const SchedulerConfig *cfg, const float *sigma /* (T,) */);
/* SOWER_EINPUT unless Karras, exponential or beta sigmas can be read off this schedule (two train timesteps at
 * least), naming the config's key. */
int karras_check(const Scheduler *s) SOWER_MUST_CHECK;
/* SOWER_EINPUT: the Karras sigma of step i has no finite timestep. */
int karras_not_finite(const Scheduler *s, int i) SOWER_MUST_CHECK;
/* After set_timesteps: every sigma (N + 1) and timestep (N, the int64 or the float ones) finite, the first two
 * timesteps distinct (diffusers' step index needs it) and, with distinct_sigmas (second-order DPM-Solver),
 * no two equal sigmas among the N steps'; SOWER_EINPUT naming the step otherwise. */
int sigmas_check(const Scheduler *s, const int64_t *timesteps, const float *unet_timesteps,
                 int distinct_sigmas) SOWER_MUST_CHECK;

#endif /* SOWER_SCHEDULERS_H */
