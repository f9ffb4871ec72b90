/* cuda_backend.cu: the CUDA backend's table of operations (backend.h) over the kernels of
 * cuda_kernels.cu: one device, one stream, device memory from the stream's pool, the model's
 * weights copied to the device once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda_check.h"
#include "cuda_kernels.h"
#include "gpu.h"

enum { ATTENTION_SCORES_BUDGET = 64 << 20 }; /* floats of attention scores at a time (256 MiB) */

enum { MAX_MIRRORS = 4 };

/* Another model's weights on the device (mirror_weights), by its weight file's digest. */
typedef struct {
    unsigned char key[32];
    float *block; /* (n_values,) its parameters in the list's order */
    size_t n_values;
} WeightMirror;

typedef struct {
    int device;
    int sms;          /* the device's multiprocessors: gpu_gemm's tile size follows */
    int arith;        /* GpuArith: CudaOptions.precision */
    cudaStream_t stream;
    float *weights;   /* (n_weights,) every parameter of the model, in the UNet's parameter order */
    size_t n_weights;
    UNet mirror;      /* the model with each parameter pointing into weights */
    WeightMirror others[MAX_MIRRORS]; /* the VAE's, ...: uploaded once each */
    int n_others;
    GpuWeights16 *weights16; /* bf16/fp16 with gemm16's route: its 16-bit copies of the parameters; else NULL */
    int attention16;         /* bf16/fp16: attention on tensor cores (gpu_attention16) */
    size_t workspace;        /* bytes: the 16-bit routes' rounded operands per operation at most */
} CudaContext;

static cudaStream_t stream_of(void *ctx) { return ((CudaContext *)ctx)->stream; }

/* ---- memory ---- */

static int cuda_buffer_alloc(void *ctx, float **buf, size_t floats)
{
    *buf = NULL;
    cudaError_t e = cudaMallocAsync((void **)buf, (floats ? floats : 1) * sizeof(float), stream_of(ctx));
    if (e != cudaSuccess) {
        cudaGetLastError();
        return SOWER_FAIL(e == cudaErrorMemoryAllocation ? SOWER_ENOMEM : SOWER_ECUDA,
                          "cannot allocate %zu floats on the GPU: %s", floats, cudaGetErrorString(e));
    }
    return SOWER_OK;
}

static void cuda_buffer_free(void *ctx, float *buf)
{
    if (buf)
        cudaFreeAsync(buf, stream_of(ctx));
}

static int cuda_act_alloc(void *ctx, Act *a, int c, int b, int h, int w)
{
    a->c = c, a->b = b, a->h = h, a->w = w;
    return cuda_buffer_alloc(ctx, &a->data, act_numel(a));
}

static void cuda_act_free(void *ctx, Act *a)
{
    cuda_buffer_free(ctx, a->data);
    memset(a, 0, sizeof *a);
}

static int cuda_upload(void *ctx, float *dst, const float *host_src, size_t floats)
{
    GPU_CUDA_TRY(cudaMemcpyAsync(dst, host_src, floats * sizeof(float), cudaMemcpyHostToDevice, stream_of(ctx)));
    return SOWER_OK;
}

/* Waits for the stream: a fault in any earlier kernel is reported here. */
static int cuda_download(void *ctx, float *host_dst, const float *src, size_t floats)
{
    GPU_CUDA_TRY(cudaMemcpyAsync(host_dst, src, floats * sizeof(float), cudaMemcpyDeviceToHost, stream_of(ctx)));
    GPU_CUDA_TRY(cudaStreamSynchronize(stream_of(ctx)));
    return SOWER_OK;
}

/* ---- operations ---- */

/* A matrix multiply on this device, its operands still to be set. */
static GpuGemm gemm_on(void *ctx)
{
    const CudaContext *c = (const CudaContext *)ctx;
    GpuGemm gm;
    memset(&gm, 0, sizeof gm);
    gm.batches = 1, gm.zdiv = 1;
    gm.sms = c->sms, gm.arith = c->arith;
    gm.weights16 = c->weights16;
    return gm;
}

