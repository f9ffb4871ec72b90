#define _POSIX_C_SOURCE 200809L /* setenv */
/* gemm.c: BLIS expert-interface calls with the sup path disabled (see gemm.h). */
#include "gemm.h"

#include <blis.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "err.h"

static int gemm_thread_count = 1;

static void ensure_kernels(void);

void gemm_set_threads(int threads) { gemm_thread_count = threads > 0 ? threads : 1; }

int gemm_threads(void) { return gemm_thread_count; }

int gemm_change_threads(int threads)
{
    const int before = gemm_thread_count;
    gemm_set_threads(threads);
    if (gemm_reserve_packing() != SOWER_OK) {
        gemm_set_threads(before);
        return SOWER_ENOMEM; /* the error stays set for the caller to say or clear */
    }
    omp_set_num_threads(gemm_thread_count);
    return SOWER_OK;
}

static void call_blis(trans_t transa, trans_t transb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                      float *c, int ldc, int accumulate)
{
    ensure_kernels();
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(gemm_thread_count, &rntm);
    bli_rntm_disable_l3_sup(&rntm);
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    bli_sgemm_ex(transa, transb, m, n, k, &one, (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc,
                 1, NULL, &rntm);
}

/* BLIS takes its packing buffers from pools that grow on a product's first need (one A block and one
 * B block per column group of threads, each of the blocksizes' full size whatever the product) and
 * aborts the whole process when malloc fails there (bli_malloc.c: "heap memory is likely exhausted").
 * So the buffers are made up front, by one small product that splits its columns over every thread,
 * after checking that the address space holds them: running out then is an error sower
 * reports, and later products reuse the pools. */
int gemm_reserve_packing(void)
{
    static int reserved_threads; /* the pools only grow: once made for t threads, they serve t or fewer */
    if (gemm_thread_count <= reserved_threads)
        return SOWER_OK;
    ensure_kernels();
    bli_init();
    /* BLIS sizes every pool's blocks for its widest type: MC x KC (A) and KC x NC (B) elements of it. */
    cntx_t *cntx = bli_gks_query_cntx();
    const num_t types[] = {BLIS_FLOAT, BLIS_DOUBLE, BLIS_SCOMPLEX, BLIS_DCOMPLEX};
    const size_t type_bytes[] = {4, 8, 8, 16};
    size_t a_block = 0, b_block = 0;
    for (int i = 0; i < 4; i++) {
        const size_t mc = (size_t)bli_cntx_get_blksz_max_dt(types[i], BLIS_MC, cntx);
        const size_t kc = (size_t)bli_cntx_get_blksz_max_dt(types[i], BLIS_KC, cntx);
        const size_t nc = (size_t)bli_cntx_get_blksz_max_dt(types[i], BLIS_NC, cntx);
        a_block = mc * kc * type_bytes[i] > a_block ? mc * kc * type_bytes[i] : a_block;
        b_block = kc * nc * type_bytes[i] > b_block ? kc * nc * type_bytes[i] : b_block;
    }
    /* The threads' stacks come out of the same address space: libgomp exits the process when it cannot
     * make them, so they are made here first, after a check that they fit, and each thread's first
     * malloc then makes its arena (glibc reserves 64 MiB of address space for one). Only then does the
     * check for BLIS's blocks measure what BLIS will find. */
    struct rlimit stack;
    size_t stack_bytes = (size_t)8 << 20;
    if (getrlimit(RLIMIT_STACK, &stack) == 0 && stack.rlim_cur != RLIM_INFINITY && stack.rlim_cur < ((rlim_t)64 << 20))
        stack_bytes = (size_t)stack.rlim_cur;
    const int t = gemm_thread_count;
    void *probe = malloc(2 * (size_t)t * stack_bytes);
    if (!probe)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the stacks of %d thread%s", t, t == 1 ? "" : "s");
    free(probe);
#pragma omp parallel num_threads(t)
    {
        void *volatile first = malloc(64); /* volatile: the compiler may not drop a malloc/free pair */
        free(first);
    }
    const size_t pools = (size_t)t * (a_block + b_block);
    probe = malloc(pools + ((size_t)4 << 20)); /* A and B blocks for every thread, and a little for BLIS's own */
    if (!probe)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the matrix products' packing buffers (%zu MiB for %d "
                                        "thread%s)", pools >> 20, t, t == 1 ? "" : "s");
    free(probe);
    enum { EDGE = 16 };
    const int n = EDGE * t;
    float *a = calloc((size_t)EDGE * EDGE, sizeof *a); /* (EDGE, EDGE) */
    float *b = calloc((size_t)n * EDGE, sizeof *b);    /* B^T (n, EDGE) */
    float *c = malloc((size_t)EDGE * n * sizeof *c);   /* (EDGE, n) */
    int status = SOWER_OK;
    if (!a || !b || !c)
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for the matrix products' packing buffers");
    else {
        gemm_f32_bt(EDGE, n, EDGE, a, EDGE, b, EDGE, c, n, 0);
        reserved_threads = t;
    }
    free(a);
    free(b);
    free(c);
    return status;
}

