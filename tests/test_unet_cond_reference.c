/* test_unet_cond_reference.c: sower's UNet2DConditionModel against diffusers' (reference:
 * validate/make_sd_reference.py, tests/data/sd/unet_reference.json).
 *
 * usage: test_unet_cond_reference tests/data/sd [PREFIX]
 *
 * PREFIX (default unet) names the reference: PREFIX_reference.json and PREFIX_{x,context,out}_NAME.npy;
 * unet_odd is validate/make_odd_size_reference.py's, latents that do not halve evenly (15x13, 7x9, and
 * 13x11 through three downsamplings), which diffusers upsamples back to each skip connection's size.
 *
 * For the tiny SD 1.x (conv projections, F32 and BF16 weights) and SD 2.x (linear projections, heads per
 * block, upcast_attention, F16 weights) pipelines, every case: unet(x, t, encoder_hidden_states=e).sample
 * within 5 x max(torch's batch yardstick, torch's fp32-vs-fp64 yardstick). Then sower's own promise, bit
 * for bit: the cases in one batch equal each alone, and 1 thread equals 2. */
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
#include "ops_transformer.h"
#include "rng.h"
#include "safetensors.h"
#include "unet.h"

typedef struct {
    char name[64];
    UNet unet;
    StFile weights;
    ComputeBackend be;
    float *x, *context, *out; /* (cases, 4, H, W), (cases, tokens, dim), (cases, 4, H, W) */
    int64_t x_shape[4], ctx_shape[4];
} Pipeline;

static int load_pipeline(const char *data, const char *prefix, const char *name, Pipeline *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    char path[4096], weights[4096];
    snprintf(path, sizeof path, "%s/%s/unet/config.json", data, name);
    snprintf(weights, sizeof weights, "%s/%s/unet/diffusion_pytorch_model.safetensors", data, name);
    char *text = NULL;
    size_t bytes = 0;
    UNetConfig cfg;
    SOWER_TRY(config_file_read(path, "UNet config", 1 << 20, SOWER_EMODEL, &text, &bytes));
    int status = unet_config_parse(text, bytes, path, &cfg);
    free(text);
    SOWER_TRY(status);
    SOWER_TRY(unet_init(&p->unet, &cfg));
    SOWER_TRY(safetensors_open(&p->weights, weights));
    SOWER_TRY(unet_bind(&p->unet, &p->weights));
    SOWER_TRY(compute_backend_cpu(&p->be, &p->unet));
    int ndim = 0;
    int64_t shape[4];
    snprintf(path, sizeof path, "%s/%s_x_%s.npy", data, prefix, name);
    SOWER_TRY(npy_read_f32(path, &p->x, p->x_shape, &ndim));
    snprintf(path, sizeof path, "%s/%s_context_%s.npy", data, prefix, name);
    SOWER_TRY(npy_read_f32(path, &p->context, p->ctx_shape, &ndim));
    snprintf(path, sizeof path, "%s/%s_out_%s.npy", data, prefix, name);
    SOWER_TRY(npy_read_f32(path, &p->out, shape, &ndim));
    return SOWER_OK;
}

