/* test_conv_packed.c: conv2d_packed packs its columns straight from the activation (src/cpu/conv.h); its
 * output must have exactly the bits of the plain route it replaced, an im2col matrix times the
 * weights through gemm_f32 plus the bias, for every shape the UNet uses (3x3 "same", the stride-2
 * downsamplers with either padding, conv_in's 3 and conv_out's 3 channels, K past several KC
 * panels, 1x1 shortcuts and attention projections) and awkward ones (N and Cout not multiples of
 * the tile), with 1 and 2 threads. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "conv.h"
#include "gemm.h"
#include "ops.h"
#include "rng.h"

static void randn(float *x, size_t n, uint64_t seed)
{
    TorchRng g = {0};
    rng_seed(&g, seed);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, x, n);
}

/* The reference: cols (cin*k*k, B*Ho*Wo), one gemm_f32, then out[r][j] += bias[r]. */
static void reference(const ConvParams *p, ConvGeometry g, const Act *in, int ho, int wo, float *out)
{
    const int k = p->k, kdim = p->cin * k * k;
    const size_t n = (size_t)in->b * ho * wo;
    float *cols = malloc(sizeof(float) * kdim * n);
    for (int r = 0; r < kdim; r++) {
        int ci = r / (k * k), ky = r / k % k, kx = r % k;
        for (size_t j = 0; j < n; j++) {
            int b = (int)(j / ((size_t)ho * wo)), oy = (int)(j / wo % ho), ox = (int)(j % wo);
            int iy = oy * g.stride + ky - g.pad_top, ix = ox * g.stride + kx - g.pad_left;
            int inside = iy >= 0 && iy < in->h && ix >= 0 && ix < in->w;
            cols[(size_t)r * n + j] = inside ? in->data[(((size_t)ci * in->b + b) * in->h + iy) * in->w + ix] : 0.0f;
        }
    }
    gemm_f32(p->cout, (int)n, kdim, p->weight, kdim, cols, (int)n, out, (int)n, 0);
    for (int r = 0; r < p->cout; r++)
        for (size_t j = 0; j < n; j++)
            out[(size_t)r * n + j] += p->bias[r];
    free(cols);
}

static void check_conv(int cin, int cout, int k, int batch, int h, int w, ConvGeometry g)
{
    float *weight = malloc(sizeof(float) * cout * cin * k * k), *bias = malloc(sizeof(float) * cout);
    randn(weight, (size_t)cout * cin * k * k, 11);
    randn(bias, (size_t)cout, 12);
    ConvParams p = {weight, bias, cout, cin, k};
    Act in = {0};
    CHECK(act_alloc(&in, cin, batch, h, w) == SOWER_OK, "alloc");
    randn(in.data, act_numel(&in), 13);
    int ho = (h + g.pad_top + g.pad_bottom - k) / g.stride + 1, wo = (w + g.pad_left + g.pad_right - k) / g.stride + 1;
    size_t numel = (size_t)cout * batch * ho * wo;
    float *want = malloc(sizeof(float) * numel);
    reference(&p, g, &in, ho, wo, want);
    Scratch scratch = {0};
    for (int threads = 1; threads <= 2; threads++) {
        gemm_set_threads(threads);
        Act out = {0};
        if (gemm_packing()) { /* the packed route itself: op_conv2d sends 3x3 "same" layers elsewhere (winograd.h) */
            CHECK(act_alloc(&out, cout, batch, ho, wo) == SOWER_OK, "alloc");
            CHECK(conv2d_packed(&p, g, &in, &out, &scratch) == SOWER_OK, "conv2d_packed");
        } else {
            CHECK(op_conv2d(&p, g, &in, &out, &scratch) == SOWER_OK, "op_conv2d");
        }
        CHECK(out.c == cout && out.h == ho && out.w == wo, "output shape");
        CHECK(memcmp(out.data, want, sizeof(float) * numel) == 0,
              "cin %d cout %d k %d batch %d %dx%d stride %d pad %d,%d: %d threads differ from im2col + gemm_f32",
              cin, cout, k, batch, h, w, g.stride, g.pad_top, g.pad_bottom, threads);
        act_free(&out);
    }
    scratch_free(&scratch);
    act_free(&in);
    free(weight), free(bias), free(want);
}

int main(void)
{
    const ConvGeometry same = {1, 1, 1, 1, 1}, down = {2, 1, 1, 1, 1}, down_asym = {2, 0, 0, 1, 1};
    const ConvGeometry pointwise = {1, 0, 0, 0, 0};
    check_conv(128, 128, 3, 3, 32, 32, same);   /* the 32x32 level, uneven batch */
    check_conv(3, 128, 3, 2, 32, 32, same);     /* conv_in: K = 27 */
    check_conv(128, 3, 3, 2, 32, 32, same);     /* conv_out: Cout below MR */
    check_conv(512, 256, 3, 1, 4, 4, same);     /* K = 4608, N = 16 (one tile wide) */
    check_conv(384, 256, 3, 2, 8, 8, same);     /* micropanels spanning image rows */
    check_conv(128, 128, 3, 2, 32, 32, down);   /* downsampler, padding 1 */
    check_conv(64, 40, 3, 3, 16, 16, down_asym); /* downsampler, diffusers' padding 0 */
    check_conv(16, 13, 3, 3, 5, 7, same);       /* N = 105, Cout = 13: edges everywhere */
    check_conv(384, 256, 1, 3, 16, 16, pointwise); /* resnet shortcut; attention projections */
    check_conv(256, 256, 1, 1, 4, 4, pointwise);
    check_conv(300, 7, 1, 2, 5, 3, pointwise);  /* K = 300 (two KC panels), N = 30 */
    printf("%s; packed columns: %s\n", gemm_backend_identity(), gemm_packing() ? "yes" : "no (im2col)");
    return check_exit("test_conv_packed");
}
