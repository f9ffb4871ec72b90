/* model.c: locate, read and check a diffusers model folder. */
#define _POSIX_C_SOURCE 200809L
#include "model.h"

#include <assert.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_file.h"
#include "json_keys.h"
#include "outfile.h"
#include "regular_file.h"

enum { CONFIG_MAX_BYTES = 1 << 20 };

static int join(char *out, size_t size, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size)
        return SOWER_FAIL(SOWER_EPATH, "model path '%s/%s' is too long", dir, name);
    return SOWER_OK;
}

/* Refuses pickle weights with a clear message when the safetensors file is missing. */
static int find_weights(Model *m, const char *unet_dir)
{
    SOWER_TRY(join(m->weights_path, sizeof m->weights_path, unet_dir, "diffusion_pytorch_model.safetensors"));
    if (path_present(m->weights_path)) return SOWER_OK;
    static const char *const pickles[] = {"diffusion_pytorch_model.bin", "diffusion_pytorch_model.ckpt",
                                          "diffusion_pytorch_model.pt", "model.ckpt"};
    for (size_t i = 0; i < sizeof pickles / sizeof pickles[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", unet_dir, pickles[i]);
        if (regular_file_exists(path))
            return SOWER_FAIL(
                SOWER_EMODEL,
                "%s: pickle weights are refused (loading them executes code); convert them to "
                "%s/diffusion_pytorch_model.safetensors, e.g. with diffusers: "
                "UNet2DModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)",
                path, unet_dir);
    }
    return SOWER_FAIL(SOWER_EMODEL, "%s: no such file (the UNet weights, in safetensors format)",
                      m->weights_path);
}

static int locate(Model *m, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return SOWER_FAIL(SOWER_EMODEL, "model '%s' is not a directory (expected a diffusers model folder)",
                          dir);
    char unet_dir[4096];
    SOWER_TRY(join(unet_dir, sizeof unet_dir, dir, "unet"));
    SOWER_TRY(join(m->unet_config_path, sizeof m->unet_config_path, unet_dir, "config.json"));
    if (path_present(m->unet_config_path)) {
        m->flat_layout = 0;
        SOWER_TRY(join(m->scheduler_config_path, sizeof m->scheduler_config_path, dir,
                       "scheduler/scheduler_config.json"));
    } else {
        SOWER_TRY(join(m->unet_config_path, sizeof m->unet_config_path, dir, "config.json"));
        if (!regular_file_exists(m->unet_config_path))
            return SOWER_FAIL(
                SOWER_EMODEL,
                "model '%s': found neither unet/config.json (pipeline layout) nor config.json (flat "
                "UNet2DModel layout)",
                dir);
        m->flat_layout = 1;
        snprintf(unet_dir, sizeof unet_dir, "%s", dir);
        SOWER_TRY(
            join(m->scheduler_config_path, sizeof m->scheduler_config_path, dir, "scheduler_config.json"));
    }
    if (!path_present(m->scheduler_config_path))
        return SOWER_FAIL(SOWER_EMODEL, "%s: no such file (the scheduler config of model '%s')",
                          m->scheduler_config_path, dir);
    SOWER_TRY(find_weights(m, unet_dir));
    return SOWER_OK;
}

/* The scheduler classes a folder may name: every one the registry runs (NULL-terminated). A folder naming another
 * class is refused naming these. */
static void scheduler_class_list(const char *classes[SCHEDULER_MAX_KINDS + 1])
{
    int n = 0;
    for (int k = 0; k < scheduler_kind_count(); k++)
        classes[n++] = scheduler_class_name(k);
    classes[n] = NULL;
}

/* The _class_name of a JSON config into out ("" if absent); fails if it is not `expected`. */
static int check_class(const char *text, size_t bytes, const char *path, const char *const *expected,
                       char *out, size_t out_size)
{
    cJSON *obj;
    SOWER_TRY(json_parse_config(text, bytes, path, SOWER_EMODEL, &obj));
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(obj, "_class_name");
    int status = SOWER_OK;
    if (cls && !cJSON_IsString(cls)) {
        status = SOWER_FAIL(SOWER_EMODEL, "%s: key '_class_name': expected a string", path);
    } else if (cls) {
        int ok = 0;
        char supported[1024] = ""; /* every scheduler class fits */
        for (int i = 0; expected[i]; i++) {
            ok |= strcmp(cls->valuestring, expected[i]) == 0;
            snprintf(supported + strlen(supported), sizeof supported - strlen(supported), "%s%s",
                     i ? ", " : "", expected[i]);
        }
        if (!ok)
            status = SOWER_FAIL(SOWER_EMODEL, "%s: key '_class_name': found '%s', sower supports %s", path,
                                cls->valuestring, supported);
        else if (out)
            snprintf(out, out_size, "%s", cls->valuestring);
    }
    cJSON_Delete(obj);
    return status;
}

/* One component entry of model_index.json, ["library", "Class"], against the classes sower loads for it
 * (diffusers instantiates the class named there, so another one would render other rows). An absent
 * entry passes (sower reads the subfolder); [null, null] (diffusers: no such component) passes only
 * where the pipeline can do without it (may_be_null). The class named is kept in index_class if given. */
static int check_component(const cJSON *index, const char *path, const char *key,
                           const char *const *classes /* NULL-terminated */,
                           int may_be_null, char *index_class, size_t index_class_size)
{
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(index, key);
    if (!entry) return SOWER_OK;
    const cJSON *lib = cJSON_GetArrayItem(entry, 0), *cls = cJSON_GetArrayItem(entry, 1);
    if (!cJSON_IsArray(entry) || cJSON_GetArraySize(entry) != 2 || !(cJSON_IsString(lib) || cJSON_IsNull(lib)) ||
        !(cJSON_IsString(cls) || cJSON_IsNull(cls)))
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected [library, class], e.g. [\"diffusers\", \"%s\"]", path,
                          key, classes[0]);
    if (cJSON_IsNull(cls)) {
        if (may_be_null) return SOWER_OK;
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': the pipeline has none (null), and sower needs its %s", path,
                          key, key);
    }
    if (index_class) snprintf(index_class, index_class_size, "%s", cls->valuestring);
    char supported[1024] = "";
    for (int i = 0; classes[i]; i++) {
        if (strcmp(cls->valuestring, classes[i]) == 0) return SOWER_OK;
        snprintf(supported + strlen(supported), sizeof supported - strlen(supported), "%s%s", i ? " or " : "",
                 classes[i]);
    }
    return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': found class '%s', sower loads its %s as %s", path, key,
                      cls->valuestring, key, supported);
}