/* Whether p lies in one of the context's weight blocks (the model's, a mirror's): a parameter, whose
 * values stay while the backend lives, so products may keep a 16-bit copy of it. Weights a caller
 * owns (tests, anything built on the fly) may be freed and their address reused: never kept. */
static int is_parameter(const CudaContext *c, const float *p)
{
    if (c->weights && p >= c->weights && (size_t)(p - c->weights) < c->n_weights)
        return 1;
    for (int i = 0; i < c->n_others; i++) {
        const WeightMirror *w = &c->others[i];
        if (w->block && w->n_values != (size_t)-1 && p >= w->block && (size_t)(p - w->block) < w->n_values)
            return 1;
    }
    return 0;
}

static int cuda_from_nchw(void *ctx, const float *x, int batch, int center, Act *out)
{
    (void)batch; /* out->b */
    return gpu_from_nchw(x, center, out, stream_of(ctx));
}

static int cuda_to_nchw(void *ctx, const Act *in, float *x) { return gpu_to_nchw(in, x, stream_of(ctx)); }

static int cuda_conv2d(void *ctx, const ConvParams *p, ConvGeometry g, const Act *in, Act *out)
{
    int ho = (in->h + g.pad_top + g.pad_bottom - p->k) / g.stride + 1;
    int wo = (in->w + g.pad_left + g.pad_right - p->k) / g.stride + 1;
    SOWER_TRY(cuda_act_alloc(ctx, out, p->cout, in->b, ho, wo));
    /* out (cout, B*Ho*Wo) = W (cout, cin*k*k) . columns of in (cin*k*k, B*Ho*Wo) + bias */
    GpuGemm gm = gemm_on(ctx);
    gm.m = p->cout, gm.n = (int)act_plane(out), gm.k = p->cin * p->k * p->k;
    gm.a.base = p->weight, gm.a.si = gm.k, gm.a.sj = 1;
    gm.a_constant = is_parameter((const CudaContext *)ctx, p->weight);
    gm.conv = (GpuConvInput){in->data, p->cin, in->b, in->h, in->w, p->k, g.stride, g.pad_top, g.pad_left, ho, wo};
    gm.c = out->data, gm.c_si = gm.n, gm.c_sj = 1;
    gm.bias = p->bias;
    int status = gpu_gemm(&gm, stream_of(ctx));
    if (status != SOWER_OK)
        cuda_act_free(ctx, out);
    SOWER_TRY(status);
    return SOWER_OK;
}

static int cuda_group_norm(void *ctx, const GroupNormParams *p, const Act *in, Act *out, int silu)
{
    return gpu_group_norm(p, in, out, silu, stream_of(ctx));
}

static int cuda_silu(void *ctx, float *x, size_t n) { return gpu_silu(x, n, stream_of(ctx)); }

/* y (batch, out) = x (batch, in) W^T + b: C (out, batch) = W (out, in) . x^T, stored transposed. */
static int cuda_linear(void *ctx, const LinearParams *p, const float *x, int batch, float *y)
{
    GpuGemm gm = gemm_on(ctx);
    gm.m = p->out, gm.n = batch, gm.k = p->in;
    gm.a.base = p->weight, gm.a.si = p->in, gm.a.sj = 1;
    gm.a_constant = is_parameter((const CudaContext *)ctx, p->weight);
    gm.b.base = x, gm.b.si = 1, gm.b.sj = p->in;
    gm.c = y, gm.c_si = 1, gm.c_sj = p->out;
    gm.bias = p->bias;
    return gpu_gemm(&gm, stream_of(ctx));
}

static int cuda_upsample(void *ctx, const Act *in, int out_h, int out_w, Act *out)
{
    SOWER_TRY(cuda_act_alloc(ctx, out, in->c, in->b, out_h, out_w));
    int status = gpu_upsample_nearest(in, out, stream_of(ctx));
    if (status != SOWER_OK)
        cuda_act_free(ctx, out);
    return status;
}

static int cuda_add_channel_bias(void *ctx, Act *x, const float *t) { return gpu_add_channel_bias(x, t, stream_of(ctx)); }

