/* gemm.c: BLIS expert-interface calls with the sup path disabled (see gemm.h). */
#include "gemm.h"

#include <blis.h>
#include <stdio.h>
#include <string.h>

static int gemm_thread_count = 1;

void gemm_set_threads(int threads) { gemm_thread_count = threads > 0 ? threads : 1; }

int gemm_threads(void) { return gemm_thread_count; }

static void call_blis(trans_t transa, trans_t transb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                      float *c, int ldc, int accumulate)
{
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(gemm_thread_count, &rntm);
    bli_rntm_disable_l3_sup(&rntm);
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    bli_sgemm_ex(transa, transb, m, n, k, &one, (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc,
                 1, NULL, &rntm);
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

void gemm_f32_at(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                 int accumulate)
{
    call_blis(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

/* ---- packed operands (gemm.h) ---- */

static GemmPacking packing;
static sgemm_ukr_ft packing_ukr;
static cntx_t *packing_cntx;

const GemmPacking *gemm_packing(void)
{
    static int state; /* 0 not asked yet, 1 usable, -1 not usable */
    if (!state) {
        packing_cntx = bli_gks_query_cntx();
        packing_ukr = (sgemm_ukr_ft)bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, packing_cntx);
        packing.mr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, packing_cntx);
        packing.nr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, packing_cntx);
        packing.kc = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_KC, packing_cntx);
        packing.kc_max = (int)bli_cntx_get_blksz_max_dt(BLIS_FLOAT, BLIS_KC, packing_cntx);
        /* Row-stored C is what the conventional path hands a row-preferring kernel untransposed. */
        int rows = bli_cntx_l3_nat_ukr_prefers_rows_dt(BLIS_FLOAT, BLIS_GEMM_UKR, packing_cntx);
        state = rows && packing_ukr && packing.mr > 0 && packing.nr > 0 && packing.kc > 0 ? 1 : -1;
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
    bli_auxinfo_set_next_ab((void *)ap, (void *)bp, &aux); /* prefetch hints only */
    packing_ukr(m, n, kc, &one, (float *)ap, (float *)bp, &beta, c, ldc, 1, &aux, packing_cntx);
}

const char *gemm_backend_identity(void)
{
    static char identity[128];
    if (!identity[0])
        snprintf(identity, sizeof identity, "BLIS %s %s (conventional path, sup off)", bli_info_get_version_str(),
                 bli_arch_string(bli_arch_query_id()));
    return identity;
}
