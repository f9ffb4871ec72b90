/* test_gpu_ops.c: every operation of the CUDA backend's table against the CPU backend's (the
 * reference) on the UNet's shapes and awkward ones, within a float32 rounding tolerance; and the
 * determinism contract per operation: a sample's bits alone (batch 1) equal its bits inside a
 * batch of 7 at any position, and a repeat gives the same bits. Exit 77 (skipped) when no device
 * is visible or this build has no CUDA backend. Every arithmetic: fp32 (default) and the opt-in
 * tensor-core ones (tf32, bf16, fp16). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_backend.h"
#include "gpu.h"
#include "check.h"
#include "gpu_test.h"
#include "digest.h"
#include "model.h"
#include "philox.h"
#include "rng.h"
#include "vae.h"

/* |gpu - cpu| <= tol * (1 + max |cpu|): in fp32 the two differ only by reduction order and libm;
 * in tf32 every matrix product's inputs lose 13 mantissa bits (relative 2^-11 each). */
#define TOL_FP32 1e-4
#define TOL_TF32 5e-3 /* fp16's 11-bit significand too */
#define TOL_BF16 3e-2 /* 8-bit significand: relative 2^-9 per input */

static ComputeBackend cpu, gpu;
static double tol = TOL_FP32;

static float *randn(size_t n, uint64_t seed, float scale)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    TorchRng g = {0};
    rng_seed(&g, seed);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, x, n);
    for (size_t i = 0; i < n; i++)
        x[i] *= scale;
    return x;
}

/* A copy of host data (n,) in backend memory. */
static float *put(const ComputeBackend *be, const float *host, size_t n)
{
    float *p = NULL;
    if (be->ops->buffer_alloc(be->ctx, &p, n) != SOWER_OK || be->ops->upload(be->ctx, p, host, n) != SOWER_OK) {
        sower_error_print(stderr, 1);
        exit(1);
    }
    return p;
}

static Act put_act(const ComputeBackend *be, const float *host, int c, int b, int h, int w)
{
    Act a = {0};
    if (be->ops->act_alloc(be->ctx, &a, c, b, h, w) != SOWER_OK ||
        be->ops->upload(be->ctx, a.data, host, act_numel(&a)) != SOWER_OK) {
        sower_error_print(stderr, 1);
        exit(1);
    }
    return a;
}

/* The backend's act as a new host array (numel,). */
static float *get(const ComputeBackend *be, const float *data, size_t n)
{
    float *host = malloc(sizeof(float) * (n ? n : 1));
    if (be->ops->download(be->ctx, host, data, n) != SOWER_OK) {
        sower_error_print(stderr, 1);
        exit(1);
    }
    return host;
}

static void compare(const char *what, const float *ref, const float *got, size_t n)
{
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ref[i] - got[i]);
        worst = d > worst || isnan(d) ? d : worst;
        scale = fmax(scale, fabs(ref[i]));
    }
    printf("  %-44s max |gpu - cpu| %.3g (max |cpu| %.3g)\n", what, worst, scale);
    CHECK(worst <= tol * (1 + scale), "%s: max |gpu - cpu| %g > %g", what, worst, tol * (1 + scale));
}

/* Sample `s` of an activation (c, b, hw) stored (C, B, H, W): out (c, hw). */
static void take_sample(const float *act, int c, int b, size_t hw, int s, float *out)
{
    for (int ch = 0; ch < c; ch++)
        memcpy(out + (size_t)ch * hw, act + ((size_t)ch * b + s) * hw, hw * sizeof(float));
}

/* Each sample of a GPU result for a batch of `b` must equal, bit for bit, the same operation on
 * that sample alone (`alone`: (b, c, hw), sample-major, from batch-1 runs). */
static void check_batch_invariance(const char *what, const float *batched, const float *alone, int c, int b,
                                   size_t hw)
{
    float *one = malloc(sizeof(float) * c * hw);
    int differ = 0;
    for (int s = 0; s < b; s++) {
        take_sample(batched, c, b, hw, s, one);
        differ += memcmp(one, alone + (size_t)s * c * hw, sizeof(float) * c * hw) != 0;
    }
    CHECK(differ == 0, "%s: %d of %d samples differ between batch %d and batch 1", what, differ, b, b);
    free(one);
}

/* ---- operations: run on both backends from the same host inputs ---- */

typedef struct {
    int cin, cout, k, b, h, w;
    ConvGeometry g;
    const char *name;
} ConvCase;

/* conv on backend be with host weights w (cout, cin, k, k), bias (cout,), input x (cin, b, h, w)
 * -> host output; *ho, *wo the output size. */
static float *conv_on(const ComputeBackend *be, const ConvCase *t, const float *wt, const float *bias, const float *x,
                      int b, size_t *n_out)
{
    size_t nw = (size_t)t->cout * t->cin * t->k * t->k;
    float *dw = put(be, wt, nw), *db = put(be, bias, t->cout);
    ConvParams p = {dw, db, t->cout, t->cin, t->k};
    Act in = put_act(be, x, t->cin, b, t->h, t->w), out = {0};
    CHECK(be->ops->conv2d(be->ctx, &p, t->g, &in, &out) == SOWER_OK, "%s: conv2d failed", t->name);
    *n_out = act_numel(&out);
    float *host = get(be, out.data, *n_out);
    be->ops->act_free(be->ctx, &in);
    be->ops->act_free(be->ctx, &out);
    be->ops->buffer_free(be->ctx, dw);
    be->ops->buffer_free(be->ctx, db);
    return host;
}

static void test_conv(const ConvCase *t, uint64_t seed)
{
    const int b = t->b;
    float *wt = randn((size_t)t->cout * t->cin * t->k * t->k, seed, 0.1f), *bias = randn(t->cout, seed + 1, 0.1f);
    float *x = randn((size_t)t->cin * b * t->h * t->w, seed + 2, 1.0f);
    size_t n_cpu, n_gpu;
    float *ref = conv_on(&cpu, t, wt, bias, x, b, &n_cpu), *got = conv_on(&gpu, t, wt, bias, x, b, &n_gpu);
    CHECK(n_cpu == n_gpu, "%s: sizes differ", t->name);
    compare(t->name, ref, got, n_cpu);
    /* Batch invariance: each sample alone. */
    const size_t hw_in = (size_t)t->h * t->w, hw_out = n_gpu / ((size_t)t->cout * b);
    float *alone = malloc(sizeof(float) * n_gpu), *xs = malloc(sizeof(float) * t->cin * hw_in);
    for (int s = 0; s < b; s++) {
        take_sample(x, t->cin, b, hw_in, s, xs);
        size_t n1;
        float *one = conv_on(&gpu, t, wt, bias, xs, 1, &n1);
        memcpy(alone + (size_t)s * n1, one, n1 * sizeof(float));
        free(one);
    }
    check_batch_invariance(t->name, got, alone, t->cout, b, hw_out);
    size_t n_again;
    float *again = conv_on(&gpu, t, wt, bias, x, b, &n_again);
    CHECK(memcmp(again, got, n_gpu * sizeof(float)) == 0, "%s: a repeat differs", t->name);
    free(wt), free(bias), free(x), free(ref), free(got), free(alone), free(xs), free(again);
}

/* group norm (+ SiLU) of x (c, b, h, w) with `groups`, on be -> host. */
static float *group_norm_on(const ComputeBackend *be, const float *gamma, const float *beta, int groups, const float *x,
                            int c, int b, int h, int w, int silu)
{
    float *dg = put(be, gamma, c), *dbt = put(be, beta, c);
    GroupNormParams p = {dg, dbt, c, groups, 1e-5f};
    Act in = put_act(be, x, c, b, h, w), out = {0};
    CHECK(be->ops->act_alloc(be->ctx, &out, c, b, h, w) == SOWER_OK, "alloc");
    CHECK(be->ops->group_norm(be->ctx, &p, &in, &out, silu) == SOWER_OK, "group_norm failed");
    float *host = get(be, out.data, act_numel(&out));
    be->ops->act_free(be->ctx, &in);
    be->ops->act_free(be->ctx, &out);
    be->ops->buffer_free(be->ctx, dg);
    be->ops->buffer_free(be->ctx, dbt);
    return host;
}