static int check_components(Model *m, const char *text, size_t bytes, const char *path)
{
    static const char *const unet[] = {"UNet2DModel", NULL}, *const sd_unet[] = {"UNet2DConditionModel", NULL},
                             *const text_encoder[] = {"CLIPTextModel", NULL},
                             *const tokenizer[] = {"CLIPTokenizer", "CLIPTokenizerFast", NULL},
                             *const vae[] = {"AutoencoderKL", NULL};
    const char *schedulers[SCHEDULER_MAX_KINDS + 1];
    scheduler_class_list(schedulers);
    cJSON *index;
    SOWER_TRY(json_parse_config(text, bytes, path, SOWER_EMODEL, &index));
    int status = check_component(index, path, "unet", m->stable_diffusion ? sd_unet : unet, 0, NULL, 0);
    if (status == SOWER_OK)
        status = check_component(index, path, "scheduler", schedulers, 0, m->index_scheduler_class,
                                 sizeof m->index_scheduler_class);
    if (status == SOWER_OK && m->stable_diffusion)
        status = check_component(index, path, "text_encoder", text_encoder, 0, NULL, 0);
    if (status == SOWER_OK && m->stable_diffusion)
        status = check_component(index, path, "tokenizer", tokenizer, 0, NULL, 0);
    if (status == SOWER_OK && m->stable_diffusion) /* no VAE: latents only, as diffusers allows */
        status = check_component(index, path, "vae", vae, 1, NULL, 0);
    cJSON_Delete(index);
    return status;
}

