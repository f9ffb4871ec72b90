/* test_scheduler.c: sower's DDIM/DDPM schedulers against the real diffusers 0.31 (torch 1.13), bit for bit.
 *
 * Usage: test_scheduler tests/data/scheduler_reference.json
 * The reference is made by validate/make_scheduler_reference.py; to regenerate it:
 *     /opt/refenv/bin/python validate/make_scheduler_reference.py tests/data/scheduler_reference.json
 * Every case's config text goes through scheduler_config_parse / scheduler_init / scheduler_step and
 * is compared, under both torch CPU kernels (AVX2 and DEFAULT dispatch), with diffusers': timesteps,
 * sha256 of alphas_cumprod, sha256 of prev_sample at the first, middle and last step (on randn
 * inputs and on inputs with edge values: signed zeros, clip bounds, huge, subnormal), whether each
 * step draws noise, and a chain through every step. No tolerance: every comparison is exact.
 * Then: alphas_cumprod for random beta ranges and train lengths; runs diffusers itself gets wrong
 * (refused with SOWER_EINPUT); set_timesteps for every N of a few train lengths; configs with
 * unsupported values (SOWER_EMODEL naming the key).
 * With a second file (validate/make_multistep_reference.py): PNDM, Euler, Euler ancestral and
 * DPM-Solver multistep runs: timesteps, sigmas, init_noise_sigma, every scaled model input and the
 * final sample of a chain through all steps, bit for bit. */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "digest.h"
#include "rng.h"
#include "scheduler.h"

enum {
    REFERENCE_MAX_BYTES = 16 << 20,
    INPUT_SETS = 4, /* 0..2 randn; 3 randn with edge values */
    CHAIN_SETS = 3, /* the chain's step i uses set i % 3 */
    INPUT_MAX_VALUES = 4096,
};

typedef struct {
    size_t n;
    float model_output[INPUT_MAX_VALUES]; /* (n,) */
    float sample[INPUT_MAX_VALUES];       /* (n,) */
    float noise[INPUT_MAX_VALUES];        /* (n,) */
} InputSet;

static InputSet inputs[INPUT_SETS];

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(REFERENCE_MAX_BYTES);
    size_t n = buf ? fread(buf, 1, REFERENCE_MAX_BYTES, f) : 0;
    fclose(f);
    if (!buf || n == REFERENCE_MAX_BYTES) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static const char *str_of(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int int_of(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
}

static int read_floats(const cJSON *arr, float *out, size_t *n)
{
    size_t k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr)
    {
        if (k == INPUT_MAX_VALUES || !cJSON_IsNumber(v))
            return 0;
        out[k++] = (float)v->valuedouble; /* the JSON holds float32 values exactly */
    }
    *n = k;
    return 1;
}

static int load_inputs(const cJSON *root)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (cJSON_GetArraySize(arr) != INPUT_SETS)
        return 0;
    for (int k = 0; k < INPUT_SETS; k++) {
        const cJSON *set = cJSON_GetArrayItem(arr, k);
        size_t a = 0, b = 0, c = 0;
        if (!read_floats(cJSON_GetObjectItemCaseSensitive(set, "model_output"), inputs[k].model_output, &a) ||
            !read_floats(cJSON_GetObjectItemCaseSensitive(set, "sample"), inputs[k].sample, &b) ||
            !read_floats(cJSON_GetObjectItemCaseSensitive(set, "noise"), inputs[k].noise, &c) || a != b || b != c ||
            a == 0)
            return 0;
        inputs[k].n = a;
    }
    return 1;
}

static void sha_hex(const void *data, size_t bytes, char *hex /* (DIGEST_HEX_CHARS,) */)
{
    unsigned char d[DIGEST_BYTES];
    if (digest_buffer(data, bytes, d) != SOWER_OK) {
        strcpy(hex, "(digest failed)");
        return;
    }
    digest_hex(d, hex);
}

/* The registry's class of that diffusers name (a class added by the recipe needs no change here). */
static int class_kind(const char *name, SchedulerKind *kind)
{
    if (scheduler_kind_of_class(name, kind) == SOWER_OK)
        return 1;
    sower_error_clear();
    return 0;
}

/* Runs one case under one kernel; returns the number of mismatches (each also a failed CHECK). */
static int run_case_kernel(const cJSON *c, const SchedulerConfig *parsed, RngKernel kernel)
{
    const char *name = str_of(c, "name");
    const char *kname = rng_kernel_name(kernel);
    const cJSON *scalar = cJSON_GetObjectItemCaseSensitive(c, "cpu_scalar");
    const int N = int_of(c, "num_inference_steps");
    const cJSON *eta_item = cJSON_GetObjectItemCaseSensitive(c, "eta");
    const float eta = cJSON_IsNumber(eta_item) ? (float)eta_item->valuedouble : 0.0f;
    int bad = 0;

    SchedulerConfig cfg = *parsed;
    cfg.torch_kernel = kernel;
    Scheduler s = {0};
    int status = scheduler_init(&s, &cfg, N);
    CHECK(status == SOWER_OK, "%s [%s]: scheduler_init: %s", name, kname, sower_error_message());
    if (status != SOWER_OK)
        return 1;

    /* timesteps */
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(c, "timesteps");
    int ts_ok = cJSON_GetArraySize(ts) == N;
    for (int i = 0; ts_ok && i < N; i++)
        ts_ok = (double)s.timesteps[i] == cJSON_GetArrayItem(ts, i)->valuedouble;
    CHECK(ts_ok, "%s [%s]: timesteps differ from diffusers'", name, kname);
    bad += !ts_ok;

    /* alphas_cumprod */
    char hex[DIGEST_HEX_CHARS];
    const int T = cfg.num_train_timesteps;
    sha_hex(s.alphas_cumprod, (size_t)T * sizeof(float), hex);
    const char *want_ac = kernel == RNG_KERNEL_TORCH_CPU ? str_of(c, "alphas_cumprod_sha256")
                                                         : str_of(scalar, "alphas_cumprod_sha256");
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(c, "alphas_cumprod_first_last");
    CHECK(strcmp(hex, want_ac) == 0, "%s [%s]: alphas_cumprod sha256 %s, diffusers %s (ac[0] %.9g, ac[T-1] %.9g; AVX2 "
          "torch %.9g, %.9g)", name, kname, hex, want_ac, s.alphas_cumprod[0], s.alphas_cumprod[T - 1],
          cJSON_GetArrayItem(fl, 0)->valuedouble, cJSON_GetArrayItem(fl, 1)->valuedouble);
    bad += strcmp(hex, want_ac) != 0;

    /* first, middle and last step on the stored inputs */
    float out[INPUT_MAX_VALUES];
    int k = 0;
    const cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(c, "steps"))
    {
        const int i = int_of(st, "index");
        const InputSet *in = &inputs[int_of(st, "input")];
        const int needs = scheduler_step_needs_noise(&s, i, eta);
        CHECK(needs == int_of(st, "noise"), "%s [%s]: step %d: needs_noise %d, diffusers drew %d", name, kname, i, needs,
              int_of(st, "noise"));
        bad += needs != int_of(st, "noise");
        scheduler_step(&s, i, eta, in->model_output, in->sample, needs ? in->noise : NULL, out, in->n);
        sha_hex(out, in->n * sizeof(float), hex);
        const char *want = kernel == RNG_KERNEL_TORCH_CPU
                               ? str_of(st, "prev_sample_sha256")
                               : cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(scalar, "steps_sha256"), k)->valuestring;
        CHECK(strcmp(hex, want) == 0, "%s [%s]: step %d (t=%lld): prev_sample sha256 %s, diffusers %s (out[0] %.9g)", name,
              kname, i, (long long)s.timesteps[i], hex, want, out[0]);
        bad += strcmp(hex, want) != 0;
        k++;
    }

    /* chain: every step, output fed back in place (prev_sample aliases sample) */
    const cJSON *chain = cJSON_GetObjectItemCaseSensitive(c, "chain");
    const size_t n = inputs[0].n;
    memcpy(out, inputs[0].sample, n * sizeof(float));
    int draws = 0;
    for (int i = 0; i < N; i++) {
        const InputSet *in = &inputs[i % CHAIN_SETS];
        const int needs = scheduler_step_needs_noise(&s, i, eta);
        draws += needs;
        scheduler_step(&s, i, eta, in->model_output, out, needs ? in->noise : NULL, out, n);
    }
    sha_hex(out, n * sizeof(float), hex);
    const char *want_chain = kernel == RNG_KERNEL_TORCH_CPU ? str_of(chain, "final_sha256")
                                                            : str_of(scalar, "chain_final_sha256");
    CHECK(draws == int_of(chain, "noise_draws"), "%s [%s]: chain drew noise %d times, diffusers %d", name, kname, draws,
          int_of(chain, "noise_draws"));
    CHECK(strcmp(hex, want_chain) == 0, "%s [%s]: chain of %d steps: sha256 %s, diffusers %s", name, kname, N, hex,
          want_chain);
    bad += (draws != int_of(chain, "noise_draws")) + (strcmp(hex, want_chain) != 0);

    scheduler_free(&s);
    return bad;
}

