/* unipc.c: diffusers 0.31's UniPCMultistepScheduler (scheduling_unipc_multistep.py): at each step the UniC
 * corrector first redoes the sample the previous step predicted, from this step's model output (from the
 * second step on, unless disable_corrector names the previous step), then the UniP predictor steps on; order 1
 * or 2 with diffusers' warm-up and lower_order_final, B(h) = e^h - 1 ("bh2") or h ("bh1"), the data
 * (predict_x0) or noise form, over DPM-Solver's timesteps and sigmas (Karras too). The step's scalars are float32
 * 0-d tensor operations (log and expm1 as torch computes them: torch_math.h); the order-2 corrector's weights
 * solve a 2x2 system as LAPACK's getrf/getrs do (partial pivoting). The per-value ones are float32 in diffusers'
 * order. The history per value: the last two converted model outputs and the sample the corrector starts from. */
#include <math.h>

#include "schedulers/schedulers.h"
#include "schedulers/torch_math.h"

#define SCHED_KEYS_UNIPC                                                                                          \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |                 \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_SOLVER_ORDER) |                \
     SCHED_KEY(KEY_PREDICTION_TYPE) | SCHED_KEY(KEY_THRESHOLDING) | SCHED_KEY(KEY_DYNAMIC_THRESHOLDING_RATIO) |  \
     SCHED_KEY(KEY_SAMPLE_MAX_VALUE) | SCHED_KEY(KEY_PREDICT_X0) | SCHED_KEY(KEY_SOLVER_TYPE) |                 \
     SCHED_KEY(KEY_LOWER_ORDER_FINAL) | SCHED_KEY(KEY_DISABLE_CORRECTOR) | SCHED_KEY(KEY_SOLVER_P) |            \
     SCHED_KEY(KEY_USE_KARRAS_SIGMAS) | SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS) | SCHED_KEY(KEY_USE_BETA_SIGMAS) | \
     SCHED_KEY(KEY_TIMESTEP_SPACING) | SCHED_KEY(KEY_STEPS_OFFSET) | SCHED_KEY(KEY_FINAL_SIGMAS_TYPE) |         \
     SCHED_KEY(KEY_RESCALE_BETAS_ZERO_SNR))

/* Per value: model_outputs[-1] and [-2] (converted: x0, or epsilon in the noise form), last_sample. */
enum { SLOT_OUTPUT, SLOT_OUTPUT_BEFORE, SLOT_LAST_SAMPLE, UNIPC_SLOTS };

static void unipc_defaults(SchedulerConfig *cfg) { cfg->timestep_spacing = SPACING_LINSPACE; }

/* DPM-Solver's schedule; with Karras sigmas, "sigma_min" ends on the last Karras sigma (DPM-Solver: the table's). */
static int unipc_set_timesteps(Scheduler *s)
{
    const SchedulerConfig *c = &s->cfg;
    if (c->final_sigmas_type == FINAL_SIGMA_ZERO && !c->lower_order_final && c->solver_order == 2 &&
        s->num_inference_steps >= 2) /* one step is first order: finite */
        return SOWER_FAIL(SOWER_EINPUT,
                          "UniPC with lower_order_final false, solver_order 2 and final_sigmas_type \"zero\": the last of %d "
                          "steps is second order to sigma 0 and divides by 0 (diffusers 0.31 renders inf); set "
                          "final_sigmas_type \"sigma_min\" or lower_order_final true",
                          s->num_inference_steps);
    SOWER_TRY(scheduler_dpm_set_timesteps(s));
    if (s->cfg.use_karras_sigmas && s->cfg.final_sigmas_type == FINAL_SIGMA_MIN)
        s->sigmas[s->num_steps] = s->sigmas[s->num_steps - 1];
    return SOWER_OK;
}

/* self.this_order at step i: lower_order_final caps it by the steps left, the warm-up by the steps done. */
static int order_at(const Scheduler *s, int i)
{
    const int order = s->cfg.solver_order, left = s->num_steps - i;
    const int capped = s->cfg.lower_order_final && left < order ? left : order;
    const int done = i < order ? i : order; /* lower_order_nums */
    return capped < done + 1 ? capped : done + 1;
}