static void test_group_norm(int c, int groups, int b, int h, int w, int silu)
{
    char name[96];
    snprintf(name, sizeof name, "group_norm%s C%d G%d B%d %dx%d", silu ? "+silu" : "", c, groups, b, h, w);
    float *gamma = randn(c, 11, 0.5f), *beta = randn(c, 12, 0.5f), *x = randn((size_t)c * b * h * w, 13, 2.0f);
    for (size_t i = 0; i < (size_t)c * b * h * w; i++)
        x[i] += 3.0f; /* an offset: the moments must not cancel badly */
    float *ref = group_norm_on(&cpu, gamma, beta, groups, x, c, b, h, w, silu);
    float *got = group_norm_on(&gpu, gamma, beta, groups, x, c, b, h, w, silu);
    compare(name, ref, got, (size_t)c * b * h * w);
    const size_t hw = (size_t)h * w;
    float *alone = malloc(sizeof(float) * c * b * hw), *xs = malloc(sizeof(float) * c * hw);
    for (int s = 0; s < b; s++) {
        take_sample(x, c, b, hw, s, xs);
        float *one = group_norm_on(&gpu, gamma, beta, groups, xs, c, 1, h, w, silu);
        memcpy(alone + (size_t)s * c * hw, one, sizeof(float) * c * hw);
        free(one);
    }
    check_batch_invariance(name, got, alone, c, b, hw);
    free(gamma), free(beta), free(x), free(ref), free(got), free(alone), free(xs);
}

static float *attention_on(const ComputeBackend *be, float *const *host_w, int c, int heads, const float *x, int b,
                           int h, int w)
{
    float *d[10];
    for (int i = 0; i < 10; i++)
        d[i] = put(be, host_w[i], i < 2 ? (size_t)c : i % 2 ? (size_t)c : (size_t)c * c);
    /* host_w: gamma, beta, then (weight, bias) of q, k, v, out */
    AttentionParams p = {{d[0], d[1], c, c >= 32 ? 32 : c, 1e-5f},
                         {d[2], d[3], c, c}, {d[4], d[5], c, c}, {d[6], d[7], c, c}, {d[8], d[9], c, c},
                         c, heads, c / heads, 1.0f};
    Act in = put_act(be, x, c, b, h, w), out = {0};
    CHECK(be->ops->attention(be->ctx, &p, &in, &out) == SOWER_OK, "attention failed");
    float *host = get(be, out.data, act_numel(&out));
    be->ops->act_free(be->ctx, &in);
    be->ops->act_free(be->ctx, &out);
    for (int i = 0; i < 10; i++)
        be->ops->buffer_free(be->ctx, d[i]);
    return host;
}

static void test_attention(int c, int heads, int b, int h, int w)
{
    char name[96];
    snprintf(name, sizeof name, "attention C%d heads %d B%d %dx%d", c, heads, b, h, w);
    float *hw_[10];
    for (int i = 0; i < 10; i++)
        hw_[i] = randn(i < 2 || i % 2 ? (size_t)c : (size_t)c * c, 100 + i, i < 2 ? 0.5f : 1.0f / sqrtf((float)c));
    float *x = randn((size_t)c * b * h * w, 21, 1.0f);
    float *ref = attention_on(&cpu, hw_, c, heads, x, b, h, w), *got = attention_on(&gpu, hw_, c, heads, x, b, h, w);
    compare(name, ref, got, (size_t)c * b * h * w);
    const size_t hw = (size_t)h * w;
    float *alone = malloc(sizeof(float) * c * b * hw), *xs = malloc(sizeof(float) * c * hw);
    for (int s = 0; s < b; s++) {
        take_sample(x, c, b, hw, s, xs);
        float *one = attention_on(&gpu, hw_, c, heads, xs, 1, h, w);
        memcpy(alone + (size_t)s * c * hw, one, sizeof(float) * c * hw);
        free(one);
    }
    check_batch_invariance(name, got, alone, c, b, hw);
    for (int i = 0; i < 10; i++)
        free(hw_[i]);
    free(x), free(ref), free(got), free(alone), free(xs);
}

static float *linear_on(const ComputeBackend *be, const float *wt, const float *bias, const float *x, int batch, int in,
                        int out)
{
    float *dw = put(be, wt, (size_t)out * in), *db = put(be, bias, out), *dx = put(be, x, (size_t)batch * in), *dy;
    CHECK(be->ops->buffer_alloc(be->ctx, &dy, (size_t)batch * out) == SOWER_OK, "alloc");
    LinearParams p = {dw, db, out, in};
    CHECK(be->ops->linear(be->ctx, &p, dx, batch, dy) == SOWER_OK, "linear failed");
    float *host = get(be, dy, (size_t)batch * out);
    be->ops->buffer_free(be->ctx, dw), be->ops->buffer_free(be->ctx, db);
    be->ops->buffer_free(be->ctx, dx), be->ops->buffer_free(be->ctx, dy);
    return host;
}

static void test_linear(int batch, int in, int out)
{
    char name[96];
    snprintf(name, sizeof name, "linear B%d %d -> %d", batch, in, out);
    float *wt = randn((size_t)out * in, 31, 0.05f), *bias = randn(out, 32, 0.1f), *x = randn((size_t)batch * in, 33, 1);
    float *ref = linear_on(&cpu, wt, bias, x, batch, in, out), *got = linear_on(&gpu, wt, bias, x, batch, in, out);
    compare(name, ref, got, (size_t)batch * out);
    int differ = 0;
    for (int s = 0; s < batch; s++) {
        float *one = linear_on(&gpu, wt, bias, x + (size_t)s * in, 1, in, out);
        differ += memcmp(one, got + (size_t)s * out, sizeof(float) * out) != 0;
        free(one);
    }
    CHECK(differ == 0, "%s: %d rows differ from batch 1", name, differ);
    free(wt), free(bias), free(x), free(ref), free(got);
}