static int run_case(const cJSON *c)
{
    const char *name = str_of(c, "name");
    const char *text = str_of(c, "config");
    SchedulerKind kind;
    if (!class_kind(str_of(c, "class"), &kind)) {
        CHECK(0, "%s: unknown class '%s'", name, str_of(c, "class"));
        return 0;
    }
    SchedulerConfig cfg;
    int status = scheduler_config_parse(text, strlen(text), name, kind, &cfg);
    CHECK(status == SOWER_OK, "%s: scheduler_config_parse: %s", name, sower_error_message());
    if (status != SOWER_OK)
        return 0;
    int bad = run_case_kernel(c, &cfg, RNG_KERNEL_TORCH_CPU);
    bad += run_case_kernel(c, &cfg, RNG_KERNEL_TORCH_CPU_SCALAR);
    return bad == 0;
}

/* alphas_cumprod alone, under both kernels; returns 1 if both match. */
static int run_alphas_cumprod_case(const cJSON *a)
{
    const char *text = str_of(a, "config");
    SchedulerConfig cfg;
    int status = scheduler_config_parse(text, strlen(text), "alphas_cumprod case", SCHED_DDPM, &cfg);
    CHECK(status == SOWER_OK, "%s: %s", text, sower_error_message());
    if (status != SOWER_OK)
        return 0;
    int ok = 1;
    for (int kernel = RNG_KERNEL_TORCH_CPU; kernel <= RNG_KERNEL_TORCH_CPU_SCALAR; kernel++) {
        cfg.torch_kernel = (RngKernel)kernel;
        Scheduler s = {0};
        status = scheduler_init(&s, &cfg, 1);
        CHECK(status == SOWER_OK, "%s: %s", text, sower_error_message());
        if (status != SOWER_OK)
            return 0;
        char hex[DIGEST_HEX_CHARS];
        sha_hex(s.alphas_cumprod, (size_t)cfg.num_train_timesteps * sizeof(float), hex);
        const char *want = str_of(a, kernel == RNG_KERNEL_TORCH_CPU ? "alphas_cumprod_sha256"
                                                                    : "cpu_scalar_alphas_cumprod_sha256");
        CHECK(strcmp(hex, want) == 0, "%s [%s]: alphas_cumprod sha256 %s, diffusers %s", text,
              rng_kernel_name(cfg.torch_kernel), hex, want);
        ok = ok && strcmp(hex, want) == 0;
        scheduler_free(&s);
    }
    return ok;
}

/* Runs diffusers misbehaves on: parse fine, scheduler_init refuses with SOWER_EINPUT. */
static void run_rejected(const cJSON *r)
{
    const char *name = str_of(r, "name"), *text = str_of(r, "config");
    SchedulerKind kind = SCHED_DDIM;
    SchedulerConfig cfg;
    CHECK(class_kind(str_of(r, "class"), &kind), "%s: class", name);
    int status = scheduler_config_parse(text, strlen(text), name, kind, &cfg);
    CHECK(status == SOWER_OK, "%s: parse: %s", name, sower_error_message());
    Scheduler s = {0};
    status = scheduler_init(&s, &cfg, int_of(r, "num_inference_steps"));
    CHECK(status == SOWER_EINPUT, "%s: scheduler_init gave %s, expected SOWER_EINPUT", name, sower_status_name(status));
    CHECK(s.timesteps == NULL && s.alphas_cumprod == NULL, "%s: failed init left tables", name);
    scheduler_free(&s);
}

/* set_timesteps for every N of one (T, spacing, offset), hashed as the script hashes it. */
static void run_sweep(const cJSON *w)
{
    SchedulerConfig cfg;
    scheduler_config_defaults(SCHED_DDIM, &cfg);
    cfg.num_train_timesteps = int_of(w, "num_train_timesteps");
    const char *spacing = str_of(w, "timestep_spacing");
    cfg.timestep_spacing = strcmp(spacing, "trailing") == 0   ? SPACING_TRAILING
                           : strcmp(spacing, "linspace") == 0 ? SPACING_LINSPACE
                                                              : SPACING_LEADING;
    cfg.steps_offset = int_of(w, "steps_offset");
    const cJSON *invalid = cJSON_GetObjectItemCaseSensitive(w, "invalid_n");
    Digest d = {0};
    CHECK(digest_init(&d) == SOWER_OK, "digest_init");
    int next_invalid = 0, wrong_status = 0;
    for (int n = 1; n <= cfg.num_train_timesteps; n++) {
        const cJSON *inv = cJSON_GetArrayItem(invalid, next_invalid);
        const int expect_invalid = inv && (int)inv->valuedouble == n;
        next_invalid += expect_invalid;
        Scheduler s = {0};
        int status = scheduler_init(&s, &cfg, n);
        if (status != (expect_invalid ? SOWER_EINPUT : SOWER_OK)) {
            if (wrong_status++ < 5)
                fprintf(stderr, "sweep T=%d %s offset %d: N=%d gave %s\n", cfg.num_train_timesteps, spacing,
                        cfg.steps_offset, n, sower_status_name(status));
        } else if (status == SOWER_OK && digest_update(&d, s.timesteps, (size_t)n * sizeof(int64_t)) != SOWER_OK) {
            wrong_status++;
        }
        scheduler_free(&s);
    }
    unsigned char sha[DIGEST_BYTES];
    char hex[DIGEST_HEX_CHARS];
    CHECK(digest_final(&d, sha) == SOWER_OK, "digest_final");
    digest_free(&d);
    digest_hex(sha, hex);
    CHECK(wrong_status == 0, "sweep T=%d %s offset %d: %d step counts accepted/refused unlike diffusers",
          cfg.num_train_timesteps, spacing, cfg.steps_offset, wrong_status);
    CHECK(strcmp(hex, str_of(w, "sha256")) == 0, "sweep T=%d %s offset %d: timesteps sha256 %s, diffusers %s",
          cfg.num_train_timesteps, spacing, cfg.steps_offset, hex, str_of(w, "sha256"));
}

