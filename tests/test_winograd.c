/* test_winograd.c: 3x3 "same" convolutions through Winograd F(2x2, 3x3) (src/cpu/winograd.h).
 *
 * For each shape (the UNet's levels, conv_out's 3 channels, the fewest input channels taken, Cin
 * past one KC panel, odd image sizes whose last tiles hang over the edge, a one-row image, Cout not
 * a multiple of the tile, an image large enough that the batch is taken in groups of samples):
 *   - accuracy: against a double-precision direct convolution, the error must stay within
 *     WINOGRAD_ERROR_FACTOR times the fp32 direct product's own error (the route it replaces) and
 *     under 1e-5 of the output's scale;
 *   - bits: each sample of a batch of 5 must give exactly the bits it gives alone, with 1, 2 and 3
 *     threads (batch and thread invariance, the determinism contract);
 *   - op_conv2d takes this route exactly where conv2d_winograd_applies says, and gives its bits.
 * And the route rule: only k 3, stride 1, padding 1 on all sides, images of >= WINOGRAD_MIN_PIXELS
 * and >= WINOGRAD_MIN_CHANNELS input channels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "conv.h"
#include "gemm.h"
#include "ops.h"
#include "rng.h"
#include "winograd.h"

/* Measured here: F(2x2, 3x3)'s error is 0.7 to 1.6 times the direct fp32 product's; 3 leaves room
 * for other BLIS kernels without letting a wrong coefficient through (that gives errors of O(1)). */
#define WINOGRAD_ERROR_FACTOR 3.0

static void randn(float *x, size_t n, uint64_t seed)
{
    TorchRng g = {0};
    rng_seed(&g, seed);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, x, n);
}

/* out (cout, B, H, W) = conv3x3(in, padding 1) + bias, in double. */
static void direct_double(const ConvParams *p, const Act *in, double *out)
{
    const int h = in->h, w = in->w, b = in->b;
    for (int co = 0; co < p->cout; co++)
        for (int s = 0; s < b; s++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    double acc = p->bias[co];
                    for (int ci = 0; ci < p->cin; ci++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = y + ky - 1, ix = x + kx - 1;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    continue;
                                acc += (double)p->weight[((size_t)co * p->cin + ci) * 9 + ky * 3 + kx] *
                                       in->data[(((size_t)ci * b + s) * h + iy) * w + ix];
                            }
                    out[(((size_t)co * b + s) * h + y) * w + x] = acc;
                }
}

static double max_error(const float *got, const double *want, size_t n, double *scale)
{
    double m = 0;
    *scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        m = d > m || isnan(d) ? d : m;
        *scale = fabs(want[i]) > *scale ? fabs(want[i]) : *scale;
    }
    return m;
}

/* Sample s of a (C, B, H, W) activation into a (C, 1, H, W) one. */
static void take_sample(const Act *a, int s, Act *one)
{
    const size_t hw = (size_t)a->h * a->w;
    for (int c = 0; c < a->c; c++)
        memcpy(one->data + (size_t)c * hw, a->data + ((size_t)c * a->b + s) * hw, sizeof(float) * hw);
}

/* conv2d_winograd into out with out and the scratch memory first filled with NaN, so that an
 * element the route forgets to write (or a scratch value it reads before writing) cannot pass. */
static int winograd_poisoned(const ConvParams *p, const Act *in, Act *out, Scratch *scratch)
{
    const size_t scratch_floats = (size_t)16 << 20;
    if (scratch_reserve(scratch, scratch_floats) != SOWER_OK)
        return SOWER_ENOMEM;
    memset(scratch->buf, 0xff, sizeof(float) * scratch->cap); /* all bits set: a NaN */
    memset(out->data, 0xff, sizeof(float) * act_numel(out));
    return conv2d_winograd(p, in, out, scratch);
}