static int cuda_residual(void *ctx, const Act *shortcut, Act *out, float scale)
{
    return gpu_residual(shortcut->data, out->data, act_numel(out), scale, stream_of(ctx));
}

static int cuda_concat_channels(void *ctx, const Act *a, const Act *b, Act *out)
{
    SOWER_TRY(cuda_act_alloc(ctx, out, a->c + b->c, a->b, a->h, a->w));
    cudaStream_t s = stream_of(ctx);
    cudaError_t e = cudaMemcpyAsync(out->data, a->data, act_numel(a) * sizeof(float), cudaMemcpyDeviceToDevice, s);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(out->data + act_numel(a), b->data, act_numel(b) * sizeof(float), cudaMemcpyDeviceToDevice,
                            s);
    if (e != cudaSuccess) {
        cuda_act_free(ctx, out);
        GPU_CUDA_TRY(e);
    }
    return SOWER_OK;
}

/* A Linear at every pixel: y (out, B, H, W) = W x + b, a 1x1 convolution. */
static int project(void *ctx, const LinearParams *l, const Act *x, Act *y)
{
    const ConvParams conv = {l->weight, l->bias, l->out, l->in, 1};
    return cuda_conv2d(ctx, &conv, (ConvGeometry){1, 0, 0, 0, 0}, x, y);
}

/* scores (nb*heads, HW, HW) = q^T k per sample and head, softmax(scale *), o = v P^T, for samples
 * [b0, b0 + nb). q, k, v, o (C, B, HW); head h is channels [h*dh, (h+1)*dh). */
static int attention_chunk(void *ctx, const AttentionParams *p, const Act *q, const Act *k, const Act *v, Act *o,
                           int b0, int nb, float *scores)
{
    cudaStream_t s = stream_of(ctx);
    const int hw = q->h * q->w, dh = p->dim_head;
    const long long n = (long long)act_plane(q), first = (long long)b0 * hw;
    GpuGemm gm = gemm_on(ctx);
    gm.batches = nb * p->heads, gm.zdiv = p->heads; /* z = sample * heads + head */
    /* S(i, j) = sum_c q(h*dh + c, b, i) k(h*dh + c, b, j) */
    gm.m = hw, gm.n = hw, gm.k = dh;
    gm.a = (GpuMatrix){q->data + first, 1, n, hw, (long long)dh * n};
    gm.b = (GpuMatrix){k->data + first, n, 1, hw, (long long)dh * n};
    gm.c = scores, gm.c_si = hw, gm.c_sj = 1, gm.c_s1 = (long long)p->heads * hw * hw, gm.c_s2 = (long long)hw * hw;
    SOWER_TRY(gpu_gemm(&gm, s));
    SOWER_TRY(gpu_softmax_rows(scores, (long long)nb * p->heads * hw, hw, 1.0f / sqrtf((float)dh), s));
    /* O(c, i) = sum_j v(h*dh + c, b, j) P(i, j) */
    gm.m = dh, gm.n = hw, gm.k = hw;
    gm.a = (GpuMatrix){v->data + first, n, 1, hw, (long long)dh * n};
    gm.b = (GpuMatrix){scores, 1, hw, (long long)p->heads * hw * hw, (long long)hw * hw};
    gm.c = o->data + first, gm.c_si = n, gm.c_sj = 1, gm.c_s1 = hw, gm.c_s2 = (long long)dh * n;
    SOWER_TRY(gpu_gemm(&gm, s));
    return SOWER_OK;
}

