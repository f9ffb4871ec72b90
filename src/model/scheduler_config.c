/* scheduler_config.c: a scheduler_config.json read as diffusers 0.31's ConfigMixin.from_config reads it
 * for one class (scheduler.h: scheduler_config_parse), with every supported key's values checked. */
#include <assert.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "json_keys.h"
#include "utf8.h"

enum {
    CONFIG_MAX_BYTES = 1 << 20, /* a scheduler_config.json is a few hundred bytes */
    CONFIG_MAX_KEYS = 1000,
};

/* ---- configuration -------------------------------------------------------------------------- */

void scheduler_config_defaults(SchedulerKind kind, SchedulerConfig *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->num_train_timesteps = 1000;
    cfg->beta_start = 0.0001;
    cfg->beta_end = 0.02;
    cfg->beta_schedule = BETA_LINEAR;
    cfg->prediction_type = PRED_EPSILON;
    cfg->timestep_spacing = SPACING_LEADING;
    cfg->steps_offset = 0;
    cfg->clip_sample = 1;
    cfg->clip_sample_range = 1.0;
    cfg->set_alpha_to_one = 1;                  /* DDIM's default; DDPM has no such key */
    cfg->variance_type = VARIANCE_FIXED_SMALL; /* DDPM's default; DDIM has no such key */
    cfg->torch_kernel = RNG_KERNEL_TORCH_CPU;
    cfg->sigma_min = cfg->sigma_max = NAN; /* None */
    cfg->final_sigmas_type = FINAL_SIGMA_ZERO;
    cfg->solver_order = 2;
    cfg->algorithm_type = DPM_ALGORITHM_PLUS_PLUS;
    cfg->solver_type = DPM_SOLVER_MIDPOINT;
    cfg->lower_order_final = 1;
    cfg->lambda_min_clipped = -INFINITY;
    cfg->predict_x0 = 1;
    if (scheduler_class(kind)->defaults)
        scheduler_class(kind)->defaults(cfg);
}

static const char *const config_key_names[KEY_COUNT] = {
    [KEY_NUM_TRAIN_TIMESTEPS] = "num_train_timesteps",
    [KEY_BETA_START] = "beta_start",
    [KEY_BETA_END] = "beta_end",
    [KEY_BETA_SCHEDULE] = "beta_schedule",
    [KEY_TRAINED_BETAS] = "trained_betas",
    [KEY_VARIANCE_TYPE] = "variance_type",
    [KEY_CLIP_SAMPLE] = "clip_sample",
    [KEY_SET_ALPHA_TO_ONE] = "set_alpha_to_one",
    [KEY_STEPS_OFFSET] = "steps_offset",
    [KEY_PREDICTION_TYPE] = "prediction_type",
    [KEY_THRESHOLDING] = "thresholding",
    [KEY_DYNAMIC_THRESHOLDING_RATIO] = "dynamic_thresholding_ratio",
    [KEY_CLIP_SAMPLE_RANGE] = "clip_sample_range",
    [KEY_SAMPLE_MAX_VALUE] = "sample_max_value",
    [KEY_TIMESTEP_SPACING] = "timestep_spacing",
    [KEY_RESCALE_BETAS_ZERO_SNR] = "rescale_betas_zero_snr",
    [KEY_SKIP_PRK_STEPS] = "skip_prk_steps",
    [KEY_USE_KARRAS_SIGMAS] = "use_karras_sigmas",
    [KEY_USE_EXPONENTIAL_SIGMAS] = "use_exponential_sigmas",
    [KEY_USE_BETA_SIGMAS] = "use_beta_sigmas",
    [KEY_SIGMA_MIN] = "sigma_min",
    [KEY_SIGMA_MAX] = "sigma_max",
    [KEY_INTERPOLATION_TYPE] = "interpolation_type",
    [KEY_TIMESTEP_TYPE] = "timestep_type",
    [KEY_FINAL_SIGMAS_TYPE] = "final_sigmas_type",
    [KEY_SOLVER_ORDER] = "solver_order",
    [KEY_ALGORITHM_TYPE] = "algorithm_type",
    [KEY_SOLVER_TYPE] = "solver_type",
    [KEY_LOWER_ORDER_FINAL] = "lower_order_final",
    [KEY_EULER_AT_FINAL] = "euler_at_final",
    [KEY_USE_LU_LAMBDAS] = "use_lu_lambdas",
    [KEY_LAMBDA_MIN_CLIPPED] = "lambda_min_clipped",
    [KEY_PREDICT_X0] = "predict_x0",
    [KEY_DISABLE_CORRECTOR] = "disable_corrector",
    [KEY_SOLVER_P] = "solver_p",
    [KEY_NOISE_SAMPLER_SEED] = "noise_sampler_seed",
};