/* ---- configs sower refuses, and odd ones it must accept ------------------------------------- */

typedef struct {
    SchedulerKind kind;
    const char *json;
    const char *key; /* the key the message must name; NULL: must parse */
} ConfigCase;

static const ConfigCase config_cases[] = {
    {SCHED_DDIM, "{\"thresholding\": true}", "thresholding"},
    {SCHED_DDPM, "{\"thresholding\": true}", "thresholding"},
    {SCHED_DDIM, "{\"trained_betas\": [0.1, 0.2]}", "trained_betas"},
    {SCHED_DDPM, "{\"rescale_betas_zero_snr\": true}", NULL},
    {SCHED_DDIM, "{\"rescale_betas_zero_snr\": 1}", "rescale_betas_zero_snr"},
    {SCHED_DDPM, "{\"beta_schedule\": \"sigmoid\"}", "beta_schedule"},
    {SCHED_DDIM, "{\"beta_schedule\": \"cosine\"}", "beta_schedule"},
    {SCHED_DDIM, "{\"prediction_type\": \"v\"}", "prediction_type"},
    {SCHED_DDPM, "{\"timestep_spacing\": \"uniform\"}", "timestep_spacing"},
    {SCHED_DDPM, "{\"variance_type\": \"learned_range\"}", "variance_type"},
    {SCHED_DDPM, "{\"variance_type\": \"fixed_small_log\"}", "variance_type"},
    {SCHED_DDPM, "{\"variance_type\": null}", "variance_type"},
    {SCHED_DDIM, "{\"num_train_timesteps\": \"1000\"}", "num_train_timesteps"},
    {SCHED_DDIM, "{\"num_train_timesteps\": 0}", "num_train_timesteps"},
    {SCHED_DDIM, "{\"num_train_timesteps\": 100001}", "num_train_timesteps"},
    {SCHED_DDPM, "{\"num_train_timesteps\": 999.5}", "num_train_timesteps"},
    {SCHED_DDPM, "{\"num_train_timesteps\": true}", "num_train_timesteps"},
    {SCHED_DDIM, "{\"clip_sample_range\": 0}", "clip_sample_range"},
    {SCHED_DDIM, "{\"clip_sample_range\": -1.5}", "clip_sample_range"},
    {SCHED_DDPM, "{\"clip_sample_range\": null}", "clip_sample_range"},
    {SCHED_DDIM, "{\"clip_sample\": \"yes\"}", "clip_sample"},
    {SCHED_DDIM, "{\"set_alpha_to_one\": 1}", "set_alpha_to_one"},
    {SCHED_DDIM, "{\"beta_start\": \"0.0001\"}", "beta_start"},
    {SCHED_DDPM, "{\"beta_end\": -0.02}", "beta_end"},
    {SCHED_DDPM, "{\"beta_end\": 1.5}", "beta_end"},
    {SCHED_DDIM, "{\"steps_offset\": -1}", "steps_offset"},
    {SCHED_DDIM, "{\"steps_offset\": 1.5}", "steps_offset"},
    {SCHED_DDIM, "{\"dynamic_thresholding_ratio\": \"x\"}", "dynamic_thresholding_ratio"},
    {SCHED_DDIM, "{\"_class_name\": 5}", "_class_name"},
    {SCHED_DDIM, "{\"_use_default_values\": \"beta_schedule\"}", "_use_default_values"},
    {SCHED_DDIM, "{\"thresholding\": false, \"thresholding\": true}", "thresholding"}, /* the last one counts */
    /* accepted: keys the class does not know are dropped whatever their value */
    {SCHED_DDIM, "{\"variance_type\": \"learned_range\", \"_class_name\": \"DDPMScheduler\"}", NULL},
    {SCHED_DDPM, "{\"set_alpha_to_one\": \"anything\", \"skip_prk_steps\": true, \"_diffusers_version\": 3}", NULL},
    {SCHED_DDIM, "{\"thresholding\": true, \"thresholding\": false}", NULL},
    {SCHED_DDIM, "{\"thresholding\": true, \"_use_default_values\": [\"thresholding\"]}", NULL},
    {SCHED_DDPM, "{\"_class_name\": [\"diffusers\", \"DDPMScheduler\"], \"trained_betas\": null}", NULL},
    {SCHED_DDPM, "{\"_class_name\": 5, \"_use_default_values\": [\"_class_name\"]}", NULL},
};

static void run_config_cases(void)
{
    for (size_t k = 0; k < sizeof config_cases / sizeof config_cases[0]; k++) {
        const ConfigCase *cc = &config_cases[k];
        SchedulerConfig cfg;
        sower_error_clear();
        int status = scheduler_config_parse(cc->json, strlen(cc->json), "scheduler/scheduler_config.json", cc->kind, &cfg);
        if (!cc->key) {
            CHECK(status == SOWER_OK, "%s config %s: %s", scheduler_kind_name(cc->kind), cc->json, sower_error_message());
            continue;
        }
        char want[96];
        snprintf(want, sizeof want, "scheduler/scheduler_config.json: key '%s': expected ", cc->key);
        CHECK(status == SOWER_EMODEL, "%s config %s: status %s, expected SOWER_EMODEL", scheduler_kind_name(cc->kind),
              cc->json, sower_status_name(status));
        CHECK(strstr(sower_error_message(), want) == sower_error_message() &&
                  strstr(sower_error_message(), ", found ") != NULL,
              "%s config %s: message \"%s\" does not start \"%s\"", scheduler_kind_name(cc->kind), cc->json,
              sower_error_message(), want);
    }
    /* not JSON / not an object */
    SchedulerConfig cfg;
    CHECK(scheduler_config_parse("{\"beta_start\": ", 15, "p.json", SCHED_DDIM, &cfg) == SOWER_EMODEL, "truncated JSON");
    CHECK(scheduler_config_parse("[1, 2]", 6, "p.json", SCHED_DDIM, &cfg) == SOWER_EMODEL, "JSON array");
    CHECK(scheduler_config_parse("{} {}", 5, "p.json", SCHED_DDIM, &cfg) == SOWER_EMODEL, "extra data");
    CHECK(scheduler_config_parse("{\"steps_offset\": 1}\n  ", 22, "p.json", SCHED_DDIM, &cfg) == SOWER_OK &&
              cfg.steps_offset == 1, "trailing whitespace: %s", sower_error_message());
    /* a message lists the supported values */
    const char *txt = "{\"beta_schedule\": \"sigmoid\"}";
    CHECK(scheduler_config_parse(txt, strlen(txt), "p.json", SCHED_DDPM, &cfg) == SOWER_EMODEL &&
              strcmp(sower_error_message(),
                     "p.json: key 'beta_schedule': expected one of \"linear\", \"scaled_linear\", "
                     "\"squaredcos_cap_v2\", found \"sigmoid\"") == 0,
          "message: %s", sower_error_message());
    sower_error_clear();
}

