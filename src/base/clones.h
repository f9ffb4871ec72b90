/* clones.h: SOWER_CLONES gives a function an AVX2 (x86-64-v3) copy beside the generic one, chosen
 * by the CPU when the program loads. Only for code whose bits cannot depend on the copy: the build
 * has -ffp-contract=off and no fast-math, so vector and scalar code round every operation the same.
 * GCC on x86-64 only, and not under AddressSanitizer (its instrumentation and ifuncs disagree). */
#ifndef SOWER_CLONES_H
#define SOWER_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define SOWER_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SOWER_CLONES
#endif

#endif /* SOWER_CLONES_H */