static const char *const beta_schedule_names[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
static const char *const prediction_type_names[] = {"epsilon", "v_prediction", "sample"};
static const char *const spacing_names[] = {"leading", "trailing", "linspace"};
static const char *const variance_type_names[] = {"fixed_small", "fixed_large"};
static const char *const final_sigmas_names[] = {"zero", "sigma_min"};
/* DPMSolverMultistepScheduler reads "deis" as dpmsolver++, and logrho/bh1/bh2 as midpoint; the deprecated
 * "sde-dpmsolver" is not run */
static const char *const algorithm_names[] = {"dpmsolver++", "dpmsolver", "deis", "sde-dpmsolver++"};
static const char *const solver_type_names[] = {"midpoint", "heun", "logrho", "bh1", "bh2"};

/* A short rendering of a JSON value for messages: the value's JSON text, cut at ~60 characters. */
static void describe(const cJSON *v, char *buf, size_t size)
{
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble)) { /* cJSON prints these as null */
        snprintf(buf, size, "%s", v->valuedouble < 0 ? "-Infinity" : "Infinity");
        return;
    }
    char *text = cJSON_PrintUnformatted(v);
    char *shown = text ? utf8_printable(text, strlen(text)) : NULL; /* a config's bytes, shown as a terminal can */
    cJSON_free(text);
    if (!shown) {
        snprintf(buf, size, "(a value)");
        return;
    }
    if (strlen(shown) > 60) {
        int cut = 57; /* at a character's start */
        while (cut > 0 && ((unsigned char)shown[cut] & 0xC0) == 0x80) cut--;
        snprintf(buf, size, "%.*s...", cut, shown);
    } else
        snprintf(buf, size, "%s", shown);
    free(shown);
}

static int bad_value(const char *path, const char *key, const char *expected, const cJSON *found)
{
    char text[80];
    describe(found, text, sizeof text);
    return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected %s, found %s", path, key, expected, text);
}

static int get_bool(const char *path, const char *key, const cJSON *v, int *out)
{
    if (!cJSON_IsBool(v))
        return bad_value(path, key, "true or false", v);
    *out = cJSON_IsTrue(v);
    return SOWER_OK;
}

/* Only `false` is supported for switches that turn on features sower does not implement. */
static int get_false(const char *path, const char *key, const cJSON *v, const char *why)
{
    if (!cJSON_IsFalse(v)) {
        char expected[120];
        snprintf(expected, sizeof expected, "false (%s)", why);
        return bad_value(path, key, expected, v);
    }
    return SOWER_OK;
}

static int get_int(const char *path, const char *key, const cJSON *v, int lo, int hi, int *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || floor(v->valuedouble) != v->valuedouble ||
        v->valuedouble < lo || v->valuedouble > hi) {
        char expected[64];
        snprintf(expected, sizeof expected, "an integer in %d..%d", lo, hi);
        return bad_value(path, key, expected, v);
    }
    *out = (int)v->valuedouble;
    return SOWER_OK;
}

static int get_number(const char *path, const char *key, const cJSON *v, const char *expected, double *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return bad_value(path, key, expected, v);
    *out = v->valuedouble;
    return SOWER_OK;
}

/* A string that must be one of names[0..count-1]; its index goes to *out. */
static int get_choice(const char *path, const char *key, const cJSON *v, const char *const *names, int count,
                      int *out)
{
    if (cJSON_IsString(v))
        for (int i = 0; i < count; i++)
            if (strcmp(v->valuestring, names[i]) == 0) {
                *out = i;
                return SOWER_OK;
            }
    char expected[160] = "one of ";
    for (int i = 0; i < count; i++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s\"%s\"", i ? ", " : "", names[i]);
    }
    return bad_value(path, key, expected, v);
}