static int cuda_attention(void *ctx, const AttentionParams *p, const Act *x, Act *out)
{
    const int hw = x->h * x->w;
    Act g, q, k, v;
    memset(&g, 0, sizeof g), memset(&q, 0, sizeof q), memset(&k, 0, sizeof k), memset(&v, 0, sizeof v);
    float *scores = NULL; /* (chunk * heads, HW, HW) */
    int status = SOWER_OK;
    SOWER_TRY_GOTO(cuda_act_alloc(ctx, &g, x->c, x->b, x->h, x->w), status, done);
    SOWER_TRY_GOTO(gpu_group_norm(&p->norm, x, &g, 0, stream_of(ctx)), status, done);
    SOWER_TRY_GOTO(project(ctx, &p->q, &g, &q), status, done);
    SOWER_TRY_GOTO(project(ctx, &p->k, &g, &k), status, done);
    SOWER_TRY_GOTO(project(ctx, &p->v, &g, &v), status, done);
    {
        /* Samples in chunks so the scores stay within budget; each sample's work is the same
         * whatever the chunk, so chunking never changes a bit. The output overwrites g. */
        long long per_sample = (long long)p->heads * hw * hw;
        int chunk = (int)(ATTENTION_SCORES_BUDGET / per_sample);
        chunk = chunk < 1 ? 1 : chunk > x->b ? x->b : chunk;
        chunk = chunk * p->heads > 65535 ? 65535 / p->heads : chunk;
        SOWER_TRY_GOTO(cuda_buffer_alloc(ctx, &scores, (size_t)per_sample * chunk), status, done);
        for (int b0 = 0; b0 < x->b; b0 += chunk) {
            int nb = x->b - b0 < chunk ? x->b - b0 : chunk;
            SOWER_TRY_GOTO(attention_chunk(ctx, p, &q, &k, &v, &g, b0, nb, scores), status, done);
        }
    }
    SOWER_TRY_GOTO(project(ctx, &p->out, &g, out), status, done);
    SOWER_TRY_GOTO(gpu_residual(x->data, out->data, act_numel(out), p->rescale_output, stream_of(ctx)), status,
                   done);
done:
    if (status != SOWER_OK)
        cuda_act_free(ctx, out);
    cuda_buffer_free(ctx, scores);
    cuda_act_free(ctx, &g);
    cuda_act_free(ctx, &q);
    cuda_act_free(ctx, &k);
    cuda_act_free(ctx, &v);
    return status;
}

static int cuda_scheduler_step(void *ctx, const StepCoefficients *k, const float *model_output, float *sample,
                               const float *noise, size_t n)
{
    return gpu_scheduler_step(k, model_output, sample, noise, n, stream_of(ctx));
}

/* IEEE division (nvcc's default --prec-div=true, which scheduler_step_value relies on too): the
 * host's bits. */
__global__ static void divide_scalar_kernel(const float *x, float divisor, float *y, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = x[i] / divisor;
}

static int cuda_divide_scalar(void *ctx, const float *x, float divisor, float *y, size_t n)
{
    if (n) {
        GPU_LAUNCH(divide_scalar_kernel, ew_blocks(n), EW_THREADS, stream_of(ctx), x, divisor, y, n);
        GPU_LAUNCH_TRY();
    }
    return SOWER_OK;
}

static int cuda_layer_norm(void *ctx, const LayerNormParams *p, const Act *in, Act *out)
{
    return gpu_layer_norm(p, in, out, stream_of(ctx));
}

static int cuda_attention_heads(void *ctx, int heads, const Act *q, const Act *k, const Act *v, Act *out)
{
    const CudaContext *c = (const CudaContext *)ctx;
    SOWER_TRY(cuda_act_alloc(ctx, out, q->c, q->b, q->h, q->w));
    int done = 0, status = SOWER_OK;
    if (c->attention16)
        status = gpu_attention16(c->arith, heads, q, k, v, out, c->workspace, stream_of(ctx), &done);
    if (status == SOWER_OK && !done)
        status = gpu_attention_heads(heads, q, k, v, out, stream_of(ctx));
    if (status != SOWER_OK)
        cuda_act_free(ctx, out);
    return status;
}

static int cuda_geglu(void *ctx, const Act *in, Act *out)
{
    SOWER_TRY(cuda_act_alloc(ctx, out, in->c / 2, in->b, in->h, in->w));
    int status = gpu_geglu(in, out, stream_of(ctx));
    if (status != SOWER_OK)
        cuda_act_free(ctx, out);
    return status;
}