/* The element-wise and data-movement operations: exact on both backends, except SiLU (libm). */
static void test_elementwise(void)
{
    const int c = 5, b = 3, h = 6, w = 4, c2 = 2;
    const size_t n = (size_t)c * b * h * w, n2 = (size_t)c2 * b * h * w;
    float *x = randn(n, 41, 3.0f), *y = randn(n, 42, 1.0f), *t = randn((size_t)b * c, 43, 1.0f), *z = randn(n2, 44, 1);
    const ComputeBackend *bes[2] = {&cpu, &gpu};
    float *res[2][9];
    for (int k = 0; k < 2; k++) {
        const ComputeBackend *be = bes[k];
        const UNetOps *ops = be->ops;
        Act a = put_act(be, x, c, b, h, w), s = put_act(be, y, c, b, h, w), other = put_act(be, z, c2, b, h, w);
        Act up = {0}, cat = {0}, cbhw = {0};
        float *dt = put(be, t, (size_t)b * c), *nchw;
        CHECK(ops->buffer_alloc(be->ctx, &nchw, n) == SOWER_OK, "alloc");
        CHECK(ops->upsample_nearest(be->ctx, &a, 2 * h, 2 * w, &up) == SOWER_OK, "upsample");
        res[k][0] = get(be, up.data, act_numel(&up));
        ops->act_free(be->ctx, &up);
        CHECK(ops->upsample_nearest(be->ctx, &a, 2 * h - 1, w + 3, &up) == SOWER_OK, "upsample to a skip's size");
        res[k][8] = get(be, up.data, act_numel(&up));
        CHECK(ops->concat_channels(be->ctx, &a, &other, &cat) == SOWER_OK, "concat");
        res[k][1] = get(be, cat.data, act_numel(&cat));
        CHECK(ops->to_nchw(be->ctx, &a, nchw) == SOWER_OK, "to_nchw");
        res[k][2] = get(be, nchw, n);
        CHECK(ops->act_alloc(be->ctx, &cbhw, c, b, h, w) == SOWER_OK, "alloc");
        CHECK(ops->from_nchw(be->ctx, nchw, b, 1, &cbhw) == SOWER_OK, "from_nchw");
        res[k][3] = get(be, cbhw.data, n);
        CHECK(ops->add_channel_bias(be->ctx, &a, dt) == SOWER_OK, "add_channel_bias");
        res[k][4] = get(be, a.data, n);
        CHECK(ops->residual(be->ctx, &s, &a, 1.4142135f) == SOWER_OK, "residual");
        res[k][5] = get(be, a.data, n);
        CHECK(ops->silu(be->ctx, a.data, n) == SOWER_OK, "silu");
        res[k][6] = get(be, a.data, n);
        CHECK(ops->divide_scalar(be->ctx, s.data, 1.0488088f, nchw, n) == SOWER_OK, "divide_scalar");
        res[k][7] = get(be, nchw, n);
        ops->act_free(be->ctx, &a), ops->act_free(be->ctx, &s), ops->act_free(be->ctx, &other);
        ops->act_free(be->ctx, &up), ops->act_free(be->ctx, &cat), ops->act_free(be->ctx, &cbhw);
        ops->buffer_free(be->ctx, dt), ops->buffer_free(be->ctx, nchw);
    }
    static const char *const names[9] = {"upsample_nearest 2x", "concat_channels", "to_nchw", "from_nchw (center)",
                                         "add_channel_bias", "residual", "silu", "divide_scalar",
                                         "upsample_nearest 11x7"};
    const size_t sizes[9] = {4 * n, n + n2, n, n, n, n, n, n, (size_t)c * b * (2 * h - 1) * (w + 3)};
    for (int i = 0; i < 9; i++) {
        if (i != 6) /* all exact but SiLU (libm's expf against CUDA's) */
            CHECK(memcmp(res[0][i], res[1][i], sizes[i] * sizeof(float)) == 0, "%s: not exact", names[i]);
        compare(names[i], res[0][i], res[1][i], sizes[i]);
        free(res[0][i]), free(res[1][i]);
    }
    free(x), free(y), free(t), free(z);
}

/* The scheduler step on the device must give the host's bits (the same scheduler_step_value,
 * no fused multiply-adds, IEEE division): every scheduler, prediction type, clipping and noise. */
static void test_scheduler_step(void)
{
    const size_t n = 3 * 2 * 5 * 7;
    float *m = randn(n, 51, 1.5f), *x = randn(n, 52, 2.0f), *z = randn(n, 53, 1.0f);
    m[0] = 0.0f, x[1] = -0.0f, m[2] = 1e-39f; /* zero, signed zero, a denormal */
    int differ = 0, cases = 0;
    for (int ddpm = 0; ddpm <= 1; ddpm++)
        for (int prediction = 0; prediction < 3; prediction++)
            for (int clip = 0; clip <= 1; clip++)
                for (int noisy = 0; noisy <= 1; noisy++) {
                    /* coefficients of a mid-schedule step (values like scheduler_step_coefficients') */
                    StepCoefficients k = {ddpm, prediction, clip, -1.0f, 1.0f, noisy, 0.61237243f, 0.79056942f,
                                          0.70710677f, 0.65192026f, 0.27386129f, 0.31622776f, 0.83666003f, 0.2236068f};
                    float *res[2];
                    const ComputeBackend *bes[2] = {&cpu, &gpu};
                    for (int e = 0; e < 2; e++) {
                        float *dm = put(bes[e], m, n), *dx = put(bes[e], x, n), *dz = put(bes[e], z, n);
                        CHECK(bes[e]->ops->scheduler_step(bes[e]->ctx, &k, dm, dx, noisy ? dz : NULL, n) == SOWER_OK,
                              "scheduler_step");
                        res[e] = get(bes[e], dx, n);
                        bes[e]->ops->buffer_free(bes[e]->ctx, dm), bes[e]->ops->buffer_free(bes[e]->ctx, dx);
                        bes[e]->ops->buffer_free(bes[e]->ctx, dz);
                    }
                    differ += memcmp(res[0], res[1], n * sizeof(float)) != 0;
                    cases++;
                    free(res[0]), free(res[1]);
                }
    printf("  %-44s %d of %d cases bitwise equal to the host\n", "scheduler_step (ddim, ddpm)", cases - differ, cases);
    CHECK(differ == 0, "scheduler_step: %d of %d cases differ from the host's bits", differ, cases);
    free(m), free(x), free(z);
}

/* ---- torch.Generator("cuda") ---- */

/* The layout's oracle: element i of a torch-cuda randn from philox.h's closed form (not the kernel's
 * grid-stride loop) and Box-Muller with the host's logf, sinf, cosf (cuRAND's host branch). Emulated,
 * the device's sin/cos are these, so the two agree bit for bit; on a GPU they are the special-function
 * unit's, within about 2^-21 of these before the radius. */
static float torch_cuda_host_value(uint64_t seed, uint64_t offset, uint64_t blocks, uint64_t i)
{
    TorchCudaElement e;
    torch_cuda_element(seed, offset, blocks, i, &e);
    const uint32_t x = e.words[e.lane < 2 ? 0 : 2], y = e.words[e.lane < 2 ? 1 : 3];
    const float inv32 = 2.3283064e-10f, inv32_2pi = 2.3283064e-10f * 6.2831855f;
    const float u = fmaf((float)x, inv32, inv32 / 2), v = fmaf((float)y, inv32_2pi, inv32_2pi / 2);
    const float radius = sqrtf(-2.0f * logf(u));
    const float value = (e.lane % 2 == 0 ? sinf(v) : cosf(v)) * radius;
    return value * 1.0f + 0.0f; /* torch's rand * std + mean */
}

/* ComputeBackend.randn_torch_cuda against the oracle, over sizes that take one lane per thread (SD's
 * latents), every lane and several passes (more values than the grid's threads), at offsets after
 * earlier draws; and the offset's growth against torch's rule. */
static void test_torch_cuda_randn(void)
{
    const uint64_t seeds[] = {0, 1, 42, (1ull << 32) + 5, UINT64_MAX};
    const size_t sizes[] = {1, 5, 3 * 32 * 32, 4 * 64 * 64, 3 * 4 * 64 * 64 + 7};
    double worst = 0;
    int differ = 0, cases = 0;
    for (size_t si = 0; si < sizeof seeds / sizeof seeds[0]; si++) {
        uint64_t offset = 0;
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            const size_t n = sizes[(k + si) % (sizeof sizes / sizeof sizes[0])];
            float *dev = NULL;
            TorchCudaLaunch l = {0};
            CHECK(gpu.ops->buffer_alloc(gpu.ctx, &dev, n) == SOWER_OK, "buffer");
            CHECK(gpu.randn_torch_cuda(gpu.ctx, seeds[si], offset, n, dev, &l) == SOWER_OK, "randn_torch_cuda");
            float *got = get(&gpu, dev, n);
            gpu.ops->buffer_free(gpu.ctx, dev);
            for (size_t i = 0; i < n; i++) {
                const float want = torch_cuda_host_value(seeds[si], offset, l.blocks, i);
                differ += memcmp(&want, &got[i], sizeof want) != 0;
                worst = fmax(worst, fabs((double)want - got[i]));
            }
            CHECK(l.blocks >= 1 && l.blocks * TORCH_CUDA_BLOCK_THREADS * 4 * l.passes >= n &&
                      l.counter_offset == 4 * l.passes,
                  "randn of %zu: %llu blocks, %llu passes, offset + %llu", n, (unsigned long long)l.blocks,
                  (unsigned long long)l.passes, (unsigned long long)l.counter_offset);
            offset += l.counter_offset;
            cases++;
            free(got);
        }
    }
