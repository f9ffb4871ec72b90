/* bench_h5write.c: the writer rank's HDF5 throughput, through the same code `sower run` uses
 * (h5out: chunked /latents, /digest, flush of the data, then /done and another flush per batch).
 * usage: bench_h5write OUT.h5 ROWS BATCH [C H W]; prints MB/s of latent bytes. Never asserts. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "h5out.h"

static uint64_t identity(const void *ctx, uint64_t row)
{
    (void)ctx;
    return row;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_h5write OUT.h5 ROWS BATCH [C H W]\n");
        return 2;
    }
    uint64_t rows = strtoull(argv[2], NULL, 10), batch = strtoull(argv[3], NULL, 10);
    int c = argc > 6 ? atoi(argv[4]) : 3, h = argc > 6 ? atoi(argv[5]) : 32, w = argc > 6 ? atoi(argv[6]) : 32;
    size_t per = (size_t)c * h * w;
    float *lat = malloc(sizeof(float) * per * batch);     /* (batch, C, H, W) */
    unsigned char *dig = calloc(batch, 32);               /* (batch, 32) */
    for (size_t i = 0; i < per * batch; i++)
        lat[i] = (float)(i % 977) * 0.001f - 0.5f;
    H5Out o;
    double t0 = omp_get_wtime();
    if (h5out_create(&o, argv[1], rows, c, h, w, 64, 0, identity, NULL, NULL, NULL, 0, NULL, NULL) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 3;
    }
    double t1 = omp_get_wtime();
    for (uint64_t r = 0; r < rows; r += batch) {
        uint64_t n = rows - r < batch ? rows - r : batch;
        if (h5out_write_rows(&o, r, n, lat, dig, NULL, NULL) != SOWER_OK) {
            sower_error_print(stderr, 1);
            return 3;
        }
    }
    double t2 = omp_get_wtime();
    if (h5out_finish(&o, 1) != SOWER_OK)
        return 3;
    double t3 = omp_get_wtime();
    double mb = (double)rows * per * sizeof(float) / 1e6;
    printf("h5 write: %llu rows of %dx%dx%d in batches of %llu: create %.3f s, rows %.3f s (%.0f MB/s, %.1f us/row), "
           "close %.3f s\n", (unsigned long long)rows, c, h, w, (unsigned long long)batch, t1 - t0, t2 - t1,
           mb / (t2 - t1), 1e6 * (t2 - t1) / rows, t3 - t2);
    free(lat), free(dig);
    return 0;
}
