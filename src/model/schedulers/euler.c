/* euler.c: diffusers 0.31's EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and
 * HeunDiscreteScheduler and LMSDiscreteScheduler (scheduling_euler_discrete.py,
 * scheduling_euler_ancestral_discrete.py, scheduling_heun_discrete.py, scheduling_lms_discrete.py) with s_churn 0 (what the pipelines pass): sigma-space steps over the numpy
 * sigma schedule (sigmas.c), the model input divided by sqrt(sigma^2 + 1) (scheduler_input_divisor), the
 * first noise scaled by init_noise_sigma. Every per-value operation is float32 in diffusers' order. */
#include <math.h>
#include <stdlib.h>

#include "schedulers/schedulers.h"

/* The keys of EulerDiscreteScheduler.__init__; the ancestral class takes the first nine. */
#define SCHED_KEYS_EULER_A                                                                                   \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |              \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_PREDICTION_TYPE) |          \
     SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_STEPS_OFFSET) | SCHED_KEY(KEY_RESCALE_BETAS_ZERO_SNR))
#define SCHED_KEYS_EULER                                                                                     \
    (SCHED_KEYS_EULER_A | SCHED_KEY(KEY_INTERPOLATION_TYPE) | SCHED_KEY(KEY_USE_KARRAS_SIGMAS) |             \
     SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | SCHED_KEY(KEY_USE_BETA_SIGMAS) | SCHED_KEY(KEY_SIGMA_MIN) |     \
     SCHED_KEY(KEY_SIGMA_MAX) | SCHED_KEY(KEY_TIMESTEP_TYPE) | SCHED_KEY(KEY_FINAL_SIGMAS_TYPE))

static void euler_defaults(SchedulerConfig *cfg) { cfg->timestep_spacing = SPACING_LINSPACE; }

int scheduler_refuse_sample_prediction(const SchedulerConfig *cfg, const char *path)
{
    if (cfg->prediction_type == PRED_SAMPLE) /* step() raises NotImplementedError */
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: key 'prediction_type': expected \"epsilon\" or \"v_prediction\" "
                          "(%s has no \"sample\" step), found \"sample\"",
                          path, scheduler_class_name(cfg->kind));
    return SOWER_OK;
}

int scheduler_euler_timesteps(const Scheduler *s, float *ts)
{
    const int N = s->num_inference_steps, T = s->cfg.num_train_timesteps;
    if (s->cfg.timestep_spacing == SPACING_LINSPACE) {
        for (int i = 0; i < N; i++)
            ts[N - 1 - i] = (float)numpy_linspace_at(0.0, (double)(T - 1), N, i);
        return SOWER_OK;
    }
    int64_t *whole = malloc((size_t)N * sizeof *whole); /* (N,) */
    if (!whole)
        return SOWER_FAIL(SOWER_ENOMEM, "scheduler timesteps");
    int status = scheduler_spacing_timesteps(&s->cfg, N, whole);
    for (int i = 0; status == SOWER_OK && i < N; i++)
        ts[i] = (float)whole[i];
    free(whole);
    return status;
}

/* set_timesteps: sigmas = np.interp(timesteps, arange(T), sigma) (or Karras's, the exponential or the beta
 * schedule, whose timesteps are then _sigma_to_t's, not rounded), then the final sigma; all cast to float32. */