static int apply_key(const char *path, ConfigKey key, const cJSON *v, SchedulerConfig *cfg)
{
    const char *name = config_key_names[key];
    int choice = 0;
    double d = 0;
    switch (key) {
    case KEY_NUM_TRAIN_TIMESTEPS:
        return get_int(path, name, v, 1, SCHEDULER_MAX_TRAIN_TIMESTEPS, &cfg->num_train_timesteps);
    case KEY_BETA_START:
    case KEY_BETA_END:
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0 && v->valuedouble < 1.0))
            return bad_value(path, name, "a number in [0, 1)", v);
        *(key == KEY_BETA_START ? &cfg->beta_start : &cfg->beta_end) = v->valuedouble;
        return SOWER_OK;
    case KEY_BETA_SCHEDULE:
        SOWER_TRY(get_choice(path, name, v, beta_schedule_names, 3, &choice));
        cfg->beta_schedule = (BetaSchedule)choice;
        return SOWER_OK;
    case KEY_TRAINED_BETAS:
        if (!cJSON_IsNull(v))
            return bad_value(path, name, "null (trained betas are not supported)", v);
        return SOWER_OK;
    case KEY_VARIANCE_TYPE:
        if (scheduler_class(cfg->kind)->config_keys & SCHED_KEY(KEY_SOLVER_ORDER)) {
            /* DPM: None, or a model's learned variance whose channels it would cut off */
            if (cJSON_IsNull(v) || (cJSON_IsString(v) && strcmp(v->valuestring, "learned") != 0 &&
                                    strcmp(v->valuestring, "learned_range") != 0))
                return SOWER_OK;
            return bad_value(path, name, "null (learned variances are not supported)", v);
        }
        SOWER_TRY(get_choice(path, name, v, variance_type_names, 2, &choice));
        cfg->variance_type = (VarianceType)choice;
        return SOWER_OK;
    case KEY_CLIP_SAMPLE:
        return get_bool(path, name, v, &cfg->clip_sample);
    case KEY_SET_ALPHA_TO_ONE:
        return get_bool(path, name, v, &cfg->set_alpha_to_one);
    case KEY_STEPS_OFFSET:
        return get_int(path, name, v, 0, SCHEDULER_MAX_TRAIN_TIMESTEPS, &cfg->steps_offset);
    case KEY_PREDICTION_TYPE:
        SOWER_TRY(get_choice(path, name, v, prediction_type_names, 3, &choice));
        cfg->prediction_type = (PredictionType)choice;
        return SOWER_OK;
    case KEY_THRESHOLDING:
        return get_false(path, name, v, "dynamic thresholding is not supported");
    case KEY_DYNAMIC_THRESHOLDING_RATIO:
    case KEY_SAMPLE_MAX_VALUE: /* used only with thresholding */
        return get_number(path, name, v, "a number", &d);
    case KEY_CLIP_SAMPLE_RANGE:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !(v->valuedouble > 0.0))
            return bad_value(path, name, "a number > 0", v);
        cfg->clip_sample_range = v->valuedouble;
        return SOWER_OK;
    case KEY_TIMESTEP_SPACING:
        SOWER_TRY(get_choice(path, name, v, spacing_names, 3, &choice));
        cfg->timestep_spacing = (TimestepSpacing)choice;
        return SOWER_OK;
    case KEY_RESCALE_BETAS_ZERO_SNR:
        return get_bool(path, name, v, &cfg->rescale_betas_zero_snr);
    case KEY_SKIP_PRK_STEPS:
        return get_bool(path, name, v, &cfg->skip_prk_steps);
    case KEY_USE_KARRAS_SIGMAS:
        return get_bool(path, name, v, &cfg->use_karras_sigmas);
    case KEY_USE_EXPONENTIAL_SIGMAS:
        return get_bool(path, name, v, &cfg->use_exponential_sigmas);
    case KEY_USE_BETA_SIGMAS:
        return get_bool(path, name, v, &cfg->use_beta_sigmas);
    case KEY_USE_LU_LAMBDAS:
        return get_false(path, name, v, "only the interpolated, Karras, exponential and beta sigma schedules are supported");
    case KEY_SIGMA_MIN:
    case KEY_SIGMA_MAX:
        if (cJSON_IsNull(v))
            d = NAN;
        else if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !(v->valuedouble > 0.0))
            return bad_value(path, name, "null or a number > 0", v);
        else
            d = v->valuedouble;
        *(key == KEY_SIGMA_MIN ? &cfg->sigma_min : &cfg->sigma_max) = d;
        return SOWER_OK;
    case KEY_INTERPOLATION_TYPE: {
        static const char *const linear[] = {"linear"};
        return get_choice(path, name, v, linear, 1, &choice); /* log_linear: not supported */
    }
    case KEY_TIMESTEP_TYPE: {
        static const char *const discrete[] = {"discrete"};
        return get_choice(path, name, v, discrete, 1, &choice); /* continuous (EDM): not supported */
    }
    case KEY_FINAL_SIGMAS_TYPE:
        SOWER_TRY(get_choice(path, name, v, final_sigmas_names, 2, &choice));
        cfg->final_sigmas_type = (FinalSigmasType)choice;
        return SOWER_OK;
    case KEY_SOLVER_ORDER: { /* up to the class's max_solver_order (3 for every class taking the key) */
        const int max_order = scheduler_class(cfg->kind)->max_solver_order;
        return get_int(path, name, v, 1, max_order ? max_order : 2, &cfg->solver_order);
    }
    case KEY_ALGORITHM_TYPE:
        SOWER_TRY(get_choice(path, name, v, algorithm_names, 4, &choice));
        cfg->algorithm_type = choice == 1 ? DPM_ALGORITHM_PLAIN : DPM_ALGORITHM_PLUS_PLUS;
        cfg->algorithm_deis = choice == 2;
        cfg->algorithm_sde = choice == 3;
        return SOWER_OK;
    case KEY_SOLVER_TYPE:
        SOWER_TRY(get_choice(path, name, v, solver_type_names, 5, &choice));
        cfg->solver_type = choice == 1 ? DPM_SOLVER_HEUN : DPM_SOLVER_MIDPOINT;
        cfg->solver_bh1 = choice == 3; /* UniPC reads the others as bh2 */
        return SOWER_OK;
    case KEY_PREDICT_X0:
        return get_bool(path, name, v, &cfg->predict_x0);
    case KEY_DISABLE_CORRECTOR: {
        char expected[96];
        snprintf(expected, sizeof expected, "a list of at most %d step indices (integers)",
                 (int)SCHEDULER_MAX_DISABLED_CORRECTORS);
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > SCHEDULER_MAX_DISABLED_CORRECTORS)
            return bad_value(path, name, expected, v);
        cfg->n_disable_corrector = 0;
        const cJSON *step;
        cJSON_ArrayForEach(step, v)
        {
            if (!cJSON_IsNumber(step) || !isfinite(step->valuedouble) || floor(step->valuedouble) != step->valuedouble ||
                fabs(step->valuedouble) > 1e9)
                return bad_value(path, name, expected, v);
            cfg->disable_corrector[cfg->n_disable_corrector++] = (int)step->valuedouble;
        }
        return SOWER_OK;
    }
    case KEY_SOLVER_P:
        if (!cJSON_IsNull(v)) /* another scheduler object as the predictor: not something a JSON file can hold */
            return bad_value(path, name, "null", v);
        return SOWER_OK;
    case KEY_NOISE_SAMPLER_SEED: /* None: each sample's seed (sower's rule: diffusers' None is a random one) */
        if (cJSON_IsNull(v)) {
            cfg->has_noise_sampler_seed = 0;
            return SOWER_OK;
        }
        /* a JSON number is a double here: integers up to 2^53 keep every digit */
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0 && v->valuedouble <= 9007199254740992.0) ||
            floor(v->valuedouble) != v->valuedouble)
            return bad_value(path, name, "null or an integer in 0..2^53", v);
        cfg->has_noise_sampler_seed = 1, cfg->noise_sampler_seed = (uint64_t)v->valuedouble;
        return SOWER_OK;
    case KEY_LOWER_ORDER_FINAL:
        return get_bool(path, name, v, &cfg->lower_order_final);
    case KEY_EULER_AT_FINAL:
        return get_bool(path, name, v, &cfg->euler_at_final);
    case KEY_LAMBDA_MIN_CLIPPED:
        if (!cJSON_IsNumber(v) || isnan(v->valuedouble))
            return bad_value(path, name, "a number", v);
        cfg->lambda_min_clipped = v->valuedouble; /* -Infinity arrives as -1e999 (json_infinity) */
        return SOWER_OK;
    case KEY_COUNT:
        break;
    }
    assert(0 && "unhandled config key");
    return SOWER_FAIL(SOWER_EINTERNAL, "unhandled scheduler config key %d", (int)key);
}