static void free_pipeline(Pipeline *p)
{
    compute_backend_close(&p->be);
    unet_free(&p->unet);
    safetensors_close(&p->weights);
    free(p->x), free(p->context), free(p->out);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

static double num(const cJSON *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Forward of `batch` cases starting at row first, into out (batch, 4, H, W). */
static int forward(Pipeline *p, int first, int batch, const float *timesteps, float *out)
{
    const size_t per_x = (size_t)(p->x_shape[1] * p->x_shape[2] * p->x_shape[3]);
    const size_t per_ctx = (size_t)(p->ctx_shape[1] * p->ctx_shape[2]);
    return unet_forward_on_cond(&p->be, p->x + first * per_x, timesteps, p->context + first * per_ctx,
                                (int)p->ctx_shape[1], batch, (int)p->x_shape[2], (int)p->x_shape[3], out);
}

/* Attention at 64x64 (4096 queries x 4096 keys): the queries go in blocks (16 MB of scores each), so
 * block offsets are checked against a plain double-precision evaluation, per sample and head. */
static void check_blocked_attention(void)
{
    const int c = 8, heads = 2, dh = c / heads, b = 2, side = 64, n = side * side;
    Act q = {0}, k = {0}, v = {0}, out = {0};
    Scratch scratch = {0};
    CHECK(act_alloc(&q, c, b, side, side) == SOWER_OK && act_alloc(&k, c, b, side, side) == SOWER_OK &&
              act_alloc(&v, c, b, side, side) == SOWER_OK,
          "alloc");
    TorchRng g = {0};
    rng_seed(&g, 7);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, q.data, act_numel(&q));
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, k.data, act_numel(&k));
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, v.data, act_numel(&v));
    CHECK(op_attention_heads(heads, &q, &k, &v, &out, &scratch) == SOWER_OK, "attention");
    const size_t plane = act_plane(&q);
    double worst = 0, *p = malloc((size_t)n * sizeof *p);
    const int probes[] = {0, 1, 1023, 1024, 2047, 3000, 4095}; /* block edges and a few inside */
    for (int s = 0; s < b; s++)
        for (int h = 0; h < heads; h++)
            for (size_t pi = 0; pi < sizeof probes / sizeof probes[0]; pi++) {
                const int i = probes[pi];
                double max = -INFINITY, sum = 0;
                for (int j = 0; j < n; j++) {
                    double dot = 0;
                    for (int d = 0; d < dh; d++)
                        dot += (double)q.data[(size_t)(h * dh + d) * plane + (size_t)s * n + i] *
                               k.data[(size_t)(h * dh + d) * plane + (size_t)s * n + j];
                    p[j] = dot / sqrt((double)dh);
                    max = fmax(max, p[j]);
                }
                for (int j = 0; j < n; j++)
                    sum += p[j] = exp(p[j] - max);
                for (int d = 0; d < dh; d++) {
                    double o = 0;
                    for (int j = 0; j < n; j++)
                        o += p[j] / sum * v.data[(size_t)(h * dh + d) * plane + (size_t)s * n + j];
                    worst = fmax(worst, fabs(o - out.data[(size_t)(h * dh + d) * plane + (size_t)s * n + i]));
                }
            }
    printf("  attention over 4096 tokens in query blocks: max|diff| from double precision %.3g\n", worst);
    CHECK(worst < 1e-5, "blocked attention differs from the plain evaluation by %.3g", worst);
    free(p);
    act_free(&q), act_free(&k), act_free(&v), act_free(&out);
    scratch_free(&scratch);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: test_unet_cond_reference tests/data/sd [PREFIX]\n");
        return 2;
    }
    const char *prefix = argc == 3 ? argv[2] : "unet";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_reference.json", argv[1], prefix);
    char *text = NULL;
    size_t bytes = 0;
    if (config_file_read(path, "reference", 1 << 22, SOWER_EINPUT, &text, &bytes) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 2;
    }
    cJSON *ref = cJSON_ParseWithLength(text, bytes);
    free(text);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(ref, "cases");
    CHECK(cJSON_GetArraySize(cases) >= 9, "expected at least 9 cases in %s", path);
    gemm_set_threads(2);
    Pipeline p = {0};
    float timesteps[16];
    int n_rows = 0;
    double worst = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "pipeline")->valuestring;
        if (strcmp(name, p.name) != 0) {
            free_pipeline(&p);
            n_rows = 0;
            if (load_pipeline(argv[1], prefix, name, &p) != SOWER_OK) {
                sower_error_print(stderr, 1);
                CHECK(0, "%s: cannot load", name);
                break;
            }
        }
        const int row = (int)num(c, "row");
        timesteps[row] = (float)num(c, "timestep");
        n_rows = row + 1 > n_rows ? row + 1 : n_rows;
        const size_t per = (size_t)(p.x_shape[1] * p.x_shape[2] * p.x_shape[3]);
        float *got = malloc(per * sizeof *got);
        CHECK(forward(&p, row, 1, &timesteps[row], got) == SOWER_OK, "%s row %d: forward failed", name, row);
        double diff = max_abs_diff(got, p.out + row * per, per);
        double tol = 5 * fmax(num(c, "torch_batch_yardstick"), num(c, "torch_fp64_yardstick"));
        worst = fmax(worst, diff / tol);
        printf("  %-14s %dx%d t=%-4g max|sower - diffusers| %.3g  tolerance %.3g\n", name, (int)p.x_shape[2],
               (int)p.x_shape[3], (double)timesteps[row], diff, tol);
        CHECK(diff <= tol, "%s row %d: max|diff| %.3g > %.3g", name, row, diff, tol);

        /* After a pipeline's last case: batch and threads, bit for bit. */
        const cJSON *next = c->next;
        if (!next || strcmp(cJSON_GetObjectItemCaseSensitive(next, "pipeline")->valuestring, name) != 0) {
            float *batched = malloc((size_t)n_rows * per * sizeof *batched);
            float *one = malloc(per * sizeof *one);
            CHECK(forward(&p, 0, n_rows, timesteps, batched) == SOWER_OK, "%s: batch forward failed", name);
            for (int r = 0; r < n_rows; r++) {
                CHECK(forward(&p, r, 1, &timesteps[r], one) == SOWER_OK, "forward");
                CHECK(memcmp(one, batched + r * per, per * sizeof *one) == 0,
                      "%s row %d: batch of %d != alone", name, r, n_rows);
            }
            gemm_set_threads(1);
            CHECK(forward(&p, 0, 1, timesteps, one) == SOWER_OK, "forward");
            CHECK(memcmp(one, batched, per * sizeof *one) == 0, "%s: 1 thread != 2 threads", name);
            gemm_set_threads(2);
            printf("  %-14s batch of %d == each alone, 1 thread == 2 threads: bit for bit\n", name, n_rows);
            free(batched), free(one);
        }
        free(got);
    }
    free_pipeline(&p);
    cJSON_Delete(ref);
    if (argc == 2)
        check_blocked_attention();
    printf("worst case: %.2f of its tolerance\n", worst);
    return check_exit("test_unet_cond_reference");
}
