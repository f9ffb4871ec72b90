/* cmd_convert.c: `sower convert CHECKPOINT.safetensors (--config DIR | --tokenizer DIR) -o OUT_DIR`: a single-file Stable
 * Diffusion 1.x/2.x checkpoint (as AUTOMATIC1111 and ComfyUI users have them) into the diffusers
 * folder every other command reads. Names are mapped as diffusers' single-file loader maps them
 * (model/ldm_names.h); every tensor's bytes are copied as stored (F16 stays F16), so a render from
 * the folder is the render diffusers makes from the checkpoint. The configs and the tokenizer come
 * from DIR, a diffusers folder of the same architecture (its weights are not read), as
 * diffusers' from_single_file(..., config=DIR) takes them; or, with --tokenizer DIR (a CLIPTokenizer's
 * files), the configs are inferred from the checkpoint's tensors (model/ldm_config.h), as diffusers'
 * from_single_file does without config= (it fetches SD 1.5's or SD 2.1's, which sower cannot).
 *
 * Written as OUT_DIR.partial (marked by sower-convert.json) and renamed when whole and loaded
 * back; an existing OUT_DIR is never replaced, an interrupted OUT_DIR.partial is made again. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "commands.h"
#include "config_file.h"
#include "json_keys.h"
#include "clip_tokenizer.h"
#include "ldm_config.h"
#include "ldm_names.h"
#include "model.h"
#include "outfile.h"
#include "output_lock.h"
#include "prompt_encoder.h"
#include "safetensors.h"
#include "safetensors_write.h"
#include "vae.h"

static const char MARKER[] = "sower-convert.json";

/* dir/name into out (size bytes); SOWER_EPATH when it does not fit. */
static int path_join(char *out, size_t size, const char *dir, const char *name)
{
    const int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) return SOWER_FAIL(SOWER_EPATH, "path '%s/%s' is too long", dir, name);
    return SOWER_OK;
}

typedef struct {
    const char *checkpoint, *config_dir, *tokenizer_dir, *out_dir;
    int dry_run;         /* --dry-run: check and show, write nothing */
    LdmConfigs inferred; /* --tokenizer: the configs from the tensors */
} ConvertOptions;

enum { OPT_CONFIG, OPT_TOKENIZER, OPT_OUT, OPT_DRY_RUN, N_CONVERT_OPTS };
static const CliOption convert_options[N_CONVERT_OPTS] = {
    {"--config", NULL, 1}, {"--tokenizer", NULL, 1}, {"-o", "--output", 1}, {"--dry-run", NULL, 0}};

static int on_option(void *ctx, int index, const char *v)
{
    ConvertOptions *o = ctx;
    if (index == OPT_CONFIG) o->config_dir = v;
    if (index == OPT_TOKENIZER) o->tokenizer_dir = v;
    if (index == OPT_OUT) o->out_dir = v;
    if (index == OPT_DRY_RUN) o->dry_run = 1;
    return SOWER_OK;
}

static int on_positional(void *ctx, const char *arg)
{
    ConvertOptions *o = ctx;
    if (o->checkpoint) return SOWER_FAIL(SOWER_EUSAGE, "convert: one checkpoint at a time ('%s' and '%s')", o->checkpoint, arg);
    o->checkpoint = arg;
    return SOWER_OK;
}

/* DIR/SUB/config.json, parsed (path gets its name); SOWER_EMODEL naming it when unreadable or not JSON. */
static int read_config(const char *dir, const char *sub, char *path, size_t size, cJSON **json)
{
    snprintf(path, size, "%s/%s/config.json", dir, sub);
    char *text = NULL;
    size_t bytes = 0;
    SOWER_TRY(config_file_read(path, "config", 1 << 20, SOWER_EMODEL, &text, &bytes));
    int ran_out;
    *json = json_parse(text, bytes, NULL, &ran_out);
    free(text);
    if (ran_out) return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", path);
    if (!*json) return SOWER_FAIL(SOWER_EMODEL, "%s: not JSON", path);
    return SOWER_OK;
}

