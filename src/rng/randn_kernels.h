/* randn_kernels.h: the block kernels behind rng_randn_f32 (internal to the generator and its
 * tests). A kernel turns 16 uniforms d[0..15] into 16 normals in place, lane j with lane j+8. */
#ifndef SOWER_RANDN_KERNELS_H
#define SOWER_RANDN_KERNELS_H

typedef void (*RandnFill16)(float *d);

/* torch's AVX2 kernel in portable C: the definition of the torch-cpu bits. */
void randn_fill16_avx2_portable(float *d);
/* The same with AVX2/FMA intrinsics; NULL where the build or the CPU lacks them. */
RandnFill16 randn_fill16_avx2_simd(void);
/* The fastest identical kernel for this CPU (chosen once). */
RandnFill16 randn_fill16_avx2_best(void);

#endif /* SOWER_RANDN_KERNELS_H */
