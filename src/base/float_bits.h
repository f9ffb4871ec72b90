/* float_bits.h: a float32's bits and back (through memcpy: no aliasing), for the code that reproduces other
 * libraries' bit-level float arithmetic (rng/randn.c: torch's AVX2 Cephes polynomials; model/schedulers/
 * torch_math.c: Sleef's log/exp). */
#ifndef SOWER_FLOAT_BITS_H
#define SOWER_FLOAT_BITS_H

#include <stdint.h>
#include <string.h>

static inline uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float float_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif /* SOWER_FLOAT_BITS_H */