/* One integer key of DIR/SUB/config.json (or the length of a list key, with list set). */
static int config_int(const char *dir, const char *sub, const char *key, int list, int *out)
{
    char path[4200];
    cJSON *json;
    SOWER_TRY(read_config(dir, sub, path, sizeof path, &json));
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    int status = SOWER_OK;
    if (!item)
        status = SOWER_FAIL(SOWER_EMODEL, "%s: no key '%s'", path, key);
    else if (list)
        status = cJSON_IsArray(item) ? (*out = cJSON_GetArraySize(item), SOWER_OK)
                                     : SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected a list", path, key);
    else
        status = json_key_int(json, path, key, 1, 1000, out, 0, NULL);
    cJSON_Delete(json);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* The pieces of the output: per part, the tensors to write (views of the checkpoint's bytes). */
typedef struct {
    StWriteTensor *tensors[LDM_PARTS]; /* (checkpoint tensors * 3,) each */
    char (*names)[192];                /* (same,) storage for their names */
    int n[LDM_PARTS];
    int ignored;
    char ignored_example[192];
    const char *family;
} Plan;

/* The view of t a target names: whole, squeezed (C, C, 1, 1) -> (C, C), or a third of its rows. */
static int view_of(const StTensor *t, const LdmTarget *target, StWriteTensor *w, const char *ckpt)
{
    w->dtype = t->file_dtype, w->ndim = t->ndim, w->bytes = t->stored, w->n_bytes = t->stored_bytes;
    memcpy(w->shape, t->shape, sizeof w->shape);
    if (t->file_dtype == ST_INTEGER)
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s' is of an integer dtype, where weights are floats", ckpt, t->name);
    if (target->view == LDM_SQUEEZE) {
        if (t->ndim == 2) return SOWER_OK; /* already linear */
        if (t->ndim != 4 || t->shape[2] != 1 || t->shape[3] != 1)
            return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': expected a 1x1 convolution's (C, C, 1, 1) weight", ckpt,
                              t->name);
        w->ndim = 2;
        return SOWER_OK;
    }
    if (target->view == LDM_WHOLE) return SOWER_OK;
    if (t->ndim < 1 || t->ndim > 2 || t->shape[0] % 3)
        return SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s': a fused in_proj must be (3 D[, D]), found %d dims", ckpt,
                          t->name, t->ndim);
    const int third = target->view - LDM_THIRD_Q;
    w->shape[0] = t->shape[0] / 3;
    w->n_bytes = t->stored_bytes / 3;
    w->bytes = t->stored + w->n_bytes * (uint64_t)third;
    return SOWER_OK;
}

static int plan_tensors(const StFile *ckpt, const LdmLayout *layout, Plan *p)
{
    const size_t cap = (size_t)ckpt->n_tensors * 3 + 1;
    p->names = calloc(cap, sizeof *p->names);
    for (int k = 0; k < LDM_PARTS; k++)
        p->tensors[k] = calloc(cap, sizeof *p->tensors[k]);
    if (!p->names || !p->tensors[0] || !p->tensors[1] || !p->tensors[2]) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    size_t used = 0;
    for (int i = 0; i < ckpt->n_tensors; i++) {
        const StTensor *t = &ckpt->tensors[i];
        LdmTarget targets[3];
        int n = 0;
        const LdmResult r = ldm_map_name(layout, t->name, targets, &n, &p->family);
        if (r == LDM_UNKNOWN)
            return SOWER_FAIL(SOWER_EMODEL,
                              "%s: tensor '%s' is none that a Stable Diffusion 1.x/2.x checkpoint's UNet "
                              "(model.diffusion_model.*), VAE (first_stage_model.*) or text encoder "
                              "(cond_stage_model.*) uses: another architecture (SDXL, a ControlNet), or a leftover "
                              "(a merged LoRA's keys, a loss's weights) sower does not guess past",
                              ckpt->path, t->name);
        if (r == LDM_IGNORED) {
            if (!p->ignored++) snprintf(p->ignored_example, sizeof p->ignored_example, "%s", t->name);
            continue;
        }
        for (int k = 0; k < n; k++) {
            StWriteTensor *w = &p->tensors[targets[k].part][p->n[targets[k].part]++];
            SOWER_TRY(view_of(t, &targets[k], w, ckpt->path));
            memcpy(p->names[used], targets[k].name, sizeof p->names[used]);
            w->name = p->names[used++];
        }
    }
    static const char *const what[LDM_PARTS] = {"UNet (model.diffusion_model.*)", "VAE (first_stage_model.*)",
                                                "text encoder (cond_stage_model.*)"};
    for (int k = 0; k < LDM_PARTS; k++)
        if (!p->n[k])
            return SOWER_FAIL(SOWER_EMODEL, "%s: no %s tensors: not a whole Stable Diffusion checkpoint", ckpt->path,
                              what[k]);
    return SOWER_OK;
}

