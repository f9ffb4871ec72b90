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

#include "err.h"

/* Threads BLIS may use for one call (>= 1). */
void gemm_set_threads(int threads);
int gemm_threads(void);
/* Between products, from the thread that makes them: the thread count from now on, for the products and
 * OpenMP's loops alike (omp_set_num_threads). More threads than BLIS's packing buffers were made for get
 * theirs first (gemm_reserve_packing: BLIS aborts without them); without the memory the count stays as it
 * was: SOWER_ENOMEM. The convolutions' per-thread scratch grows at their next call, as at the start. */
int gemm_change_threads(int threads) SOWER_MUST_CHECK;
/* Makes BLIS's packing buffers for gemm_threads() threads now, or fails with SOWER_ENOMEM: BLIS aborts
 * the process when it cannot make them in the middle of a product. Call after gemm_set_threads. */
int gemm_reserve_packing(void) SOWER_MUST_CHECK;

/* C = A B (accumulate = 0) or C += A B (accumulate = 1); lda/ldb/ldc are row strides. */
void gemm_f32(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
              int accumulate);
/* C = A B^T: B is (n, k) row-major (a Linear weight). */
void gemm_f32_bt(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                 int accumulate);
/* gemm_f32_bt's C (m, n), computed as its transpose C^T = B A^T into tmp (n, m) and copied out
 * (accumulate 0): the same products summed over k in the same KC panels, so the same bits. For
 * attention's values (m = a head's width, n = queries, k = keys), where a kernel that prefers
 * column-stored results (skx) runs the m-row product at half speed (gemm_attention_order's figures). */
void gemm_f32_bt_transposed(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                            float *tmp);
/* Whether attention's values product takes gemm_f32_bt_transposed, for a head of width dh over nk keys:
 * narrow heads over many keys. Measured on the product alone (AMD EPYC, 2 threads): skx 1.5x to 2x at
 * dh 40 to 80 over 1024 to 4096 keys (40x1024x4096: 49 -> 83 GFLOP/s), zen3 1.03-1.05x; dh 160 to 256
 * lose 7-27% and 77 text keys 34-46%. Whole layers: bench_layers' "self-attn" with SOWER_KERNELS=skx.
 * Shape only, and the bits are the same either way. */
static inline int gemm_attention_order(int dh, int nk) { return dh <= 128 && nk >= 1024; }

/* C = A^T B: A is (k, m) row-major. */
void gemm_f32_at(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                 int accumulate);

/* ---- The same product with B packed by the caller ----
 * For callers that can build B's packed panels more cheaply than from a stored matrix (the 3x3
 * convolution packs its columns straight from the activation, src/cpu/conv.c). gemm_tile() runs BLIS's
 * own microkernel on one MR x NR tile of packed panels; a caller that walks k in the panels of
 * gemm_kc_panel(), calling gemm_tile with accumulate = 0 on the first panel and 1 after, reproduces
 * gemm_f32's arithmetic exactly: the conventional path does that very sequence for every tile
 * (alpha 1; beta 0 on the first KC panel, 1 after; edge tiles through the kernel's own m, n), so
 * each element gets the same bits as from gemm_f32, whatever the caller's blocking or threads
 * (tests/test_conv_packed.c compares them bit for bit). */
typedef struct {
    int mr, nr;     /* register tile: MR rows of A by NR columns of B */
    int kc, kc_max; /* BLIS's KC blocksize for float (default, maximum) */
} GemmPacking;

/* The packing of this BLIS configuration's float microkernel (NULL only if BLIS gives none). A kernel
 * that prefers column-stored C (skx) computes each tile transposed, C^T = B^T A^T, as BLIS's own gemm
 * does for it: mr is then the kernel's NR and nr its MR; the panels' layouts below are the same. */
const GemmPacking *gemm_packing(void);
/* Depth of the KC panel that starts at p0 < k (BLIS's forward blocksize rule). */
int gemm_kc_panel(const GemmPacking *g, int p0, int k);
/* Floats of a packed A (m, k): ceil(m / MR) * MR * k. */
size_t gemm_packed_a_floats(const GemmPacking *g, int m, int k);
/* Packs MR-row panel ip of A (m, k) (row stride lda) into ap, for every KC panel: the KC panel at
 * p0 (depth kc) starts at ap + p0 * mpad (mpad = m rounded up to MR), row panel ip at
 * + ip * MR * kc, element (r, kk) at + kk * MR + r; rows past m are zero. Panels are independent, so
 * callers may pack them on several threads. */
void gemm_pack_a_panel(const GemmPacking *g, int m, int k, const float *a, int lda, int ip, float *ap);
/* C (m, n) = (accumulate ? C : 0) + ap (MR, kc) . bp (kc, NR), m <= MR, n <= NR: one microkernel call.
 * ap: kk * MR + r; bp: kk * NR + j, aligned to 64 bytes; c: row stride ldc. */
void gemm_tile(int m, int n, int kc, const float *ap, const float *bp, float *c, int ldc, int accumulate);

/* Chooses BLIS's kernel family, before BLIS's first use (main does it first): SOWER_KERNELS=skx, haswell,
 * zen3, zen2 or zen forces one (SOWER_EUSAGE where this CPU lacks its instructions), =blis leaves BLIS's
 * own detection; else BLIS_ARCH_TYPE if its user set it; else (auto) skx on an Intel CPU with AVX-512 (F,
 * DQ, BW, VL), BLIS's own detection otherwise (measured: gemm.c).
 * The family is part of the backend identity: bits compare only within one. */
int gemm_choose_kernels(void) SOWER_MUST_CHECK;
/* "BLIS 0.9.0 zen3 (conventional path, sup off)": the kernel family, for provenance. */
const char *gemm_backend_identity(void);

#endif /* SOWER_GEMM_H */