static float lambda_of(float sigma, RngKernel k)
{
    float alpha_t, sigma_t;
    sigma_alpha_sigma(sigma, &alpha_t, &sigma_t);
    return torch_logf(alpha_t, k) - torch_logf(sigma_t, k);
}

/* The scalars both updates share, for the step from sigma_s0 to sigma_t: x_t = a * x - c * m0 - d * (residual),
 * a = sigma_t / sigma_s0 (data form) or alpha_t / alpha_s0, c = alpha_t (or sigma_t) * h_phi_1, d = alpha_t
 * (or sigma_t) * B_h; h and the pieces of b (bk: h_phi_k * k! / B_h for k = 1, 2). */
typedef struct {
    float a, c, d, h, hh, b[2];
} UniScalars;

static void uni_scalars(const Scheduler *s, float sigma_t_in, float sigma_s0_in, UniScalars *u)
{
    const int x0 = s->cfg.predict_x0;
    float alpha_t, sigma_t, alpha_s0, sigma_s0;
    sigma_alpha_sigma(sigma_t_in, &alpha_t, &sigma_t);
    sigma_alpha_sigma(sigma_s0_in, &alpha_s0, &sigma_s0);
    const RngKernel k = s->cfg.torch_kernel;
    const float lambda_t = torch_logf(alpha_t, k) - torch_logf(sigma_t, k),
                lambda_s0 = torch_logf(alpha_s0, k) - torch_logf(sigma_s0, k);
    u->h = lambda_t - lambda_s0;
    u->hh = x0 ? -u->h : u->h;
    const float h_phi_1 = torch_expm1f(u->hh, k);
    const float B_h = s->cfg.solver_bh1 ? u->hh : torch_expm1f(u->hh, k);
    /* b.append(h_phi_k * factorial_i / B_h); factorial_i *= i + 1; h_phi_k = h_phi_k / hh - 1 / factorial_i */
    float h_phi_k = h_phi_1 / u->hh - 1.0f;
    u->b[0] = h_phi_k * 1.0f / B_h;
    h_phi_k = h_phi_k / u->hh - 0.5f;
    u->b[1] = h_phi_k * 2.0f / B_h;
    u->a = x0 ? sigma_t / sigma_s0 : alpha_t / alpha_s0;
    u->c = (x0 ? alpha_t : sigma_t) * h_phi_1;
    u->d = (x0 ? alpha_t : sigma_t) * B_h;
}

/* rk = (lambda_si - lambda_s0) / h: the earlier step's place on this step's log-SNR interval. */
static float rk_of(const Scheduler *s, int si, int s0, float h)
{
    return (lambda_of(s->sigmas[si], s->cfg.torch_kernel) - lambda_of(s->sigmas[s0], s->cfg.torch_kernel)) / h;
}

/* torch.linalg.solve(R, b) for R = [[1, 1], [rk, 1]] (rows rks ** 0 and rks ** 1, rks = [rk, 1]): LU with
 * partial pivoting, the column below the pivot scaled by the pivot's reciprocal (getrf), then the two triangular
 * solves (getrs). rho (2,). */
static void solve_corrector_weights(float rk, const float b[2], float rho[2])
{
    float a00 = 1.0f, a01 = 1.0f, a10 = rk, a11 = 1.0f, b0 = b[0], b1 = b[1];
    if (fabsf(a10) > fabsf(a00)) { /* row swap (isamax takes the first of equal magnitudes) */
        float t = a00; a00 = a10; a10 = t;
        t = a01; a01 = a11; a11 = t;
        t = b0; b0 = b1; b1 = t;
    }
    const float l = a10 * (1.0f / a00);
    const float u11 = a11 - l * a01;
    const float y1 = b1 - l * b0;
    rho[1] = y1 / u11;
    rho[0] = (b0 - a01 * rho[1]) / a00;
}