/* model_index.json: which pipeline the folder is. sower renders DDPMPipeline and DDIMPipeline
 * (UNet2DModel) and StableDiffusionPipeline (UNet2DConditionModel); any other is refused by name,
 * and so is a component class sower does not load. */
static int read_pipeline_class(Model *m, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    if (!path_present(path)) return SOWER_OK; /* absent; anything there (a loop, a FIFO) must read */
    char *text = NULL;
    size_t bytes = 0;
    SOWER_TRY(config_file_read(path, "pipeline index", CONFIG_MAX_BYTES, SOWER_EMODEL, &text, &bytes));
    static const char *const pipelines[] = {"DDPMPipeline", "DDIMPipeline", "StableDiffusionPipeline", NULL};
    int status = check_class(text, bytes, path, pipelines, m->pipeline_class, sizeof m->pipeline_class);
    m->stable_diffusion = strcmp(m->pipeline_class, "StableDiffusionPipeline") == 0;
    if (status == SOWER_OK) status = check_components(m, text, bytes, path);
    free(text);
    return status;
}

/* vae_scale_factor as StableDiffusionPipeline computes it: 2^(len(vae.config.block_out_channels) - 1), or 8
 * when the folder has no VAE. */
static int read_vae_scale_factor(Model *m)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/vae/config.json", m->dir);
    m->vae_scale_factor = 8;
    if (!path_present(path)) return SOWER_OK; /* no VAE; anything there (a loop, a FIFO) must read */
    char *text = NULL;
    size_t bytes = 0;
    SOWER_TRY(config_file_read(path, "VAE config", CONFIG_MAX_BYTES, SOWER_EMODEL, &text, &bytes));
    cJSON *obj;
    int status = json_parse_config(text, bytes, path, SOWER_EMODEL, &obj);
    free(text);
    SOWER_TRY(status);
    const cJSON *boc = cJSON_GetObjectItemCaseSensitive(obj, "block_out_channels");
    int levels = 1; /* AutoencoderKL's default: (64,) */
    if (boc && (!cJSON_IsArray(boc) || cJSON_GetArraySize(boc) < 1 || cJSON_GetArraySize(boc) > 8))
        status =
            SOWER_FAIL(SOWER_EMODEL, "%s: key 'block_out_channels': expected a list of 1..8 integers", path);
    else if (boc)
        levels = cJSON_GetArraySize(boc);
    cJSON_Delete(obj);
    m->vae_scale_factor = 1 << (levels - 1);
    return status;
}

static int digest_weights(Model *m)
{
    /* The mapping covers the whole file: its SHA-256 is the file's. */
    SOWER_TRY(safetensors_check_finite(&m->weights));
    SOWER_TRY(safetensors_digest(&m->weights, m->weights_sha256));
    return SOWER_OK;
}

int model_load(Model *m, const char *dir)
{
    return model_load_opt(m, dir, 1);
}