static int euler_set_timesteps(Scheduler *s)
{
    const int N = s->num_inference_steps, T = s->cfg.num_train_timesteps;
    int status = SOWER_OK;
    float *sigma = malloc((size_t)T * sizeof *sigma), *log_sigma = malloc((size_t)T * sizeof *log_sigma); /* (T,) */
    double *interp = malloc((size_t)N * sizeof *interp); /* (N,) */
    s->num_steps = N;
    s->unet_timesteps = malloc((size_t)N * sizeof *s->unet_timesteps);
    s->sigmas = malloc((size_t)(N + 1) * sizeof *s->sigmas);
    if (!sigma || !log_sigma || !interp || !s->unet_timesteps || !s->sigmas) {
        status = SOWER_FAIL(SOWER_ENOMEM, "scheduler sigmas");
        goto done;
    }
    SOWER_TRY_GOTO(scheduler_euler_timesteps(s, s->unet_timesteps), status, done);
    sigma_table(s, sigma);
    for (int i = 0; i < N; i++)
        interp[i] = numpy_interp_arange((double)s->unet_timesteps[i], sigma, T);
    if (s->cfg.use_karras_sigmas || s->cfg.use_exponential_sigmas || s->cfg.use_beta_sigmas) {
        const double lo = isnan(s->cfg.sigma_min) ? interp[N - 1] : s->cfg.sigma_min;
        const double hi = isnan(s->cfg.sigma_max) ? interp[0] : s->cfg.sigma_max;
        SOWER_TRY_GOTO(karras_check(s), status, done);
        SOWER_TRY_GOTO(converted_sigmas(s, lo, hi, N, interp), status, done);
        log_sigma_table(s, sigma, log_sigma);
        for (int i = 0; i < N; i++) /* Karras's sigmas a numpy array, the others a torch tensor */
            s->unet_timesteps[i] = (float)(s->cfg.use_karras_sigmas ? sigma_to_t(interp[i], log_sigma, T)
                                                                     : sigma_to_t_tensor(interp[i], log_sigma, T));
    }
    for (int i = 0; i < N; i++)
        s->sigmas[i] = (float)interp[i];
    s->sigmas[N] = final_sigma(&s->cfg, sigma);
    SOWER_TRY_GOTO(sigmas_check(s, NULL, s->unet_timesteps, 0), status, done);
    s->init_noise_sigma = sigmas_init_noise_sigma(s, N + 1);
done:
    free(sigma);
    free(log_sigma);
    free(interp);
    return status;
}

static void euler_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    (void)noise;
    const float sigma = s->sigmas[i], sigma_hat = sigma * 1.0f; /* sigma * (gamma + 1), gamma 0 */
    const float dt = s->sigmas[i + 1] - sigma_hat;
    float v_out, v_skip;
    v_scalars(sigma, &v_out, &v_skip);
    const PredictionType p = s->cfg.prediction_type;
    for (size_t j = 0; j < r->n; j++) {
        const float x0 = predicted_x0(p, m[j], x[j], sigma_hat, v_out, v_skip);
        const float derivative = (x[j] - x0) / sigma_hat;
        x[j] = x[j] + derivative * dt;
    }
}

static void euler_a_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    const float sigma = s->sigmas[i], from = sigma, to = s->sigmas[i + 1];
    /* sigma_up = (to**2 * (from**2 - to**2) / from**2) ** 0.5; sigma_down = (to**2 - sigma_up**2) ** 0.5 */
    const float up = sqrtf(to * to * (from * from - to * to) / (from * from));
    const float down = sqrtf(to * to - up * up);
    const float dt = down - sigma;
    float v_out, v_skip;
    v_scalars(sigma, &v_out, &v_skip);
    const PredictionType p = s->cfg.prediction_type;
    for (size_t j = 0; j < r->n; j++) {
        const float x0 = predicted_x0(p, m[j], x[j], sigma, v_out, v_skip);
        const float derivative = (x[j] - x0) / sigma;
        const float prev = x[j] + derivative * dt;
        x[j] = prev + noise[j] * up;
    }
}

/* ---- Heun: Euler's schedule, each step but the last taken twice (an Euler step, then the trapezoid) ---- */

/* The keys of HeunDiscreteScheduler.__init__ (it has no rescale_betas_zero_snr or final_sigmas_type). */
#define SCHED_KEYS_HEUN                                                                                     \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |             \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_PREDICTION_TYPE) |         \
     SCHED_KEY(KEY_USE_KARRAS_SIGMAS) | SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | SCHED_KEY(KEY_USE_BETA_SIGMAS) | \
     SCHED_KEY(KEY_CLIP_SAMPLE) | SCHED_KEY(KEY_CLIP_SAMPLE_RANGE) | SCHED_KEY(KEY_TIMESTEP_SPACING) |        \
     SCHED_KEY(KEY_STEPS_OFFSET))

enum { HEUN_SLOT_DERIVATIVE, HEUN_SLOT_SAMPLE, HEUN_SLOTS }; /* per value: prev_derivative, the Euler step's start */

static void heun_defaults(SchedulerConfig *cfg)
{
    euler_defaults(cfg);
    cfg->beta_start = 0.00085, cfg->beta_end = 0.012; /* "sensible defaults" in its __init__ */
    cfg->clip_sample = 0;
}

/* Euler's N timesteps and N + 1 sigmas, then torch.cat([x[:1], x[1:].repeat_interleave(2)]) of the timesteps
 * (2N - 1 UNet calls) and of the sigmas but their final 0 (2N). */