#ifdef SOWER_TEST_EMULATED
    printf("  %-44s %d values differ from the host model over %d draws\n", "randn_torch_cuda (layout)", differ, cases);
    CHECK(differ == 0, "randn_torch_cuda: %d values differ from philox.h's layout", differ);
#else
    printf("  %-44s max |gpu - host model| %.3g over %d draws (%d not bitwise: the GPU's sin/cos)\n",
           "randn_torch_cuda (layout)", worst, cases, differ);
    CHECK(worst <= 1e-4, "randn_torch_cuda: max |gpu - host model| %g", worst);
#endif
}

/* torch's own noise, from validate/make_torch_cuda_reference.py run on a GPU: every call's SHA-256,
 * its first values' bits and the generator's offset after it, bit for bit (cases whose layout
 * needs the reference's SM count are skipped on a GPU with another). Emulated (SOWER_EMU_SMS set to
 * the reference's SM count), the host's sin/cos stand in for the GPU's: the offsets and the layout
 * are checked exactly, the first values within TORCH_CUDA_HOST_TOL of torch's, no SHA-256. */
#define TORCH_CUDA_HOST_TOL 1e-5 /* the GPU's sin/cos vs the host's: 2.4e-6 seen on an H200 */
static void test_torch_cuda_reference(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f)
        return;
    static char text[1 << 20];
    const size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    cJSON *root = cJSON_Parse(text);
    CHECK(root != NULL, "%s: not JSON", path);
    if (!root)
        return;
    const TorchCudaDevice there = {cJSON_GetObjectItem(root, "sms")->valueint,
                                   cJSON_GetObjectItem(root, "max_threads_per_sm")->valueint};
    int calls = 0, skipped = 0, bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases"))
    {
        const uint64_t seed = strtoull(cJSON_GetObjectItem(c, "seed")->valuestring, NULL, 10);
        const cJSON *sizes = cJSON_GetObjectItem(c, "calls"), *sums = cJSON_GetObjectItem(c, "sha256");
        const cJSON *heads = cJSON_GetObjectItem(c, "head_bits"), *offsets = cJSON_GetObjectItem(c, "offset_after");
        uint64_t offset = 0;
        for (int k = 0; k < cJSON_GetArraySize(sizes); k++) {
            const size_t n = (size_t)cJSON_GetArrayItem(sizes, k)->valuedouble;
            float *dev = NULL;
            TorchCudaLaunch l = {0};
            CHECK(gpu.ops->buffer_alloc(gpu.ctx, &dev, n) == SOWER_OK, "buffer");
            CHECK(gpu.randn_torch_cuda(gpu.ctx, seed, offset, n, dev, &l) == SOWER_OK, "randn_torch_cuda");
            float *got = get(&gpu, dev, n);
            gpu.ops->buffer_free(gpu.ctx, dev);
            if (l.blocks != torch_cuda_launch(n, there).blocks) { /* the layout follows the SM count here */
                free(got);
                skipped++;
                break;
            }
            unsigned char sum[32];
            char hex[65];
            CHECK(digest_buffer(got, n * sizeof(float), sum) == SOWER_OK, "sha256");
            digest_hex(sum, hex);
            const cJSON *head = cJSON_GetArrayItem(heads, k);
            int head_ok = 1;
            for (int i = 0; i < cJSON_GetArraySize(head) && (size_t)i < n; i++) {
                const uint32_t torch_bits = (uint32_t)cJSON_GetArrayItem(head, i)->valuedouble;
                float torch_value;
                memcpy(&torch_value, &torch_bits, sizeof torch_value);
#ifdef SOWER_TEST_EMULATED
                head_ok &= fabs((double)got[i] - torch_value) <= TORCH_CUDA_HOST_TOL;
#else
                head_ok &= memcmp(&got[i], &torch_value, sizeof torch_value) == 0;
#endif
            }
            offset += l.counter_offset;
            const uint64_t torch_offset = strtoull(cJSON_GetArrayItem(offsets, k)->valuestring, NULL, 10);
#ifdef SOWER_TEST_EMULATED
            const int sum_ok = 1;
#else
            const int sum_ok = strcmp(hex, cJSON_GetArrayItem(sums, k)->valuestring) == 0;
#endif
            const int ok = sum_ok && head_ok && offset == torch_offset;
            CHECK(ok, "torch-cuda seed %llu call %d (%zu values): sha256 %s, first values %s, offset %llu vs torch's %llu",
                  (unsigned long long)seed, k, n, hex, head_ok ? "equal" : "differ", (unsigned long long)offset,
                  (unsigned long long)torch_offset);
            bad += !ok;
            calls++;
            free(got);
        }
    }
#ifdef SOWER_TEST_EMULATED
    printf("  %-44s %d calls with torch's offsets and layout, first values within %g, %d differ, %d cases cut short\n",
           "randn_torch_cuda vs torch (emulated)", calls - bad, TORCH_CUDA_HOST_TOL, bad, skipped);
#else
    printf("  %-44s %d calls bitwise equal to torch's, %d differ, %d cases cut short (another SM count)\n",
           "randn_torch_cuda vs torch", calls - bad, bad, skipped);
#endif
    cJSON_Delete(root);
}

/* The whole UNet forward of a real model folder, through unet_forward_on (weights copied to the
 * device through the backend's mirror of the model): GPU vs CPU at batch 3 with three timesteps,
 * and each sample alone bit for bit as in the batch. */
/* ---- UNet2DConditionModel's transformer operations ---- */

static float *layer_norm_on(const ComputeBackend *be, const float *gamma, const float *beta, const float *x, int c,
                            int b, int h, int w)
{
    float *dg = put(be, gamma, c), *db = put(be, beta, c);
    LayerNormParams p = {dg, db, c, 1e-5f};
    Act a = put_act(be, x, c, b, h, w);
    CHECK(be->ops->layer_norm(be->ctx, &p, &a, &a) == SOWER_OK, "layer_norm failed"); /* in place, as unet.c may */
    float *host = get(be, a.data, act_numel(&a));
    be->ops->act_free(be->ctx, &a);
    be->ops->buffer_free(be->ctx, dg), be->ops->buffer_free(be->ctx, db);
    return host;
}

/* The CPU's arithmetic exactly (moments in double in channel order, then fmaf): the same bits. */
static void test_layer_norm(int c, int b, int h, int w)
{
    char name[96];
    snprintf(name, sizeof name, "layer_norm C%d B%d %dx%d", c, b, h, w);
    float *gamma = randn(c, 51, 0.5f), *beta = randn(c, 52, 0.5f), *x = randn((size_t)c * b * h * w, 53, 2.0f);
    for (int i = 0; i < c; i++)
        gamma[i] += 1.0f;
    const size_t n = (size_t)c * b * h * w;
    float *ref = layer_norm_on(&cpu, gamma, beta, x, c, b, h, w), *got = layer_norm_on(&gpu, gamma, beta, x, c, b, h, w);
    compare(name, ref, got, n);
    CHECK(memcmp(ref, got, n * sizeof(float)) == 0, "%s: not the CPU's bits", name);
    free(gamma), free(beta), free(x), free(ref), free(got);
}

