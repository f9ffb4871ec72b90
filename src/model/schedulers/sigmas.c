/* sigmas.c: the sigma schedules of diffusers 0.31's Euler and DPM-Solver schedulers, with the
 * arithmetic numpy 1.24 and torch 1.13 use in their set_timesteps (no fused multiply-adds: this
 * library is built with -ffp-contract=off, and numpy's baseline x86-64 build has no FMA).
 *
 * np.log of the float32 sigma table is numpy's own SIMD logf (numpy_logf, torch_math.h), bit for bit. Where the bits
 * may differ from numpy: np.log of a float64 sigma (sigma_to_t) is numpy's SIMD log on AVX-512 machines, sower's
 * the C library's: within an ulp, and only the fractional timesteps of Karras schedules read it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "schedulers/schedulers.h"
#include "schedulers/torch_math.h"

void sigma_table(const Scheduler *s, float *sigma)
{
    const float *ac = s->alphas_cumprod;
    for (int t = 0; t < s->cfg.num_train_timesteps; t++)
        sigma[t] = sqrtf((1.0f - ac[t]) / ac[t]); /* (((1 - ac) / ac) ** 0.5), float32 */
}

void log_sigma_table(const Scheduler *s, const float *sigma, float *log_sigma)
{
    for (int t = 0; t < s->cfg.num_train_timesteps; t++)
        log_sigma[t] = numpy_logf(sigma[t], s->cfg.torch_kernel);
}

double numpy_linspace_at(double start, double stop, int num, int i)
{
    if (num > 1 && i == num - 1)
        return stop; /* y[-1] = stop */
    const int div = num - 1;
    if (div <= 0)
        return (double)i * (stop - start) + start; /* step = nan; y = y * delta + start */
    const double step = (stop - start) / (double)div;
    return (double)i * step + start;
}

double numpy_interp_arange(double x, const float *fp, int T)
{
    if (isnan(x))
        return x;
    if (x < 0.0)
        return fp[0]; /* left */
    if (x >= (double)(T - 1))
        return fp[T - 1]; /* right, or the last point itself */
    const int j = (int)floor(x); /* binary_search_with_guess over 0..T-1 */
    if ((double)j == x)
        return fp[j]; /* "avoid potential non-finite interpolation" */
    const double slope = ((double)fp[j + 1] - (double)fp[j]) / (double)((j + 1) - j);
    double y = slope * (x - (double)j) + (double)fp[j];
    if (isnan(y)) { /* "if we get nan in one direction, try the other" */
        y = slope * (x - (double)(j + 1)) + (double)fp[j + 1];
        if (isnan(y) && fp[j] == fp[j + 1])
            y = fp[j];
    }
    return y;
}

void karras_sigmas(double sigma_min, double sigma_max, int n, double *out)
{
    const double rho = 7.0;
    volatile double inv_rho = 1.0 / rho; /* Python's float ** float is libm pow: keep it a pow */
    const double min_inv_rho = pow(sigma_min, inv_rho), max_inv_rho = pow(sigma_max, inv_rho);
    for (int i = 0; i < n; i++) {
        const double ramp = numpy_linspace_at(0.0, 1.0, n, i);
        out[i] = pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho);
    }
}

/* Lentz's guard: a partial denominator of 0 is replaced by this, as the method prescribes */
static double nonzero(double v) { return fabs(v) < 1e-300 ? 1e-300 : v; }

/* I_x(a, b) by its continued fraction (Lentz's method; log_beta = log B(a, b)), for x < (a + 1) / (a + b + 2),
 * where it converges in a few dozen terms. */
static double incomplete_beta_cf(double x, double a, double b, double log_beta)
{
    double c = 1.0, d = 1.0 / nonzero(1.0 - (a + b) * x / (a + 1.0));
    double f = d;
    for (int m = 1; m <= 1000; m++) {
        const double even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)); /* d_{2m} */
        d = 1.0 / nonzero(1.0 + even * d), c = nonzero(1.0 + even / c), f *= c * d;
        const double odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)); /* d_{2m+1} */
        d = 1.0 / nonzero(1.0 + odd * d), c = nonzero(1.0 + odd / c), f *= c * d;
        if (fabs(c * d - 1.0) < 1e-17) break;
    }
    return exp(a * log(x) + b * log1p(-x) - log_beta) / a * f;
}

