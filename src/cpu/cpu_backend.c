/* cpu_backend.c: the CPU backend: ops.c's operations on host memory (backend.h's table). */
#include "cpu_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "ops_transformer.h"
#include "winograd.h"

typedef struct {
    Scratch scratch;  /* packed panels, attention scores: reused by every operation; kept packed weights */
    const UNet *unet; /* whose weights' packs scratch may keep (declared at the first operation) */
    int declared;
} CpuContext;

/* The context's scratch, its model's weights declared to it first (the model is bound by the time an
 * operation runs, not always when the backend opens). */
static int scratch_of(void *ctx, Scratch **scratch)
{
    CpuContext *c = ctx;
    if (!c->declared && c->unet && c->unet->weights.n_params > 0) {
        const WeightList *list = &c->unet->weights;
        const float **weights = malloc((size_t)list->n_params * sizeof *weights);
        if (!weights)
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %d weight pointers", list->n_params);
        for (int i = 0; i < list->n_params; i++)
            weights[i] = *list->params[i].slot;
        const int status = weight_packs_allow(&c->scratch.packs, weights, list->n_params);
        free(weights);
        SOWER_TRY(status);
    }
    c->declared = 1;
    *scratch = &c->scratch;
    return SOWER_OK;
}

static int cpu_act_alloc(void *ctx, Act *a, int c, int b, int h, int w)
{
    (void)ctx;
    return act_alloc(a, c, b, h, w);
}

static void cpu_act_free(void *ctx, Act *a)
{
    (void)ctx;
    act_free(a);
}

static int cpu_buffer_alloc(void *ctx, float **buf, size_t floats)
{
    (void)ctx;
    *buf = malloc((floats ? floats : 1) * sizeof(float));
    if (!*buf)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu floats", floats);
    return SOWER_OK;
}

static void cpu_buffer_free(void *ctx, float *buf)
{
    (void)ctx;
    free(buf);
}

static int cpu_copy(void *ctx, float *dst, const float *src, size_t floats)
{
    (void)ctx;
    memcpy(dst, src, floats * sizeof(float));
    return SOWER_OK;
}

static int cpu_from_nchw(void *ctx, const float *x, int batch, int center, Act *out)
{
    (void)ctx;
    const size_t hw = (size_t)out->h * out->w;
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < out->c; c++) {
            const float *src = x + ((size_t)b * out->c + c) * hw;
            float *dst = out->data + ((size_t)c * batch + b) * hw;
            for (size_t i = 0; i < hw; i++)
                dst[i] = center ? 2.0f * src[i] - 1.0f : src[i];
        }
    return SOWER_OK;
}

static int cpu_to_nchw(void *ctx, const Act *in, float *x)
{
    (void)ctx;
    const size_t hw = (size_t)in->h * in->w;
    for (int b = 0; b < in->b; b++)
        for (int c = 0; c < in->c; c++)
            memcpy(x + ((size_t)b * in->c + c) * hw, in->data + ((size_t)c * in->b + b) * hw, hw * sizeof(float));
    return SOWER_OK;
}

static int cpu_conv2d(void *ctx, const ConvParams *p, ConvGeometry g, const Act *in, Act *out)
{
    Scratch *scratch = NULL;
    SOWER_TRY(scratch_of(ctx, &scratch));
    return op_conv2d(p, g, in, out, scratch);
}

static int cpu_group_norm(void *ctx, const GroupNormParams *p, const Act *in, Act *out, int silu)
{
    (void)ctx;
    op_group_norm(p, in, out, silu);
    return SOWER_OK;
}

static int cpu_silu(void *ctx, float *x, size_t n)
{
    (void)ctx;
    op_silu(x, n);
    return SOWER_OK;
}

static int cpu_linear(void *ctx, const LinearParams *p, const float *x, int batch, float *y)
{
    (void)ctx;
    op_linear(p, x, batch, y);
    return SOWER_OK;
}

static int cpu_upsample(void *ctx, const Act *in, int out_h, int out_w, Act *out)
{
    (void)ctx;
    return op_upsample_nearest(in, out_h, out_w, out);
}

static int cpu_attention(void *ctx, const AttentionParams *p, const Act *x, Act *out)
{
    Scratch *scratch = NULL;
    SOWER_TRY(scratch_of(ctx, &scratch));
    return op_attention(p, x, out, scratch);
}

static int cpu_add_channel_bias(void *ctx, Act *x, const float *t)
{
    (void)ctx;
    const size_t hw = (size_t)x->h * x->w;
    for (int c = 0; c < x->c; c++)
        for (int n = 0; n < x->b; n++) {
            float add = t[(size_t)n * x->c + c];
            float *plane = x->data + ((size_t)c * x->b + n) * hw;
            for (size_t i = 0; i < hw; i++)
                plane[i] += add;
        }
    return SOWER_OK;
}

static int cpu_residual(void *ctx, const Act *shortcut, Act *out, float scale)
{
    (void)ctx;
    const size_t n = act_numel(out);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out->data[i] = (shortcut->data[i] + out->data[i]) / scale;
    return SOWER_OK;
}

static int cpu_concat_channels(void *ctx, const Act *a, const Act *b, Act *out)
{
    (void)ctx;
    SOWER_TRY(act_alloc(out, a->c + b->c, a->b, a->h, a->w));
    memcpy(out->data, a->data, act_numel(a) * sizeof(float));
    memcpy(out->data + act_numel(a), b->data, act_numel(b) * sizeof(float));
    return SOWER_OK;
}

