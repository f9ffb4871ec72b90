/* cuda_bf16.h (emulated): __nv_bfloat16 for the host emulation (cuda_runtime.h): the 16 high bits of
 * a float, rounded to nearest even as __float2bfloat16_rn rounds (NaN stays NaN). */
#ifndef SOWER_CUDA_EMU_BF16_H
#define SOWER_CUDA_EMU_BF16_H

#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
    uint16_t bits;
};

inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    __nv_bfloat16 h;
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: a quiet one, the sign kept */
        h.bits = (uint16_t)((u >> 16) | 0x40u);
    else
        h.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return h;
}

inline float __bfloat162float(__nv_bfloat16 h)
{
    uint32_t u = (uint32_t)h.bits << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