/* json.loads keeps the LAST value of a repeated key: item is used only if no later one has its name. */
static int is_last_of_its_name(const cJSON *item)
{
    for (const cJSON *later = item->next; later; later = later->next)
        if (later->string && strcmp(later->string, item->string) == 0)
            return 0;
    return 1;
}

static const cJSON *last_item(const cJSON *obj, const char *name)
{
    const cJSON *found = NULL, *item;
    cJSON_ArrayForEach(item, obj) if (item->string && strcmp(item->string, name) == 0) found = item;
    return found;
}

static int listed(const cJSON *names, const char *key)
{
    const cJSON *n;
    cJSON_ArrayForEach(n, names) if (cJSON_IsString(n) && strcmp(n->valuestring, key) == 0) return 1;
    return 0;
}

int scheduler_check_noise_schedule(const SchedulerConfig *cfg, const char *path)
{
    const int T = cfg->num_train_timesteps;
    float *betas = malloc((size_t)T * sizeof *betas);                   /* (T,) */
    float *alphas_cumprod = malloc((size_t)T * sizeof *alphas_cumprod); /* (T,) */
    int status = SOWER_OK;
    if (!betas || !alphas_cumprod) {
        status = SOWER_FAIL(SOWER_ENOMEM, "scheduler tables for %d train timesteps", T);
    } else {
        SchedulerConfig plain = *cfg; /* the betas as given: what the rescaling starts from */
        plain.rescale_betas_zero_snr = 0;
        scheduler_alphas_cumprod(&plain, betas, alphas_cumprod);
        int empty = 0;
        while (empty < T && alphas_cumprod[empty] > 0.0f) empty++;
        char betas_named[160];
        if (cfg->beta_schedule == BETA_SQUAREDCOS_CAP_V2)
            snprintf(betas_named, sizeof betas_named, "beta_schedule %s", beta_schedule_names[cfg->beta_schedule]);
        else
            snprintf(betas_named, sizeof betas_named, "beta_start %g, beta_end %g (%s)", cfg->beta_start,
                     cfg->beta_end, beta_schedule_names[cfg->beta_schedule]);
        if (empty < T)
            status = SOWER_FAIL(SOWER_EMODEL,
                                "%s: %s leave no signal from train step %d on (alphas_cumprod 0 in float32): not a "
                                "noise schedule sower can run",
                                path, betas_named, empty);
        else if (alphas_cumprod[T - 1] >= 1.0f)
            status = SOWER_FAIL(SOWER_EMODEL,
                                "%s: %s add no noise (every alphas_cumprod is 1): not a noise schedule sower can run",
                                path, betas_named);
        else if (cfg->rescale_betas_zero_snr) {
            /* zero terminal SNR by design; every earlier step must keep some signal (one train step: 0/0) */
            scheduler_alphas_cumprod(cfg, betas, alphas_cumprod);
            int t = 0;
            while (t < T - 1 && alphas_cumprod[t] > 0.0f && isfinite(alphas_cumprod[t])) t++;
            if (T < 2 || t < T - 1)
                status = SOWER_FAIL(SOWER_EMODEL,
                                    "%s: key 'rescale_betas_zero_snr': %s rescaled to zero terminal SNR leave no signal "
                                    "from train step %d on, before the last (%d): not a noise schedule sower can run",
                                    path, betas_named, T < 2 ? 0 : t, T - 1);
        }
    }
    free(betas);
    free(alphas_cumprod);
    return status;
}

