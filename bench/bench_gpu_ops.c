/* bench_gpu_ops.c: Stable Diffusion 1.5's heaviest GPU operations one at a time on the CUDA backend, by
 * every route the backend has for the precision asked, for bench/gpu_ops_vs_torch.py, which times the
 * same shapes in PyTorch on the same GPU beside it (issue 20: where a forward's time goes, per kernel
 * family, in TFLOP/s). Timing only.
 *
 * usage: bench_gpu_ops PRECISION SECONDS_PER_CASE [NAME_FILTER]
 * Prints one JSON object per line:
 *   {"op": NAME, "batch": B, "route": R, "ms": best ms per call, "tflop": per call}
 * Routes: products "tile" (the tile-loading kernel), and for bf16/fp16 "gemm16" (SOWER_GEMM16=1: the
 * pipelined product; the weights here are not a model's, so each call rounds A too, as a model's first
 * call does); attention "flash32" (the fp32 flash kernel), and for bf16/fp16 "attention16"
 * (SOWER_ATTENTION16=1). Batches 2 and 32: one and sixteen 512x512 images with classifier-free guidance. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, setenv */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "gpu.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_gpu_ops: %s failed\n", what);
    sower_error_print(stderr, 1);
    exit(3);
}

/* A device buffer of n deterministic, unremarkable values in [-scale, scale]. */
static float *device_filled(const ComputeBackend *be, size_t n, float scale, unsigned salt)
{
    float *host = malloc(sizeof(float) * (n ? n : 1)), *dev = NULL;
    if (!host)
        die("host allocation");
    for (size_t i = 0; i < n; i++)
        host[i] = scale * ((float)((i * 2654435761u + salt) % 2001u) / 1000.0f - 1.0f);
    if (be->ops->buffer_alloc(be->ctx, &dev, n) != SOWER_OK || be->ops->upload(be->ctx, dev, host, n) != SOWER_OK)
        die("device buffer");
    free(host);
    return dev;
}

static Act device_act(const ComputeBackend *be, int c, int b, int h, int w, unsigned salt)
{
    Act a;
    memset(&a, 0, sizeof a);
    a.c = c, a.b = b, a.h = h, a.w = w;
    a.data = device_filled(be, act_numel(&a), 1.0f, salt);
    return a;
}

/* One operation of SD 1.5's UNet at 512x512: a convolution (k 3 or 1) or an attention over heads
 * (nk 0: self-attention over the image's tokens; else cross-attention over nk text tokens). */
typedef struct {
    const char *name;
    int conv, cin, cout, k, h, w; /* conv: cin -> cout, k x k, h x w */
    int channels, heads, nk;      /* attention: channels in heads, over h x w queries */
} Case;

static const Case cases[] = {
    {"conv 3x3 320>320@64", 1, 320, 320, 3, 64, 64, 0, 0, 0},
    {"conv 3x3 640>640@32", 1, 640, 640, 3, 32, 32, 0, 0, 0},
    {"conv 3x3 1280>1280@16", 1, 1280, 1280, 3, 16, 16, 0, 0, 0},
    {"conv 3x3 1280>1280@8", 1, 1280, 1280, 3, 8, 8, 0, 0, 0},
    {"proj 1x1 320>320@64", 1, 320, 320, 1, 64, 64, 0, 0, 0},
    {"ff 1x1 320>2560@64", 1, 320, 2560, 1, 64, 64, 0, 0, 0},
    {"ff 1x1 1280>320@64", 1, 1280, 320, 1, 64, 64, 0, 0, 0},
    {"self-attn 320/8@64", 0, 0, 0, 0, 64, 64, 320, 8, 0},
    {"cross-attn 320/8@64 x77", 0, 0, 0, 0, 64, 64, 320, 8, 77},
    {"self-attn 640/8@32", 0, 0, 0, 0, 32, 32, 640, 8, 0},
    {"self-attn 1280/8@16", 0, 0, 0, 0, 16, 16, 1280, 8, 0},
};

static double tflop(const Case *c, int batch)
{
    if (c->conv)
        return 2.0 * c->cout * c->cin * c->k * c->k * (double)batch * c->h * c->w * 1e-12;
    const double nq = (double)c->h * c->w, nk = c->nk ? c->nk : nq;
    return 4.0 * batch * nq * nk * c->channels * 1e-12; /* q.k and p.v over every head's channels */
}

/* A case's inputs on the device. */
typedef struct {
    Act x, kv;       /* conv input or attention q; attention k and v (the same for self-attention) */
    ConvParams conv; /* weights on the device */
} Operands;