/* I_x(a, b), the other side of the mean through I_x(a, b) = 1 - I_{1-x}(b, a) */
static double incomplete_beta(double x, double a, double b, double log_beta)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    return x < (a + 1.0) / (a + b + 2.0) ? incomplete_beta_cf(x, a, b, log_beta)
                                         : 1.0 - incomplete_beta_cf(1.0 - x, b, a, log_beta);
}

double beta_ppf(double q, double a, double b)
{
    if (!(q > 0.0)) return 0.0;
    if (!(q < 1.0)) return 1.0;
    const double log_beta = lgamma(a) + lgamma(b) - lgamma(a + b);
    /* bisection to a bracket 2^-40 wide, then Newton's steps on I_x - q (its derivative the density) inside it */
    double lo = 0.0, hi = 1.0, x = 0.5;
    for (int i = 0; i < 40; i++) {
        x = 0.5 * (lo + hi);
        if (incomplete_beta(x, a, b, log_beta) < q) lo = x;
        else hi = x;
    }
    for (int i = 0; i < 8; i++) {
        const double density = exp((a - 1.0) * log(x) + (b - 1.0) * log1p(-x) - log_beta);
        const double next = x - (incomplete_beta(x, a, b, log_beta) - q) / density;
        if (!(next > lo && next < hi) || next == x) break;
        x = next;
    }
    return x;
}

int converted_sigmas(const Scheduler *s, double sigma_min, double sigma_max, int n, double *out)
{
    if (s->cfg.use_karras_sigmas) {
        karras_sigmas(sigma_min, sigma_max, n, out);
    } else if (s->cfg.use_exponential_sigmas) {
        float *line = malloc((size_t)n * sizeof *line); /* (n,) the exponents */
        if (!line) return SOWER_FAIL(SOWER_ENOMEM, "scheduler sigmas");
        torch_linspace(line, log(sigma_max), log(sigma_min), n, s->cfg.torch_kernel); /* math.log: float64 */
        for (int i = 0; i < n; i++)
            out[i] = (double)torch_expf(line[i], s->cfg.torch_kernel);
        free(line);
    } else if (s->cfg.use_beta_sigmas) {
        for (int i = 0; i < n; i++) {
            const double ppf = beta_ppf(1.0 - numpy_linspace_at(0.0, 1.0, n, i), 0.6, 0.6);
            out[i] = (double)(float)(sigma_min + ppf * (sigma_max - sigma_min));
        }
    }
    return SOWER_OK;
}

/* low_idx = cumsum(dists >= 0).argmax().clip(max=T - 2), dists = log_sigma - log_sigmas in float32: the last index
 * whose log sigma is <= log_sigma (0 when none is; log_sigmas ascends) */
static int sigma_interval(float log_sigma, const float *log_sigmas, int T)
{
    int low = 0;
    for (int j = 0; j < T; j++)
        if (log_sigma - log_sigmas[j] >= 0.0f)
            low = j;
    return low > T - 2 ? T - 2 : low;
}

float sigma_to_t_weight(double sigma, const float *log_sigmas, int T, int *low_idx)
{
    /* log_sigma = np.log(np.maximum(sigma, 1e-10)), a float64 scalar; numpy 1.24's value-based casting
     * then computes dists, w with the float32 array's dtype: the scalar rounds to float first. */
    const float log_sigma = (float)log(sigma > 1e-10 ? sigma : 1e-10);
    const int low = sigma_interval(log_sigma, log_sigmas, T), high = low + 1;
    float w = (log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high]);
    *low_idx = low;
    return w < 0.0f ? 0.0f : w > 1.0f ? 1.0f : w; /* np.clip(w, 0, 1) */
}

double sigma_to_t(double sigma, const float *log_sigmas, int T)
{
    int low;
    const float w = sigma_to_t_weight(sigma, log_sigmas, T, &low);
    /* (1 - w) * low_idx + w * high_idx: a float32 array times an int64 array is float64 */
    return (double)(1.0f - w) * (double)low + (double)w * (double)(low + 1);
}