/* SOWER_EMODEL naming the key when use_exponential_sigmas or use_beta_sigmas is true in a class that has it in
 * failing_keys. */
static int sigma_conversion_refused(const SchedulerConfig *cfg, const char *path)
{
    const uint64_t failing = scheduler_class(cfg->kind)->failing_keys;
    if (!(cfg->use_exponential_sigmas && (failing & SCHED_KEY(KEY_USE_EXPONENTIAL_SIGMAS))) &&
        !(cfg->use_beta_sigmas && (failing & SCHED_KEY(KEY_USE_BETA_SIGMAS))))
        return SOWER_OK;
    const ConfigKey key = cfg->use_exponential_sigmas ? KEY_USE_EXPONENTIAL_SIGMAS : KEY_USE_BETA_SIGMAS;
    return SOWER_FAIL(SOWER_EMODEL,
                      "%s: key '%s': expected false with the %s scheduler (%s): diffusers 0.31's set_timesteps fails "
                      "with it (%s run it)",
                      path, config_key_names[key], scheduler_kind_name(cfg->kind), scheduler_class(cfg->kind)->class_name,
                      scheduler_names_taking(key));
}

/* as_named: apply the name's overrides and refuse what its step cannot take (0: the config as the class
 * reads it, for scheduler_kind_of_config) */
