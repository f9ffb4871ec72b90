/* test_randn_simd.c: the AVX2 intrinsics kernel gives the portable kernel's bits for EVERY input
 * it can receive. Uniforms are k * 2^-24 (k = 0..2^24-1): lane j takes 1 - u into log, lane j+8
 * takes 2*pi*u into sincos, so one sweep of k covers both functions' whole domains.
 * Exit 77 (skipped) where the CPU or build has no AVX2/FMA. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "randn_kernels.h"

int main(void)
{
    RandnFill16 simd = randn_fill16_avx2_simd();
    if (!simd) {
        printf("test_randn_simd: no AVX2+FMA kernel on this CPU/build: skipped\n");
        return 77;
    }
    uint64_t differing = 0, first_k = 0;
    for (uint32_t k0 = 0; k0 < (1u << 24); k0 += 8) {
        float a[16], b[16];
        for (int j = 0; j < 8; j++) {
            a[j] = (float)(k0 + j) * 0x1p-24f;           /* radius lane: 1 - a[j] */
            a[j + 8] = (float)((k0 + j) ^ 0x5A5A5Au) * 0x1p-24f; /* angle lane, another k order */
        }
        memcpy(b, a, sizeof a);
        randn_fill16_avx2_portable(a);
        simd(b);
        if (memcmp(a, b, sizeof a) != 0) {
            if (!differing)
                first_k = k0;
            differing++;
        }
    }
    CHECK(differing == 0, "%llu blocks differ, first at k = %llu", (unsigned long long)differing,
          (unsigned long long)first_k);
    return check_exit("test_randn_simd");
}