static void run_unit_checks(void)
{
    Scheduler s = {0};
    scheduler_free(&s); /* zeroed: a no-op */
    SchedulerConfig cfg;
    scheduler_config_defaults(SCHED_DDPM, &cfg);
    CHECK(scheduler_init(&s, &cfg, 0) == SOWER_EINPUT, "N = 0");
    CHECK(scheduler_init(&s, &cfg, 1001) == SOWER_EINPUT, "N = 1001");
    CHECK(s.timesteps == NULL, "failed init zeroes");
    SchedulerKind k;
    CHECK(strcmp(scheduler_kind_name(SCHED_DDIM), "ddim") == 0 && strcmp(scheduler_kind_name(SCHED_DDPM), "ddpm") == 0,
          "kind names");
    CHECK(scheduler_kind_parse("ddpm", &k) == SOWER_OK && k == SCHED_DDPM, "kind parse");
    CHECK(scheduler_kind_parse("kdpm2", &k) == SOWER_EINPUT, "kind parse kdpm2");
    sower_error_clear();
}

/* init of class `name` from config text with N steps: its status, and the scheduler when SOWER_OK (freed by
 * the caller). */
/* A folder's own scheduler: class `name` with this config, run by the entry the config picks (DPM's algorithm_type). */
static int init_from(const char *name, const char *json, int N, Scheduler *s)
{
    SchedulerKind kind = -1;
    SchedulerConfig cfg;
    memset(s, 0, sizeof *s);
    CHECK(class_kind(name, &kind), "no class %s", name);
    int status = scheduler_kind_of_config(name, json, strlen(json), "p.json", &kind);
    if (status == SOWER_OK)
        status = scheduler_config_parse(json, strlen(json), "p.json", kind, &cfg);
    return status == SOWER_OK ? scheduler_init(s, &cfg, N) : status;
}

static int tree_draw_cpu(void *ctx, uint64_t seed, float *out, size_t n)
{
    (void)ctx;
    TorchRng g = {0};
    rng_seed(&g, seed);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, out, n);
    return SOWER_OK;
}

/* DPMSolverSDEScheduler's tree: each sample's seed is its entropy, unless the config names one (noise_sampler_seed),
 * which every sample then shares; a null one is each sample's seed again. The tree values themselves:
 * test_brownian. */
static void check_tree_noise_entropy(void)
{
    Scheduler own, fixed, null_seed;
    float a[64], b[64], c[64], d[64]; /* (64,) one sample's noise */
    CHECK(init_from("DPMSolverSDEScheduler", "{}", 6, &own) == SOWER_OK &&
              init_from("DPMSolverSDEScheduler", "{\"noise_sampler_seed\": 7}", 6, &fixed) == SOWER_OK &&
              init_from("DPMSolverSDEScheduler", "{\"noise_sampler_seed\": null}", 6, &null_seed) == SOWER_OK,
          "DPMSolverSDEScheduler configs: %s", sower_error_message());
    CHECK(own.num_steps == 11 && scheduler_noise_is_tree(&own) && scheduler_step_needs_noise(&own, 9, 0.0f) &&
              !scheduler_step_needs_noise(&own, 10, 0.0f),
          "6 steps: %d calls, noise at all but the last", own.num_steps);
    CHECK(scheduler_tree_noise(&fixed, 3, 1, tree_draw_cpu, NULL, a, 64) == SOWER_OK &&
              scheduler_tree_noise(&fixed, 3, 2, tree_draw_cpu, NULL, b, 64) == SOWER_OK &&
              scheduler_tree_noise(&own, 3, 7, tree_draw_cpu, NULL, c, 64) == SOWER_OK &&
              scheduler_tree_noise(&null_seed, 3, 1, tree_draw_cpu, NULL, d, 64) == SOWER_OK,
          "tree noise: %s", sower_error_message());
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(a, c, sizeof a) == 0,
          "noise_sampler_seed 7: seeds 1 and 2 share seed 7's tree");
    CHECK(memcmp(a, d, sizeof a) != 0, "noise_sampler_seed null: seed 1's own tree, not 7's");
    scheduler_free(&own);
    scheduler_free(&fixed);
    scheduler_free(&null_seed);
}

/* What diffusers refuses or crashes on, and the Karras bounds DPM-Solver reads from its config
 * (the fuzz of stop 38 found them; the reference files hold the accepted cases' bits). */
