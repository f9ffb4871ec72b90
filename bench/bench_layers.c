/* bench_layers.c: single layers of the CPU backend, timed as the UNets run them (op_conv2d picks the
 * route, the transformer's sub-layers are the same operation sequence as src/model/unet.c's), for
 * bench/layers_vs_torch.py, which times the same layers in PyTorch beside it. Timing only.
 *
 * usage: bench_layers THREADS SECONDS_PER_CASE [NAME_FILTER]
 * Prints one JSON object per line: {"layer": NAME, "batch": B, "ms": best ms per call, "gflop": per call}.
 * Layers (diffusers' shapes):
 *   cifar conv CIN>COUT@HW   3x3 "same" convolutions of ddpm-cifar10-32, batch 1 and 8
 *   sd conv CIN>COUT@HW      3x3 convolutions of SD 1.5's UNet at 512x512 (64x64 latents), batch 2 (one
 *                            image with classifier-free guidance)
 *   sd self-attn C@HW        a BasicTransformerBlock's attn1: to_q/k/v, 8 heads of C/8 channels, to_out
 *   sd cross-attn C@HW       attn2 over 77 text tokens of 768 channels
 *   sd geglu-ff C@HW         the feed-forward: proj (C -> 8C), GEGLU, out (4C -> C)
 *   sd layer-norm C@HW       one LayerNorm over the channels of every token */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm.h"
#include "ops.h"
#include "ops_transformer.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* x (n,) = deterministic, unremarkable values in [-scale, scale]: no denormals, no NaNs. */
static void fill(float *x, size_t n, float scale, unsigned salt)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * ((float)((i * 2654435761u + salt) % 2001u) / 1000.0f - 1.0f);
}

static float *filled(size_t n, float scale, unsigned salt)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    if (!x) {
        fprintf(stderr, "bench_layers: out of memory (%zu floats)\n", n);
        exit(3);
    }
    fill(x, n, scale, salt);
    return x;
}

static Act act_filled(int c, int b, int h, int w, unsigned salt)
{
    Act a = {0};
    if (act_alloc(&a, c, b, h, w) != SOWER_OK) {
        fprintf(stderr, "bench_layers: out of memory (activation %dx%dx%dx%d)\n", c, b, h, w);
        exit(3);
    }
    fill(a.data, act_numel(&a), 1.0f, salt);
    return a;
}

/* One layer: its operands and how to run it once. */
typedef struct Layer Layer;
struct Layer {
    char name[64];
    int batch;
    double gflop; /* per call, counted as the direct computation does it */
    int (*run)(Layer *l);
    ConvParams conv;                                  /* conv, and the transformer's projections below */
    LinearParams q, k, v, out, ff_in, ff_out;         /* (out, in) weights */
    LayerNormParams norm;
    int heads;
    Act x;       /* (C, B, H, W) input */
    Act context; /* (768, B, 1, 77) text embeddings, for cross-attention */
    Scratch scratch;
};

static void check(int status, const char *what)
{
    if (status != SOWER_OK) {
        fprintf(stderr, "bench_layers: %s failed (%d)\n", what, status);
        exit(3);
    }
}

static int run_conv(Layer *l)
{
    Act out = {0};
    int status = op_conv2d(&l->conv, (ConvGeometry){1, 1, 1, 1, 1}, &l->x, &out, &l->scratch);
    act_free(&out);
    return status;
}

/* A 1x1 convolution, as blocks_pointwise runs a Linear layer on every token. */
static int pointwise(Layer *l, const LinearParams *p, const Act *in, Act *out)
{
    const ConvParams c = {p->weight, p->bias, p->out, p->in, 1};
    return op_conv2d(&c, (ConvGeometry){1, 0, 0, 0, 0}, in, out, &l->scratch);
}

/* to_out(attention(to_q(x), to_k(c), to_v(c))), c = context or x: src/model/unet.c's mha_forward. */
static int run_attention(Layer *l)
{
    const Act *c = l->context.data ? &l->context : &l->x;
    Act q = {0}, k = {0}, v = {0}, o = {0}, y = {0};
    int status = pointwise(l, &l->q, &l->x, &q);
    if (status == SOWER_OK)
        status = pointwise(l, &l->k, c, &k);
    if (status == SOWER_OK)
        status = pointwise(l, &l->v, c, &v);
    if (status == SOWER_OK)
        status = op_attention_heads(l->heads, &q, &k, &v, &o, &l->scratch);
    if (status == SOWER_OK)
        status = pointwise(l, &l->out, &o, &y);
    act_free(&q), act_free(&k), act_free(&v), act_free(&o), act_free(&y);
    return status;
}