static int cuda_guidance(void *ctx, const float *uncond, const float *cond, float scale, float *out, size_t n)
{
    return gpu_guidance(uncond, cond, scale, out, n, stream_of(ctx));
}

static const UNetOps cuda_ops = {
    cuda_act_alloc,
    cuda_act_free,
    cuda_buffer_alloc,
    cuda_buffer_free,
    cuda_upload,
    cuda_download,
    cuda_from_nchw,
    cuda_to_nchw,
    cuda_conv2d,
    cuda_group_norm,
    cuda_silu,
    cuda_linear,
    cuda_upsample,
    cuda_attention,
    cuda_add_channel_bias,
    cuda_residual,
    cuda_concat_channels,
    cuda_scheduler_step,
    cuda_divide_scalar,
    cuda_layer_norm,
    cuda_attention_heads,
    cuda_geglu,
    cuda_guidance,
};

static int cuda_randn_torch_cuda(void *ctx, uint64_t seed, uint64_t offset, size_t n, float *out,
                                 TorchCudaLaunch *launch)
{
    return gpu_torch_cuda_randn(seed, offset, n, out, launch, stream_of(ctx));
}

/* ---- set-up ---- */

static void cuda_close(void *ctx)
{
    CudaContext *c = (CudaContext *)ctx;
    if (c->stream) {
        cudaStreamSynchronize(c->stream);
        cudaStreamDestroy(c->stream);
    }
    gpu_weights16_free(c->weights16);
    cudaFree(c->weights);
    for (int i = 0; i < c->n_others; i++)
        cudaFree(c->others[i].block);
    /* Give the pool's cached blocks back: ranks sharing a GPU should not keep each other's peaks. */
    cudaMemPool_t pool;
    if (c->stream && cudaDeviceGetDefaultMemPool(&pool, c->device) == cudaSuccess)
        cudaMemPoolTrimTo(pool, 0);
    free(c);
}

/* Points *mirror's parameter slots (the fields of `host` that list's slots are, moved to the same
 * fields of *mirror, a copy of host) at consecutive tensors of block, and copies host's tensors there
 * unless `copy` is 0 (they arrive over NCCL, or are there already). *n_values: the floats used. */
static int place_weights(CudaContext *c, const WeightList *list, const void *host, size_t size, void *mirror,
                         float *block, int copy, size_t *n_values)
{
    memcpy(mirror, host, size);
    if (copy) /* new values under the parameters' addresses: their 16-bit copies are stale */
        gpu_weights16_clear(c->weights16);
    size_t offset = 0;
    for (int i = 0; i < list->n_params; i++) {
        const WeightParam *p = &list->params[i];
        size_t numel = 1;
        for (int d = 0; d < p->ndim; d++)
            numel *= (size_t)p->shape[d];
        ptrdiff_t field = (const char *)p->slot - (const char *)host;
        if (field < 0 || (size_t)field + sizeof(float *) > size)
            return SOWER_FAIL(SOWER_EINTERNAL, "parameter '%s' is not a field of the model", p->name);
        if (copy)
            GPU_CUDA_TRY(cudaMemcpyAsync(block + offset, *p->slot, numel * sizeof(float), cudaMemcpyHostToDevice,
                                         c->stream));
        *(const float **)((char *)mirror + field) = block + offset;
        offset += numel;
    }
    *n_values = offset;
    /* On the backend's own stream, then waited for: a pageable copy may still be in flight when
     * cudaMemcpy returns, and the stream does not wait for the legacy one. */
    GPU_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return SOWER_OK;
}

/* Copies every parameter of u into one device block (unless opt says they arrive over NCCL) and
 * points the mirror's parameters there. */
static int upload_weights(CudaContext *c, const UNet *u, const CudaOptions *opt)
{
    if (u->weights.n_values > 0)
        GPU_CUDA_TRY(cudaMalloc((void **)&c->weights, (size_t)u->weights.n_values * sizeof(float)));
    SOWER_TRY(place_weights(c, &u->weights, u, sizeof *u, &c->mirror, c->weights, !opt->weights_arrive,
                            &c->n_weights));
    memset(&c->mirror.weights, 0, sizeof c->mirror.weights); /* the list stays with u */
    return SOWER_OK;
}