static int parse_object(const cJSON *root, const char *path, SchedulerKind kind, int as_named, SchedulerConfig *cfg)
{
    if (!cJSON_IsObject(root)) {
        char text[80];
        describe(root, text, sizeof text);
        return SOWER_FAIL(SOWER_EMODEL, "%s: expected a JSON object, found %s", path, text);
    }
    if (cJSON_GetArraySize(root) > CONFIG_MAX_KEYS)
        return SOWER_FAIL(SOWER_EMODEL, "%s: expected at most %d keys, found %d", path, CONFIG_MAX_KEYS,
                          cJSON_GetArraySize(root));
    /* extract_init_dict: keys named in _use_default_values are skipped (their defaults apply). */
    const cJSON *defaults = last_item(root, "_use_default_values");
    if (defaults) {
        int ok = cJSON_IsArray(defaults);
        const cJSON *n;
        cJSON_ArrayForEach(n, defaults) ok = ok && cJSON_IsString(n);
        if (!ok)
            return bad_value(path, "_use_default_values", "a list of key names", defaults);
    }
    /* from_config raises on a _class_name that is neither a string nor a list. */
    const cJSON *class_name = last_item(root, "_class_name");
    if (class_name && !(defaults && listed(defaults, "_class_name")) && !cJSON_IsString(class_name) &&
        !cJSON_IsArray(class_name))
        return bad_value(path, "_class_name", "a string", class_name);

    scheduler_config_defaults(kind, cfg);
    /* Keys the class reads without taking them survive from_config as hidden config, whatever the file's class
     * (extract_init_dict keeps them from the dict it had before dropping the original class's keys). */
    const uint64_t keys = scheduler_class(kind)->config_keys | scheduler_class(kind)->hidden_keys;
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (!item->string || !is_last_of_its_name(item) || (defaults && listed(defaults, item->string)))
            continue;
        for (int k = 0; k < KEY_COUNT; k++)
            if ((keys & SCHED_KEY(k)) && strcmp(item->string, config_key_names[k]) == 0)
                SOWER_TRY(apply_key(path, (ConfigKey)k, item, cfg));
    }
    /* __init__ raises ValueError: "Only one of `config.use_beta_sigmas`, `config.use_exponential_sigmas`,
     * `config.use_karras_sigmas` can be used." */
    if (cfg->use_karras_sigmas + cfg->use_exponential_sigmas + cfg->use_beta_sigmas > 1)
        return SOWER_FAIL(SOWER_EMODEL, "%s: keys 'use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas': "
                                        "expected at most one of them true (diffusers raises on more)", path);
    if (as_named && scheduler_class(kind)->overrides)
        scheduler_class(kind)->overrides(cfg);
    if (as_named)
        SOWER_TRY(sigma_conversion_refused(cfg, path));
    if (as_named && scheduler_class(kind)->validate)
        SOWER_TRY(scheduler_class(kind)->validate(cfg, path));
    return SOWER_OK;
}