static void run_schedule_checks(void)
{
    static const struct {
        const char *cls, *json;
        int N;
        const char *message; /* what the refusal must say */
    } refused[] = {
        /* _sigma_to_t reads two train timesteps: T = 1 read past its table (ASan) */
        {"EulerDiscreteScheduler", "{\"num_train_timesteps\": 1, \"use_karras_sigmas\": true}", 1, "num_train_timesteps >= 2"},
        {"DPMSolverMultistepScheduler", "{\"num_train_timesteps\": 1, \"use_karras_sigmas\": true}", 1, "num_train_timesteps >= 2"},
        /* equal sigmas at the schedule's end: a NaN timestep (an int64 of NaN for DPM) where np.log of the float32
         * table and of the float64 sigma agree (T = 11 here; T = 10 and 25 below run, as in diffusers) */
        {"DPMSolverMultistepScheduler", "{\"num_train_timesteps\": 11, \"beta_end\": 0, \"use_karras_sigmas\": true, "
                                        "\"timestep_spacing\": \"trailing\"}", 1, "no finite timestep"},
        /* 999, 999, ...: diffusers' step index starts at the second and runs off its sigmas */
        {"DPMSolverMultistepScheduler", "{\"use_karras_sigmas\": true, \"beta_schedule\": \"squaredcos_cap_v2\"}", 20,
         "the same timestep twice"},
        /* UniPC's last step to sigma 0 is NaN/inf in diffusers 0.31 with bh1, the noise form, or order 2 at the end */
        {"UniPCMultistepScheduler", "{\"solver_type\": \"bh1\"}", 10, "\"sigma_min\" with solver_type \"bh1\""},
        {"UniPCMultistepScheduler", "{\"predict_x0\": false}", 10, "with predict_x0 false"},
        {"UniPCMultistepScheduler", "{\"lower_order_final\": false}", 2, "with lower_order_final false"},
        /* diffusers 0.31 refuses deis with a final zero sigma, as it does dpmsolver */
        {"DPMSolverMultistepScheduler", "{\"algorithm_type\": \"deis\"}", 10, "\"zero\" with algorithm_type \"deis\""},
    };
    /* where the two logs differ by numpy's ulp, diffusers' weight is +-inf, clipped: a finite timestep (T - 2) */
    for (int T = 10; T <= 25; T += 15) {
        char json[160];
        Scheduler s;
        snprintf(json, sizeof json, "{\"num_train_timesteps\": %d, \"beta_end\": 0, \"use_karras_sigmas\": true, "
                                    "\"timestep_spacing\": \"trailing\"}", T);
        CHECK(init_from("DPMSolverMultistepScheduler", json, 1, &s) == SOWER_OK && s.timesteps[0] == T - 2,
              "T = %d, equal end sigmas: timestep %lld (diffusers: %d): %s", T, s.timesteps ? (long long)s.timesteps[0] : -1,
              T - 2, sower_error_message());
        scheduler_free(&s);
    }
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        Scheduler s;
        sower_error_clear();
        const int status = init_from(refused[i].cls, refused[i].json, refused[i].N, &s);
        CHECK(status != SOWER_OK && strstr(sower_error_message(), refused[i].message),
              "%s %s, %d steps: accepted or another message: %s", refused[i].cls, refused[i].json, refused[i].N,
              sower_error_message());
        if (status == SOWER_OK) scheduler_free(&s);
    }
    Scheduler s;
    SchedulerConfig cfg;
    /* DPMSolverMultistepScheduler's two entries: the config's algorithm_type picks the folder's own; named,
     * dpm++2m refuses an SDE config (it would draw noise under an ODE's name) and dpm++2m-sde sets it over the
     * config's (from_config(config, algorithm_type="sde-dpmsolver++")); the deprecated sde-dpmsolver is refused */
    {
        const char *cls = "DPMSolverMultistepScheduler", *sde = "{\"algorithm_type\": \"sde-dpmsolver++\"}",
                   *ode = "{\"algorithm_type\": \"dpmsolver++\"}", *old_sde = "{\"algorithm_type\": \"sde-dpmsolver\"}";
        SchedulerKind k_sde = -1, k_ode = -1, k = -1;
        CHECK(scheduler_kind_parse("dpm++2m-sde", &k_sde) == SOWER_OK && scheduler_kind_parse("dpm++2m", &k_ode) == SOWER_OK,
              "dpm kinds");
        CHECK(scheduler_kind_of_config(cls, sde, strlen(sde), "p.json", &k) == SOWER_OK && k == k_sde,
              "an SDE config is dpm++2m-sde's: kind %d", (int)k);
        CHECK(scheduler_kind_of_config(cls, ode, strlen(ode), "p.json", &k) == SOWER_OK && k == k_ode,
              "an ODE config is dpm++2m's: kind %d", (int)k);
        CHECK(scheduler_kind_of_config(cls, "{}", 2, "p.json", &k) == SOWER_OK && k == k_ode, "the default is dpm++2m's");
        sower_error_clear();
        CHECK(scheduler_config_parse(sde, strlen(sde), "p.json", k_ode, &cfg) == SOWER_EMODEL &&
                  strstr(sower_error_message(), "key 'algorithm_type': expected") &&
                  strstr(sower_error_message(), "dpm++2m-sde"),
              "dpm++2m with an SDE config: %s", sower_error_message());
        sower_error_clear();
        CHECK(scheduler_config_parse(ode, strlen(ode), "p.json", k_sde, &cfg) == SOWER_OK && cfg.algorithm_sde &&
                  scheduler_class(k_sde)->draws_noise,
              "dpm++2m-sde over an ODE config: %s", sower_error_message());
        const char *plain = "{\"algorithm_type\": \"dpmsolver\", \"final_sigmas_type\": \"sigma_min\"}";
        CHECK(scheduler_config_parse(plain, strlen(plain), "p.json", k_sde, &cfg) == SOWER_OK && cfg.algorithm_sde &&
                  cfg.algorithm_type == DPM_ALGORITHM_PLUS_PLUS,
              "dpm++2m-sde over dpmsolver: %s", sower_error_message());
        CHECK(scheduler_config_parse(old_sde, strlen(old_sde), "p.json", k_sde, &cfg) == SOWER_EMODEL &&
                  strstr(sower_error_message(), "found \"sde-dpmsolver\""),
              "sde-dpmsolver: %s", sower_error_message());
        sower_error_clear();
    }
    /* zero terminal SNR: the last train step's 0 is the design, not "no signal" (the model-load check); one train
     * step rescales to 0/0 */
    {
        const char *zsnr = "{\"rescale_betas_zero_snr\": true}", *zsnr1 = "{\"rescale_betas_zero_snr\": true, "
                                                                          "\"num_train_timesteps\": 1}";
        CHECK(scheduler_config_parse(zsnr, strlen(zsnr), "p.json", SCHED_DDIM, &cfg) == SOWER_OK &&
                  scheduler_check_noise_schedule(&cfg, "p.json") == SOWER_OK,
              "zero SNR refused at load: %s", sower_error_message());
        sower_error_clear();
        CHECK(scheduler_config_parse(zsnr1, strlen(zsnr1), "p.json", SCHED_DDIM, &cfg) == SOWER_OK &&
                  scheduler_check_noise_schedule(&cfg, "p.json") == SOWER_EMODEL &&
                  strstr(sower_error_message(), "rescale_betas_zero_snr"),
              "zero SNR of one train step: %s", sower_error_message());
        sower_error_clear();
    }
    /* values of the wrong kind, or that the named class's step cannot take: refused naming the key */
    static const struct {
        const char *cls, *json, *key;
    } wrong[] = {
        {"UniPCMultistepScheduler", "{\"disable_corrector\": 3}", "key 'disable_corrector': expected a list"},
        {"UniPCMultistepScheduler", "{\"disable_corrector\": [1.5]}", "key 'disable_corrector': expected a list"},
        {"UniPCMultistepScheduler", "{\"predict_x0\": \"yes\"}", "key 'predict_x0': expected true or false"},
        {"UniPCMultistepScheduler", "{\"solver_p\": {}}", "key 'solver_p': expected null"},
        {"UniPCMultistepScheduler", "{\"solver_order\": 4}", "key 'solver_order': expected an integer in 1..3"},
        {"DPMSolverMultistepScheduler", "{\"algorithm_type\": \"sde\"}", "key 'algorithm_type': expected one of"},
        {"EulerDiscreteScheduler", "{\"rescale_betas_zero_snr\": null}", "key 'rescale_betas_zero_snr': expected true"},
        {"DPMSolverMultistepScheduler", "{\"solver_order\": 4}", "key 'solver_order': expected an integer in 1..3"},
        {"DPMSolverMultistepScheduler", "{\"solver_order\": 3, \"algorithm_type\": \"sde-dpmsolver++\"}",
         "key 'solver_order': expected 1..2 with algorithm_type \"sde-dpmsolver++\""},
        {"DPMSolverSinglestepScheduler", "{\"solver_order\": 3, \"algorithm_type\": \"sde-dpmsolver++\"}",
         "key 'solver_order': expected 1..2 with algorithm_type \"sde-dpmsolver++\""},
        {"DPMSolverSinglestepScheduler", "{\"algorithm_type\": \"dpmsolver\"}", "key 'final_sigmas_type'"},
        {"DEISMultistepScheduler", "{\"algorithm_type\": \"sde-dpmsolver++\"}", "key 'algorithm_type': expected \"deis\""},
        {"DEISMultistepScheduler", "{\"solver_order\": 4}", "key 'solver_order': expected an integer in 1..3"},
        {"KDPM2DiscreteScheduler", "{\"prediction_type\": \"sample\"}", "(KDPM2DiscreteScheduler has no \"sample\" step)"},
        {"KDPM2AncestralDiscreteScheduler", "{\"prediction_type\": \"sample\"}", "has no \"sample\" step"},
        {"DPMSolverSDEScheduler", "{\"prediction_type\": \"sample\"}", "has no \"sample\" step"},
        {"DPMSolverSDEScheduler", "{\"noise_sampler_seed\": -1}", "key 'noise_sampler_seed': expected null or an integer"},
        {"DPMSolverSDEScheduler", "{\"noise_sampler_seed\": 1.5}", "key 'noise_sampler_seed': expected null or an integer"},
        {"DPMSolverSDEScheduler", "{\"noise_sampler_seed\": \"7\"}", "key 'noise_sampler_seed': expected null or"},
        {"DPMSolverSDEScheduler", "{\"noise_sampler_seed\": [1, 2]}", "key 'noise_sampler_seed': expected null or"},
        {"DPMSolverSDEScheduler", "{\"noise_sampler_seed\": 1e17}", "key 'noise_sampler_seed': expected null or"},
        /* two sigma schedules at once: __init__ raises; the exponential and beta schedules where diffusers 0.31's
         * set_timesteps fails on them (TypeError, NameError: validate/make_multistep_reference.py's classes run them) */
        {"EulerDiscreteScheduler", "{\"use_karras_sigmas\": true, \"use_beta_sigmas\": true}", "expected at most one"},
        {"HeunDiscreteScheduler", "{\"use_exponential_sigmas\": true, \"use_beta_sigmas\": true}", "expected at most one"},
        {"EulerDiscreteScheduler", "{\"use_exponential_sigmas\": 1}", "key 'use_exponential_sigmas': expected true"},
        {"DPMSolverMultistepScheduler", "{\"use_exponential_sigmas\": true}", "key 'use_exponential_sigmas': expected false"},
        {"DPMSolverMultistepScheduler", "{\"use_beta_sigmas\": true, \"algorithm_type\": \"sde-dpmsolver++\"}",
         "key 'use_beta_sigmas': expected false"},
        {"DPMSolverSinglestepScheduler", "{\"use_beta_sigmas\": true}", "key 'use_beta_sigmas': expected false"},
        {"DEISMultistepScheduler", "{\"use_exponential_sigmas\": true}", "key 'use_exponential_sigmas': expected false"},
        {"UniPCMultistepScheduler", "{\"use_beta_sigmas\": true}", "key 'use_beta_sigmas': expected false"},
        {"DPMSolverMultistepScheduler", "{\"use_lu_lambdas\": true}", "key 'use_lu_lambdas': expected false"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        sower_error_clear();
        const int status = init_from(wrong[i].cls, wrong[i].json, 10, &s);
        CHECK(status == SOWER_EMODEL && strstr(sower_error_message(), wrong[i].key), "%s %s: %s", wrong[i].cls,
              wrong[i].json, status == SOWER_OK ? "accepted" : sower_error_message());
        if (status == SOWER_OK) scheduler_free(&s);
    }
    sower_error_clear();
    /* singlestep order 3 whose last group is [1, 2] (N % 3 == 2) steps to sigma 0 at second order: diffusers' r0 is 0
     * and its sample infinite; refused, and fine with sigma_min or a step count whose last step is first order */
    CHECK(init_from("DPMSolverSinglestepScheduler", "{\"solver_order\": 3}", 11, &s) == SOWER_EINPUT &&
              strstr(sower_error_message(), "second-order step to sigma 0"),
          "singlestep order 3, 11 steps: %s", sower_error_message());
    sower_error_clear();
    for (int n = 9; n <= 10; n++) {
        CHECK(init_from("DPMSolverSinglestepScheduler", "{\"solver_order\": 3}", n, &s) == SOWER_OK,
              "singlestep order 3, %d steps: %s", n, sower_error_message());
        scheduler_free(&s);
    }
    CHECK(init_from("DPMSolverSinglestepScheduler", "{\"solver_order\": 3, \"final_sigmas_type\": \"sigma_min\"}", 11, &s) ==
              SOWER_OK, "singlestep order 3, sigma_min, 11 steps: %s", sower_error_message());
    scheduler_free(&s);
    check_tree_noise_entropy();
    /* UniPC's lower_order_final false with a final sigma of zero: one step is first order, finite in diffusers */
    CHECK(init_from("UniPCMultistepScheduler", "{\"lower_order_final\": false}", 1, &s) == SOWER_OK,
          "UniPC, lower_order_final false, 1 step: %s", sower_error_message());
    scheduler_free(&s);
    /* deis with sigma_min as the final sigma runs as dpmsolver++ */
    CHECK(init_from("DPMSolverMultistepScheduler", "{\"algorithm_type\": \"deis\", \"final_sigmas_type\": "
                    "\"sigma_min\"}", 10, &s) == SOWER_OK, "deis + sigma_min: %s", sower_error_message());
    scheduler_free(&s);
    /* json.dumps writes DPM's default lambda_min_clipped as -Infinity: read, as json.loads does */
    CHECK(init_from("DPMSolverMultistepScheduler", "{\"lambda_min_clipped\": -Infinity, \"x\": NaN}", 10, &s) == SOWER_OK,
          "-Infinity / NaN: %s", sower_error_message());
    scheduler_free(&s);
    /* an infinite value is named as one (cJSON prints it as null) */
    const char *huge = "{\"num_train_timesteps\": 1e309}";
    CHECK(scheduler_config_parse(huge, strlen(huge), "p.json", SCHED_DDIM, &cfg) == SOWER_EMODEL &&
              strstr(sower_error_message(), "found Infinity"), "1e309: %s", sower_error_message());
    sower_error_clear();
    /* DPM-Solver's Karras schedule spans the config's sigma_min..sigma_max when it has them (hidden config:
     * diffusers gives sigmas[0] = 100.0, timestep 953), whatever class the file names (an Euler file's too:
     * extract_init_dict keeps them); without them, the table's own ends (157.40726, 999) */
    const char *bounds = "{\"use_karras_sigmas\": true, \"sigma_max\": 100.0}";
    CHECK(init_from("DPMSolverMultistepScheduler", bounds, 1, &s) == SOWER_OK && s.sigmas[0] == 100.0f &&
              s.timesteps[0] == 953, "DPM sigma_max 100: sigmas[0] %g, timestep %lld (%s)", (double)s.sigmas[0],
          (long long)(s.timesteps ? s.timesteps[0] : -1), sower_error_message());
    scheduler_free(&s);
    const char *euler_file = "{\"_class_name\": \"EulerDiscreteScheduler\", \"use_karras_sigmas\": true, "
                             "\"sigma_max\": 100.0}";
    CHECK(init_from("DPMSolverMultistepScheduler", euler_file, 1, &s) == SOWER_OK && s.sigmas[0] == 100.0f &&
              s.timesteps[0] == 953, "DPM from an Euler file: sigmas[0] %g (%s)", (double)s.sigmas[0], sower_error_message());
    scheduler_free(&s);
    CHECK(init_from("DPMSolverMultistepScheduler", "{\"use_karras_sigmas\": true}", 1, &s) == SOWER_OK &&
              s.sigmas[0] > 157.0f && s.timesteps[0] == 999, "DPM Karras without bounds: sigmas[0] %g (%s)",
          (double)s.sigmas[0], sower_error_message());
    scheduler_free(&s);
    sower_error_clear();
}

