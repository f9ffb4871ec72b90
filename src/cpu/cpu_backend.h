/* cpu_backend.h: the CPU backend (backend.h's table over ops.h, BLIS and the Winograd route). */
#ifndef SOWER_CPU_BACKEND_H
#define SOWER_CPU_BACKEND_H

#include "backend.h"

/* The CPU backend over u (weights used in place); identity from gemm.h. */
int compute_backend_cpu(ComputeBackend *be, const UNet *u) SOWER_MUST_CHECK;
/* The CPU backend's identity on this machine: BLIS's kernel family, then the convolution routes. */
const char *compute_backend_cpu_identity(void);
/* unet_forward_on a fresh CPU backend over u (one per call: for tests and tools). */
int unet_forward_cpu(const UNet *u, const float *x, const float *timesteps, int batch, int height, int width,
                     float *out) SOWER_MUST_CHECK;

#endif /* SOWER_CPU_BACKEND_H */
