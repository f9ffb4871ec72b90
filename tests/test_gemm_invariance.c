/* test_gemm_invariance.c: the property src/cpu/gemm.h relies on. Every element of C = A B must have
 * the same bits whether it is computed in the whole product, in a block of columns or rows of
 * any (uneven) size, with 1 or 2 threads, or alone: the reduction order of an element depends on
 * k only. Shapes are the UNet's (K = Cin*9 up to 4608; N = batch * pixels). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gemm.h"
#include "rng.h"

static void randn(float *x, size_t n, uint64_t seed)
{
    TorchRng g = {0};
    rng_seed(&g, seed);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, x, n);
}

static void check_shape(int m, int n, int k)
{
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
    float *whole = malloc(sizeof(float) * m * n), *part = malloc(sizeof(float) * m * n);
    randn(a, (size_t)m * k, 1);
    randn(b, (size_t)k * n, 2);
    gemm_set_threads(2);
    gemm_f32(m, n, k, a, k, b, n, whole, n, 0);

    /* Column blocks of uneven widths (a batch of 1, 3 or 8 samples is a block of columns), 1 thread. */
    gemm_set_threads(1);
    static const int widths[] = {1, 7, 64, 250, 1000, 3};
    for (int j = 0, w = 0; j < n; j += widths[w], w = (w + 1) % 6) {
        int nn = n - j < widths[w] ? n - j : widths[w];
        gemm_f32(m, nn, k, a, k, b + j, n, part + j, n, 0);
    }
    CHECK(memcmp(whole, part, sizeof(float) * m * n) == 0, "%dx%dx%d: column blocks differ", m, n, k);

    /* Row blocks (output channels), 2 threads. */
    gemm_set_threads(2);
    memset(part, 0, sizeof(float) * m * n);
    for (int i = 0; i < m; i += 37) {
        int mm = m - i < 37 ? m - i : 37;
        gemm_f32(mm, n, k, a + (size_t)i * k, k, b, n, part + (size_t)i * n, n, 0);
    }
    CHECK(memcmp(whole, part, sizeof(float) * m * n) == 0, "%dx%dx%d: row blocks differ", m, n, k);

    /* One element alone (a 1x1 product). */
    float one;
    gemm_f32(1, 1, k, a + (size_t)(m - 1) * k, k, b + (n - 1), n, &one, 1, 0);
    CHECK(memcmp(&one, &whole[(size_t)(m - 1) * n + (n - 1)], sizeof one) == 0, "%dx%dx%d: lone element differs",
          m, n, k);
    free(a), free(b), free(whole), free(part);
}

/* gemm_f32_bt_transposed (attention's values, computed as the transposed product) against gemm_f32_bt:
 * the same bits, on attention's shapes (m a head's width, n queries, k keys, k beyond one KC panel). */
static void check_transposed(int m, int n, int k)
{
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * n * k);
    float *plain = malloc(sizeof(float) * m * n), *via = malloc(sizeof(float) * m * n), *tmp = malloc(sizeof(float) * m * n);
    randn(a, (size_t)m * k, 3);
    randn(b, (size_t)n * k, 4);
    gemm_set_threads(2);
    gemm_f32_bt(m, n, k, a, k, b, k, plain, n, 0);
    gemm_f32_bt_transposed(m, n, k, a, k, b, k, via, n, tmp);
    CHECK(memcmp(plain, via, sizeof(float) * m * n) == 0, "%dx%dx%d: the transposed product differs", m, n, k);
    free(a), free(b), free(plain), free(via), free(tmp);
}

int main(void)
{
    check_transposed(40, 1024, 4096); /* SD 1.5's first level: 8 heads of 40, 4096 keys */
    check_transposed(64, 300, 1500);  /* SD 2.x's heads of 64, keys not a multiple of KC */
    check_transposed(5, 77, 1031);
    check_shape(128, 1024, 1152);  /* 32x32, 128 channels, 3x3 */
    check_shape(256, 2048, 2304);  /* 8 samples of 16x16 */
    check_shape(256, 300, 4608);   /* uneven N, 512 input channels */
    check_shape(3, 1024, 1152);    /* conv_out */
    check_shape(64, 16, 65);       /* tiny */
    printf("%s\n", gemm_backend_identity());
    return check_exit("test_gemm_invariance");
}