static void check_shape(int cin, int cout, int h, int w)
{
    const ConvGeometry same = {1, 1, 1, 1, 1};
    const int batch = 5;
    float *weight = malloc(sizeof(float) * cout * cin * 9), *bias = malloc(sizeof(float) * cout);
    randn(weight, (size_t)cout * cin * 9, 21);
    randn(bias, (size_t)cout, 22);
    for (size_t i = 0; i < (size_t)cout * cin * 9; i++) /* diffusers-like scale: unit-variance outputs */
        weight[i] /= sqrtf(9.0f * cin);
    ConvParams p = {weight, bias, cout, cin, 3};
    Act in = {0}, one = {0}, alone = {0}, out = {0}, direct = {0};
    CHECK(act_alloc(&in, cin, batch, h, w) == SOWER_OK && act_alloc(&one, cin, 1, h, w) == SOWER_OK, "alloc");
    randn(in.data, act_numel(&in), 23);
    CHECK(conv2d_winograd_applies(&p, same, &in), "%dx%d, %d -> %d: Winograd should apply", h, w, cin, cout);
    Scratch scratch = {0};

    /* Accuracy, 2 threads, whole batch. */
    const size_t numel = (size_t)cout * batch * h * w, per = (size_t)h * w;
    double *want = malloc(sizeof(double) * numel), scale = 0;
    direct_double(&p, &in, want);
    gemm_set_threads(2);
    CHECK(act_alloc(&out, cout, batch, h, w) == SOWER_OK && act_alloc(&direct, cout, batch, h, w) == SOWER_OK, "alloc");
    CHECK(winograd_poisoned(&p, &in, &out, &scratch) == SOWER_OK, "conv2d_winograd");
    CHECK(conv2d_packed(&p, same, &in, &direct, &scratch) == SOWER_OK, "conv2d_packed");
    double e_wino = max_error(out.data, want, numel, &scale), e_direct = max_error(direct.data, want, numel, &scale);
    printf("  %3d -> %3d  %2dx%-2d  max|err| winograd %.3g  direct %.3g  (%.2fx)  output scale %.3g\n", cin, cout, h, w,
           e_wino, e_direct, e_wino / e_direct, scale);
    CHECK(e_wino <= WINOGRAD_ERROR_FACTOR * e_direct, "%d -> %d %dx%d: Winograd error %.3g, direct %.3g", cin, cout, h,
          w, e_wino, e_direct);
    CHECK(e_wino <= 1e-5 * scale, "%d -> %d %dx%d: Winograd error %.3g at output scale %.3g", cin, cout, h, w, e_wino,
          scale);

    /* op_conv2d takes this route, with its bits. */
    Act via_op = {0};
    CHECK(op_conv2d(&p, same, &in, &via_op, &scratch) == SOWER_OK, "op_conv2d");
    CHECK(memcmp(via_op.data, out.data, sizeof(float) * numel) == 0, "%d -> %d %dx%d: op_conv2d differs", cin, cout, h,
          w);
    act_free(&via_op);

    /* Bits: each sample alone with 1 thread is the reference; the same sample inside the batch and
     * alone again (where few tiles split the output channels between threads), with 1, 2, 3 threads,
     * must give exactly its bits. */
    float *ref = malloc(sizeof(float) * numel); /* (batch, cout, h, w): each sample alone, 1 thread */
    CHECK(act_alloc(&alone, cout, 1, h, w) == SOWER_OK, "alloc");
    gemm_set_threads(1);
    for (int s = 0; s < batch; s++) {
        take_sample(&in, s, &one);
        CHECK(winograd_poisoned(&p, &one, &alone, &scratch) == SOWER_OK, "conv2d_winograd");
        memcpy(ref + (size_t)s * cout * per, alone.data, sizeof(float) * cout * per);
    }
    for (int threads = 1; threads <= 3; threads++) {
        gemm_set_threads(threads);
        CHECK(winograd_poisoned(&p, &in, &out, &scratch) == SOWER_OK, "conv2d_winograd");
        for (int s = 0; s < batch; s++) {
            const float *want_bits = ref + (size_t)s * cout * per;
            take_sample(&in, s, &one);
            CHECK(winograd_poisoned(&p, &one, &alone, &scratch) == SOWER_OK, "conv2d_winograd");
            int in_batch = 1, by_itself = memcmp(alone.data, want_bits, sizeof(float) * cout * per) == 0;
            for (int c = 0; c < cout; c++)
                in_batch &= memcmp(want_bits + c * per, out.data + ((size_t)c * batch + s) * per,
                                   sizeof(float) * per) == 0;
            CHECK(in_batch, "%d -> %d %dx%d: sample %d of %d with %d threads differs from it alone", cin, cout, h, w, s,
                  batch, threads);
            CHECK(by_itself, "%d -> %d %dx%d: sample %d alone with %d threads differs from 1 thread", cin, cout, h, w,
                  s, threads);
        }
    }
    free(ref);
    scratch_free(&scratch);
    act_free(&in), act_free(&one), act_free(&alone), act_free(&out), act_free(&direct);
    free(weight), free(bias), free(want);
}