static int cuda_mirror_weights(void *ctx, const unsigned char key[32], const WeightList *list, const void *host,
                               size_t size, void *mirror)
{
    CudaContext *c = (CudaContext *)ctx;
    for (int i = 0; i < c->n_others; i++) {
        WeightMirror *w = &c->others[i];
        if (memcmp(w->key, key, 32) == 0 && w->n_values == (size_t)list->n_values) {
            size_t placed = 0;
            return place_weights(c, list, host, size, mirror, w->block, 0, &placed);
        }
    }
    if (c->n_others == MAX_MIRRORS)
        return SOWER_FAIL(SOWER_EINTERNAL, "backend cuda: more than %d models' weights on one device", MAX_MIRRORS);
    WeightMirror *w = &c->others[c->n_others];
    GPU_CUDA_TRY(cudaMalloc((void **)&w->block, (size_t)(list->n_values > 0 ? list->n_values : 1) * sizeof(float)));
    memcpy(w->key, key, 32);
    c->n_others++;
    int status = place_weights(c, list, host, size, mirror, w->block, 1, &w->n_values);
    if (status != SOWER_OK)
        memset(w->key, 0, 32), w->n_values = (size_t)-1; /* never matched: the copy may be partial */
    return status;
}

extern "C" int compute_backend_cuda_receive(ComputeBackend *be, void *nccl_comm)
{
    CudaContext *c = (CudaContext *)be->ctx;
    if (c->n_weights > 0) {
        gpu_weights16_clear(c->weights16);
        GPU_NCCL_TRY(ncclBroadcast(c->weights, c->weights, c->n_weights, ncclFloat, 0, (ncclComm_t)nccl_comm, c->stream));
        GPU_CUDA_TRY(cudaStreamSynchronize(c->stream));
    }
    return SOWER_OK;
}

/* What this context computes with: "cuda: NAME, N SMs, sm_XY, driver D, runtime R, cuBLAS V, kernels
 * ..."; the kernels' part names the arithmetic (fp32, or the opt-in tf32, bf16 or fp16), as bits follow it. */
static_assert((int)GPU_ARITH_FP32 == (int)PRECISION_FP32 && (int)GPU_ARITH_TF32 == (int)PRECISION_TF32 &&
                  (int)GPU_ARITH_BF16 == (int)PRECISION_BF16 && (int)GPU_ARITH_FP16 == (int)PRECISION_FP16,
              "GpuArith follows Precision's order");

static const char *const kernel_arithmetic[] = {
    "fp32 (gemm fmaf in k order, no TF32, no atomics)",
    "tf32 (gemm on tensor cores, wmma m16n16k8, inputs rounded to TF32, fp32 accumulation in k order, no atomics)",
    "bf16 (gemm on tensor cores, wmma m16n16k16, inputs rounded to BF16, fp32 accumulation in k order, no atomics)",
    "fp16 (gemm on tensor cores, wmma m16n16k16, inputs rounded to FP16, fp32 accumulation in k order, no atomics)",
};

static const char attention16_arithmetic[] =
    ", attention on tensor cores (heads up to 160 dims: wmma m16n16k16, q, k, v, p rounded, fp32 sums, row maximum first)";

static int describe(CudaContext *c, char *out, size_t size)
{
    cudaDeviceProp prop;
    GPU_CUDA_TRY(cudaGetDeviceProperties(&prop, c->device));
    int driver = 0, runtime = 0, major = 0, minor = 0, patch = 0;
    GPU_CUDA_TRY(cudaDriverGetVersion(&driver));
    GPU_CUDA_TRY(cudaRuntimeGetVersion(&runtime));
    GPU_CUBLAS_TRY(cublasGetProperty(MAJOR_VERSION, &major));
    GPU_CUBLAS_TRY(cublasGetProperty(MINOR_VERSION, &minor));
    GPU_CUBLAS_TRY(cublasGetProperty(PATCH_LEVEL, &patch));
    c->sms = prop.multiProcessorCount;
    snprintf(out, size, "cuda: %s, %d SMs, sm_%d%d, driver %d.%d, runtime %d.%d, cuBLAS %d.%d.%d, kernels sower %s%s",
             prop.name, prop.multiProcessorCount, prop.major, prop.minor, driver / 1000, driver % 1000 / 10,
             runtime / 1000, runtime % 1000 / 10, major, minor, patch,
             kernel_arithmetic[c->arith], c->attention16 ? attention16_arithmetic : "");
    return SOWER_OK;
}