void gemm_f32(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
              int accumulate)
{
    call_blis(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

void gemm_f32_bt(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                 int accumulate)
{
    call_blis(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

void gemm_f32_bt_transposed(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                            float *tmp)
{
    call_blis(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, n, m, k, b, ldb, a, lda, tmp, m, 0); /* tmp (n, m) = B A^T */
#pragma omp parallel for schedule(static) num_threads(gemm_thread_count)
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[(size_t)i * ldc + j] = tmp[(size_t)j * m + i];
}

void gemm_f32_at(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                 int accumulate)
{
    call_blis(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

/* ---- packed operands (gemm.h) ---- */

static GemmPacking packing;
static sgemm_ukr_ft packing_ukr;
static cntx_t *packing_cntx;
/* The kernel prefers column-stored C (skx): each tile is computed as its transpose, C^T = B^T A^T, the
 * caller's B panels as the kernel's A and A panels as its B, written column-stored, which is C row-stored.
 * That is the very call BLIS makes for gemm_f32 then (it transposes the whole problem for such a kernel),
 * so the bits stay gemm_f32's. */
static int packing_transposed;

const GemmPacking *gemm_packing(void)
{
    static int state; /* 0 not asked yet, 1 usable, -1 not usable */
    if (!state) {
        ensure_kernels();
        packing_cntx = bli_gks_query_cntx();
        packing_ukr = (sgemm_ukr_ft)bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, packing_cntx);
        const int mr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, packing_cntx);
        const int nr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, packing_cntx);
        packing.kc = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_KC, packing_cntx);
        packing.kc_max = (int)bli_cntx_get_blksz_max_dt(BLIS_FLOAT, BLIS_KC, packing_cntx);
        /* Row-stored C is what the conventional path hands a row-preferring kernel untransposed; a
         * column-preferring one gets the transposed problem: the caller's MR is then the kernel's NR. */
        packing_transposed = !bli_cntx_l3_nat_ukr_prefers_rows_dt(BLIS_FLOAT, BLIS_GEMM_UKR, packing_cntx);
        packing.mr = packing_transposed ? nr : mr;
        packing.nr = packing_transposed ? mr : nr;
        state = packing_ukr && packing.mr > 0 && packing.nr > 0 && packing.kc > 0 ? 1 : -1;
    }
    return state > 0 ? &packing : NULL;
}

int gemm_kc_panel(const GemmPacking *g, int p0, int k)
{
    /* bli_determine_blocksize_f_sub: the rest if it fits in the maximum, else the default. */
    return k - p0 <= g->kc_max ? k - p0 : g->kc;
}

size_t gemm_packed_a_floats(const GemmPacking *g, int m, int k)
{
    return (size_t)((m + g->mr - 1) / g->mr) * g->mr * (size_t)k;
}

void gemm_pack_a_panel(const GemmPacking *g, int m, int k, const float *a, int lda, int ip, float *ap)
{
    const int mr = g->mr, mpad = (m + mr - 1) / mr * mr, r0 = ip * mr;
    const int rows = m - r0 < mr ? m - r0 : mr;
    for (int p0 = 0; p0 < k; p0 += gemm_kc_panel(g, p0, k)) {
        int kc = gemm_kc_panel(g, p0, k);
        float *dst = ap + (size_t)p0 * mpad + (size_t)ip * mr * kc; /* (kc, MR) */
        for (int kk = 0; kk < kc; kk++) {
            for (int r = 0; r < rows; r++)
                dst[(size_t)kk * mr + r] = a[(size_t)(r0 + r) * lda + p0 + kk];
            for (int r = rows; r < mr; r++)
                dst[(size_t)kk * mr + r] = 0.0f;
        }
    }
}

void gemm_tile(int m, int n, int kc, const float *ap, const float *bp, float *c, int ldc, int accumulate)
{
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    auxinfo_t aux;
    memset(&aux, 0, sizeof aux);
    if (packing_transposed) { /* the tile of C^T (n, m), column-stored: C's tile row-stored */
        bli_auxinfo_set_next_ab((void *)bp, (void *)ap, &aux);
        packing_ukr(n, m, kc, &one, (float *)bp, (float *)ap, &beta, c, 1, ldc, &aux, packing_cntx);
        return;
    }
    bli_auxinfo_set_next_ab((void *)ap, (void *)bp, &aux); /* prefetch hints only */
    packing_ukr(m, n, kc, &one, (float *)ap, (float *)bp, &beta, c, ldc, 1, &aux, packing_cntx);
}

/* ---- the kernel family ---- */

typedef struct {
    const char *name; /* BLIS's name of the configuration */
    arch_t id;
    int (*runs_here)(void);
} KernelFamily;

static int has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

static int has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static const KernelFamily families[] = {{"skx", BLIS_ARCH_SKX, has_avx512},
                                        {"haswell", BLIS_ARCH_HASWELL, has_avx2},
                                        {"zen3", BLIS_ARCH_ZEN3, has_avx2},
                                        {"zen2", BLIS_ARCH_ZEN2, has_avx2},
                                        {"zen", BLIS_ARCH_ZEN, has_avx2}};

static void use_family(const KernelFamily *f)
{
    char id[16];
    snprintf(id, sizeof id, "%d", (int)f->id);
    setenv("BLIS_ARCH_TYPE", id, 1); /* read once, when BLIS first initialises */
}

static int kernels_chosen;

/* Every BLIS use in sower is in this file: each first makes sure the family is chosen (main chooses it
 * first, to report a bad SOWER_KERNELS; tests and benchmarks get the same choice here). */
static void ensure_kernels(void)
{
    if (!kernels_chosen && gemm_choose_kernels() != SOWER_OK) {
        fprintf(stderr, "sower: %s: BLIS's own choice instead\n", sower_error_message());
        sower_error_clear();
    }
}

int gemm_choose_kernels(void)
{
    if (kernels_chosen) return SOWER_OK;
    kernels_chosen = 1;
    const char *asked = getenv("SOWER_KERNELS");
    if (asked && strcmp(asked, "blis") == 0) return SOWER_OK; /* BLIS's own detection (or its BLIS_ARCH_TYPE) */
    if (asked && *asked && strcmp(asked, "auto") != 0) {
        for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
            if (strcmp(asked, families[i].name) == 0) {
                if (!families[i].runs_here())
                    return SOWER_FAIL(SOWER_EUSAGE, "SOWER_KERNELS=%s: this CPU lacks the instructions of BLIS's %s kernels",
                                      asked, asked);
                use_family(&families[i]);
                return SOWER_OK;
            }
        return SOWER_FAIL(SOWER_EUSAGE, "SOWER_KERNELS=%s: expected auto, blis, skx, haswell, zen3, zen2 or zen", asked);
    }
    if (getenv("BLIS_ARCH_TYPE")) return SOWER_OK; /* BLIS's own override, as its user set it */
    /* Measured (bench/unet_vs_torch.py --kernels): on an Intel Xeon with AVX-512 BLIS may pick haswell
     * (its AVX-512 check counts FMA units), and skx is faster there (154 vs 96 GFLOP/s per thread); on AMD
     * Zen 4, whose AVX-512 is 256 bits wide inside, BLIS's zen3 is faster than skx (102 vs 97 GFLOP/s). */
    __builtin_cpu_init();
    if (has_avx512() && __builtin_cpu_is("intel")) use_family(&families[0]);
    return SOWER_OK;
}

const char *gemm_backend_identity(void)
{
    static char identity[128];
    ensure_kernels();
    bli_init(); /* the arch query reads BLIS's kernel table: aborts if it is the first BLIS call (forced family) */
    if (!identity[0])
        snprintf(identity, sizeof identity, "BLIS %s %s (conventional path, sup off)", bli_info_get_version_str(),
                 bli_arch_string(bli_arch_query_id()));
    return identity;
}
