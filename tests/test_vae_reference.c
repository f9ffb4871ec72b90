/* test_vae_reference.c: sower's AutoencoderKL decoder against diffusers' (reference:
 * validate/make_vae_reference.py, tests/data/sd/vae_reference.json).
 *
 * usage: test_vae_reference tests/data/sd
 *
 * For the tiny SD pipelines' VAEs (F32, BF16, F16 weights) and vae-sd-shape (Stable Diffusion's decoder
 * structure at small width: shortcut convolutions, two resnets per block plus one, F16 weights under the
 * pre-0.17 attention names), every case: vae.decode(latents / scaling_factor).sample within 5 x max(torch's
 * batch yardstick, torch's fp32-vs-fp64 yardstick). Then sower's own promise, bit for bit: the cases
 * decoded in one call equal each alone, and 1 thread equals 2. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config_file.h"
#include "cpu_backend.h"
#include "gemm.h"
#include "npy.h"
#include "vae.h"

typedef struct {
    char name[64];
    Vae vae;
    ComputeBackend be;
    float *latents, *images; /* (cases, 4, h, w), (cases, 3, H, W) */
    int64_t z_shape[4], image_shape[4];
} Case;

static int load_case(const char *data, const char *name, Case *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data, name);
    SOWER_TRY(vae_load(&c->vae, path));
    SOWER_TRY(compute_backend_cpu(&c->be, NULL));
    int ndim = 0;
    snprintf(path, sizeof path, "%s/vae_latents_%s.npy", data, name);
    SOWER_TRY(npy_read_f32(path, &c->latents, c->z_shape, &ndim));
    snprintf(path, sizeof path, "%s/vae_images_%s.npy", data, name);
    SOWER_TRY(npy_read_f32(path, &c->images, c->image_shape, &ndim));
    return SOWER_OK;
}

static void free_case(Case *c)
{
    compute_backend_close(&c->be);
    vae_free(&c->vae);
    free(c->latents), free(c->images);
    memset(c, 0, sizeof *c);
}

static double num(const cJSON *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Decodes `n` latents starting at row first into out. */
static int decode(Case *c, int first, int n, float *out)
{
    const size_t per = (size_t)(c->z_shape[1] * c->z_shape[2] * c->z_shape[3]);
    return vae_decode(&c->be, &c->vae, c->latents + first * per, n, (int)c->z_shape[2], (int)c->z_shape[3], out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_vae_reference tests/data/sd\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/vae_reference.json", argv[1]);
    char *text = NULL;
    size_t bytes = 0;
    if (config_file_read(path, "reference", 1 << 22, SOWER_EINPUT, &text, &bytes) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 2;
    }
    cJSON *ref = cJSON_ParseWithLength(text, bytes);
    free(text);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(ref, "cases");
    CHECK(cJSON_GetArraySize(cases) >= 8, "expected at least 8 cases");
    gemm_set_threads(2);
    Case c = {0};
    double worst = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, cases)
    {
        const char *name = cJSON_GetObjectItemCaseSensitive(item, "vae")->valuestring;
        if (strcmp(name, c.name) != 0) {
            free_case(&c);
            if (load_case(argv[1], name, &c) != SOWER_OK) {
                sower_error_print(stderr, 1);
                CHECK(0, "%s: cannot load", name);
                break;
            }
        }
        const int row = (int)num(item, "row"), rows = (int)c.z_shape[0];
        const size_t per = (size_t)(c.image_shape[1] * c.image_shape[2] * c.image_shape[3]);
        float *got = malloc(per * sizeof *got);
        CHECK(decode(&c, row, 1, got) == SOWER_OK, "%s row %d: decode failed", name, row);
        double diff = 0;
        for (size_t i = 0; i < per; i++) diff = fmax(diff, fabs((double)got[i] - c.images[row * per + i]));
        const double tol = 5 * fmax(num(item, "torch_batch_yardstick"), num(item, "torch_fp64_yardstick"));
        worst = fmax(worst, diff / tol);
        printf("  %-14s row %d: max|sower - diffusers| %.3g  tolerance %.3g  (|image| <= %.2f)\n", name, row, diff, tol,
               num(item, "image_abs_max"));
        CHECK(diff <= tol, "%s row %d: max|diff| %.3g > %.3g", name, row, diff, tol);
        if (row == rows - 1) { /* after a VAE's last case: every row at once == each alone; threads */
            float *all = malloc((size_t)rows * per * sizeof *all);
            CHECK(decode(&c, 0, rows, all) == SOWER_OK, "%s: decode of %d failed", name, rows);
            float *one = malloc(per * sizeof *one);
            for (int r = 0; r < rows; r++) {
                CHECK(decode(&c, r, 1, one) == SOWER_OK, "decode");
                CHECK(memcmp(one, all + r * per, per * sizeof *one) == 0, "%s row %d: in a call of %d != alone", name,
                      r, rows);
            }
            gemm_set_threads(1);
            CHECK(decode(&c, 0, 1, one) == SOWER_OK, "decode");
            CHECK(memcmp(one, all, per * sizeof *one) == 0, "%s: 1 thread != 2 threads", name);
            gemm_set_threads(2);
            printf("  %-14s %d decoded together == each alone, 1 thread == 2 threads: bit for bit\n", name, rows);
            free(all), free(one);
        }
        free(got);
    }
    free_case(&c);
    cJSON_Delete(ref);
    printf("worst case: %.2f of its tolerance\n", worst);
    return check_exit("test_vae_reference");
}