/* ---- the multistep and sigma-space classes (multistep_scheduler_reference.json) ------------------ */

/* Equal float lists (JSON doubles of float32 values), to within `ulps` units in the last place plus `absolute`,
 * or a message in why. */
static int same_floats(const cJSON *want, const float *got, int n, int ulps, double absolute, char *why, size_t size)
{
    if (cJSON_GetArraySize(want) != n) {
        snprintf(why, size, "%d values, diffusers %d", n, cJSON_GetArraySize(want));
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const double w = cJSON_GetArrayItem(want, i)->valuedouble;
        if (isnan(got[i]) || fabs((double)got[i] - w) > ulps * (double)FLT_EPSILON / 2 * fabs(w) + absolute ||
            (ulps == 0 && absolute == 0 && (double)got[i] != w)) { /* a NaN is never within any ulps */
            snprintf(why, size, "[%d] %.9g, diffusers %.9g", i, (double)got[i], w);
            return 0;
        }
    }
    return 1;
}

/* Timesteps diffusers keeps in float64 (DPMSolverSDEScheduler's) against sower's float32 ones: the UNet's time
 * embedding casts them to float32 (timesteps[:, None].float()), so that rounding is what must match, bit for bit. */
static int same_as_float32(const cJSON *want, const float *got, int n, char *why, size_t size)
{
    if (cJSON_GetArraySize(want) != n) {
        snprintf(why, size, "%d values, diffusers %d", n, cJSON_GetArraySize(want));
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const double w = cJSON_GetArrayItem(want, i)->valuedouble;
        if (memcmp(&got[i], &(float){(float)w}, sizeof(float)) != 0) {
            snprintf(why, size, "[%d] %.9g, diffusers %.17g (as float32 %.9g)", i, (double)got[i], w, (double)(float)w);
            return 0;
        }
    }
    return 1;
}