/* q (c, b, nq tokens as hq x wq), k and v (c, b, 1 x nk) -> out on backend be, as host (c, b, nq). */
static float *attention_heads_on(const ComputeBackend *be, int heads, const float *q, const float *k, const float *v,
                                 int c, int b, int hq, int wq, int nk)
{
    Act dq = put_act(be, q, c, b, hq, wq), dk = put_act(be, k, c, b, 1, nk), dv = put_act(be, v, c, b, 1, nk), o = {0};
    CHECK(be->ops->attention_heads(be->ctx, heads, &dq, &dk, &dv, &o) == SOWER_OK, "attention_heads failed");
    float *host = get(be, o.data, act_numel(&o));
    be->ops->act_free(be->ctx, &dq), be->ops->act_free(be->ctx, &dk), be->ops->act_free(be->ctx, &dv);
    be->ops->act_free(be->ctx, &o);
    return host;
}

/* Against the CPU's (a score matrix, exact softmax) within tolerance; each sample's bits the same alone as
 * in the batch. nk = 0 means self-attention (keys: the queries' own tokens). */
static void test_attention_heads(int c, int heads, int b, int hq, int wq, int nk, float spread)
{
    char name[96];
    const int self = nk == 0, nq = hq * wq;
    nk = self ? nq : nk;
    snprintf(name, sizeof name, "attention_heads C%d/%d B%d %dx%d %s %d", c, heads, b, hq, wq,
             self ? "self" : "cross", nk);
    float *q = randn((size_t)c * b * nq, 61, spread), *k = self ? q : randn((size_t)c * b * nk, 62, spread);
    float *v = randn((size_t)c * b * nk, 63, 1.0f);
    float *ref = attention_heads_on(&cpu, heads, q, k, v, c, b, hq, wq, nk);
    float *got = attention_heads_on(&gpu, heads, q, k, v, c, b, hq, wq, nk);
    compare(name, ref, got, (size_t)c * b * nq);
    float *alone = malloc(sizeof(float) * c * b * nq), *qs = malloc(sizeof(float) * c * nq);
    float *ks = malloc(sizeof(float) * c * nk), *vs = malloc(sizeof(float) * c * nk);
    for (int s = 0; s < b; s++) {
        take_sample(q, c, b, nq, s, qs), take_sample(k, c, b, nk, s, ks), take_sample(v, c, b, nk, s, vs);
        float *one = attention_heads_on(&gpu, heads, qs, ks, vs, c, 1, hq, wq, nk);
        memcpy(alone + (size_t)s * c * nq, one, sizeof(float) * c * nq);
        free(one);
    }
    check_batch_invariance(name, got, alone, c, b, nq);
    float *again = attention_heads_on(&gpu, heads, q, k, v, c, b, hq, wq, nk);
    CHECK(memcmp(again, got, sizeof(float) * c * b * nq) == 0, "%s: a repeat differs", name);
    free(q), free(v), free(ref), free(got), free(alone), free(qs), free(ks), free(vs), free(again);
    if (!self)
        free(k);
}

/* GEGLU (erf: libm's erff against CUDA's, within tolerance) and guidance (exact: two roundings each). */
static void test_geglu_guidance(void)
{
    const int c = 6, b = 3, h = 5, w = 7;
    const size_t n = (size_t)c * b * h * w;
    float *x = randn(n, 71, 3.0f), *u = randn(n, 72, 1.0f), *res[2][2];
    const ComputeBackend *bes[2] = {&cpu, &gpu};
    for (int i = 0; i < 2; i++) {
        const ComputeBackend *be = bes[i];
        Act a = put_act(be, x, c, b, h, w), g = {0};
        CHECK(be->ops->geglu(be->ctx, &a, &g) == SOWER_OK && g.c == c / 2, "geglu failed");
        res[i][0] = get(be, g.data, n / 2);
        float *du = put(be, u, n), *out = NULL;
        CHECK(be->ops->buffer_alloc(be->ctx, &out, n) == SOWER_OK, "alloc");
        CHECK(be->ops->guidance(be->ctx, du, a.data, 7.5f, out, n) == SOWER_OK, "guidance failed");
        res[i][1] = get(be, out, n);
        be->ops->act_free(be->ctx, &a), be->ops->act_free(be->ctx, &g);
        be->ops->buffer_free(be->ctx, du), be->ops->buffer_free(be->ctx, out);
    }
    compare("geglu C6 B3 5x7", res[0][0], res[1][0], n / 2);
    compare("guidance 7.5", res[0][1], res[1][1], n);
    CHECK(memcmp(res[0][1], res[1][1], n * sizeof(float)) == 0, "guidance: not the CPU's bits");
    for (int i = 0; i < 2; i++)
        free(res[i][0]), free(res[i][1]);
    free(x), free(u);
}

static void test_forward(const char *dir, const CudaOptions *opt)
{
    Model m;
    if (model_load(&m, dir) != SOWER_OK) {
        sower_error_print(stderr, 1);
        CHECK(0, "cannot load %s", dir);
        return;
    }
    ComputeBackend mc, mg;
    /* 16-bit products: the tile loader here, gemm16's route below (its kept parameter copies) */
    const int sixteen = opt->precision == PRECISION_BF16 || opt->precision == PRECISION_FP16;
    if (sixteen)
        setenv("SOWER_GEMM16", "0", 1);
    int opened = compute_backend_cpu(&mc, &m.unet) == SOWER_OK;
    CHECK(opened, "cpu backend");
    if (opened && compute_backend_cuda(&mg, &m.unet, opt) != SOWER_OK) {
        sower_error_print(stderr, 1);
        CHECK(0, "cuda backend over %s", dir);
        compute_backend_close(&mc);
        opened = 0;
    }
    if (!opened) {
        model_free(&m);
        return;
    }
    const UNetConfig *cfg = &m.unet.cfg;
    const int b = 3, h = cfg->sample_height, w = cfg->sample_width;
    const size_t per = (size_t)cfg->in_channels * h * w;
    float *x = randn(per * b, 77, 1.0f), *ref = malloc(sizeof(float) * per * b), *got = malloc(sizeof(float) * per * b);
    float *one = malloc(sizeof(float) * per);
    float ts[3] = {999, 500, 1};
    /* A conditional model (Stable Diffusion) sees 77 tokens of text embeddings per sample. */
    const int tokens = 77, dim = cfg->conditional ? cfg->cross_attention_dim : 0;
    float *emb = cfg->conditional ? randn((size_t)b * tokens * dim, 78, 1.0f) : NULL; /* (b, tokens, dim) */
#define FORWARD(be, x, ts, nb, emb, out)                                                                        \
    ((emb) ? unet_forward_on_cond(be, x, ts, emb, tokens, nb, h, w, out) : unet_forward_on(be, x, ts, nb, h, w, out))
    CHECK(FORWARD(&mc, x, ts, b, emb, ref) == SOWER_OK, "cpu forward");
    CHECK(FORWARD(&mg, x, ts, b, emb, got) == SOWER_OK, "gpu forward");
    char name[160];
    snprintf(name, sizeof name, "UNet forward B3 (%s) %s", dir, precision_name(opt->precision));
    compare(name, ref, got, per * b);
    int differ = 0;
    for (int s = 0; s < b; s++) {
        CHECK(FORWARD(&mg, x + per * s, &ts[s], 1, emb ? emb + (size_t)s * tokens * dim : NULL, one) == SOWER_OK,
              "gpu forward batch 1");
        differ += memcmp(one, got + per * s, sizeof(float) * per) != 0;
    }
    CHECK(differ == 0, "UNet forward: %d of %d samples differ between batch %d and batch 1", differ, b, b);
    ComputeBackend alt;
    setenv("SOWER_GEMM16", "1", 1);
    if (sixteen && compute_backend_cuda(&alt, &m.unet, opt) == SOWER_OK) {
        float *routed = malloc(sizeof(float) * per * b);
        CHECK(FORWARD(&alt, x, ts, b, emb, routed) == SOWER_OK, "gpu forward (gemm16)");
        CHECK(FORWARD(&alt, x + per, &ts[1], 1, emb ? emb + (size_t)tokens * dim : NULL, one) == SOWER_OK,
              "gpu forward batch 1 (gemm16)");
        const int same = memcmp(routed, got, sizeof(float) * per * b) == 0;
        CHECK(same, "%s: gemm16's route differs from the tile loader", name);
        CHECK(memcmp(one, got + per, sizeof(float) * per) == 0, "%s: gemm16's route, batch 1 differs", name);
        printf("  %-44s gemm16 route vs tile loader: %s\n", name, same ? "same bits" : "DIFFER");
        free(routed);
        compute_backend_close(&alt);
    } else
        CHECK(!sixteen, "cuda backend over %s (gemm16)", dir);
    unsetenv("SOWER_GEMM16");
#undef FORWARD
    free(x), free(ref), free(got), free(one), free(emb);
    compute_backend_close(&mg);
    compute_backend_close(&mc);
    model_free(&m);
}