static void unipc_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    (void)noise;
    const SchedulerConfig *c = &s->cfg;
    float alpha_i, sigma_i;
    sigma_alpha_sigma(s->sigmas[i], &alpha_i, &sigma_i);
    const PredictionType p = c->prediction_type;
    float *out = r->slots + (size_t)SLOT_OUTPUT * r->n;        /* (n,) model_outputs[-1] */
    float *before = r->slots + (size_t)SLOT_OUTPUT_BEFORE * r->n; /* (n,) model_outputs[-2] */
    float *last = r->slots + (size_t)SLOT_LAST_SAMPLE * r->n;  /* (n,) last_sample */

    int corrects = i > 0;
    for (int k = 0; corrects && k < c->n_disable_corrector; k++)
        corrects = c->disable_corrector[k] != i - 1;
    UniScalars uc = {0}, up = {0};
    int corrector_order = 0;
    float rk_c = 0.0f, rho_c[2] = {0.5f, 0.0f}; /* order 1: rhos_c = [0.5] */
    if (corrects) { /* multistep_uni_c_bh_update(this step's output, last_sample, order = the previous step's) */
        corrector_order = order_at(s, i - 1);
        uni_scalars(s, s->sigmas[i], s->sigmas[i - 1], &uc);
        if (corrector_order == 2) {
            rk_c = rk_of(s, i - 2, i - 1, uc.h);
            solve_corrector_weights(rk_c, uc.b, rho_c);
        }
    }
    const int predictor_order = order_at(s, i);
    uni_scalars(s, s->sigmas[i + 1], s->sigmas[i], &up);
    const float rk_p = predictor_order == 2 ? rk_of(s, i - 1, i, up.h) : 0.0f;
    const float rho_c_last = corrector_order == 2 ? rho_c[1] : rho_c[0];

    for (size_t j = 0; j < r->n; j++) {
        const float model = converted_output(p, c->predict_x0, m[j], x[j], alpha_i, sigma_i); /* at sigmas[i] */
        float sample = x[j];
        if (corrects) { /* x_t_ - d * (corr_res + rhos_c[-1] * (model_t - m0)), from last_sample */
            const float m0 = out[j];
            const float base = uc.a * last[j] - uc.c * m0;
            const float d1_t = model - m0;
            const float corr = corrector_order == 2 ? rho_c[0] * ((before[j] - m0) / rk_c) + rho_c_last * d1_t
                                                    : 0.0f + rho_c_last * d1_t; /* corr_res = 0, a Python int */
            sample = base - uc.d * corr;
        }
        before[j] = out[j];
        out[j] = model;
        last[j] = sample;
        /* multistep_uni_p_bh_update: x_t_ - d * pred_res, pred_res = 0.5 * (m1 - m0) / rk at order 2, else 0 */
        const float base = up.a * sample - up.c * model;
        const float pred_res = predictor_order == 2 ? 0.5f * ((before[j] - model) / rk_p) : 0.0f;
        x[j] = base - up.d * pred_res;
    }
}

/* A last step to sigma 0 is NaN in two forms whatever the step count (diffusers 0.31 renders it without a word):
 * B(h) = h ("bh1") and the noise form (sigma_t * e^h = 0 * inf); a second-order last step (rk = 0) is refused by
 * set_timesteps, where the step count is known. */
static int unipc_validate(const SchedulerConfig *cfg, const char *path)
{
    if (cfg->final_sigmas_type != FINAL_SIGMA_ZERO)
        return SOWER_OK;
    const char *why = cfg->solver_bh1    ? "with solver_type \"bh1\" (B(h) = h is infinite at sigma 0)"
                      : !cfg->predict_x0 ? "with predict_x0 false (sigma 0 times an infinite e^h)"
                                         : NULL;
    if (!why)
        return SOWER_OK;
    return SOWER_FAIL(SOWER_EMODEL,
                      "%s: key 'final_sigmas_type': expected \"sigma_min\" %s: UniPC's last step to sigma 0 is "
                      "NaN or infinite there, as diffusers 0.31 renders it, found \"zero\"",
                      path, why);
}

const SchedulerClass scheduler_unipc = {
    .name = "unipc",
    .class_name = "UniPCMultistepScheduler",
    .config_keys = SCHED_KEYS_UNIPC,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = unipc_defaults,
    .validate = unipc_validate,
    .set_timesteps = unipc_set_timesteps,
    .history_slots = UNIPC_SLOTS,
    .floors_terminal_alpha = 1,
    .step = unipc_step,
};
