/* unipc.c: diffusers 0.31's UniPCMultistepScheduler (scheduling_unipc_multistep.py): at each step the UniC
 * corrector first redoes the sample the previous step predicted, from this step's model output (from the
 * second step on, unless disable_corrector names the previous step), then the UniP predictor steps on; order 1,
 * 2 or 3 with diffusers' warm-up and lower_order_final, B(h) = e^h - 1 ("bh2") or h ("bh1"), the data
 * (predict_x0) or noise form, over DPM-Solver's timesteps and sigmas (Karras too). The step's scalars are float32
 * 0-d tensor operations (log and expm1 as torch computes them: torch_math.h); the corrector's weights (order 2,
 * 3) and the order-3 predictor's solve their 2x2 or 3x3 systems as LAPACK's getf2/getrs do (partial pivoting;
 * diffusers' own LAPACK may order its operations otherwise: chains within a relative 1e-5). The per-value ones
 * are float32 in diffusers' order. The history per value: the last three converted model outputs and the sample
 * the corrector starts from. */
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

/* Per value: model_outputs[-1], [-2] and [-3] (converted: x0, or epsilon in the noise form), last_sample. */
enum { SLOT_OUTPUT, SLOT_OUTPUT_BEFORE, SLOT_OUTPUT_OLDER, SLOT_LAST_SAMPLE, UNIPC_SLOTS };
enum { UNIPC_MAX_ORDER = 3 };

static void unipc_defaults(SchedulerConfig *cfg) { cfg->timestep_spacing = SPACING_LINSPACE; }