/* A pipeline folder's VAE decoder on both backends (its weights mirrored to the device once, then
 * reused: the second decode must give the first's bits). Skipped for folders without vae/. */
static void test_vae(const char *dir, const CudaOptions *opt)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fclose(f);
    Vae v;
    UNet none;
    memset(&none, 0, sizeof none);
    ComputeBackend mg;
    if (vae_load(&v, dir) != SOWER_OK || compute_backend_cuda(&mg, &none, opt) != SOWER_OK) {
        sower_error_print(stderr, 1);
        CHECK(0, "VAE of %s on both backends", dir);
        return;
    }
    const int b = 2, h = 8, w = 8, f8 = v.cfg.scale_factor;
    const size_t in = (size_t)v.cfg.latent_channels * h * w, out = (size_t)v.cfg.out_channels * h * f8 * w * f8;
    float *z = randn(in * b, 81, 1.0f), *ref = malloc(sizeof(float) * out * b), *got = malloc(sizeof(float) * out * b);
    float *again = malloc(sizeof(float) * out);
    CHECK(vae_decode(&cpu, &v, z, b, h, w, ref) == SOWER_OK, "cpu decode");
    CHECK(vae_decode(&mg, &v, z, b, h, w, got) == SOWER_OK, "gpu decode");
    CHECK(vae_decode(&mg, &v, z + in, 1, h, w, again) == SOWER_OK, "gpu decode again");
    char name[160];
    snprintf(name, sizeof name, "VAE decode B2 %dx%d (%s) %s", h, w, dir, precision_name(opt->precision));
    compare(name, ref, got, out * b);
    CHECK(memcmp(again, got + out, sizeof(float) * out) == 0, "VAE: a second decode (weights reused) differs");
    free(z), free(ref), free(got), free(again);
    compute_backend_close(&mg);
    vae_free(&v);
}

#ifdef SOWER_TEST_EMULATED
/* gpu_gemm picks its tile (128 or 64) from the shape and the device's SM count, which the
 * emulator takes from SOWER_EMU_SMS: with 1, products of more than 64 rows use the 128 tile; with
 * 1000000, every product the 64 one. No bit may move. */
static void test_tile_choice(const ConvCase *t, Precision precision)
{
    UNet none;
    memset(&none, 0, sizeof none);
    CudaOptions opt = {0};
    opt.precision = precision;
    ComputeBackend wide, narrow;
    setenv("SOWER_EMU_SMS", "1", 1);
    int ok = compute_backend_cuda(&wide, &none, &opt) == SOWER_OK;
    setenv("SOWER_EMU_SMS", "1000000", 1);
    ok = ok && compute_backend_cuda(&narrow, &none, &opt) == SOWER_OK;
    unsetenv("SOWER_EMU_SMS");
    CHECK(ok, "cuda backends for the tile test");
    if (!ok)
        return;
    float *wt = randn((size_t)t->cout * t->cin * t->k * t->k, 5, 0.1f), *bias = randn(t->cout, 6, 0.1f);
    float *x = randn((size_t)t->cin * t->b * t->h * t->w, 7, 1.0f);
    size_t n_wide, n_narrow;
    float *a = conv_on(&wide, t, wt, bias, x, t->b, &n_wide), *b = conv_on(&narrow, t, wt, bias, x, t->b, &n_narrow);
    CHECK(n_wide == n_narrow && memcmp(a, b, n_wide * sizeof(float)) == 0, "%s %s: tiles 128 and 64 differ", t->name,
          precision_name(precision));
    printf("  %-44s %s tiles 128 and 64: %s\n", t->name, precision_name(precision),
           memcmp(a, b, n_wide * sizeof(float)) ? "DIFFER" : "same bits");
    free(wt), free(bias), free(x), free(a), free(b);
    compute_backend_close(&wide);
    compute_backend_close(&narrow);
}
#endif

/* Opens a CUDA backend without a model, in `precision`, under the environment settings NAME, VALUE, ...
 * (NULL-terminated; each unset again afterwards); its status. */
static int open_cuda_with(ComputeBackend *be, Precision precision, const char *const *settings)
{
    UNet none;
    memset(&none, 0, sizeof none);
    CudaOptions opt = {0};
    opt.precision = precision;
    for (int i = 0; settings[i]; i += 2)
        setenv(settings[i], settings[i + 1], 1);
    const int status = compute_backend_cuda(be, &none, &opt);
    for (int i = 0; settings[i]; i += 2)
        unsetenv(settings[i]);
    return status;
}

/* bf16 and fp16 products by gemm16's pipelined route (SOWER_GEMM16=1) must give the tile loader's
 * bits (SOWER_GEMM16=0), with its B workspace whole and, with SOWER_GPU_WORKSPACE_KB=1024, in column
 * chunks. The weights here are the test's, so A is rounded per product (a model's parameters are
 * kept rounded: test_forward compares the routes over whole models). */
static void test_gemm16_route(const ConvCase *cases, size_t n_cases, Precision precision)
{
    if (precision != PRECISION_BF16 && precision != PRECISION_FP16)
        return;
    enum { ROUTES = 3 };
    const char *const settings[ROUTES][5] = {{"SOWER_GEMM16", "0", NULL},
                                             {"SOWER_GEMM16", "1", NULL},
                                             {"SOWER_GEMM16", "1", "SOWER_GPU_WORKSPACE_KB", "1024", NULL}};
    ComputeBackend be[ROUTES];
    int opened = 0;
    while (opened < ROUTES && open_cuda_with(&be[opened], precision, settings[opened]) == SOWER_OK)
        opened++;
    CHECK(opened == ROUTES, "cuda backends for the gemm16 route test");
    int differ = 0, products = 0;
    for (size_t c = 0; c < n_cases && opened == ROUTES; c++) {
        const ConvCase *t = &cases[c];
        float *wt = randn((size_t)t->cout * t->cin * t->k * t->k, 91, 0.1f), *bias = randn(t->cout, 92, 0.1f);
        float *x = randn((size_t)t->cin * t->b * t->h * t->w, 93, 1.0f), *out[ROUTES];
        size_t n[ROUTES];
        for (int r = 0; r < ROUTES; r++)
            out[r] = conv_on(&be[r], t, wt, bias, x, t->b, &n[r]);
        for (int r = 1; r < ROUTES; r++) {
            const int same = n[r] == n[0] && memcmp(out[r], out[0], n[0] * sizeof(float)) == 0;
            CHECK(same, "%s %s: gemm16 route%s differs from the tile loader", t->name, precision_name(precision),
                  settings[r][2] ? " (chunked)" : "");
            differ += !same, products++;
        }
        for (int r = 0; r < ROUTES; r++)
            free(out[r]);
        free(wt), free(bias), free(x);
    }
    if (opened == ROUTES) { /* a Linear: B is its input transposed (k-contiguous columns) */
        const int batch = 5, in = 72, outs = 40;
        float *wt = randn((size_t)outs * in, 94, 0.1f), *bias = randn(outs, 95, 0.1f), *x = randn((size_t)batch * in, 96, 1);
        float *y[ROUTES];
        for (int r = 0; r < ROUTES; r++)
            y[r] = linear_on(&be[r], wt, bias, x, batch, in, outs);
        for (int r = 1; r < ROUTES; r++) {
            const int same = memcmp(y[r], y[0], sizeof(float) * batch * outs) == 0;
            CHECK(same, "linear %s: gemm16 route differs from the tile loader", precision_name(precision));
            differ += !same, products++;
        }
        for (int r = 0; r < ROUTES; r++)
            free(y[r]);
        free(wt), free(bias), free(x);
    }
    printf("  gemm16 route vs tile loader, %s: %d of %d products differ\n", precision_name(precision), differ,
           products);
    for (int r = 0; r < opened; r++)
        compute_backend_close(&be[r]);
}

