/* scheduler_step.h: one scheduler step for one value, shared by the host (scheduler.c, the CPU
 * backend) and the CUDA backend's kernel, so both compute it with the same operations in the same
 * order: no fused multiply-adds (-ffp-contract=off here, --fmad=false there) and IEEE division,
 * so a step on the GPU gives the host's bits. The scalars (square roots, variances) are worked out
 * once per step on the host by scheduler_step_coefficients (scheduler.h). */
#ifndef SOWER_SCHEDULER_STEP_H
#define SOWER_SCHEDULER_STEP_H

#ifdef __CUDACC__
#define SOWER_HOST_DEVICE __host__ __device__
#else
#define SOWER_HOST_DEVICE
#endif

/* What one step of diffusers' DDIMScheduler / DDPMScheduler does to every value, as float32
 * scalars in the order torch computes them (scheduler.c says where each comes from). */
typedef struct {
    int ddpm;                 /* 0: DDIM, 1: DDPM */
    int prediction;           /* PredictionType (scheduler.h) */
    int clip;                 /* clamp the predicted x0 to [lo, hi] */
    float lo, hi;
    int add_noise;            /* the step consumes noise (DDIM eta > 0; DDPM t > 0) */
    float sqrt_alpha_t, sqrt_beta_t;
    float sqrt_alpha_prev, direction_coeff, std_dev_t; /* DDIM */
    float x0_coeff, sample_coeff, noise_scale;         /* DDPM */
} StepCoefficients;

enum { STEP_PRED_EPSILON, STEP_PRED_V_PREDICTION, STEP_PRED_SAMPLE }; /* = PredictionType's order */

/* pred_original_sample.clamp(-r, r): torch's std::min(std::max(x, lo), hi), NaN passing through. */
SOWER_HOST_DEVICE static inline float step_clamp(float x, float lo, float hi)
{
    x = x < lo ? lo : x;
    return hi < x ? hi : x;
}

/* prev_sample for model output m, sample x and noise z (read only when k->add_noise). */
SOWER_HOST_DEVICE static inline float scheduler_step_value(const StepCoefficients *k, float m, float x, float z)
{
    float x0, eps = m;
    if (k->prediction == STEP_PRED_EPSILON) {
        x0 = (x - k->sqrt_beta_t * m) / k->sqrt_alpha_t;
    } else if (k->prediction == STEP_PRED_SAMPLE) {
        x0 = m;
        if (!k->ddpm)
            eps = (x - k->sqrt_alpha_t * x0) / k->sqrt_beta_t; /* from the unclipped x0 */
    } else { /* v-prediction */
        x0 = k->sqrt_alpha_t * x - k->sqrt_beta_t * m;
        if (!k->ddpm)
            eps = k->sqrt_alpha_t * m + k->sqrt_beta_t * x;
    }
    if (k->clip)
        x0 = step_clamp(x0, k->lo, k->hi);
    if (k->ddpm) {
        const float mean = k->x0_coeff * x0 + k->sample_coeff * x;
        /* pred_prev_sample + variance, where variance is the Python int 0 at t == 0: -0.0 becomes +0.0 */
        return k->add_noise ? mean + k->noise_scale * z : mean + 0.0f;
    }
    const float direction = k->direction_coeff * eps;
    const float prev = k->sqrt_alpha_prev * x0 + direction;
    return k->add_noise ? prev + k->std_dev_t * z : prev;
}

#endif /* SOWER_SCHEDULER_STEP_H */
