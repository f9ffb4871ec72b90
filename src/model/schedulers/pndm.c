/* pndm.c: diffusers 0.31's PNDMScheduler (scheduling_pndm.py), Stable Diffusion 1.x's default: pseudo
 * linear multistep (PLMS) steps, after 12 Runge-Kutta (PRK) calls unless skip_prk_steps. Each call
 * moves the sample with _get_prev_sample from a combination of the model outputs it has kept; every
 * per-value operation is float32 in diffusers' order.
 *
 * History per value (SchedulerRun.slots): the last four kept model outputs (`ets`, a ring; stored counts
 * them), the sample a Runge-Kutta cycle or the first PLMS pair starts from (`cur_sample`), and the
 * Runge-Kutta sum (`cur_model_output`). */
#include <assert.h>
#include <math.h>
#include <stdlib.h>

#include "schedulers/schedulers.h"

#define SCHED_KEYS_PNDM                                                                                       \
    (SCHED_KEY(KEY_NUM_TRAIN_TIMESTEPS) | SCHED_KEY(KEY_BETA_START) | SCHED_KEY(KEY_BETA_END) |               \
     SCHED_KEY(KEY_BETA_SCHEDULE) | SCHED_KEY(KEY_TRAINED_BETAS) | SCHED_KEY(KEY_SKIP_PRK_STEPS) |            \
     SCHED_KEY(KEY_SET_ALPHA_TO_ONE) | SCHED_KEY(KEY_PREDICTION_TYPE) | SCHED_KEY(KEY_TIMESTEP_SPACING) |      \
     SCHED_KEY(KEY_STEPS_OFFSET))

enum { ETS = 4, SLOT_CUR_SAMPLE = ETS, SLOT_CUR_MODEL_OUTPUT, PNDM_SLOTS };
enum { PRK_CALLS = 12 }; /* len(prk_timesteps) with pndm_order 4 */

static void pndm_defaults(SchedulerConfig *cfg)
{
    cfg->set_alpha_to_one = 0;
    cfg->skip_prk_steps = 0;
}

static int pndm_validate(const SchedulerConfig *cfg, const char *path)
{
    if (cfg->prediction_type == PRED_SAMPLE) /* _get_prev_sample raises */
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: key 'prediction_type': expected \"epsilon\" or \"v_prediction\" (PNDMScheduler "
                          "has no \"sample\" step), found \"sample\"",
                          path);
    return SOWER_OK;
}

static int runge_kutta(const Scheduler *s) { return !s->cfg.skip_prk_steps; }

/* set_timesteps: DDIM's N timesteps d[0] > ... > d[N-1]; PLMS alone runs d[0], d[1], d[1], d[2], ...
 * (N + 1 calls); with Runge-Kutta, the four largest with half steps h = T // N // 2 between them,
 * d[0], d[1]+h, d[1]+h, d[1], d[1], d[2]+h, ..., d[3], then PLMS over d[3], ..., d[N-1] (N + 9). */
