/* curand_kernel.h (emulated): cuRAND's Philox4_32_10 device API, as much of it as torch's randn uses
 * (curand_init, curand4, curand_normal4), after the CUDA 13 header's own logic: a counter and key,
 * STATE = the next word of the current block, skipahead by words and by subsequences of 2^66. The
 * Box-Muller is that header's host branch (libm logf, sinf, cosf; its x * 2^-32 + 2^-33 written as
 * the fma nvcc makes of it), so emulated noise has the GPU's layout but the host's sin/cos bits. */
#ifndef SOWER_CUDA_EMU_CURAND_KERNEL_H
#define SOWER_CUDA_EMU_CURAND_KERNEL_H

#include <math.h>

#include "cuda_runtime.h"
#include "philox.h"

namespace sower_emu_rt {

struct uint4 {
    unsigned x, y, z, w;
};

struct curandStatePhilox4_32_10_t {
    uint32_t ctr[4];    /* the counter, word 0 least significant */
    uint32_t output[4]; /* philox(ctr): the current block */
    uint32_t key[2];
    unsigned STATE; /* the next word of output to hand out */
};

/* ctr += n (words 0-1 first, carries upward), as Philox_State_Incr. */
inline void emu_philox_incr(curandStatePhilox4_32_10_t *s, unsigned long long n)
{
    unsigned long long carry = n;
    for (int w = 0; w < 4 && carry; w++) {
        const unsigned long long sum = (unsigned long long)s->ctr[w] + (carry & 0xFFFFFFFFull);
        s->ctr[w] = (uint32_t)sum;
        carry = (carry >> 32) + (sum >> 32);
    }
}

/* ctr += n << 64, as Philox_State_Incr_hi (skipahead_sequence). */
inline void emu_philox_incr_hi(curandStatePhilox4_32_10_t *s, unsigned long long n)
{
    const unsigned long long lo = (unsigned long long)s->ctr[2] + (n & 0xFFFFFFFFull);
    s->ctr[2] = (uint32_t)lo;
    s->ctr[3] = (uint32_t)((unsigned long long)s->ctr[3] + (n >> 32) + (lo >> 32));
}

inline void curand_init(unsigned long long seed, unsigned long long subsequence, unsigned long long offset,
                        curandStatePhilox4_32_10_t *s)
{
    s->ctr[0] = s->ctr[1] = s->ctr[2] = s->ctr[3] = 0;
    s->key[0] = (uint32_t)seed, s->key[1] = (uint32_t)(seed >> 32);
    s->STATE = 0;
    emu_philox_incr_hi(s, subsequence); /* skipahead_sequence */
    s->STATE += (unsigned)(offset & 3);  /* skipahead */
    unsigned long long n = offset / 4;
    if (s->STATE > 3) {
        n += 1;
        s->STATE -= 4;
    }
    emu_philox_incr(s, n);
    philox4x32_10(s->ctr, s->key, s->output);
}

inline uint4 curand4(curandStatePhilox4_32_10_t *s)
{
    uint32_t words[8];
    for (int i = 0; i < 4; i++)
        words[i] = s->output[i];
    emu_philox_incr(s, 1);
    philox4x32_10(s->ctr, s->key, s->output);
    for (int i = 0; i < 4; i++)
        words[4 + i] = s->output[i];
    const unsigned k = s->STATE;
    return uint4{words[k], words[k + 1], words[k + 2], words[k + 3]};
}

inline void emu_box_muller(unsigned x, unsigned y, float *a, float *b)
{
    const float inv32 = 2.3283064e-10f, inv32_2pi = 2.3283064e-10f * 6.2831855f;
    const float u = fmaf((float)x, inv32, inv32 / 2), v = fmaf((float)y, inv32_2pi, inv32_2pi / 2);
    const float s = sqrtf(-2.0f * logf(u));
    *a = sinf(v) * s;
    *b = cosf(v) * s;
}

inline float4 curand_normal4(curandStatePhilox4_32_10_t *s)
{
    const uint4 w = curand4(s);
    float4 r;
    emu_box_muller(w.x, w.y, &r.x, &r.y);
    emu_box_muller(w.z, w.w, &r.z, &r.w);
    return r;
}

} // namespace sower_emu_rt
using namespace sower_emu_rt;

#endif
