/* cuda_fp16.h (emulated): __half for the host emulation (cuda_runtime.h): IEEE binary16, rounded to
 * nearest even as __float2half_rn rounds (subnormals kept, 65520 and beyond to infinity). */
#ifndef SOWER_CUDA_EMU_FP16_H
#define SOWER_CUDA_EMU_FP16_H

#include <stdint.h>
#include <string.h>

struct __half {
    uint16_t bits;
};

inline __half __float2half_rn(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    __half h;
    if (x >= 0x7f800000u) /* infinity, NaN */
        h.bits = (uint16_t)(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
    else if (x >= 0x477ff000u) /* >= 65520: past the largest half (65504) by half a step or more */
        h.bits = (uint16_t)(sign | 0x7c00u);
    else if (x < 0x33000000u) /* < 2^-25: half the smallest subnormal or less */
        h.bits = (uint16_t)sign;
    else {
        const int e = (int)(x >> 23);
        uint32_t r, rem, halfway;
        if (e < 113) { /* a half subnormal: units of 2^-24 */
            const uint32_t m = (x & 0x7fffffu) | 0x800000u;
            const int shift = 126 - e;
            r = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        } else {
            r = ((uint32_t)(e - 112) << 10) | ((x & 0x7fffffu) >> 13), rem = x & 0x1fffu, halfway = 0x1000u;
        }
        if (rem > halfway || (rem == halfway && (r & 1u)))
            r++; /* a carry into the exponent is right, up to infinity */
        h.bits = (uint16_t)(sign | r);
    }
    return h;
}

inline float __half2float(__half h)
{
    const uint32_t sign = (uint32_t)(h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu;
    uint32_t u;
    if (e == 0) { /* zero or subnormal: m 2^-24, exact in float */
        float f = (float)m * 5.9604644775390625e-8f;
        memcpy(&u, &f, sizeof u);
        u |= sign;
    } else if (e == 31)
        u = sign | 0x7f800000u | (m << 13);
    else
        u = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