static double within_worst; /* the largest relative difference of a UniPC chain */

/* One case: set_timesteps (timesteps, sigmas, init_noise_sigma), then the pipeline's chain (scaled
 * inputs and the final sample) bit for bit. Returns 1 when everything is identical. */
static int run_multistep_case(const cJSON *c)
{
    const char *name = str_of(c, "name"), *text = str_of(c, "config");
    SchedulerKind kind;
    SchedulerConfig cfg;
    Scheduler s;
    CHECK(class_kind(str_of(c, "class"), &kind), "%s: class %s is not registered", name, str_of(c, "class"));
    if (!class_kind(str_of(c, "class"), &kind) || /* the entry its config picks (DPM's algorithm_type) */
        scheduler_kind_of_config(str_of(c, "class"), text, strlen(text), name, &kind) != SOWER_OK ||
        scheduler_config_parse(text, strlen(text), name, kind, &cfg) != SOWER_OK ||
        scheduler_init(&s, &cfg, int_of(c, "num_inference_steps")) != SOWER_OK) {
        CHECK(0, "%s: config or init failed: %s", name, sower_error_message());
        sower_error_clear();
        return 0;
    }
    char why[160] = "";
    int ok = 1;
    /* Known differences: a Karras, exponential or beta schedule's fractional timesteps take np.log of a float64
     * sigma (numpy's own SIMD log on AVX-512 machines; sower the C library's): an ulp now and then. UniPC's 2x2 and 3x3 solves go through
     * the LAPACK and BLAS of the machine diffusers runs on: its chains agree to a relative 1e-5. Everything else is
     * exact: torch's log/exp/expm1 and numpy's float32 log as they compute them (torch_math.h), scipy's Gauss-Kronrod
     * sum for LMS (euler.c). */
    const int karras = cfg.use_karras_sigmas || cfg.use_exponential_sigmas || cfg.use_beta_sigmas,
              within = strcmp(scheduler_class_name(cfg.kind), "UniPCMultistepScheduler") == 0;
    {
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "timesteps");
        const int good = strcmp(scheduler_class_name(cfg.kind), "DPMSolverSDEScheduler") == 0 && !karras
                             ? same_as_float32(want, s.unet_timesteps, s.num_steps, why, sizeof why)
                             : same_floats(want, s.unet_timesteps, s.num_steps, karras ? 4 : 0, 0, why, sizeof why);
        CHECK(good, "%s: timesteps %s", name, why);
        ok &= good;
    }
    const cJSON *sigmas = cJSON_GetObjectItemCaseSensitive(c, "sigmas");
    if (sigmas)
        {
        const int good = s.sigmas && same_floats(sigmas, s.sigmas, s.num_sigmas, 0, 0, why, sizeof why);
        CHECK(good, "%s: sigmas %s", name,
                    why);
        ok &= good;
    }
    /* KDPM2's tables (diffusers' nulls: the slots it computes as NaN and never reads) */
    const char *table_names[] = {"sigmas_interpol", "sigmas_up", "sigmas_down"};
    const float *tables[] = {s.sigmas_interpol, s.sigmas_up, s.sigmas_down};
    for (int t = 0; t < 3; t++) {
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, table_names[t]);
        if (!want)
            continue;
        float got[2 * 1000 + 2]; /* (num_sigmas,) with diffusers' NaN slots as 0 on both sides */
        cJSON *copy = cJSON_Duplicate(want, 1);
        int good = tables[t] && s.num_sigmas <= (int)(sizeof got / sizeof *got) && copy;
        for (int i = 0; good && i < s.num_sigmas && i < cJSON_GetArraySize(copy); i++) {
            const int null = cJSON_IsNull(cJSON_GetArrayItem(copy, i));
            got[i] = null && isnan(tables[t][i]) ? 0.0f : tables[t][i];
            if (null)
                cJSON_ReplaceItemInArray(copy, i, cJSON_CreateNumber(0));
        }
        good = good && same_floats(copy, got, s.num_sigmas, 0, 0, why, sizeof why);
        CHECK(good, "%s: %s %s", name, table_names[t], why);
        cJSON_Delete(copy);
        ok &= good;
    }
    {
        const int good = (double)s.init_noise_sigma == cJSON_GetObjectItemCaseSensitive(c, "init_noise_sigma")->valuedouble;
        CHECK(good, "%s: init_noise_sigma %.9g", name, (double)s.init_noise_sigma);
        ok &= good;
    }
    const size_t n = inputs[0].n;
    float x[INPUT_MAX_VALUES], scaled[INPUT_MAX_VALUES]; /* (n,) */
    SchedulerRun run;
    Digest d = {0};
    int draws = 0;
    char scaled_hex[DIGEST_HEX_CHARS] = "";
    if (scheduler_run_init(&run, &s, n) != SOWER_OK || digest_init(&d) != SOWER_OK) {
        CHECK(0, "%s: out of memory", name);
        scheduler_free(&s);
        return 0;
    }
    for (size_t j = 0; j < n; j++)
        x[j] = inputs[0].sample[j] * s.init_noise_sigma;
    for (int i = 0; i < s.num_steps; i++) {
        const float divisor = scheduler_input_divisor(&s, i);
        for (size_t j = 0; j < n; j++)
            scaled[j] = x[j] / divisor;
        if (digest_update(&d, scaled, n * sizeof *scaled) != SOWER_OK)
            scaled_hex[0] = '?';
        const int noisy = scheduler_step_needs_noise(&s, i, 0.0f);
        draws += noisy;
        scheduler_run_step(&s, &run, i, 0.0f, inputs[i % CHAIN_SETS].model_output, x,
                           noisy ? inputs[i % CHAIN_SETS].noise : NULL);
    }
    unsigned char sha[DIGEST_BYTES];
    char final_hex[DIGEST_HEX_CHARS];
    if (scaled_hex[0] != '?' && digest_final(&d, sha) == SOWER_OK)
        digest_hex(sha, scaled_hex);
    digest_free(&d);
    sha_hex(x, n * sizeof *x, final_hex);
    const cJSON *chain = cJSON_GetObjectItemCaseSensitive(c, "chain"), *final = cJSON_GetObjectItemCaseSensitive(chain, "final");
    double worst = 0, largest = 0;
    for (size_t j = 0; j < n && j < (size_t)cJSON_GetArraySize(final); j++) {
        const double want = cJSON_GetArrayItem(final, (int)j)->valuedouble, diff = fabs((double)x[j] - want);
        worst = diff > worst ? diff : worst;
        largest = fabs(want) > largest ? fabs(want) : largest;
    }
    const double relative = worst / (largest > 1 ? largest : 1);
    const int same_draws = draws == int_of(chain, "noise_draws");
    CHECK(same_draws, "%s: %d noise draws, diffusers %d", name, draws, int_of(chain, "noise_draws"));
    int same_chain;
    if (within) { /* see above: within a relative 1e-5 */
        same_chain = cJSON_GetArraySize(final) == (int)n && relative <= 1e-5;
        within_worst = relative > within_worst ? relative : within_worst;
        CHECK(same_chain, "%s: chain of %d steps: max|diff| %.3g of values up to %.3g", name, s.num_steps, worst,
              largest);
    } else {
        const int same_scaled = strcmp(scaled_hex, str_of(chain, "scaled_sha256")) == 0;
        CHECK(same_scaled, "%s: the scaled model inputs differ", name);
        same_chain = same_scaled && strcmp(final_hex, str_of(chain, "final_sha256")) == 0;
        CHECK(same_chain, "%s: chain of %d steps: final sample differs (max|diff| %.3g)", name, s.num_steps, worst);
    }
    ok &= same_draws && same_chain;
    scheduler_run_free(&run);
    scheduler_free(&s);
    return ok;
}

