/* randn_simd.c: torch's normal_fill_16_AVX2 with AVX2/FMA intrinsics, one __m256 per half-block.
 * It mirrors log256_ps/sincos256_ps of torch's avx_mathfun.h operation for operation, with
 * _mm256_fmadd_ps exactly where randn.c's portable version writes fmaf(); so the bits are the
 * same, which tests/test_randn_simd.c checks over every input the kernel can receive.
 * Compiled for every x86-64 build via target attributes and chosen at run time by CPUID. */
#include "randn_kernels.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define SIMD_TARGET __attribute__((target("avx2,fma")))

SIMD_TARGET static __m256 ps(float v) { return _mm256_set1_ps(v); }
SIMD_TARGET static __m256i epi(int v) { return _mm256_set1_epi32(v); }

SIMD_TARGET static __m256 log256(__m256 x)
{
    const __m256 one = ps(1.0f);
    x = _mm256_max_ps(x, _mm256_castsi256_ps(epi(0x00800000))); /* min_norm_pos */
    __m256i imm0 = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
    x = _mm256_and_ps(x, _mm256_castsi256_ps(epi((int)0x807FFFFF)));
    x = _mm256_or_ps(x, ps(0.5f));
    imm0 = _mm256_sub_epi32(imm0, epi(0x7f));
    __m256 e = _mm256_add_ps(_mm256_cvtepi32_ps(imm0), one);
    __m256 mask = _mm256_cmp_ps(x, ps(0.707106781186547524f), _CMP_LT_OS);
    __m256 tmp = _mm256_and_ps(x, mask);
    x = _mm256_sub_ps(x, one);
    e = _mm256_sub_ps(e, _mm256_and_ps(one, mask));
    x = _mm256_add_ps(x, tmp);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = ps(7.0376836292E-2f);
    y = _mm256_fmadd_ps(y, x, ps(-1.1514610310E-1f));
    y = _mm256_fmadd_ps(y, x, ps(1.1676998740E-1f));
    y = _mm256_fmadd_ps(y, x, ps(-1.2420140846E-1f));
    y = _mm256_fmadd_ps(y, x, ps(1.4249322787E-1f));
    y = _mm256_fmadd_ps(y, x, ps(-1.6668057665E-1f));
    y = _mm256_fmadd_ps(y, x, ps(2.0000714765E-1f));
    y = _mm256_fmadd_ps(y, x, ps(-2.4999993993E-1f));
    y = _mm256_fmadd_ps(y, x, ps(3.3333331174E-1f));
    y = _mm256_mul_ps(y, x);
    y = _mm256_fmadd_ps(y, z, _mm256_mul_ps(e, ps(-2.12194440e-4f)));
    y = _mm256_fnmadd_ps(z, ps(0.5f), y);
    x = _mm256_add_ps(x, y);
    return _mm256_fmadd_ps(e, ps(0.693359375f), x);
}

SIMD_TARGET static void sincos256(__m256 x, __m256 *s, __m256 *c)
{
    const __m256 sign_mask = _mm256_castsi256_ps(epi((int)0x80000000));
    __m256 sign_bit_sin = _mm256_and_ps(x, sign_mask);
    x = _mm256_andnot_ps(sign_mask, x);
    __m256 y = _mm256_mul_ps(x, ps(1.27323954473516f));
    __m256i imm2 = _mm256_cvttps_epi32(y);
    imm2 = _mm256_and_si256(_mm256_add_epi32(imm2, epi(1)), epi(~1));
    y = _mm256_cvtepi32_ps(imm2);
    __m256i imm4 = imm2;
    __m256i imm0 = _mm256_slli_epi32(_mm256_and_si256(imm2, epi(4)), 29);
    __m256 poly_mask = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(imm2, epi(2)), epi(0)));
    __m256 swap_sign_bit_sin = _mm256_castsi256_ps(imm0);
    x = _mm256_fmadd_ps(y, ps(-0.78515625f), x);
    x = _mm256_fmadd_ps(y, ps(-2.4187564849853515625e-4f), x);
    x = _mm256_fmadd_ps(y, ps(-3.77489497744594108e-8f), x);
    imm4 = _mm256_sub_epi32(imm4, epi(2));
    imm4 = _mm256_slli_epi32(_mm256_andnot_si256(imm4, epi(4)), 29);
    __m256 sign_bit_cos = _mm256_castsi256_ps(imm4);
    sign_bit_sin = _mm256_xor_ps(sign_bit_sin, swap_sign_bit_sin);

    __m256 z = _mm256_mul_ps(x, x);
    __m256 yc = _mm256_fmadd_ps(ps(2.443315711809948E-005f), z, ps(-1.388731625493765E-003f));
    yc = _mm256_fmadd_ps(yc, z, ps(4.166664568298827E-002f));
    yc = _mm256_mul_ps(yc, z);
    yc = _mm256_fmsub_ps(yc, z, _mm256_mul_ps(z, ps(0.5f)));
    yc = _mm256_add_ps(yc, ps(1.0f));
    __m256 ys = _mm256_fmadd_ps(ps(-1.9515295891E-4f), z, ps(8.3321608736E-3f));
    ys = _mm256_fmadd_ps(ys, z, ps(-1.6666654611E-1f));
    ys = _mm256_mul_ps(ys, z);
    ys = _mm256_fmadd_ps(ys, x, x);

    /* Select as the source does (and/andnot, then add), not with blend. */
    __m256 ysin2 = _mm256_and_ps(poly_mask, ys);
    __m256 ysin1 = _mm256_andnot_ps(poly_mask, yc);
    ys = _mm256_sub_ps(ys, ysin2);
    yc = _mm256_sub_ps(yc, ysin1);
    *s = _mm256_xor_ps(_mm256_add_ps(ysin1, ysin2), sign_bit_sin);
    *c = _mm256_xor_ps(_mm256_add_ps(yc, ys), sign_bit_cos);
}

SIMD_TARGET static void fill16_avx2_simd(float *d)
{
    __m256 u1 = _mm256_sub_ps(ps(1.0f), _mm256_loadu_ps(d));
    __m256 u2 = _mm256_loadu_ps(d + 8);
    __m256 radius = _mm256_sqrt_ps(_mm256_mul_ps(ps(-2.0f), log256(u1)));
    __m256 theta = _mm256_mul_ps(ps(6.2831854820251465f), u2);
    __m256 sin_t, cos_t;
    sincos256(theta, &sin_t, &cos_t);
    /* randn: std 1, mean 0, kept as torch's fmadd (it turns -0 into +0). */
    _mm256_storeu_ps(d, _mm256_fmadd_ps(_mm256_mul_ps(radius, cos_t), ps(1.0f), ps(0.0f)));
    _mm256_storeu_ps(d + 8, _mm256_fmadd_ps(_mm256_mul_ps(radius, sin_t), ps(1.0f), ps(0.0f)));
}

RandnFill16 randn_fill16_avx2_simd(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return fill16_avx2_simd;
    return NULL;
}

#else

RandnFill16 randn_fill16_avx2_simd(void) { return NULL; }

#endif

/* SOWER_RNG_SIMD=0 in the environment forces the portable kernel (same bits, slower). */
RandnFill16 randn_fill16_avx2_best(void)
{
    static RandnFill16 chosen; /* benign race: every thread computes the same pointer */
    if (!chosen) {
        const char *env = getenv("SOWER_RNG_SIMD");
        RandnFill16 simd = env && strcmp(env, "0") == 0 ? NULL : randn_fill16_avx2_simd();
        chosen = simd ? simd : randn_fill16_avx2_portable;
    }
    return chosen;
}