/* bf16 and fp16 with SOWER_ATTENTION16=1: attention_heads on tensor cores (its own identity), against the
 * CPU within the pass's tolerance, batch-invariant and repeatable (test_attention_heads on a backend
 * opened so); small: the partial tiles, cross-attention and SD 1.5's heads of 40, else SD's shapes too. */
static void test_attention16(Precision precision, int small)
{
    if (precision != PRECISION_BF16 && precision != PRECISION_FP16)
        return;
    const ComputeBackend plain = gpu; /* (the pass's own, already closed: given back as it was) */
    const char *const on[] = {"SOWER_ATTENTION16", "1", NULL};
    const int opened = open_cuda_with(&gpu, precision, on) == SOWER_OK;
    CHECK(opened, "cuda backend with SOWER_ATTENTION16=1");
    if (!opened) {
        gpu = plain;
        return;
    }
    CHECK(strstr(gpu.identity, "attention on tensor cores") != NULL,
          "SOWER_ATTENTION16=1 is not in the backend identity: %s", gpu.identity);
    printf("test_gpu_ops: %s\n", gpu.identity);
    test_attention_heads(16, 2, 3, 5, 7, 0, 1.0f);  /* 35 queries and keys: partial tiles */
    test_attention_heads(24, 3, 2, 4, 4, 77, 2.0f); /* cross: 77 keys, partial last tile */
    test_attention_heads(40, 1, 2, 2, 3, 0, 1.0f);  /* head width 40 (SD 1.5's first level) */
    /* With a 16 KiB workspace the rounded q, k, v go one sample at a time: the same bits. */
    ComputeBackend chunked;
    const char *const on_small[] = {"SOWER_ATTENTION16", "1", "SOWER_GPU_WORKSPACE_KB", "16", NULL};
    const int chunked_open = open_cuda_with(&chunked, precision, on_small) == SOWER_OK;
    CHECK(chunked_open, "cuda backend with SOWER_GPU_WORKSPACE_KB=16");
    for (int i = 0; i < 2 && chunked_open; i++) {
        const int c = i ? 24 : 16, heads = i ? 3 : 2, b = 3, hq = i ? 4 : 5, wq = i ? 4 : 7, nk = i ? 77 : hq * wq;
        float *q = randn((size_t)c * b * hq * wq, 64, 1.0f), *k = randn((size_t)c * b * nk, 65, 1.0f);
        float *v = randn((size_t)c * b * nk, 66, 1.0f);
        float *whole = attention_heads_on(&gpu, heads, q, k, v, c, b, hq, wq, nk);
        float *parts = attention_heads_on(&chunked, heads, q, k, v, c, b, hq, wq, nk);
        const int same = memcmp(whole, parts, sizeof(float) * c * b * hq * wq) == 0;
        CHECK(same, "attention16 C%d/%d: samples in chunks differ from all at once", c, heads);
        printf("  attention16 C%d/%d B%d, one sample at a time: %s\n", c, heads, b, same ? "same bits" : "DIFFER");
        free(q), free(k), free(v), free(whole), free(parts);
    }
    if (chunked_open)
        compute_backend_close(&chunked);
    if (!small) {
        test_attention_heads(320, 8, 2, 32, 32, 0, 1.0f);  /* SD 1.5's first level, 1024 tokens */
        test_attention_heads(320, 8, 3, 16, 16, 77, 3.0f); /* cross-attention over 77 text tokens */
        test_attention_heads(640, 10, 2, 8, 8, 0, 1.0f);   /* SD 2.x: heads of 64 */
        test_attention_heads(640, 8, 2, 8, 8, 77, 1.0f);   /* heads of 80 */
        test_attention_heads(1280, 8, 2, 8, 8, 77, 1.0f);  /* heads of 160, the widest it takes */
        test_attention_heads(512, 2, 2, 4, 4, 0, 1.0f);    /* heads of 256: the fp32 kernel */
    }
    compute_backend_close(&gpu);
    gpu = plain;
}

/* Malformed route and workspace settings are refused by name when the backend opens (exit 2), never
 * read as a default. */
static void test_bad_settings(void)
{
    const char *cases[][2] = {{"SOWER_GEMM16", "yes"}, {"SOWER_ATTENTION16", "2"}, {"SOWER_GPU_WORKSPACE_KB", "0"},
                              {"SOWER_GPU_WORKSPACE_KB", "-5"}, {"SOWER_GPU_WORKSPACE_KB", "12MB"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ComputeBackend be;
        const char *const setting[] = {cases[i][0], cases[i][1], NULL};
        const int status = open_cuda_with(&be, PRECISION_BF16, setting);
        const char *message = sower_error_message();
        CHECK(status == SOWER_EUSAGE && message && strstr(message, cases[i][0]), "%s=%s: status %d, \"%s\"", cases[i][0],
              cases[i][1], status, message ? message : "");
        sower_error_clear();
        if (status == SOWER_OK)
            compute_backend_close(&be);
    }
}

/* Both backends fill every operation of backend.h's table, and a table with a hole is refused. */
static void test_table_complete(void)
{
    CHECK(backend_ops_check(cpu.ops, "cpu") == SOWER_OK, "the CPU backend's table has a hole");
    CHECK(backend_ops_check(gpu.ops, "cuda") == SOWER_OK, "the CUDA backend's table has a hole");
    UNetOps holed = *gpu.ops;
    holed.divide_scalar = NULL;
    CHECK(backend_ops_check(&holed, "holed") == SOWER_EINTERNAL, "a missing operation passes the check");
    sower_error_clear();
}

int main(int argc, char **argv)
{
    /* --small: fewer, smaller cases (the emulated build runs every GPU thread as a host fiber);
     * --model DIR (up to 4 times): also a whole forward pass of that model folder (a conditional one with
     * random text embeddings); --precisions fp32,bf16,...: only those passes (default: all four);
     * --torch-cuda-reference FILE: torch's own torch-cuda noise too (-only: that check alone). */
    int small = 0;
    const char *model_dirs[4] = {NULL};
    unsigned precisions = ~0u; /* bit p: run the pass of Precision p */
    const char *torch_cuda_reference = NULL; /* --torch-cuda-reference FILE */
    int reference_only = 0;                  /* --torch-cuda-reference-only FILE: that check alone */
    int n_models = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0)
            small = 1;
        else if (strcmp(argv[i], "--precisions") == 0 && i + 1 < argc) {
            precisions = 0;
            for (char *name = strtok(argv[++i], ","); name; name = strtok(NULL, ",")) {
                Precision p;
                if (!precision_from_name(name, &p)) {
                    fprintf(stderr, "test_gpu_ops: --precisions: unknown '%s'\n", name);
                    return 2;
                }
                precisions |= 1u << p;
            }
        } else if (strcmp(argv[i], "--torch-cuda-reference") == 0 && i + 1 < argc)
            torch_cuda_reference = argv[++i];
        else if (strcmp(argv[i], "--torch-cuda-reference-only") == 0 && i + 1 < argc)
            torch_cuda_reference = argv[++i], reference_only = 1;
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model_dirs[n_models++ % 4] = argv[++i];
    }