/* bf16 and fp16 products: gemm16's pipelined route, or the tile loader (the same bits; gpu_gemm16).
 * SOWER_GEMM16=1 or 0 chooses; else SOWER_GEMM16_DEFAULT, the build's choice (the tile loader until
 * the new route has been timed on a GPU: docs/gpu.md). */
#ifndef SOWER_GEMM16_DEFAULT
#define SOWER_GEMM16_DEFAULT 0
#endif
/* bf16 and fp16 attention: on tensor cores (gpu_attention16: other bits, so its own backend identity) or
 * fp32's flash kernel. SOWER_ATTENTION16=1 or 0, else the build's SOWER_ATTENTION16_DEFAULT (fp32's until
 * timed on a GPU). */
#ifndef SOWER_ATTENTION16_DEFAULT
#define SOWER_ATTENTION16_DEFAULT 0
#endif
/* An on/off setting from the environment: 1 or 0, else fallback; anything else is refused (exit 2). */
static int env_switch(const char *name, int fallback, const char *meaning, int *on)
{
    const char *v = getenv(name);
    *on = fallback;
    if (v && *v) {
        if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
            return SOWER_FAIL(SOWER_EUSAGE, "%s=%s: expected 1 or 0 (%s)", name, v, meaning);
        *on = v[0] == '1';
    }
    return SOWER_OK;
}

/* SOWER_GPU_WORKSPACE_KB: the most workspace one bf16/fp16 operation's rounded operands take (gemm16's B,
 * attention16's q, k, v; default GPU16_WORKSPACE_DEFAULT_KB): larger ones run in chunks, with the same bits.
 * Tests make it small to exercise the chunks. */
static int gpu16_workspace(size_t *bytes)
{
    const char *kb = getenv("SOWER_GPU_WORKSPACE_KB");
    unsigned long long n = GPU16_WORKSPACE_DEFAULT_KB;
    if (kb && *kb) {
        char *end = NULL;
        errno = 0;
        n = strtoull(kb, &end, 10);
        if (errno || *end || *kb == '-' || n == 0 || n > (1ull << 30))
            return SOWER_FAIL(SOWER_EUSAGE, "SOWER_GPU_WORKSPACE_KB=%s: expected a whole number of KiB, 1 to %llu", kb,
                              1ull << 30);
    }
    *bytes = (size_t)n << 10;
    return SOWER_OK;
}

static int open_cuda(CudaContext *c, ComputeBackend *be, const UNet *u, const CudaOptions *opt)
{
    int count = 0;
    GPU_CUDA_TRY(cudaGetDeviceCount(&count));
    if (opt->device < 0 || opt->device >= count)
        return SOWER_FAIL(SOWER_EINPUT, "backend cuda: device %d does not exist (%d visible)", opt->device, count);
    GPU_CUDA_TRY(cudaSetDevice(opt->device));
    c->device = opt->device;
    if (opt->precision < PRECISION_FP32 || opt->precision > PRECISION_FP16)
        return SOWER_FAIL(SOWER_EINTERNAL, "backend cuda: precision %d", (int)opt->precision);
    c->arith = (int)opt->precision; /* GpuArith follows Precision's order */
    int gemm16 = 0;
    SOWER_TRY(env_switch("SOWER_GEMM16", SOWER_GEMM16_DEFAULT,
                         "1: bf16/fp16 products by the pipelined route, 0: by the tile loader", &gemm16));
    SOWER_TRY(gpu16_workspace(&c->workspace));
    SOWER_TRY(env_switch("SOWER_ATTENTION16", SOWER_ATTENTION16_DEFAULT,
                         "1: bf16/fp16 attention on tensor cores, 0: in fp32", &c->attention16));
    c->attention16 = c->attention16 && (c->arith == GPU_ARITH_BF16 || c->arith == GPU_ARITH_FP16);
    if ((c->arith == GPU_ARITH_BF16 || c->arith == GPU_ARITH_FP16) && gemm16 &&
        !(c->weights16 = gpu_weights16_new(c->workspace)))
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    /* Freed blocks stay in the pool for the next forward pass instead of going back to the driver. */
    cudaMemPool_t pool;
    GPU_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool, opt->device));
    unsigned long long keep = ~0ULL;
    GPU_CUDA_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    GPU_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    SOWER_TRY(describe(c, be->identity, sizeof be->identity));
    SOWER_TRY(upload_weights(c, u, opt));
    return SOWER_OK;
}