/* Runs the case once on be (its output freed). */
static int run_once(const ComputeBackend *be, const Case *c, const Operands *o)
{
    Act out = {0};
    int status;
    if (c->conv)
        status = be->ops->conv2d(be->ctx, &o->conv, (ConvGeometry){1, c->k / 2, c->k / 2, c->k / 2, c->k / 2}, &o->x,
                                 &out);
    else
        status = be->ops->attention_heads(be->ctx, c->heads, &o->x, c->nk ? &o->kv : &o->x, c->nk ? &o->kv : &o->x,
                                          &out);
    be->ops->act_free(be->ctx, &out);
    return status;
}

static void bench_case(const ComputeBackend *be, const Case *c, int batch, const char *route, double seconds)
{
    Operands o;
    memset(&o, 0, sizeof o);
    const int channels = c->conv ? c->cin : c->channels;
    o.x = device_act(be, channels, batch, c->h, c->w, 1);
    if (!c->conv && c->nk)
        o.kv = device_act(be, channels, batch, 1, c->nk, 2);
    if (c->conv) {
        o.conv.cout = c->cout, o.conv.cin = c->cin, o.conv.k = c->k;
        o.conv.weight = device_filled(be, (size_t)c->cout * c->cin * c->k * c->k, 0.05f, 3);
        o.conv.bias = device_filled(be, (size_t)c->cout, 0.1f, 4);
    }
    float sink;
    if (run_once(be, c, &o) != SOWER_OK || be->ops->download(be->ctx, &sink, o.x.data, 1) != SOWER_OK)
        die(c->name);
    double best = 1e30;
    const double start = now();
    for (int reps = 1; now() - start < seconds || best == 1e30;) {
        const double t0 = now();
        for (int i = 0; i < reps; i++)
            if (run_once(be, c, &o) != SOWER_OK)
                die(c->name);
        if (be->ops->download(be->ctx, &sink, o.x.data, 1) != SOWER_OK) /* waits for the stream */
            die("download");
        const double per = (now() - t0) / reps;
        best = per < best ? per : best;
        reps = per * reps < 0.05 ? reps * 2 : reps; /* groups of at least ~50 ms */
    }
    printf("{\"op\": \"%s\", \"batch\": %d, \"route\": \"%s\", \"ms\": %.4f, \"tflop\": %.6f}\n", c->name, batch, route,
           best * 1e3, tflop(c, batch));
    fflush(stdout);
    be->ops->act_free(be->ctx, &o.x), be->ops->act_free(be->ctx, &o.kv);
    be->ops->buffer_free(be->ctx, (float *)o.conv.weight), be->ops->buffer_free(be->ctx, (float *)o.conv.bias);
}

int main(int argc, char **argv)
{
    Precision precision;
    if (argc < 3 || !precision_from_name(argv[1], &precision)) {
        fprintf(stderr, "usage: bench_gpu_ops fp32|tf32|bf16|fp16 SECONDS_PER_CASE [NAME_FILTER]\n");
        return 2;
    }
    const double seconds = atof(argv[2]);
    const char *filter = argc > 3 ? argv[3] : NULL;
    const int sixteen = precision == PRECISION_BF16 || precision == PRECISION_FP16;
    /* route name, and the settings its backend opens under */
    const struct {
        const char *name, *variable, *value;
        int conv;
    } routes[] = {{"tile", "SOWER_GEMM16", "0", 1},
                  {"gemm16", "SOWER_GEMM16", "1", 1},
                  {"flash32", "SOWER_ATTENTION16", "0", 0},
                  {"attention16", "SOWER_ATTENTION16", "1", 0}};
    UNet none;
    memset(&none, 0, sizeof none);
    CudaOptions opt = {0};
    opt.precision = precision;
    for (size_t r = 0; r < sizeof routes / sizeof routes[0]; r++) {
        if (!sixteen && strcmp(routes[r].value, "1") == 0)
            continue; /* the 16-bit routes exist in bf16 and fp16 only */
        setenv(routes[r].variable, routes[r].value, 1);
        ComputeBackend be;
        if (compute_backend_cuda(&be, &none, &opt) != SOWER_OK)
            die("opening the cuda backend");
        unsetenv(routes[r].variable);
        fprintf(stderr, "bench_gpu_ops: route %s: %s\n", routes[r].name, be.identity);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (cases[i].conv != routes[r].conv || (filter && !strstr(cases[i].name, filter)))
                continue;
            bench_case(&be, &cases[i], 2, routes[r].name, seconds);
            bench_case(&be, &cases[i], 32, routes[r].name, seconds);
        }
        compute_backend_close(&be);
    }
    return 0;
}