double sigma_to_t_tensor(double sigma, const float *log_sigmas, int T)
{
    /* np.maximum of the float32 tensor and 1e-10 is a float64 tensor, and np.log of it one too */
    const double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    const int low = sigma_interval((float)log_sigma, log_sigmas, T); /* dists: a float32 tensor */
    /* w = (low - log_sigma) / (low - high): numpy float32 scalars against the float64 tensor; low - high in float32 */
    const float span = log_sigmas[low] - log_sigmas[low + 1];
    double w = ((double)log_sigmas[low] - log_sigma) / (double)span;
    w = w < 0.0 ? 0.0 : w > 1.0 ? 1.0 : w;
    return (1.0 - w) * (double)low + w * (double)(low + 1);
}

float sigmas_init_noise_sigma(const Scheduler *s, int count)
{
    float max = s->sigmas[0];
    for (int i = 1; i < count; i++)
        max = s->sigmas[i] > max ? s->sigmas[i] : max;
    return s->cfg.timestep_spacing == SPACING_LEADING ? sqrtf(max * max + 1.0f) : max;
}

float final_sigma(const SchedulerConfig *cfg, const float *sigma)
{
    return cfg->final_sigmas_type == FINAL_SIGMA_MIN ? sigma[0] : 0.0f;
}

int karras_check(const Scheduler *s)
{
    const char *key = s->cfg.use_exponential_sigmas ? "use_exponential_sigmas"
                      : s->cfg.use_beta_sigmas      ? "use_beta_sigmas"
                                                    : "use_karras_sigmas";
    if (s->cfg.num_train_timesteps < 2) /* _sigma_to_t interpolates between two train timesteps */
        return SOWER_FAIL(SOWER_EINPUT, "%s needs num_train_timesteps >= 2, found %d", key, s->cfg.num_train_timesteps);
    return SOWER_OK;
}

int karras_not_finite(const Scheduler *s, int i)
{
    return SOWER_FAIL(SOWER_EINPUT, "the Karras schedule of %d steps gives step %d no finite timestep (equal sigmas at "
                                    "the end of this noise schedule: beta_start %g, beta_end %g)",
                      s->num_inference_steps, i, s->cfg.beta_start, s->cfg.beta_end);
}

int sigmas_check(const Scheduler *s, const int64_t *timesteps, const float *unet_timesteps, int distinct_sigmas)
{
    const int N = s->num_steps;
    for (int i = 0; i <= N; i++) {
        const double t = i == N ? 0.0 : timesteps ? (double)timesteps[i] : (double)unet_timesteps[i];
        if (!isfinite(s->sigmas[i]) || !isfinite(t))
            return SOWER_FAIL(SOWER_EINPUT, "this noise schedule gives step %d of %d a %s (sigma %g, timestep %g)", i, N,
                              isfinite(t) ? "sigma that is not finite" : "timestep that is not finite",
                              (double)s->sigmas[i], t);
    }
    /* diffusers' _init_step_index starts at the second of two equal first timesteps, and then steps past the
     * end of its sigmas (IndexError): refused rather than rendered otherwise */
    if (N > 1 && (timesteps ? timesteps[0] == timesteps[1] : unet_timesteps[0] == unet_timesteps[1]))
        return SOWER_FAIL(SOWER_EINPUT, "%d steps of this noise schedule begin with the same timestep twice (%g), "
                                        "which diffusers cannot run: choose fewer steps",
                          N, timesteps ? (double)timesteps[0] : (double)unet_timesteps[0]);
    /* DPM-Solver's and UniPC's second order divide by the previous log-SNR step h: two equal sigmas give NaN after
     * them */
    for (int i = 0; distinct_sigmas && i + 1 < N; i++)
        if (s->sigmas[i] == s->sigmas[i + 1])
            return SOWER_FAIL(SOWER_EINPUT, "%d steps of this noise schedule give steps %d and %d the same sigma (%g), "
                                            "where a second-order %s step is 0/0: choose fewer steps",
                              N, i, i + 1, (double)s->sigmas[i], scheduler_kind_name(s->cfg.kind));
    return SOWER_OK;
}