#define CUDA_DETERMINISM(ARITHMETIC)                                                                          \
    "per-seed torch.Generator('cpu').manual_seed(seed), noise drawn on the host and uploaded; activations "    \
    "(C,B,H,W); sower's own kernels: every output element reduced by one accumulator (or one block's fixed "   \
    "tree) in an order set by its own sample's shapes, no atomics, no split reductions, " ARITHMETIC           \
    ", --fmad=false; one stream; bits independent of batch, rank count and position in the batch, on equal "  \
    "backend identities"
static const char cuda_determinism_fp32[] = CUDA_DETERMINISM("fp32 fmaf, no TF32");
static const char *const cuda_determinism[] = {
    cuda_determinism_fp32,
    CUDA_DETERMINISM("matrix products on tensor cores from TF32-rounded inputs (opt-in: pipeline.precision tf32; "
                     "differs from fp32 by about 1e-3 relative)"),
    CUDA_DETERMINISM("matrix products on tensor cores from BF16-rounded inputs, fp32 sums (opt-in: pipeline.precision "
                     "bf16); attention, norms and element-wise in fp32"),
    CUDA_DETERMINISM("matrix products on tensor cores from FP16-rounded inputs, fp32 sums (opt-in: pipeline.precision "
                     "fp16; inputs beyond 65504 become infinite); attention, norms and element-wise in fp32"),
};
/* bf16 and fp16 with SOWER_ATTENTION16 */
static const char *const cuda_determinism_attention16[] = {
    CUDA_DETERMINISM("matrix products and attention (heads up to 160 dims) on tensor cores from BF16-rounded inputs, "
                     "fp32 sums (opt-in: pipeline.precision bf16, SOWER_ATTENTION16=1); norms and element-wise in fp32"),
    CUDA_DETERMINISM("matrix products and attention (heads up to 160 dims) on tensor cores from FP16-rounded inputs, "
                     "fp32 sums (opt-in: pipeline.precision fp16, SOWER_ATTENTION16=1; inputs beyond 65504 become "
                     "infinite); norms and element-wise in fp32"),
};

extern "C" int compute_backend_cuda(ComputeBackend *be, const UNet *u, const CudaOptions *opt)
{
    memset(be, 0, sizeof *be);
    CudaContext *c = (CudaContext *)calloc(1, sizeof *c);
    if (!c)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    int status = open_cuda(c, be, u, opt);
    if (status != SOWER_OK) {
        cuda_close(c);
        memset(be, 0, sizeof *be);
        return sower_trace(status, __FILE__, __LINE__, __func__);
    }
    be->ops = &cuda_ops;
    be->ctx = c;
    be->unet = &c->mirror;
    be->kind = BACKEND_CUDA;
    be->determinism = c->attention16 ? cuda_determinism_attention16[c->arith - GPU_ARITH_BF16] : cuda_determinism[c->arith];
    be->close = cuda_close;
    be->mirror_weights = cuda_mirror_weights;
    be->randn_torch_cuda = cuda_randn_torch_cuda;
    return SOWER_OK;
}