static int parse_text(const char *json_text, size_t len, const char *path, SchedulerKind kind, int as_named,
                      SchedulerConfig *cfg)
{
    assert(kind >= 0 && kind < scheduler_kind_count());
    if (len > CONFIG_MAX_BYTES)
        return SOWER_FAIL(SOWER_EMODEL, "%s: expected a scheduler config of at most %d bytes, found %zu bytes",
                          path, CONFIG_MAX_BYTES, len);
    char *rewritten = NULL; /* json.dumps writes float("-inf") as -Infinity (DPM's lambda_min_clipped) */
    if (json_python_literals(json_text, len, &rewritten, &len) != 0)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for a scheduler config");
    if (rewritten)
        json_text = rewritten;
    const char *end = NULL;
    int ran_out;
    cJSON *root = json_parse(json_text, len, &end, &ran_out);
    if (ran_out) {
        free(rewritten);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", path);
    }
    if (!root) {
        size_t at = end && end >= json_text ? (size_t)(end - json_text) : 0;
        free(rewritten);
        return SOWER_FAIL(SOWER_EMODEL, "%s: expected JSON text, found a syntax error at byte %zu", path, at);
    }
    size_t at = (size_t)(end - json_text); /* json.loads refuses anything but whitespace after the value */
    while (at < len && (json_text[at] == ' ' || json_text[at] == '\t' || json_text[at] == '\n' || json_text[at] == '\r'))
        at++;
    if (at < len) {
        cJSON_Delete(root);
        free(rewritten);
        return SOWER_FAIL(SOWER_EMODEL, "%s: expected JSON text, found extra data at byte %zu", path, at);
    }
    int status = parse_object(root, path, kind, as_named, cfg);
    cJSON_Delete(root);
    free(rewritten);
    if (status != SOWER_OK)
        return sower_trace(status, __FILE__, __LINE__, __func__);
    return SOWER_OK;
}

const char *sigma_schedule_name(SigmaSchedule s)
{
    static const char *const names[] = SIGMA_SCHEDULE_NAMES;
    return names[s];
}

int sigma_schedule_parse(const char *name, SigmaSchedule *out)
{
    static const char *const names[] = SIGMA_SCHEDULE_NAMES;
    for (int k = SIGMAS_KARRAS; names[k]; k++)
        if (name && strcmp(names[k], name) == 0) {
            *out = (SigmaSchedule)k;
            return 0;
        }
    return -1;
}

int sigma_schedule_named(SigmaSchedule s) { return s == SIGMAS_EXPONENTIAL || s == SIGMAS_BETA; }

ConfigKey sigma_schedule_key(SigmaSchedule s)
{
    assert(s != SIGMAS_CONFIG);
    return s == SIGMAS_KARRAS ? KEY_USE_KARRAS_SIGMAS : s == SIGMAS_EXPONENTIAL ? KEY_USE_EXPONENTIAL_SIGMAS : KEY_USE_BETA_SIGMAS;
}

int scheduler_config_force_sigmas(SchedulerConfig *cfg, SigmaSchedule s, const char *config_path)
{
    if (s == SIGMAS_CONFIG) return SOWER_OK;
    int *const flags[] = {NULL, &cfg->use_karras_sigmas, &cfg->use_exponential_sigmas, &cfg->use_beta_sigmas};
    for (int other = SIGMAS_KARRAS; other <= SIGMAS_BETA; other++)
        if (other != (int)s && *flags[other])
            return SOWER_FAIL(SOWER_EMODEL, "%s sigmas (--sigmas, pipeline.sigmas) with %s, whose key '%s' is true: "
                                            "diffusers takes one sigma schedule; drop one of them",
                              sigma_schedule_name(s), config_path, config_key_names[sigma_schedule_key((SigmaSchedule)other)]);
    *flags[s] = 1;
    return SOWER_OK;
}

int scheduler_config_parse(const char *json_text, size_t len, const char *path, SchedulerKind kind,
                           SchedulerConfig *cfg)
{
    return parse_text(json_text, len, path, kind, 1, cfg);
}

int scheduler_kind_of_config(const char *class_name, const char *json_text, size_t len, const char *path,
                             SchedulerKind *k)
{
    SchedulerKind first;
    SOWER_TRY(scheduler_kind_of_class(class_name, &first));
    if (!scheduler_class(first)->runs)
        return *k = first, SOWER_OK;
    SchedulerConfig as_read; /* the entries of one class read its config alike */
    SOWER_TRY(parse_text(json_text, len, path, first, 0, &as_read));
    for (SchedulerKind i = first; i < scheduler_kind_count(); i++)
        if (strcmp(scheduler_class_name(i), class_name) == 0 && scheduler_class(i)->runs(&as_read))
            return *k = i, SOWER_OK;
    return *k = first, SOWER_OK; /* none claims it: the first entry's validate names what is wrong */
}