int model_load_opt(Model *m, const char *dir, int read_weights)
{
    memset(m, 0, sizeof *m);
    m->dir = strdup(dir);
    if (!m->dir) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    static const char *const unet_classes[] = {"UNet2DModel", NULL}, *const sd_unet_classes[] = {
                                                                         "UNet2DConditionModel", NULL};
    const char *scheduler_classes[SCHEDULER_MAX_KINDS + 1];
    scheduler_class_list(scheduler_classes);
    SOWER_TRY(locate(m, dir));
    SOWER_TRY(read_pipeline_class(m, dir));
    SOWER_TRY(read_vae_scale_factor(m));
    SOWER_TRY(config_file_read(m->unet_config_path, "UNet config", CONFIG_MAX_BYTES, SOWER_EMODEL,
                               &m->unet_config_text, &m->unet_config_bytes));
    SOWER_TRY(check_class(m->unet_config_text, m->unet_config_bytes, m->unet_config_path,
                          m->stable_diffusion ? sd_unet_classes : unet_classes, NULL, 0));
    SOWER_TRY(config_file_read(m->scheduler_config_path, "scheduler config", CONFIG_MAX_BYTES, SOWER_EMODEL,
                               &m->scheduler_config_text, &m->scheduler_config_bytes));
    SOWER_TRY(check_class(m->scheduler_config_text, m->scheduler_config_bytes, m->scheduler_config_path,
                          scheduler_classes, m->scheduler_class, sizeof m->scheduler_class));
    /* diffusers instantiates the class model_index.json names, configured from scheduler_config.json
     * (from_config: a hand-edited folder may name two): that class is the folder's. */
    if (m->index_scheduler_class[0])
        snprintf(m->scheduler_class, sizeof m->scheduler_class, "%s", m->index_scheduler_class);
    /* Check the scheduler config as its own class reads it, so bad values fail before any work. */
    SchedulerKind own = SCHED_DDPM; /* a folder without _class_name: diffusers' DDPMPipeline default */
    m->folder_scheduler_known =
        !m->scheduler_class[0] || scheduler_kind_of_class(m->scheduler_class, &own) == SOWER_OK;
    sower_error_clear();
    /* One sower runs is checked as its own class reads it, so bad values fail before any work (a class of several
     * entries: its config picks one); another (LMS, ...) as DDIM reads it, the usual swap. Values its class takes
     * in diffusers but sower does not run (UniPC of order 3) leave the folder to the other schedulers: running its
     * own says why (model_default_scheduler, model_scheduler). */
    int status = SOWER_OK;
    if (m->scheduler_class[0] && m->folder_scheduler_known)
        status = scheduler_kind_of_config(m->scheduler_class, m->scheduler_config_text, m->scheduler_config_bytes,
                                          m->scheduler_config_path, &own);
    if (status == SOWER_OK)
        status = scheduler_config_parse(m->scheduler_config_text, m->scheduler_config_bytes, m->scheduler_config_path,
                                        m->folder_scheduler_known ? own : SCHED_DDIM, &m->folder_scheduler);
    if (status == SOWER_EMODEL && m->folder_scheduler_known && own != SCHED_DDIM) {
        snprintf(m->folder_scheduler_problem, sizeof m->folder_scheduler_problem, "%s", sower_error_message());
        sower_error_clear();
        m->folder_scheduler_known = 0;
        status = scheduler_config_parse(m->scheduler_config_text, m->scheduler_config_bytes, m->scheduler_config_path,
                                        SCHED_DDIM, &m->folder_scheduler);
    }
    SOWER_TRY(status);
    SOWER_TRY(scheduler_check_noise_schedule(&m->folder_scheduler, m->scheduler_config_path));
    UNetConfig cfg;
    SOWER_TRY(unet_config_parse(m->unet_config_text, m->unet_config_bytes, m->unet_config_path, &cfg));
    SOWER_TRY(unet_init(&m->unet, &cfg));
    SOWER_TRY(safetensors_open(&m->weights, m->weights_path));
    SOWER_TRY(unet_bind(&m->unet, &m->weights));
    if (read_weights) {
        SOWER_TRY(digest_weights(m));
        safetensors_release_pages(&m->weights);
    }
    return SOWER_OK;
}

