/* torch_math.h: torch 1.13's float32 log, exp and expm1 on the CPU, bit for bit, for the scheduler scalars
 * diffusers computes with torch.log / torch.exp / torch.expm1 (DPM-Solver's and UniPC's log-SNR steps, KDPM2's
 * midpoint sigmas). torch runs them through Sleef (Sleef_logf8_u10, Sleef_expf8_u10, Sleef_expm1f8_u10) in its
 * AVX2 and AVX-512 kernels, for 0-d tensors too, and through the C library's logf/expf/expm1f in its DEFAULT
 * kernel: the same choice as the noise generator's (RngKernel). */
#ifndef SOWER_TORCH_MATH_H
#define SOWER_TORCH_MATH_H

#include "rng.h"

float torch_logf(float x, RngKernel kernel);
float torch_expf(float x, RngKernel kernel);
float torch_expm1f(float x, RngKernel kernel);

/* numpy 1.24's np.log of a float32 array (and of 0-d tensors it converts): its AVX2/AVX-512 loop (a 5/5 rational
 * approximation with fused multiply-adds; the same bits on both), which diffusers' sigma tables (Karras, KDPM2) and
 * DEIS's coefficients go through; the C library's logf where torch's kernel is DEFAULT (a machine without AVX2,
 * where numpy has no such loop either). */
float numpy_logf(float x, RngKernel kernel);
/* numpy 1.24's np.exp of a float32 array: its AVX2/AVX-512 loop (Cody-Waite reduction, a 5/2 rational; the same bits on
 * both); the C library's expf where torch's kernel is DEFAULT. */
float numpy_expf(float x, RngKernel kernel);

#endif /* SOWER_TORCH_MATH_H */
