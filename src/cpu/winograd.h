/* winograd.h: 3x3 "same" convolutions (stride 1, padding 1) as Winograd F(2x2, 3x3) (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2016).
 *
 * Each 2x2 tile of the output comes from a 4x4 patch d of the input: Y = A^T [U . V] A with
 * U = G g G^T the 4x4 transform of each 3x3 filter and V = B^T d B that of each patch; the 16
 * positions of U . V are 16 matrix products U_t (Cout, Cin) . V_t (Cin, tiles), 2.25x fewer
 * multiplies than the direct product. The transforms' coefficients are 0, +-1 and 1/2, so they
 * round little: against the direct product the error stays of the order of fp32's own.
 *
 * Bits: the products run through gemm.h's packed interface (BLIS's microkernel over KC panels of
 * Cin, in order), and each tile's transforms read only its own patch in a fixed order, so an output
 * element's bits depend on its sample, the layer and the image size, never on the batch, the
 * blocking or the threads (tests/test_winograd.c). Whether a layer takes this route is decided by
 * its shape and the image size alone (conv2d_winograd_applies), never by the batch. */
#ifndef SOWER_WINOGRAD_H
#define SOWER_WINOGRAD_H

#include "ops.h"

/* Images of fewer pixels than this stay on the direct route: there the weights' transform, made
 * on every call, costs more than the cheaper product saves. Measured (bench/bench_layers, 2 threads,
 * AMD EPYC): 8x8 images gain at every batch (cifar 256 -> 256 batch 1 0.49 -> 0.42 ms, batch 8 3.04
 * -> 1.79 ms; SD 1280 -> 1280 batch 2 27.0 -> 22.7 ms), 4x4 ones lose (512 -> 256 batch 8 1.72 ->
 * 2.59 ms). (256 before the transforms' cache-set fix in winograd.c.) With the transformed weights
 * kept between calls (weight_packs.h) 4x4 images gain at batch 8 (512 -> 256: 1.64 -> 0.77 ms) but
 * lose at batch 1 (0.21 -> 0.36 ms), and the whole cifar forward moved by under 3% either way at
 * batch 1, 8 and 32: not worth a new route identity, so 64 stays. */
enum { WINOGRAD_MIN_PIXELS = 64 };
/* Nor do layers of fewer input channels (conv_in's 3): the 16 products' depth is Cin, against the
 * direct product's 9 Cin, and transforming the patches costs more than it saves. */
enum { WINOGRAD_MIN_CHANNELS = 16 };

/* 1 when conv(p, g) on images of in's size takes the Winograd route. */
int conv2d_winograd_applies(const ConvParams *p, ConvGeometry g, const Act *in);
/* What the CPU backend's identity says of this route ("3x3 same convs of >= 256 pixels and >= 16
 * input channels: Winograd F(2x2,3x3)"), or NULL where it is never taken (no usable packed
 * microkernel). A file rendered with other convolution arithmetic then has another identity, so
 * verify and resume refuse to mix its bits with these. */
const char *conv2d_winograd_identity(void);
/* out (cout, B, H, W), allocated by the caller = conv(in) + bias, where conv2d_winograd_applies(). */
int conv2d_winograd(const ConvParams *p, const Act *in, Act *out, Scratch *scratch) SOWER_MUST_CHECK;

#endif /* SOWER_WINOGRAD_H */