void model_free(Model *m)
{
    unet_free(&m->unet);
    safetensors_close(&m->weights);
    free(m->unet_config_text);
    free(m->scheduler_config_text);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

int model_check_digest(const Model *m, const unsigned char *want, const char *where)
{
    if (memcmp(want, m->weights_sha256, DIGEST_BYTES) == 0) return SOWER_OK;
    char want_hex[DIGEST_HEX_CHARS], found_hex[DIGEST_HEX_CHARS];
    digest_hex(want, want_hex);
    digest_hex(m->weights_sha256, found_hex);
    return SOWER_FAIL(SOWER_EMANIFEST, "%s: model.digest: expected sha256:%s, found sha256:%s in %s", where,
                      want_hex, found_hex, m->weights_path);
}

/* StableDiffusionPipeline.__init__ rewrites its scheduler's config (deprecation fixes): steps_offset != 1
 * becomes 1 and clip_sample true becomes false, judged on the config with the class's defaults filled in.
 * The pipeline's own scheduler (`own`: the folder's class, no Karras swap) runs the rewritten values. A
 * scheduler made from that config (from_config) drops every key the file did not give (diffusers'
 * _use_default_values), so only the rewrites of keys the file has reach it. */
static int stable_diffusion_rewrites(const Model *m, int own, SchedulerConfig *cfg)
{
    const uint64_t keys = scheduler_class(m->folder_scheduler.kind)->config_keys;
    if (own) {
        if ((keys & SCHED_KEY(KEY_STEPS_OFFSET)) && cfg->steps_offset != 1) cfg->steps_offset = 1;
        if ((keys & SCHED_KEY(KEY_CLIP_SAMPLE)) && cfg->clip_sample) cfg->clip_sample = 0;
        return SOWER_OK;
    }
    cJSON *obj;
    SOWER_TRY(json_parse_config(m->scheduler_config_text, m->scheduler_config_bytes, m->scheduler_config_path,
                                SOWER_EMODEL, &obj));
    const cJSON *offset = cJSON_GetObjectItemCaseSensitive(obj, "steps_offset");
    if (offset && cJSON_IsNumber(offset) && offset->valuedouble != 1) cfg->steps_offset = 1;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "clip_sample"))) cfg->clip_sample = 0;
    cJSON_Delete(obj);
    return SOWER_OK;
}

int model_check_text_width(const Model *m, int text_dim, const char *text_config)
{
    if (text_dim != m->unet.cfg.cross_attention_dim)
        return SOWER_FAIL(SOWER_EMODEL, "%s: the text encoder's hidden_size %d is not the UNet's cross_attention_dim %d (%s)",
                          text_config, text_dim, m->unet.cfg.cross_attention_dim, m->unet_config_path);
    return SOWER_OK;
}

int model_default_scheduler(const Model *m, const char *option, SchedulerKind *kind)
{
    if (!m->stable_diffusion) {
        *kind = SCHED_DDIM;
        return SOWER_OK;
    }
    if (m->folder_scheduler_problem[0])
        return SOWER_FAIL(SOWER_EMODEL, "%s (the folder's own %s, the default); choose another with %s (%s)",
                          m->folder_scheduler_problem, m->scheduler_class, option, scheduler_names(0));
    if (!m->folder_scheduler_known)
        return SOWER_FAIL(SOWER_EUSAGE, "%s%s: the folder's %s is not one sower runs; choose %s (%s)",
                          m->index_scheduler_class[0] ? m->dir : m->scheduler_config_path,
                          m->index_scheduler_class[0] ? "/model_index.json" : "", m->scheduler_class, option,
                          scheduler_names(0));
    *kind = m->folder_scheduler.kind;
    return SOWER_OK;
}

int model_scheduler(const Model *m, SchedulerKind kind, SigmaSchedule sigmas, RngKernel kernel, int steps, Scheduler *s)
{
    SchedulerConfig cfg;
    SOWER_TRY(scheduler_config_parse(m->scheduler_config_text, m->scheduler_config_bytes,
                                     m->scheduler_config_path, kind, &cfg));
    assert(sigmas == SIGMAS_CONFIG || scheduler_runs_key(kind, sigma_schedule_key(sigmas)));
    SOWER_TRY(scheduler_config_force_sigmas(&cfg, sigmas, m->scheduler_config_path)); /* from_config(config, use_X_sigmas=True) */
    if (m->stable_diffusion) {
        const int own = m->folder_scheduler_known && kind == m->folder_scheduler.kind && sigmas == SIGMAS_CONFIG;
        SOWER_TRY(stable_diffusion_rewrites(m, own, &cfg));
    }
    cfg.torch_kernel = kernel;
    SOWER_TRY(scheduler_init(s, &cfg, steps));
    return SOWER_OK;
}