static int run_feed_forward(Layer *l)
{
    Act f = {0}, g = {0}, y = {0};
    int status = pointwise(l, &l->ff_in, &l->x, &f);
    if (status == SOWER_OK)
        status = op_geglu(&f, &g);
    if (status == SOWER_OK)
        status = pointwise(l, &l->ff_out, &g, &y);
    act_free(&f), act_free(&g), act_free(&y);
    return status;
}

static int run_layer_norm(Layer *l)
{
    Act y = {0};
    int status = act_alloc(&y, l->x.c, l->x.b, l->x.h, l->x.w);
    if (status == SOWER_OK)
        op_layer_norm_channels(&l->norm, &l->x, &y);
    act_free(&y);
    return status;
}

static LinearParams linear(int out, int in, int bias, unsigned salt)
{
    /* weights ~ U(-1/sqrt(in), 1/sqrt(in)) in spirit: keeps activations of order 1 through the layers */
    return (LinearParams){filled((size_t)out * in, 1.0f / (float)in, salt), bias ? filled(out, 0.1f, salt + 1) : NULL,
                          out, in};
}

static void free_linear(LinearParams *p)
{
    free((void *)p->weight), free((void *)p->bias);
}

static void layer_free(Layer *l)
{
    free((void *)l->conv.weight), free((void *)l->conv.bias);
    free_linear(&l->q), free_linear(&l->k), free_linear(&l->v), free_linear(&l->out);
    free_linear(&l->ff_in), free_linear(&l->ff_out);
    free((void *)l->norm.gamma), free((void *)l->norm.beta);
    act_free(&l->x), act_free(&l->context);
    scratch_free(&l->scratch);
}

static Layer conv_layer(const char *family, int cin, int cout, int hw, int batch)
{
    Layer l = {.batch = batch, .run = run_conv};
    snprintf(l.name, sizeof l.name, "%s conv %d>%d@%d", family, cin, cout, hw);
    l.conv = (ConvParams){filled((size_t)cout * cin * 9, 1.0f / (float)(cin * 9), 7), filled(cout, 0.1f, 8), cout,
                          cin, 3};
    l.gflop = 2e-9 * cout * cin * 9.0 * hw * hw * batch;
    l.x = act_filled(cin, batch, hw, hw, 11);
    return l;
}

/* SD 1.5's attention_head_dim 8 is its head count: 8 heads of C/8 channels at every level. */
static Layer attention_layer(int channels, int hw, int batch, int cross)
{
    enum { SD_HEADS = 8, TEXT_TOKENS = 77, TEXT_CHANNELS = 768 };
    Layer l = {.batch = batch, .run = run_attention, .heads = SD_HEADS};
    snprintf(l.name, sizeof l.name, "sd %s-attn %d@%d", cross ? "cross" : "self", channels, hw);
    const int kv_in = cross ? TEXT_CHANNELS : channels, keys = cross ? TEXT_TOKENS : hw * hw;
    l.q = linear(channels, channels, 0, 21), l.k = linear(channels, kv_in, 0, 22);
    l.v = linear(channels, kv_in, 0, 23), l.out = linear(channels, channels, 1, 24);
    const double tokens = (double)hw * hw * batch;
    l.gflop = 2e-9 * (tokens * channels * channels * 2 + (double)keys * batch * kv_in * channels * 2 +
                      tokens * keys * channels * 2);
    l.x = act_filled(channels, batch, hw, hw, 25);
    if (cross)
        l.context = act_filled(TEXT_CHANNELS, batch, 1, TEXT_TOKENS, 26);
    return l;
}

static Layer feed_forward_layer(int channels, int hw, int batch)
{
    Layer l = {.batch = batch, .run = run_feed_forward};
    snprintf(l.name, sizeof l.name, "sd geglu-ff %d@%d", channels, hw);
    const int inner = 4 * channels; /* FeedForward(mult=4): proj to 2 * inner, GEGLU halves it */
    l.ff_in = linear(2 * inner, channels, 1, 31), l.ff_out = linear(channels, inner, 1, 32);
    l.gflop = 2e-9 * hw * hw * batch * (double)channels * inner * 3;
    l.x = act_filled(channels, batch, hw, hw, 33);
    return l;
}