#ifndef SOWER_TEST_EMULATED /* built against tests/cuda_emu: there is always its one "device" */
    gpu_test_devices_or_skip("test_gpu_ops");
#endif
    UNet none;
    memset(&none, 0, sizeof none); /* the operations take their weights from the test, not a model */
    if (compute_backend_cpu(&cpu, &none) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 1;
    }
    if (reference_only) {
        CudaOptions opt = {0};
        if (compute_backend_cuda(&gpu, &none, &opt) != SOWER_OK) {
            sower_error_print(stderr, 1);
            return 1;
        }
        printf("test_gpu_ops: %s\n", gpu.identity);
        test_torch_cuda_reference(torch_cuda_reference);
        compute_backend_close(&gpu);
        compute_backend_close(&cpu);
        return check_exit("test_gpu_ops");
    }
    const ConvCase small_convs[] = {
        {3, 32, 3, 3, 8, 8, {1, 1, 1, 1, 1}, "conv_in 3x3 3 -> 32, B3 8x8"},
        {32, 130, 3, 3, 6, 6, {1, 1, 1, 1, 1}, "conv 3x3 32 -> 130, B3 6x6 (two row tiles)"},
        {16, 16, 3, 3, 8, 8, {2, 1, 1, 1, 1}, "downsample 3x3 s2 pad 1, B3 8x8"},
        {16, 16, 3, 3, 8, 8, {2, 0, 0, 1, 1}, "downsample 3x3 s2 pad (0,1), B3 8x8"},
        {48, 24, 1, 3, 4, 4, {1, 0, 0, 0, 0}, "shortcut 1x1 48 -> 24, B3 4x4"},
        {37, 5, 3, 3, 5, 7, {1, 1, 1, 1, 1}, "conv 3x3 37 -> 5, B3 5x7 (edges)"},
        {96, 16, 3, 3, 16, 16, {1, 1, 1, 1, 1}, "conv 3x3 96 -> 16, B3 16x16 (gemm16: 2 chunks of 1 MiB)"},
    };
    const ConvCase convs[] = {
        {3, 128, 3, 7, 32, 32, {1, 1, 1, 1, 1}, "conv_in 3x3 3 -> 128, B7 32x32"},
        {128, 128, 3, 7, 32, 32, {1, 1, 1, 1, 1}, "conv 3x3 128 -> 128, B7 32x32"},
        {256, 256, 3, 7, 8, 8, {1, 1, 1, 1, 1}, "conv 3x3 256 -> 256, B7 8x8"},
        {128, 3, 3, 7, 32, 32, {1, 1, 1, 1, 1}, "conv_out 3x3 128 -> 3, B7 32x32"},
        {64, 64, 3, 7, 16, 16, {2, 1, 1, 1, 1}, "downsample 3x3 s2 pad 1, B7 16x16"},
        {64, 64, 3, 7, 16, 16, {2, 0, 0, 1, 1}, "downsample 3x3 s2 pad (0,1), B7 16x16"},
        {384, 256, 1, 7, 16, 16, {1, 0, 0, 0, 0}, "shortcut 1x1 384 -> 256, B7 16x16"},
        {37, 45, 3, 7, 5, 7, {1, 1, 1, 1, 1}, "conv 3x3 37 -> 45, B7 5x7 (edges)"},
    };
    /* A pass per arithmetic: the default fp32, then the opt-in tensor-core ones, tf32, bf16 and fp16
     * (matrix products only, so the operations without one run in the first pass alone). */
    for (Precision precision = PRECISION_FP32; precision <= PRECISION_FP16; precision = (Precision)(precision + 1)) {
        if (!(precisions & (1u << precision)))
            continue;
        const int fp32 = precision == PRECISION_FP32;
        CudaOptions opt = {0};
        opt.precision = precision;
        tol = fp32 ? TOL_FP32 : precision == PRECISION_BF16 ? TOL_BF16 : TOL_TF32;
        if (compute_backend_cuda(&gpu, &none, &opt) != SOWER_OK) {
            sower_error_print(stderr, 1);
            return 1;
        }
        printf("test_gpu_ops: %s\n", gpu.identity);
        if (small) {
            for (size_t i = 0; i < sizeof small_convs / sizeof small_convs[0]; i++)
                test_conv(&small_convs[i], 1000 + 10 * i);
            test_linear(3, 32, 130);
            test_attention(32, 1, 3, 4, 4);
            test_attention(32, 4, 3, 3, 5);
            if (fp32) {
                test_attention_heads(16, 2, 3, 5, 7, 0, 1.0f);  /* 35 queries and keys: partial tiles */
                test_attention_heads(24, 3, 2, 4, 4, 77, 2.0f); /* cross: 77 keys, 3 key tiles */
                test_attention_heads(40, 1, 2, 2, 3, 0, 1.0f);  /* head width 40 (SD 1.5's first level) */
                test_layer_norm(24, 3, 5, 7);
                test_geglu_guidance();
                test_group_norm(64, 32, 3, 4, 4, 1);
                test_group_norm(8, 1, 3, 17, 19, 0); /* more elements than a block's threads */
            }
        } else {
            for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++)
                test_conv(&convs[i], 1000 + 10 * i);
            test_linear(7, 128, 512);
            test_linear(7, 512, 256);
            test_attention(256, 1, 7, 16, 16);
            test_attention(64, 4, 7, 8, 8);
            test_attention(32, 2, 7, 3, 5);
            if (fp32) { /* attention_heads is fp32 in every arithmetic */
                test_attention_heads(320, 8, 2, 32, 32, 0, 1.0f);  /* SD 1.5's first level, 1024 tokens */
                test_attention_heads(320, 8, 3, 16, 16, 77, 3.0f); /* cross-attention over 77 text tokens */
                test_attention_heads(640, 10, 2, 8, 8, 0, 1.0f);   /* SD 2.x: heads of 64 */
                test_attention_heads(1280, 8, 2, 8, 8, 77, 1.0f);  /* heads of 160 */
                test_attention_heads(512, 2, 2, 4, 4, 0, 1.0f);    /* heads of 256, the widest */
                test_layer_norm(320, 3, 32, 32);
                test_layer_norm(1280, 3, 8, 8);
                test_geglu_guidance();
                test_group_norm(128, 32, 7, 32, 32, 1);
                test_group_norm(96, 32, 7, 8, 8, 0);
                test_group_norm(64, 1, 7, 5, 3, 1);
            }
        }
        if (fp32) {
            test_table_complete();
            test_bad_settings();
            test_elementwise();
            test_scheduler_step();
            test_torch_cuda_randn();
            if (torch_cuda_reference)
                test_torch_cuda_reference(torch_cuda_reference);
        }
        compute_backend_close(&gpu);
        /* Whole models in every arithmetic on a device; emulated (--small), fp32 alone: the tensor-core
         * ones differ from it in the products alone, checked above op by op (tf32's whole models took 30 s
         * of fibers in CI; run_emulated_gpu renders tf32 and bf16 through the whole program). */
        for (int i = 0; i < n_models && i < 4 && (!small || precision == PRECISION_FP32); i++) {
            test_forward(model_dirs[i], &opt);
            test_vae(model_dirs[i], &opt);
        }
        if (small && n_models > 0 && precision == PRECISION_BF16) /* gemm16's kept copies, emulated: one model */
            test_forward(model_dirs[0], &opt);
#ifdef SOWER_TEST_EMULATED
        test_tile_choice(&small_convs[1], precision);
#endif
        test_gemm16_route(small_convs, sizeof small_convs / sizeof small_convs[0], precision);
        test_attention16(precision, small);
        if (!small)
            test_gemm16_route(convs, sizeof convs / sizeof convs[0], precision);
    }
    compute_backend_close(&cpu);
    return check_exit("test_gpu_ops");
}