static int heun_set_timesteps(Scheduler *s)
{
    SOWER_TRY(euler_set_timesteps(s));
    const int N = s->num_inference_steps, calls = 2 * N - 1;
    float *ts = malloc((size_t)calls * sizeof *ts), *sigmas = malloc((size_t)(calls + 1) * sizeof *sigmas);
    if (!ts || !sigmas) {
        free(ts), free(sigmas);
        return SOWER_FAIL(SOWER_ENOMEM, "scheduler sigmas");
    }
    ts[0] = s->unet_timesteps[0], sigmas[0] = s->sigmas[0];
    for (int k = 1; k < N; k++) {
        ts[2 * k - 1] = ts[2 * k] = s->unet_timesteps[k];
        sigmas[2 * k - 1] = sigmas[2 * k] = s->sigmas[k];
    }
    sigmas[calls] = s->sigmas[N];
    free(s->unet_timesteps), free(s->sigmas);
    s->unet_timesteps = ts, s->sigmas = sigmas, s->num_steps = calls;
    return SOWER_OK;
}

/* Step i: even i an Euler step from sigmas[i] to sigmas[i + 1] (its derivative and start kept), odd i the
 * correction at sigmas[i] from the start of the pair, with the two derivatives averaged. */
static void heun_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    (void)noise;
    const int first = i % 2 == 0; /* state_in_first_order */
    const float sigma_hat = (first ? s->sigmas[i] : s->sigmas[i - 1]) * 1.0f; /* sigma * (gamma + 1) */
    const float sigma_next = first ? s->sigmas[i + 1] : s->sigmas[i];
    const float sigma_input = first ? sigma_hat : sigma_next;
    const float dt = sigma_next - sigma_hat; /* the first step's, kept for the second */
    float v_out, v_skip;
    v_scalars(sigma_input, &v_out, &v_skip);
    const float range = (float)s->cfg.clip_sample_range;
    float *derivative0 = r->slots + (size_t)HEUN_SLOT_DERIVATIVE * r->n, *start = r->slots + (size_t)HEUN_SLOT_SAMPLE * r->n;
    for (size_t j = 0; j < r->n; j++) {
        float x0 = predicted_x0(s->cfg.prediction_type, m[j], x[j], sigma_input, v_out, v_skip);
        if (s->cfg.clip_sample)
            x0 = step_clamp(x0, -range, range);
        if (first) {
            const float derivative = (x[j] - x0) / sigma_hat;
            derivative0[j] = derivative, start[j] = x[j];
            x[j] = x[j] + derivative * dt;
        } else {
            const float derivative = (derivative0[j] + (x[j] - x0) / sigma_next) / 2.0f;
            x[j] = start[j] + derivative * dt;
        }
    }
}

/* ---- LMS: linear multistep over the last 4 derivatives, Euler's schedule ------------------------------- */

#define SCHED_KEYS_LMS                                                                                      \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |             \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_USE_KARRAS_SIGMAS) |       \
     SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | SCHED_KEY(KEY_USE_BETA_SIGMAS) | SCHED_KEY(KEY_PREDICTION_TYPE) | \
     SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_STEPS_OFFSET))

enum { LMS_ORDER = 4 }; /* step()'s default order, what the pipeline uses */

/* get_lms_coefficient: the integral from sigmas[i] to sigmas[i + 1] of the Lagrange basis polynomial of node
 * `current` over sigmas[i], sigmas[i - 1], ... (order nodes), as diffusers computes it: scipy's quad (QUADPACK's
 * qags with epsrel 1e-4) of an integrand that torch evaluates in float32 ((float)tau - sigma, divided, multiplied in
 * node order). For a polynomial of degree <= 3 qags accepts its first 21-point Gauss-Kronrod estimate (dqk21), so
 * that sum, in double in QUADPACK's order over the float32 integrand, is diffusers' coefficient bit for bit. */
static const double qk21_nodes[11] = {
    0.995657163025808080735527280689003, 0.973906528517171720077964012084452, 0.930157491355708226001207180059508,
    0.865063366688984510732096688423493, 0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
    0.562757134668604683339000099272694, 0.433395394129247190799265943165784, 0.294392862701460198131126603103866,
    0.148874338981631210884826001129720, 0.0};