static Layer layer_norm_layer(int channels, int hw, int batch)
{
    Layer l = {.batch = batch, .run = run_layer_norm};
    snprintf(l.name, sizeof l.name, "sd layer-norm %d@%d", channels, hw);
    l.norm = (LayerNormParams){filled(channels, 1.0f, 41), filled(channels, 0.1f, 42), channels, 1e-5f};
    l.x = act_filled(channels, batch, hw, hw, 43);
    return l;
}

/* The layer's weights become "the model's", whose packed forms the CPU backend keeps between calls
 * (weight_packs.h): the cifar UNet's all fit the default budget, so its layers are timed so. SD's do
 * not (its forward keeps only its first layers'), so SD's layers are timed repacking every call. */
static Layer with_kept_packs(Layer l)
{
    const float *weights[] = {l.conv.weight, l.q.weight, l.k.weight, l.v.weight, l.out.weight, l.ff_in.weight,
                              l.ff_out.weight};
    check(weight_packs_allow(&l.scratch.packs, weights, (int)(sizeof weights / sizeof weights[0])), "weight packs");
    return l;
}

/* Best milliseconds per call over `seconds` of calls, after one warm-up call (page faults, scratch). */
static double time_layer(Layer *l, double seconds)
{
    check(l->run(l), l->name);
    double best = 1e30, start = now();
    do {
        const double t0 = now();
        check(l->run(l), l->name);
        const double t = now() - t0;
        best = t < best ? t : best;
    } while (now() - start < seconds);
    return 1e3 * best;
}

static void bench(Layer l, double seconds, const char *filter)
{
    if (!filter || strstr(l.name, filter)) {
        const double ms = time_layer(&l, seconds);
        printf("{\"layer\": \"%s\", \"batch\": %d, \"ms\": %.4f, \"gflop\": %.4f}\n", l.name, l.batch, ms, l.gflop);
        fflush(stdout);
    }
    layer_free(&l);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_layers THREADS SECONDS_PER_CASE [NAME_FILTER]\n");
        return 2;
    }
    const int threads = atoi(argv[1]);
    const double seconds = atof(argv[2]);
    const char *filter = argc > 3 ? argv[3] : NULL;
    check(gemm_choose_kernels(), "choosing the kernel family (SOWER_KERNELS)");
    gemm_set_threads(threads);
    fprintf(stderr, "bench_layers: %d threads, %s\n", threads, gemm_backend_identity());

    static const int cifar[][3] = {{3, 128, 32},  {128, 128, 32}, {128, 256, 16}, {256, 256, 16},
                                   {512, 256, 16}, {256, 256, 8},  {512, 256, 8},  {256, 256, 4},
                                   {512, 256, 4},  {384, 128, 32}, {256, 128, 32}, {128, 3, 32}};
    for (size_t i = 0; i < sizeof cifar / sizeof cifar[0]; i++)
        for (int batch = 1; batch <= 8; batch += 7)
            bench(with_kept_packs(conv_layer("cifar", cifar[i][0], cifar[i][1], cifar[i][2], batch)), seconds, filter);

    enum { CFG_BATCH = 2 }; /* one 512x512 image with classifier-free guidance */
    static const int sd_convs[][3] = {{4, 320, 64},      {320, 320, 64},     {320, 640, 32}, {640, 640, 32},
                                      {1280, 1280, 16},  {1280, 1280, 8},    {2560, 1280, 8}, {640, 320, 64},
                                      {320, 4, 64}};
    for (size_t i = 0; i < sizeof sd_convs / sizeof sd_convs[0]; i++)
        bench(conv_layer("sd", sd_convs[i][0], sd_convs[i][1], sd_convs[i][2], CFG_BATCH), seconds, filter);
    static const int sd_levels[][2] = {{320, 64}, {640, 32}, {1280, 16}, {1280, 8}};
    for (size_t i = 0; i < sizeof sd_levels / sizeof sd_levels[0]; i++) {
        const int c = sd_levels[i][0], hw = sd_levels[i][1];
        bench(attention_layer(c, hw, CFG_BATCH, 0), seconds, filter);
        bench(attention_layer(c, hw, CFG_BATCH, 1), seconds, filter);
        bench(feed_forward_layer(c, hw, CFG_BATCH), seconds, filter);
    }
    bench(layer_norm_layer(320, 64, CFG_BATCH), seconds, filter);
    return 0;
}