static int cpu_scheduler_step(void *ctx, const StepCoefficients *k, const float *model_output, float *sample,
                              const float *noise, size_t n)
{
    (void)ctx;
    for (size_t j = 0; j < n; j++)
        sample[j] = scheduler_step_value(k, model_output[j], sample[j], noise ? noise[j] : 0.0f);
    return SOWER_OK;
}

static int cpu_divide_scalar(void *ctx, const float *x, float divisor, float *y, size_t n)
{
    (void)ctx;
    double t0 = ops_profile_now();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] / divisor; /* a division, never a reciprocal multiply: no fast-math (CMakeLists.txt) */
    ops_profile_add(PROF_ELEMENTWISE, t0);
    return SOWER_OK;
}

static int cpu_layer_norm(void *ctx, const LayerNormParams *p, const Act *in, Act *out)
{
    (void)ctx;
    double t0 = ops_profile_now();
    op_layer_norm_channels(p, in, out);
    ops_profile_add(PROF_GROUP_NORM, t0);
    return SOWER_OK;
}

static int cpu_attention_heads(void *ctx, int heads, const Act *q, const Act *k, const Act *v, Act *out)
{
    double t0 = ops_profile_now();
    Scratch *scratch = NULL;
    SOWER_TRY(scratch_of(ctx, &scratch));
    int status = op_attention_heads(heads, q, k, v, out, scratch);
    ops_profile_add(PROF_ATTENTION, t0);
    return status;
}

static int cpu_geglu(void *ctx, const Act *in, Act *out)
{
    (void)ctx;
    double t0 = ops_profile_now();
    int status = op_geglu(in, out);
    ops_profile_add(PROF_ELEMENTWISE, t0);
    return status;
}

static int cpu_guidance(void *ctx, const float *uncond, const float *cond, float scale, float *out, size_t n)
{
    (void)ctx;
    double t0 = ops_profile_now();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = uncond[i] + scale * (cond[i] - uncond[i]);
    ops_profile_add(PROF_ELEMENTWISE, t0);
    return SOWER_OK;
}

static const UNetOps cpu_ops = {
    .act_alloc = cpu_act_alloc,
    .act_free = cpu_act_free,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .from_nchw = cpu_from_nchw,
    .to_nchw = cpu_to_nchw,
    .conv2d = cpu_conv2d,
    .group_norm = cpu_group_norm,
    .silu = cpu_silu,
    .linear = cpu_linear,
    .upsample_nearest = cpu_upsample,
    .attention = cpu_attention,
    .add_channel_bias = cpu_add_channel_bias,
    .residual = cpu_residual,
    .concat_channels = cpu_concat_channels,
    .scheduler_step = cpu_scheduler_step,
    .divide_scalar = cpu_divide_scalar,
    .layer_norm = cpu_layer_norm,
    .attention_heads = cpu_attention_heads,
    .geglu = cpu_geglu,
    .guidance = cpu_guidance,
};

static void cpu_close(void *ctx)
{
    CpuContext *c = ctx;
    scratch_free(&c->scratch);
    free(c);
}

const char *compute_backend_cpu_identity(void)
{
    static char identity[BACKEND_IDENTITY_SIZE];
    if (!identity[0]) {
        const char *winograd = conv2d_winograd_identity();
        snprintf(identity, sizeof identity, "%s%s%s", gemm_backend_identity(), winograd ? "; " : "",
                 winograd ? winograd : "");
    }
    return identity;
}

/* The CPU's operations read the host's weights where they are. */
static int cpu_mirror_weights(void *ctx, const unsigned char key[32], const WeightList *list, const void *host,
                              size_t size, void *mirror)
{
    (void)ctx, (void)key, (void)list;
    memcpy(mirror, host, size);
    return SOWER_OK;
}

int compute_backend_cpu(ComputeBackend *be, const UNet *u)
{
    memset(be, 0, sizeof *be);
    SOWER_TRY(gemm_reserve_packing()); /* before the activations take the memory: BLIS aborts without it */
    CpuContext *c = calloc(1, sizeof *c);
    if (!c)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    c->unet = u;
    be->ops = &cpu_ops;
    be->ctx = c;
    be->unet = u;
    be->kind = BACKEND_CPU;
    be->close = cpu_close;
    be->mirror_weights = cpu_mirror_weights;
    snprintf(be->identity, sizeof be->identity, "%s", compute_backend_cpu_identity());
    be->determinism = "per-seed torch.Generator('cpu').manual_seed(seed); activations (C,B,H,W), one GEMM per conv "
                      "over the batch (16 over its tiles for Winograd convs), BLIS conventional path with sup off; "
                      "-ffp-contract=off, no fast-math; bits independent of batch, rank count, thread count";
    return SOWER_OK;
}

int unet_forward_cpu(const UNet *u, const float *x, const float *timesteps, int batch, int height, int width,
                     float *out)
{
    ComputeBackend cpu;
    SOWER_TRY(compute_backend_cpu(&cpu, u));
    int status = unet_forward_on(&cpu, x, timesteps, batch, height, width, out);
    compute_backend_close(&cpu);
    SOWER_TRY(status);
    return SOWER_OK;
}