/* DPM-Solver's schedule; with Karras sigmas, "sigma_min" ends on the last Karras sigma (DPM-Solver: the table's). */
static int unipc_set_timesteps(Scheduler *s)
{
    const SchedulerConfig *c = &s->cfg;
    if (c->final_sigmas_type == FINAL_SIGMA_ZERO && !c->lower_order_final && c->solver_order >= 2 &&
        s->num_inference_steps >= 2) /* one step is first order: finite */
        return SOWER_FAIL(SOWER_EINPUT,
                          "UniPC with lower_order_final false, solver_order %d and final_sigmas_type \"zero\": the last "
                          "of %d steps is of a higher order to sigma 0 and divides by 0 (diffusers 0.31 renders inf); "
                          "set final_sigmas_type \"sigma_min\" or lower_order_final true",
                          c->solver_order, s->num_inference_steps);
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
 * (or sigma_t) * B_h; h and the pieces of b (bk: h_phi_k * k! / B_h for k = 1, 2, 3). */
typedef struct {
    float a, c, d, h, hh, b[UNIPC_MAX_ORDER];
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
    h_phi_k = h_phi_k / u->hh - (float)(1.0 / 6.0); /* the Python float 1 / 6, rounded where torch subtracts it */
    u->b[2] = h_phi_k * 6.0f / B_h;
    u->a = x0 ? sigma_t / sigma_s0 : alpha_t / alpha_s0;
    u->c = (x0 ? alpha_t : sigma_t) * h_phi_1;
    u->d = (x0 ? alpha_t : sigma_t) * B_h;
}

/* rk = (lambda_si - lambda_s0) / h: the earlier step's place on this step's log-SNR interval. */
static float rk_of(const Scheduler *s, int si, int s0, float h)
{
    return (lambda_of(s->sigmas[si], s->cfg.torch_kernel) - lambda_of(s->sigmas[s0], s->cfg.torch_kernel)) / h;
}

/* torch.linalg.solve(A, b) for n <= 3, as LAPACK's sgesv: getf2's LU with partial pivoting (isamax: the first
 * of equal magnitudes), the column below the pivot scaled by the pivot's reciprocal, the rank-1 update; then getrs:
 * the row swaps on b, the unit lower and the upper triangular solves. a (n, n) row-major and b (n,) are
 * overwritten; x (n,). */
static void lapack_solve(int n, float a[UNIPC_MAX_ORDER][UNIPC_MAX_ORDER], float b[UNIPC_MAX_ORDER], float *x)
{
    for (int j = 0; j < n; j++) {
        int p = j;
        for (int q = j + 1; q < n; q++)
            p = fabsf(a[q][j]) > fabsf(a[p][j]) ? q : p;
        if (p != j) {
            for (int k = 0; k < n; k++) {
                const float t = a[j][k];
                a[j][k] = a[p][k], a[p][k] = t;
            }
            const float t = b[j];
            b[j] = b[p], b[p] = t;
        }
        const float reciprocal = 1.0f / a[j][j];
        for (int q = j + 1; q < n; q++) {
            a[q][j] = a[q][j] * reciprocal;
            for (int k = j + 1; k < n; k++)
                a[q][k] = a[q][k] - a[q][j] * a[j][k];
        }
    }
    for (int k = 0; k < n; k++) /* L y = b, L unit lower */
        for (int q = k + 1; q < n; q++)
            b[q] = b[q] - b[k] * a[q][k];
    for (int k = n - 1; k >= 0; k--) { /* U x = y */
        b[k] = b[k] / a[k][k];
        for (int q = 0; q < k; q++)
            b[q] = b[q] - b[k] * a[q][k];
    }
    for (int k = 0; k < n; k++)
        x[k] = b[k];
}

/* solve(R, b[:n]) for the n x n leading block of R, whose rows are rks ** 0, rks ** 1, ... with rks = [rk1, ..,
 * 1.0]: the corrector of order n solves all of its R (rhos_c), the predictor of order 3 the leading 2 x 2 block
 * (rhos_p, rks [rk1, rk2]; its order 2 is the fixed [0.5]). rks (n,). */
static void update_weights(int n, const float *rks, const float *b_all, float *rho)
{
    float a[UNIPC_MAX_ORDER][UNIPC_MAX_ORDER], b[UNIPC_MAX_ORDER];
    for (int row = 0; row < n; row++) {
        for (int k = 0; k < n; k++) /* torch.pow(rks, row): 1, rk, rk * rk */
            a[row][k] = row == 0 ? 1.0f : row == 1 ? rks[k] : rks[k] * rks[k];
        b[row] = b_all[row];
    }
    lapack_solve(n, a, b, rho);
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

    float *older = r->slots + (size_t)SLOT_OUTPUT_OLDER * r->n; /* (n,) model_outputs[-3] */
    int corrects = i > 0;
    for (int k = 0; corrects && k < c->n_disable_corrector; k++)
        corrects = c->disable_corrector[k] != i - 1;
    UniScalars uc = {0}, up = {0};
    int kc = 0; /* the corrector's order: the previous step's */
    float rk_c[UNIPC_MAX_ORDER - 1] = {0}, rho_c[UNIPC_MAX_ORDER] = {0.5f}; /* order 1: rhos_c = [0.5] */
    if (corrects) { /* multistep_uni_c_bh_update(this step's output, last_sample, order = the previous step's) */
        kc = order_at(s, i - 1);
        uni_scalars(s, s->sigmas[i], s->sigmas[i - 1], &uc);
        for (int k = 0; k + 1 < kc; k++) /* rk of sigmas[i - 2], sigmas[i - 3] against sigmas[i - 1] */
            rk_c[k] = rk_of(s, i - 2 - k, i - 1, uc.h);
        if (kc >= 2)
            update_weights(kc, (const float[]){rk_c[0], kc == 3 ? rk_c[1] : 1.0f, 1.0f}, uc.b, rho_c);
    }
    const int kp = order_at(s, i);
    uni_scalars(s, s->sigmas[i + 1], s->sigmas[i], &up);
    float rk_p[UNIPC_MAX_ORDER - 1] = {0}, rho_p[UNIPC_MAX_ORDER] = {0.5f}; /* order 2: rhos_p = [0.5] */
    for (int k = 0; k + 1 < kp; k++) /* rk of sigmas[i - 1], sigmas[i - 2] against sigmas[i] */
        rk_p[k] = rk_of(s, i - 1 - k, i, up.h);
    if (kp == 3)
        update_weights(2, rk_p, up.b, rho_p); /* solve(R[:-1, :-1], b[:-1]) */
    const float rho_c_last = rho_c[kc > 0 ? kc - 1 : 0];

    for (size_t j = 0; j < r->n; j++) {
        const float model = converted_output(p, c->predict_x0, m[j], x[j], alpha_i, sigma_i); /* at sigmas[i] */
        float sample = x[j];
        if (corrects) { /* x_t_ - d * (corr_res + rhos_c[-1] * (model_t - m0)), from last_sample */
            const float m0 = out[j];
            const float base = uc.a * last[j] - uc.c * m0;
            const float d1_t = model - m0;
            float corr_res = 0.0f; /* a Python int 0 at order 1 */
            if (kc >= 2) /* einsum("k,bk...", rhos_c[:-1], D1s), D1s[k] = (m_{k+1} - m0) / rk */
                corr_res = rho_c[0] * ((before[j] - m0) / rk_c[0]);
            if (kc == 3)
                corr_res = corr_res + rho_c[1] * ((older[j] - m0) / rk_c[1]);
            sample = base - uc.d * (corr_res + rho_c_last * d1_t);
        }
        older[j] = before[j];
        before[j] = out[j];
        out[j] = model;
        last[j] = sample;
        /* multistep_uni_p_bh_update: x_t_ - d * pred_res, pred_res = einsum(rhos_p, D1s) (order 2: 0.5 * D1s[0]) */
        const float base = up.a * sample - up.c * model;
        float pred_res = 0.0f;
        if (kp >= 2)
            pred_res = rho_p[0] * ((before[j] - model) / rk_p[0]);
        if (kp == 3)
            pred_res = pred_res + rho_p[1] * ((older[j] - model) / rk_p[1]);
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
    .failing_keys = SCHED_KEYS_FAILING_SIGMA_CONVERSIONS,
    .hidden_keys = SCHED_KEY(KEY_SIGMA_MIN) | SCHED_KEY(KEY_SIGMA_MAX), /* _convert_to_karras: hasattr(config, ...) */
    .defaults = unipc_defaults,
    .validate = unipc_validate,
    .set_timesteps = unipc_set_timesteps,
    .history_slots = UNIPC_SLOTS,
    .max_solver_order = UNIPC_MAX_ORDER,
    .floors_terminal_alpha = 1,
    .step = unipc_step,
};
