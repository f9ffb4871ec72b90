/* gemm.c: BLIS expert-interface calls with the sup path disabled (see gemm.h). */
#include "gemm.h"

#include <blis.h>
#include <stdio.h>

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

const char *gemm_backend_identity(void)
{
    static char identity[128];
    if (!identity[0])
        snprintf(identity, sizeof identity, "BLIS %s %s (conventional path, sup off)", bli_info_get_version_str(),
                 bli_arch_string(bli_arch_query_id()));
    return identity;
}