static void plan_free(Plan *p)
{
    for (int k = 0; k < LDM_PARTS; k++)
        free(p->tensors[k]);
    free(p->names);
}

/* --tokenizer DIR: its bos, eos and pad ids (the text encoder's config names them). */
static int tokenizer_ids(const char *dir, LdmTokenIds *ids)
{
    ClipTokenizer *t = NULL;
    SOWER_TRY(clip_tokenizer_load(&t, dir));
    int32_t bos, eos, pad;
    clip_tokenizer_special_ids(t, &bos, &eos, &pad);
    clip_tokenizer_free(t);
    ids->bos = bos, ids->eos = eos, ids->pad = pad;
    return SOWER_OK;
}

/* SD 1.x's tokenizer pads with <|endoftext|> (its eos), SD 2.x's with "!": another family's tokenizer
 * would change every prompt's embedding past its end. */
static int check_tokenizer_family(const LdmTokenIds *ids, const char *family, const char *dir, const char *ckpt)
{
    const int sd2 = strcmp(family, "SD 2.x") == 0, pads_with_eos = ids->pad == ids->eos;
    if (sd2 == pads_with_eos)
        return SOWER_FAIL(SOWER_EMODEL, "%s is an %s checkpoint, but the tokenizer in %s pads with %s, as %s's: give "
                                        "--tokenizer the tokenizer of the checkpoint's family",
                          ckpt, family, dir, pads_with_eos ? "<|endoftext|>" : "another token",
                          pads_with_eos ? "SD 1.x" : "SD 2.x (\"!\")");
    return SOWER_OK;
}

/* The checkpoint's text encoder must be the family the config folder describes: SD 1.x's CLIP runs
 * quick_gelu, SD 2.x's OpenCLIP gelu. */