static const double qk21_kronrod_weights[11] = {
    0.011694638867371874278064396062192, 0.032558162307964727478818972459390, 0.054755896574351996031381300244580,
    0.075039674810919952767043140916190, 0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
    0.123491976262065851077958109831074, 0.134709217311473325928054001771707, 0.142775938577060080797094273138717,
    0.147739104901338491374841515972068, 0.149445554002916905664936468389821};

/* lms_derivative(tau): the basis polynomial in float32 (1.0 for a single node) */
static double lms_integrand(double tau, const float *sigmas, int order, int i, int current)
{
    float prod = 1.0f;
    for (int k = 0; k < order; k++)
        if (k != current)
            prod = prod * (((float)tau - sigmas[i - k]) / (sigmas[i - current] - sigmas[i - k]));
    return prod;
}

static double lms_coefficient(const float *sigmas, int order, int i, int current)
{
    const double a = sigmas[i], b = sigmas[i + 1], center = 0.5 * (a + b), half = 0.5 * (b - a);
    double kronrod = qk21_kronrod_weights[10] * lms_integrand(center, sigmas, order, i, current);
    for (int pass = 0; pass < 2; pass++) /* QUADPACK's order: the 10-point Gauss rule's nodes, then the others */
        for (int j = 0; j < 5; j++) {
            const int node = 2 * j + (pass == 0 ? 1 : 0);
            const double abscissa = half * qk21_nodes[node];
            const double sum = lms_integrand(center - abscissa, sigmas, order, i, current) +
                               lms_integrand(center + abscissa, sigmas, order, i, current);
            kronrod = kronrod + qk21_kronrod_weights[node] * sum;
        }
    return kronrod * half;
}

static void lms_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    (void)noise;
    const float sigma = s->sigmas[i];
    float v_out, v_skip;
    v_scalars(sigma, &v_out, &v_skip);
    const int order = i + 1 < LMS_ORDER ? i + 1 : LMS_ORDER;
    float coeff[LMS_ORDER]; /* Python floats, each rounded to float32 where it multiplies a tensor */
    for (int c = 0; c < order; c++)
        coeff[c] = (float)lms_coefficient(s->sigmas, order, i, c);
    /* derivatives, newest first: step i's in slot i % 4, step i - c's in slot (i - c) % 4 */
    float *slot[LMS_ORDER];
    for (int c = 0; c < order; c++)
        slot[c] = r->slots + (size_t)((i - c) % LMS_ORDER) * r->n;
    for (size_t j = 0; j < r->n; j++) {
        const float x0 = predicted_x0(s->cfg.prediction_type, m[j], x[j], sigma, v_out, v_skip);
        slot[0][j] = (x[j] - x0) / sigma;
        float sum = 0.0f + coeff[0] * slot[0][j]; /* Python's sum() starts from the int 0 */
        for (int c = 1; c < order; c++)
            sum = sum + coeff[c] * slot[c][j];
        x[j] = x[j] + sum;
    }
}

const SchedulerClass scheduler_euler = {
    .name = "euler",
    .class_name = "EulerDiscreteScheduler",
    .config_keys = SCHED_KEYS_EULER,
    .defaults = euler_defaults,
    .set_timesteps = euler_set_timesteps,
    .scales_input = 1,
    .floors_terminal_alpha = 1,
    .step = euler_step,
};

const SchedulerClass scheduler_euler_a = {
    .name = "euler-a",
    .class_name = "EulerAncestralDiscreteScheduler",
    .config_keys = SCHED_KEYS_EULER_A,
    .defaults = euler_defaults,
    .validate = scheduler_refuse_sample_prediction,
    .set_timesteps = euler_set_timesteps, /* the same schedule: use_karras_sigmas is not one of its keys */
    .draws_noise = 1,
    .scales_input = 1,
    .floors_terminal_alpha = 1,
    .step = euler_a_step,
};

const SchedulerClass scheduler_heun = {
    .name = "heun",
    .class_name = "HeunDiscreteScheduler",
    .config_keys = SCHED_KEYS_HEUN,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = heun_defaults,
    .set_timesteps = heun_set_timesteps,
    .history_slots = HEUN_SLOTS,
    .scales_input = 1,
    .step = heun_step,
};

const SchedulerClass scheduler_lms = {
    .name = "lms",
    .class_name = "LMSDiscreteScheduler",
    .config_keys = SCHED_KEYS_LMS,
    .defaults = euler_defaults,
    .set_timesteps = euler_set_timesteps,
    .history_slots = LMS_ORDER,
    .scales_input = 1,
    .step = lms_step,
};
