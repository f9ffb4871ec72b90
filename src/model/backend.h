/* backend.h: the table of operations a UNet forward pass runs on, chosen at run time.
 *
 * unet.c walks the architecture once, in one order, and calls these operations; a backend
 * decides where activations live (host memory for the CPU, device memory for CUDA) and how each
 * operation is computed. Activations are always (C, B, H, W) (ops.h). Every operation computes a
 * sample's values from that sample alone, in an order that does not depend on the batch, so a
 * seed's bits never depend on the batch it is rendered in, on either backend.
 *
 * A backend also carries `unet`: the model whose weight pointers the operations can read (the
 * loaded model itself on the CPU, a mirror pointing at device copies on CUDA), and `identity`: a
 * line naming what computes, written into every output file, because float bits are reproducible
 * only on the same kind of hardware with the same kernels. */
#ifndef SOWER_BACKEND_H
#define SOWER_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "layers.h"
#include "philox.h"
#include "scheduler_step.h"
#include "unet.h"
#include "weights.h"

#ifdef __cplusplus
extern "C" { /* the CUDA backend (src/gpu/, C++) implements compute_backend_cuda */
#endif

enum { BACKEND_IDENTITY_SIZE = 512 };

/* Which backend computes (manifest `pipeline.backend`, option --backend). */
typedef enum { BACKEND_CPU, BACKEND_CUDA } Backend;
/* The arithmetic of the UNet's matrix products: fp32 everywhere (default), or on the cuda backend's
 * tensor cores from inputs rounded to TF32, BF16 or FP16, accumulated in fp32 (opt-in: each its own
 * backend identity). The names, in this order: PRECISION_NAMES. */
typedef enum { PRECISION_FP32, PRECISION_TF32, PRECISION_BF16, PRECISION_FP16 } Precision;
#define PRECISION_NAMES {"fp32", "tf32", "bf16", "fp16", NULL}
/* "fp32", "tf32", "bf16" or "fp16". */
const char *precision_name(Precision p);
/* *p = the precision of that name; 0 (and *p unchanged) for an unknown name. */
int precision_from_name(const char *name, Precision *p);

typedef struct {
    /* Memory where the operations read and write; Act data and buffers are backend memory. */
    int (*act_alloc)(void *ctx, Act *a, int c, int b, int h, int w);
    void (*act_free)(void *ctx, Act *a); /* safe on a zeroed Act */
    int (*buffer_alloc)(void *ctx, float **buf, size_t floats);
    void (*buffer_free)(void *ctx, float *buf); /* safe on NULL */
    int (*upload)(void *ctx, float *dst, const float *host_src, size_t floats);
    int (*download)(void *ctx, float *host_dst, const float *src, size_t floats);

    /* Layout: x (B, C, H, W) NCHW in backend memory -> out (C, B, H, W), as 2x - 1 when center;
     * and back. */
    int (*from_nchw)(void *ctx, const float *x, int batch, int center, Act *out);
    int (*to_nchw)(void *ctx, const Act *in, float *x);

    /* The operations, on backend memory (the CPU's are cpu/ops.h). conv2d, upsample_nearest, attention and
     * concat_channels allocate their output; group_norm, linear, residual and the rest write into
     * memory the caller provides. */
    int (*conv2d)(void *ctx, const ConvParams *p, ConvGeometry g, const Act *in, Act *out);
    int (*group_norm)(void *ctx, const GroupNormParams *p, const Act *in, Act *out, int silu);
    int (*silu)(void *ctx, float *x, size_t n);
    int (*linear)(void *ctx, const LinearParams *p, const float *x, int batch, float *y);
    /* out (C, B, out_h, out_w) = torch's nearest upsampling of in (upsample_index.h): twice in's size,
     * or a skip connection's odd size. */
    int (*upsample_nearest)(void *ctx, const Act *in, int out_h, int out_w, Act *out);
    int (*attention)(void *ctx, const AttentionParams *p, const Act *x, Act *out);
    /* x[c, b, :, :] += t[b, c]: a resnet's time projection t (B, C). */
    int (*add_channel_bias)(void *ctx, Act *x, const float *t);
    /* out = (shortcut + out) / scale, element-wise. */
    int (*residual)(void *ctx, const Act *shortcut, Act *out, float scale);
    /* out (a.c + b.c, B, H, W) = a then b along channels; allocates out. */
    int (*concat_channels)(void *ctx, const Act *a, const Act *b, Act *out);

    /* The scheduler's step over n values in backend memory, each by scheduler_step_value
     * (scheduler_step.h, the same bits everywhere): sample = step(model_output, sample, noise);
     * noise (n,), or NULL when k->add_noise is 0. */
    int (*scheduler_step)(void *ctx, const StepCoefficients *k, const float *model_output, float *sample,
                          const float *noise, size_t n);
    /* y (n,) = x (n,) / divisor, element-wise, IEEE float32 division (a scheduler's
     * scale_model_input); y may be x. */
    int (*divide_scalar)(void *ctx, const float *x, float divisor, float *y, size_t n);

    /* ---- UNet2DConditionModel's transformers (NULL in a backend that does not run them yet) ----
     * Their Linear layers are conv2d with k = 1 (bias may be NULL); the residual adds are residual(.., 1). */
    /* out = LayerNorm over the channels of every token (pixel) of in; out may be in. */
    int (*layer_norm)(void *ctx, const LayerNormParams *p, const Act *in, Act *out);
    /* out (C, B, Hq, Wq) = per sample and head (C / heads channels each): softmax(q^T k / sqrt(C / heads)) v,
     * q (C, B, Hq, Wq), k and v (C, B, Hk, Wk): self-attention (k, v of the same tokens) or cross-attention
     * (of the text embeddings, Hk = 1, Wk = tokens); allocates out. Holds the scores of a block of queries
     * at a time, never a head's whole (Hq Wq, Hk Wk) matrix. */
    int (*attention_heads)(void *ctx, int heads, const Act *q, const Act *k, const Act *v, Act *out);
    /* out (C / 2, B, H, W) = in[:C/2] * gelu(in[C/2:]) (GEGLU, erf gelu); allocates out. */
    int (*geglu)(void *ctx, const Act *in, Act *out);
    /* Classifier-free guidance: out (n,) = uncond + scale * (cond - uncond), element-wise in float32, as
     * the pipeline's noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond). */
    int (*guidance)(void *ctx, const float *uncond, const float *cond, float scale, float *out, size_t n);
} UNetOps;

/* Every entry of UNetOps, in order: backend_ops_check() proves a backend fills each one, and a static
 * assertion in backend.c that this list covers the whole struct. Adding an op: a field above, its name
 * here, then each backend's table (ARCHITECTURE.md, "Add an op"). */
#define UNET_OPS_FIELDS(X)                                                                                       \
    X(act_alloc) X(act_free) X(buffer_alloc) X(buffer_free) X(upload) X(download) X(from_nchw) X(to_nchw)       \
    X(conv2d) X(group_norm) X(silu) X(linear) X(upsample_nearest) X(attention) X(add_channel_bias)             \
    X(residual) X(concat_channels) X(scheduler_step) X(divide_scalar)

struct ComputeBackend {
    const UNetOps *ops;
    void *ctx;                          /* the backend's own state */
    const UNet *unet;                   /* the model, its weights where the operations read them */
    Backend kind;
    char identity[BACKEND_IDENTITY_SIZE]; /* what computes; bits compare only between equal ones */
    const char *determinism;            /* why its bits are reproducible, for provenance */
    void (*close)(void *ctx);
    /* Another model's weights where the operations read them (the VAE's, beside the UNet's): *mirror
     * (size bytes) becomes a copy of *host with every slot of `list` (fields of *host) pointing at the
     * backend's copy of its tensor. The CPU's copy is the host's memory itself; the CUDA backend
     * uploads once per `key` (the weight file's SHA-256) and keeps the copy until it closes, so a
     * mirror made again for the same weights costs nothing. */
    int (*mirror_weights)(void *ctx, const unsigned char key[32], const WeightList *list, const void *host,
                          size_t size, void *mirror);
    /* torch.randn(n) of a torch.Generator("cuda") whose seed and offset are given, into out (n,) in backend
     * memory, launched as torch launches it on this device (rng/philox.h), which *launch describes (its
     * counter_offset: how far the call moves the generator's offset). NULL where the backend cannot make
     * these bits (the CPU: they come from the GPU's own sin/cos). */
    int (*randn_torch_cuda)(void *ctx, uint64_t seed, uint64_t offset, size_t n, float *out, TorchCudaLaunch *launch);
};

/* The operations only UNet2DConditionModel needs: a backend may leave them NULL until it runs it. */
#define UNET_COND_OPS_FIELDS(X) X(layer_norm) X(attention_heads) X(geglu) X(guidance)

/* Whether ops has every UNet2DConditionModel operation (else backend_open refuses such a model). */
int backend_runs_conditional(const UNetOps *ops);

/* SOWER_EINTERNAL naming the first operation `backend` (its name, for the message) leaves NULL.
 * backends/backend_open.c checks every backend it opens. */
int backend_ops_check(const UNetOps *ops, const char *backend) SOWER_MUST_CHECK;

/* Closes any backend (cpu/cpu_backend.h, src/gpu/gpu.h; backends/backend_open.h picks one). */
void compute_backend_close(ComputeBackend *be); /* safe on a zeroed backend */

#ifdef __cplusplus
}
#endif

#endif /* SOWER_BACKEND_H */