static int pndm_set_timesteps(Scheduler *s)
{
    const int N = s->num_inference_steps;
    if (runge_kutta(s) && N < 4)
        return SOWER_FAIL(SOWER_EINPUT,
                          "num_inference_steps %d: PNDM's Runge-Kutta warm-up (skip_prk_steps false) needs at "
                          "least 4 (diffusers 0.31 fails below)",
                          N);
    int64_t *d = malloc((size_t)N * sizeof *d); /* (N,) descending */
    if (!d)
        return SOWER_FAIL(SOWER_ENOMEM, "scheduler timesteps");
    int status = scheduler_spacing_timesteps(&s->cfg, N, d);
    s->num_steps = runge_kutta(s) ? N + 9 : N > 1 ? N + 1 : 1;
    s->timesteps = status == SOWER_OK ? malloc((size_t)s->num_steps * sizeof *s->timesteps) : NULL;
    if (status == SOWER_OK && !s->timesteps)
        status = SOWER_FAIL(SOWER_ENOMEM, "scheduler timesteps");
    if (status == SOWER_OK && !runge_kutta(s)) {
        int k = 0;
        for (int i = 0; i < N; i++) {
            s->timesteps[k++] = d[i];
            if (i == 1)
                s->timesteps[k++] = d[i]; /* the second timestep twice */
        }
        assert(k == s->num_steps);
    } else if (status == SOWER_OK) {
        const int64_t h = s->cfg.num_train_timesteps / N / 2;
        /* prk_timesteps[::-1] of [a, a+h, a+h, b, b, b+h, b+h, c, c, c+h, c+h, d] for a < b < c < d */
        const int64_t prk[PRK_CALLS] = {d[0],     d[1] + h, d[1] + h, d[1], d[1], d[2] + h,
                                        d[2] + h, d[2],     d[2],     d[3] + h, d[3] + h, d[3]};
        for (int k = 0; k < PRK_CALLS; k++)
            s->timesteps[k] = prk[k];
        for (int i = 3; i < N; i++) /* _timesteps[:-3][::-1] */
            s->timesteps[PRK_CALLS + i - 3] = d[i];
    }
    free(d);
    return status;
}

/* _get_prev_sample's scalars for (timestep, prev_timestep), as float32 0-d tensors. */
typedef struct {
    float sqrt_a, sqrt_b;     /* alpha_prod_t ** 0.5, beta_prod_t ** 0.5 (v-prediction) */
    float sample_coeff;       /* (alpha_prod_t_prev / alpha_prod_t) ** 0.5 */
    float alpha_diff, denom;  /* alpha_prod_t_prev - alpha_prod_t; model_output_denom_coeff */
} PrevSample;

static PrevSample prev_sample_scalars(const Scheduler *s, int64_t t, int64_t prev_t)
{
    const float a = s->alphas_cumprod[t];
    const float a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : s->final_alpha_cumprod;
    const float b = 1.0f - a, b_prev = 1.0f - a_prev;
    PrevSample k;
    k.sqrt_a = sqrtf(a), k.sqrt_b = sqrtf(b);
    k.sample_coeff = sqrtf(a_prev / a);
    /* alpha_prod_t * beta_prod_t_prev ** (0.5) + (alpha_prod_t * beta_prod_t * alpha_prod_t_prev) ** (0.5) */
    k.denom = a * sqrtf(b_prev) + sqrtf(a * b * a_prev);
    k.alpha_diff = a_prev - a;
    return k;
}

static inline float prev_value(const PrevSample *k, PredictionType p, float x, float e)
{
    if (p == PRED_V_PREDICTION)
        e = k->sqrt_a * e + k->sqrt_b * x;
    return k->sample_coeff * x - k->alpha_diff * e / k->denom;
}

static float *slot(SchedulerRun *r, int index) { return r->slots + (size_t)index * r->n; }
/* ets[-back] (back = 1: the newest) */
static float *ets(SchedulerRun *r, int back) { return slot(r, (r->stored - back) % ETS); }