static void check_route_rule(void)
{
    float wt[9] = {0}, b[1] = {0};
    ConvParams k3 = {wt, b, 1, WINOGRAD_MIN_CHANNELS, 3}, k1 = {wt, b, 1, WINOGRAD_MIN_CHANNELS, 1};
    ConvParams conv_in = {wt, b, 128, 3, 3};
    const ConvGeometry same = {1, 1, 1, 1, 1}, down = {2, 1, 1, 1, 1}, pointwise = {1, 0, 0, 0, 0},
                       asym = {1, 0, 0, 1, 1};
    Act big = {NULL, 1, 1, 16, 16}, small = {NULL, 1, 64, 7, 9}, wide = {NULL, 1, 1, 1, 256};
    const int packs = conv2d_winograd_identity() != NULL; /* a usable packed microkernel */
    CHECK(conv2d_winograd_applies(&k3, same, &big) == packs, "16x16 3x3 same");
    CHECK(conv2d_winograd_applies(&k3, same, &wide) == packs, "1x256 3x3 same");
    CHECK(!conv2d_winograd_applies(&k3, same, &small), "7x9 is below WINOGRAD_MIN_PIXELS, whatever the batch");
    CHECK(!conv2d_winograd_applies(&k3, down, &big), "stride 2");
    CHECK(!conv2d_winograd_applies(&k3, asym, &big), "uneven padding");
    CHECK(!conv2d_winograd_applies(&k1, pointwise, &big), "1x1");
    CHECK(!conv2d_winograd_applies(&conv_in, same, &big), "3 input channels (conv_in)");
}

int main(void)
{
    check_route_rule();
    if (!conv2d_winograd_identity()) {
        printf("%s: no usable packed microkernel, so no Winograd route\n", gemm_backend_identity());
        return check_exit("test_winograd");
    }
    check_shape(128, 128, 32, 32); /* the 32x32 level */
    check_shape(256, 256, 16, 16); /* the 16x16 level */
    check_shape(16, 128, 32, 32);  /* the fewest input channels that take the route */
    check_shape(128, 3, 32, 32);   /* conv_out: Cout below MR */
    check_shape(300, 13, 17, 19);  /* two KC panels of Cin, odd sizes: tiles over the edge */
    check_shape(16, 40, 1, 300);   /* one row: every tile's second row outside */
    check_shape(16, 16, 180, 180); /* 1.05 M floats of combined rows per sample: groups of 4 and 1 */
    check_shape(16, 8, 256, 1);    /* one pixel wide: one tile per row, its second column outside */
    check_shape(16, 8, 128, 2);    /* two wide: one tile per row, no inner tile */
    check_shape(16, 8, 64, 5);     /* five wide: one inner tile, the last tile over the edge */
    printf("%s\n", gemm_backend_identity());
    return check_exit("test_winograd");
}