static int check_family(const char *config_dir, const char *family, const char *ckpt)
{
    char path[4200];
    cJSON *json;
    SOWER_TRY(read_config(config_dir, "text_encoder", path, sizeof path, &json));
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(json, "hidden_act");
    const int gelu = cJSON_IsString(act) && strcmp(act->valuestring, "gelu") == 0;
    cJSON_Delete(json);
    const int sd2 = strcmp(family, "SD 2.x") == 0;
    if (gelu != sd2)
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s is an %s checkpoint (its text encoder is %s), but %s describes an %s text encoder "
                          "(hidden_act %s): give --config a folder of the checkpoint's own architecture",
                          ckpt, family, sd2 ? "OpenCLIP" : "CLIP ViT-L", path, gelu ? "SD 2.x" : "SD 1.x",
                          gelu ? "gelu" : "quick_gelu");
    return SOWER_OK;
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in) return SOWER_FAIL(SOWER_EMODEL, "cannot read '%s': %s", from, strerror(errno));
    FILE *out = fopen(to, "wbx");
    if (!out) {
        fclose(in);
        return SOWER_FAIL(SOWER_EIO, "cannot create '%s': %s", to, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    int failed = 0;
    while (!failed && (n = fread(buf, 1, sizeof buf, in)) > 0)
        failed = fwrite(buf, 1, n, out) != n;
    failed = failed || ferror(in);
    const int err = errno;
    fclose(in);
    failed = fclose(out) != 0 || failed;
    if (failed) return SOWER_FAIL(SOWER_EIO, "cannot write '%s': %s", to, strerror(err ? err : errno));
    return SOWER_OK;
}

static const char *const CONFIG_FILES[] = {"model_index.json",        "scheduler/scheduler_config.json",
                                           "unet/config.json",        "vae/config.json",
                                           "text_encoder/config.json", NULL};

/* The tokenizer folder's files (not its subfolders) into OUT/tokenizer, byte for byte. */
static int copy_tokenizer(const char *tokenizer_from, const char *out)
{
    char from[4200], to[4200], tokenizer_to[4200];
    SOWER_TRY(path_join(tokenizer_to, sizeof tokenizer_to, out, "tokenizer"));
    DIR *d = opendir(tokenizer_from);
    if (!d)
        return SOWER_FAIL(SOWER_EMODEL, "cannot read '%s' (the tokenizer's files): %s", tokenizer_from, strerror(errno));
    int status = SOWER_OK;
    for (struct dirent *e; status == SOWER_OK && (e = readdir(d));) {
        struct stat st;
        status = path_join(from, sizeof from, tokenizer_from, e->d_name);
        if (status != SOWER_OK || stat(from, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        status = path_join(to, sizeof to, tokenizer_to, e->d_name);
        if (status == SOWER_OK) status = copy_file(from, to);
    }
    closedir(d);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* OUT's subfolders, then the configs: DIR's byte for byte (config_dir), or the inferred ones. */
static int write_configs(const ConvertOptions *o, const char *out)
{
    static const char *const dirs[] = {"scheduler", "unet", "vae", "text_encoder", "tokenizer", NULL};
    const char *const inferred[] = {o->inferred.model_index, o->inferred.scheduler, o->inferred.unet, o->inferred.vae,
                                    o->inferred.text_encoder};
    char from[4200], to[4200];
    for (int i = 0; dirs[i]; i++) {
        SOWER_TRY(path_join(to, sizeof to, out, dirs[i]));
        SOWER_TRY(make_dirs(to));
    }
    for (int i = 0; CONFIG_FILES[i]; i++) {
        SOWER_TRY(path_join(to, sizeof to, out, CONFIG_FILES[i]));
        if (o->config_dir) {
            SOWER_TRY(path_join(from, sizeof from, o->config_dir, CONFIG_FILES[i]));
            SOWER_TRY(copy_file(from, to));
            continue;
        }
        FILE *f = fopen(to, "wx");
        const size_t n = strlen(inferred[i]);
        const int ok = f && fwrite(inferred[i], 1, n, f) == n && fputc('\n', f) != EOF;
        if (!f || fclose(f) != 0 || !ok) return SOWER_FAIL(SOWER_EIO, "cannot write '%s': %s", to, strerror(errno));
    }
    if (o->config_dir) {
        SOWER_TRY(path_join(from, sizeof from, o->config_dir, "tokenizer"));
        return copy_tokenizer(from, out);
    }
    return copy_tokenizer(o->tokenizer_dir, out);
}

/* Every part loads and binds from the new folder: a config that does not fit the checkpoint's
 * tensors is refused here, naming the tensor, not at the first render. */
static int load_back(const char *dir)
{
    Model m;
    int status = model_load(&m, dir);
    model_free(&m);
    SOWER_TRY(status);
    Vae v;
    status = vae_load(&v, dir);
    vae_free(&v);
    SOWER_TRY(status);
    PromptEncoder pe;
    status = prompt_encoder_load(&pe, dir);
    prompt_encoder_free(&pe);
    SOWER_TRY(status);
    return SOWER_OK;
}

/* OUT.partial: ours to make again when an interrupted convert left it (its marker says so). */
static int clear_partial(const char *partial)
{
    struct stat st;
    if (lstat(partial, &st) != 0) return SOWER_OK;
    char marker[4200];
    snprintf(marker, sizeof marker, "%s/%s", partial, MARKER);
    if (!S_ISDIR(st.st_mode) || access(marker, F_OK) != 0)
        return SOWER_FAIL(SOWER_EPATH, "'%s' exists and is not an interrupted `sower convert`: not touching it", partial);
    static const char *const files[] = {
        "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",           "model_index.json",
        "scheduler/scheduler_config.json",          "unet/config.json",
        "vae/config.json",                          "text_encoder/config.json",
        NULL};
    char path[4300];
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", partial, files[i]);
        remove(path);
    }
    snprintf(path, sizeof path, "%s/tokenizer", partial);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        char file[4600];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        if (e->d_name[0] != '.') remove(file);
    }
    if (d) closedir(d);
    static const char *const dirs[] = {"tokenizer", "scheduler", "unet", "vae", "text_encoder", NULL};
    for (int i = 0; dirs[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", partial, dirs[i]);
        rmdir(path);
    }
    remove(marker);
    if (rmdir(partial) != 0)
        return SOWER_FAIL(SOWER_EPATH, "'%s' (an interrupted convert) holds files sower did not write: not touching it",
                          partial);
    return SOWER_OK;
}

/* -o OUT_DIR as the folder to make (out: 3801 bytes), trailing slashes dropped ("out/" is "out"); SOWER_EPATH
 * for a path that cannot become a new folder's name (empty, "/", ending in "." or ".."), or one that is
 * another run's working file or ends like one: refused before anything is converted. */
static int output_folder_name(const char *given, char *out)
{
    size_t n = strlen(given);
    while (n > 1 && given[n - 1] == '/') n--;
    if (n == 0) return SOWER_FAIL(SOWER_EPATH, "-o '': the path is empty");
    if (n > 3800) return SOWER_FAIL(SOWER_EPATH, "-o '%s': the path is too long", given);
    memcpy(out, given, n), out[n] = '\0';
    const char *last = strrchr(out, '/');
    last = last ? last + 1 : out;
    if (!strcmp(last, "") || !strcmp(last, ".") || !strcmp(last, ".."))
        return SOWER_FAIL(SOWER_EPATH, "-o '%s': that is no new folder's name (it is '/' or ends in '.' or '..'): "
                                       "name the new folder to write", given);
    return output_lock_check_output_name(out, "-o");
}

static int write_folder(const StFile *ckpt, const ConvertOptions *o, Plan *p, const char *partial)
{
    SOWER_TRY(make_dirs(partial));
    char path[4200];
    SOWER_TRY(path_join(path, sizeof path, partial, MARKER));
    FILE *marker = fopen(path, "wx");
    if (!marker) return SOWER_FAIL(SOWER_EIO, "cannot create '%s': %s", path, strerror(errno));
    cJSON *facts = cJSON_CreateObject();
    cJSON_AddStringToObject(facts, "converted_from", ckpt->path);
    cJSON_AddStringToObject(facts, "config", o->config_dir ? o->config_dir : "inferred from the tensors");
    if (o->tokenizer_dir) cJSON_AddStringToObject(facts, "tokenizer", o->tokenizer_dir);
    cJSON_AddStringToObject(facts, "family", p->family);
    char *text = cJSON_PrintUnformatted(facts);
    cJSON_Delete(facts);
    const int ok = text && fprintf(marker, "%s\n", text) > 0;
    cJSON_free(text);
    if (fclose(marker) != 0 || !ok) return SOWER_FAIL(SOWER_EIO, "cannot write '%s': %s", path, strerror(errno));
    SOWER_TRY(write_configs(o, partial));
    static const char *const files[LDM_PARTS] = {"unet/diffusion_pytorch_model.safetensors",
                                                 "vae/diffusion_pytorch_model.safetensors",
                                                 "text_encoder/model.safetensors"};
    for (int k = 0; k < LDM_PARTS; k++) {
        SOWER_TRY(path_join(path, sizeof path, partial, files[k]));
        SOWER_TRY(safetensors_write(path, p->tensors[k], p->n[k]));
    }
    return SOWER_OK;
}

/* --dry-run: what the conversion would write. */
static void show_plan(const ConvertOptions *o, const Plan *p)
{
    printf("sower convert --dry-run: %s (%s): UNet %d, VAE %d, text encoder %d tensors; %d ignored\n", o->checkpoint,
           p->family, p->n[LDM_UNET], p->n[LDM_VAE], p->n[LDM_TEXT], p->ignored);
    if (o->config_dir) {
        printf("configs and tokenizer: %s\n", o->config_dir);
        return;
    }
    const char *const texts[] = {o->inferred.model_index, o->inferred.scheduler, o->inferred.unet, o->inferred.vae,
                                 o->inferred.text_encoder};
    for (int i = 0; CONFIG_FILES[i]; i++) printf("== %s\n%s\n", CONFIG_FILES[i], texts[i]);
}

int cmd_convert(int argc, char **argv)
{
    ConvertOptions o = {0};
    int help = 0;
    const CliParser parser = {"convert", convert_options, N_CONVERT_OPTS, on_option, on_positional, &o};
    SOWER_TRY(cli_parse(&parser, argc, argv, &help));
    static const char usage[] =
        "usage: sower convert CHECKPOINT.safetensors (--config DIR | --tokenizer DIR) (-o OUT_DIR | --dry-run)";
    if (help) {
        printf("%s\n\nA single-file Stable Diffusion 1.x/2.x checkpoint (the original LDM names, as AUTOMATIC1111 and\n"
               "ComfyUI load them) into a diffusers folder: names mapped as diffusers' single-file loader maps\n"
               "them, every tensor's bytes kept as stored.\n"
               "--config DIR: a diffusers folder of the same architecture (its model_index.json, configs and\n"
               "tokenizer are copied; its weights are not read), as from_single_file(..., config=DIR).\n"
               "--tokenizer DIR: the configs are inferred from the tensors (widths, depths, levels read from\n"
               "them; heads, norm groups, activation, scheduler and sample size the family's: SD 1.5's for SD 1.x,\n"
               "SD 2.1's, v-prediction at 768, for SD 2.x, as diffusers infers them); DIR holds the CLIPTokenizer\n"
               "files (vocab.json, merges.txt, ...: SD 1.x pads with <|endoftext|>, SD 2.x with \"!\"). SD 2.x's\n"
               "text encoder runs OpenCLIP's blocks but its last (23 of ViT-H/14's 24; a file of exactly 23 such\n"
               "blocks, as written from a diffusers folder, keeps all 23). Inpainting and depth UNets are refused.\n"
               "--dry-run: the name mapping and the configs, then the tensor counts and the inferred configs on\n"
               "standard output; nothing is written. Each tensor's shape is checked against the configs when the\n"
               "folder is written (it is loaded back before it is renamed into place), not by --dry-run.\n",
               usage);
        return SOWER_OK;
    }
    if (!o.checkpoint || !o.out_dir == !o.dry_run || !o.config_dir == !o.tokenizer_dir)
        return SOWER_FAIL(SOWER_EUSAGE, "%s", usage);
    struct stat st;
    char out_dir[3801]; /* o.out_dir, normalised */
    if (o.out_dir) {
        SOWER_TRY(output_folder_name(o.out_dir, out_dir));
        o.out_dir = out_dir;
    }
    if (o.out_dir && lstat(o.out_dir, &st) == 0)
        return SOWER_FAIL(SOWER_EPATH, "'%s' exists: not replacing it (choose another -o, or remove it)", o.out_dir);
    LdmLayout layout = {0};
    if (o.config_dir) {
        SOWER_TRY(config_int(o.config_dir, "unet", "layers_per_block", 0, &layout.unet_layers_per_block));
        SOWER_TRY(config_int(o.config_dir, "vae", "up_block_types", 1, &layout.vae_up_blocks));
        SOWER_TRY(config_int(o.config_dir, "text_encoder", "num_hidden_layers", 0, &layout.text_layers));
    }
    LdmTokenIds ids = {0};
    if (o.tokenizer_dir) SOWER_TRY(tokenizer_ids(o.tokenizer_dir, &ids));
    StFile ckpt;
    int status = safetensors_open_stored(&ckpt, o.checkpoint);
    if (status == SOWER_OK && o.tokenizer_dir) status = ldm_infer_configs(&ckpt, &ids, &o.inferred);
    if (status == SOWER_OK && o.tokenizer_dir) {
        layout = o.inferred.layout;
        status = check_tokenizer_family(&ids, o.inferred.family, o.tokenizer_dir, o.checkpoint);
    }
    Plan p = {0};
    if (status == SOWER_OK) status = plan_tensors(&ckpt, &layout, &p);
    if (status == SOWER_OK && o.config_dir) status = check_family(o.config_dir, p.family, o.checkpoint);
    if (o.dry_run) {
        if (status == SOWER_OK) show_plan(&o, &p);
        plan_free(&p);
        ldm_configs_free(&o.inferred);
        safetensors_close(&ckpt);
        return status;
    }
    /* OUT_DIR.lock: two converts into one folder would clear and rename each other's OUT_DIR.partial. */
    OutputLock lock = {0};
    char partial[4096], command[8000];
    snprintf(partial, sizeof partial, "%s.partial", o.out_dir);
    snprintf(command, sizeof command, "sower convert %.3800s -o %s", o.checkpoint, o.out_dir);
    if (status == SOWER_OK) status = output_lock_take(&lock, o.out_dir, command);
    if (status == SOWER_OK && lstat(o.out_dir, &st) == 0) /* made by a convert that finished meanwhile */
        status = SOWER_FAIL(SOWER_EPATH, "'%s' exists: not replacing it (choose another -o, or remove it)", o.out_dir);
    if (status == SOWER_OK) status = clear_partial(partial);
    const int writing = status == SOWER_OK;
    if (status == SOWER_OK) status = write_folder(&ckpt, &o, &p, partial);
    if (status == SOWER_OK && (status = load_back(partial)) != SOWER_OK) /* its files are removed below: name the checkpoint */
        status = SOWER_FAIL(status, "%s: the folder converted from it does not load back, so nothing is kept: %s",
                            o.checkpoint, sower_error_message());
    if (status == SOWER_OK && rename(partial, o.out_dir) != 0)
        status = SOWER_FAIL(SOWER_EIO, "cannot rename '%s' to '%s': %s", partial, o.out_dir, strerror(errno));
    if (status != SOWER_OK && writing) { /* what this run wrote goes; the first failure is the one reported */
        char *first = strdup(sower_error_message()); /* clear_partial may record an error of its own */
        if (clear_partial(partial) != SOWER_OK) sower_error_clear();
        status = first ? SOWER_FAIL(status, "%s", first) : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        free(first);
    }
    output_lock_release(&lock);
    if (status == SOWER_OK)
        printf("sower convert: %s (%s) -> %s: UNet %d, VAE %d, text encoder %d tensors; %d ignored%s%s%s\n", o.checkpoint,
               p.family, o.out_dir, p.n[LDM_UNET], p.n[LDM_VAE], p.n[LDM_TEXT], p.ignored, p.ignored ? " (" : "",
               p.ignored_example, p.ignored > 1 ? ", ...)" : p.ignored ? ")" : "");
    if (status == SOWER_OK && o.tokenizer_dir)
        printf("  configs inferred from the tensors: %s (%s)\n", p.family,
               strcmp(p.family, "SD 2.x") == 0 ? "SD 2.1's: v-prediction, 768x768; a 512x512 epsilon base model "
                                                 "needs --config with its own scheduler and sample sizes"
                                               : "SD 1.5's: PNDM, 512x512");
    plan_free(&p);
    ldm_configs_free(&o.inferred);
    safetensors_close(&ckpt);
    SOWER_TRY(status);
    return SOWER_OK;
}
