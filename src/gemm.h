/* gemm.h: the one matrix multiply the CPU backend uses, and why its bits are reproducible.
 *
 * C (m, n) = A (m, k) . B (k, n) [+ C], row-major float32, through BLIS's conventional
 * (packed, blocked) level-3 path with its small/skinny ("sup") path switched off. That path fixes
 * the reduction order of every output element by construction:
 *   - the k dimension is split into KC-sized panels, KC a constant of the kernel family;
 *   - within a panel the microkernel accumulates k in order, one FMA chain per element;
 *   - edge tiles run the same microkernel on zero-padded packed panels;
 *   - threads split only the m and n loops (BLIS never parallelises the k loop), so the
 *     thread count changes who computes an element, not how.
 * So an element's bits depend on its row of A, its column of B and k, never on m, n, matrix
 * edges or threads: a sample's bits are the same in any batch (tests/test_gemm_invariance.c).
 * The sup path would break this (its blocking depends on the shape), hence it is off. */
#ifndef SOWER_GEMM_H
#define SOWER_GEMM_H

#include <stddef.h>

/* Threads BLIS may use for one call (>= 1). */
void gemm_set_threads(int threads);
int gemm_threads(void);

/* C = A B (accumulate = 0) or C += A B (accumulate = 1); lda/ldb/ldc are row strides. */
void gemm_f32(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
              int accumulate);
/* C = A B^T: B is (n, k) row-major (a Linear weight). */
void gemm_f32_bt(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                 int accumulate);
/* C = A^T B: A is (k, m) row-major. */
void gemm_f32_at(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                 int accumulate);

/* "BLIS 0.9.0 zen3 (conventional path, sup off)": the kernel family, for provenance. */
const char *gemm_backend_identity(void);

#endif /* SOWER_GEMM_H */