/* step_prk: call c of the 12, timestep t (the pipeline's). */
static void prk_step(const Scheduler *s, SchedulerRun *r, int c, const float *m, float *x)
{
    const int64_t h = s->cfg.num_train_timesteps / s->num_inference_steps / 2;
    const int64_t prev_t = s->timesteps[c] - (c % 2 ? 0 : h);
    const PrevSample k = prev_sample_scalars(s, s->timesteps[c / 4 * 4], prev_t);
    const PredictionType p = s->cfg.prediction_type;
    float *cur_sample = slot(r, SLOT_CUR_SAMPLE), *cur_out = slot(r, SLOT_CUR_MODEL_OUTPUT); /* (n,) each */
    float *kept = c % 4 == 0 ? slot(r, r->stored % ETS) : NULL;
    const float sixth = (float)(1.0 / 6), third = (float)(1.0 / 3);
    for (size_t j = 0; j < r->n; j++) {
        float e = m[j];
        switch (c % 4) {
        case 0: /* cur_model_output (0) += 1/6 * m; ets.append(m); cur_sample = sample */
            cur_out[j] = 0.0f + sixth * m[j];
            kept[j] = m[j];
            cur_sample[j] = x[j];
            break;
        case 1:
        case 2:
            cur_out[j] = cur_out[j] + third * m[j];
            break;
        default: /* model_output = cur_model_output + 1/6 * m; cur_model_output = 0 */
            e = cur_out[j] + sixth * m[j];
            cur_out[j] = 0.0f;
        }
        x[j] = prev_value(&k, p, cur_sample[j], e);
    }
    if (kept)
        r->stored++;
}

/* step_plms: call c (counter), with the Runge-Kutta calls before it or not. */
static void plms_step(const Scheduler *s, SchedulerRun *r, int c, const float *m, float *x)
{
    int64_t t = s->timesteps[c], prev_t = t - s->step_ratio;
    const int pair = !runge_kutta(s) && c == 1; /* the repeated timestep: a second look from cur_sample */
    if (pair) {
        prev_t = t;
        t = t + s->step_ratio;
    } else { /* ets = ets[-3:] + [model_output] */
        float *kept = slot(r, r->stored % ETS);
        for (size_t j = 0; j < r->n; j++)
            kept[j] = m[j];
        r->stored++;
    }
    const int n_ets = r->stored < ETS ? r->stored : ETS;
    const PrevSample k = prev_sample_scalars(s, t, prev_t);
    const PredictionType p = s->cfg.prediction_type;
    float *cur_sample = slot(r, SLOT_CUR_SAMPLE); /* (n,) */
    const float *e1 = ets(r, 1), *e2 = n_ets >= 2 ? ets(r, 2) : NULL, *e3 = n_ets >= 3 ? ets(r, 3) : NULL,
                *e4 = n_ets >= 4 ? ets(r, 4) : NULL;
    const float quarter_sixth = (float)(1.0 / 24);
    for (size_t j = 0; j < r->n; j++) {
        float e, from = x[j];
        if (n_ets == 1 && !pair) { /* the first call: keep the sample */
            e = m[j];
            cur_sample[j] = x[j];
        } else if (n_ets == 1) { /* (model_output + ets[-1]) / 2 from cur_sample */
            e = (m[j] + e1[j]) / 2.0f;
            from = cur_sample[j];
        } else if (n_ets == 2) {
            e = (3.0f * e1[j] - e2[j]) / 2.0f;
        } else if (n_ets == 3) {
            e = (23.0f * e1[j] - 16.0f * e2[j] + 5.0f * e3[j]) / 12.0f;
        } else {
            e = quarter_sixth * (55.0f * e1[j] - 59.0f * e2[j] + 37.0f * e3[j] - 9.0f * e4[j]);
        }
        x[j] = prev_value(&k, p, from, e);
    }
}

static void pndm_step(const Scheduler *s, SchedulerRun *r, int i, const float *m, float *x, const float *noise)
{
    (void)noise;
    if (runge_kutta(s) && i < PRK_CALLS)
        prk_step(s, r, i, m, x);
    else
        plms_step(s, r, i, m, x);
}

const SchedulerClass scheduler_pndm = {
    .name = "pndm",
    .class_name = "PNDMScheduler",
    .config_keys = SCHED_KEYS_PNDM,
    .final_alpha_cumprod = scheduler_ddim_final_alpha_cumprod, /* 1 if set_alpha_to_one else alphas_cumprod[0] */
    .defaults = pndm_defaults,
    .validate = pndm_validate,
    .set_timesteps = pndm_set_timesteps,
    .history_slots = PNDM_SLOTS,
    .step = pndm_step,
};