static int run_multistep_file(const char *path)
{
    size_t len = 0;
    char *text = read_file(path, &len);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!root || strcmp(str_of(root, "format"), "sower-multistep-scheduler-reference") != 0) {
        fprintf(stderr, "%s: not a sower-multistep-scheduler-reference file; regenerate it with "
                        "validate/make_multistep_reference.py\n", path);
        cJSON_Delete(root);
        return 0;
    }
    int cases = 0, identical = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases"))
    {
        cases++;
        identical += run_multistep_case(c);
    }
    printf("%d of %d PNDM / Euler / Euler ancestral / Heun / LMS / KDPM2 / DPM-Solver / DPM SDE / DEIS / UniPC cases as diffusers: "
           "bit-identical timesteps, sigmas, scaled inputs and chains (Karras timesteps within 4 ulps; UniPC chains within "
           "a relative %.2g)\n", identical, cases, within_worst);
    CHECK(cases > 0 && identical == cases, "%d of %d multistep cases differ", cases - identical, cases);
    cJSON_Delete(root);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s tests/data/scheduler_reference.json [tests/data/multistep_scheduler_reference.json]\n"
                        "(regenerate: /opt/refenv/bin/python validate/make_scheduler_reference.py OUT.json)\n",
                argv[0]);
        return 1;
    }
    size_t len = 0;
    char *text = read_file(argv[1], &len);
    if (!text) {
        fprintf(stderr, "cannot read %s (or it is over %d bytes)\n", argv[1], REFERENCE_MAX_BYTES);
        return 1;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || strcmp(str_of(root, "format"), "sower-scheduler-reference") != 0 || int_of(root, "version") != 1 ||
        !load_inputs(root)) {
        fprintf(stderr, "%s: not a version-1 sower-scheduler-reference file; regenerate it with "
                        "validate/make_scheduler_reference.py\n", argv[1]);
        cJSON_Delete(root);
        return 1;
    }
    const cJSON *versions = cJSON_GetObjectItemCaseSensitive(root, "versions");
    printf("reference: diffusers %s, torch %s, numpy %s\n", str_of(versions, "diffusers"), str_of(versions, "torch"),
           str_of(versions, "numpy"));

    int cases = 0, identical = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases"))
    {
        cases++;
        identical += run_case(c);
    }
    printf("%d of %d cases bit-identical (each under both torch CPU kernels)\n", identical, cases);
    CHECK(cases > 0 && identical == cases, "%d of %d cases differ", cases - identical, cases);
    if (argc == 3)
        CHECK(run_multistep_file(argv[2]), "cannot read %s", argv[2]);

    int ac_cases = 0, ac_identical = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "alphas_cumprod_cases"))
    {
        ac_cases++;
        ac_identical += run_alphas_cumprod_case(c);
    }
    printf("%d of %d alphas_cumprod-only cases bit-identical\n", ac_identical, ac_cases);
    CHECK(ac_cases > 0, "no alphas_cumprod cases");

    int rejected = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "rejected"))
    {
        run_rejected(c);
        rejected++;
    }
    int sweeps = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "timestep_sweeps"))
    {
        run_sweep(c);
        sweeps++;
    }
    CHECK(rejected > 0 && sweeps > 0, "reference has %d rejected runs and %d sweeps", rejected, sweeps);
    printf("%d runs diffusers gets wrong refused; %d set_timesteps sweeps over every N\n", rejected, sweeps);
    run_config_cases();
    run_unit_checks();
    run_schedule_checks();
    cJSON_Delete(root);
    return check_exit("test_scheduler");
}
