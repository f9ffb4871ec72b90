/* conv.h: a k x k convolution as ONE product W (Cout, Cin*k*k) . cols (Cin*k*k, B*Ho*Wo), with the
 * columns packed straight from the activation into the microkernel's B panels (no im2col matrix).
 *
 * Same arithmetic as im2col + gemm_f32, bit for bit: the product runs through gemm.h's packed
 * interface (BLIS's microkernel, BLIS's KC panels in order, beta 0 then 1), and the bias is added
 * to the finished sum, as add_row_bias did. An element's reduction order still depends on k only,
 * never on the batch, the blocking or the threads (tests/test_conv_packed.c). */
#ifndef SOWER_CONV_H
#define SOWER_CONV_H

#include "ops.h"

/* out (cout, B, Ho, Wo), allocated by the caller = conv(in) + bias. Needs gemm_packing() != NULL. */
int conv2d_packed(const ConvParams *p, ConvGeometry g, const Act *in, Act *out, Scratch *scratch) SOWER_MUST_CHECK;

#endif /* SOWER_CONV_H */
