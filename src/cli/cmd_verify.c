/* cmd_verify.c: `sower verify OUT.h5 [--sample N | --all] [--model DIR]`: re-check a finished file
 * without trusting it: the model on disk against the recorded weight digest and configs (a changed
 * model is refused: its renders could not be compared), every dataset's shape and type (before any
 * buffer is sized from the file), the attributes the stored manifest determines, the completion
 * record, every row's digest against its bytes and the seeds against the manifest (a block of rows
 * at a time), and a bitwise re-render of sampled (or all) rows on the file's backend, only where
 * this machine's backend identity equals the file's (bits compare only between equal identities).
 * Exit 0 all good, 1 any mismatch or altered attribute, 2 not checkable (bad file, changed model,
 * another backend identity here). */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_open.h"
#include "cli.h"
#include "commands.h"
#include "cpu_load.h"
#include "digest.h"
#include "gemm.h"
#include "h5_layout.h"
#include "h5read.h"
#include "manifest.h"
#include "model.h"
#include "pipeline.h"
#include "prompt_table.h"
#include "row_images.h"
#include "provenance.h"

typedef struct {
    const char *path, *model_dir;
    long sample;  /* -1: all rows; 0: the job's verify count */
    long threads; /* 0: the free CPUs (cpu_load.h) */
} VerifyOptions;

enum { VERIFY_BLOCK_BYTES = 64 << 20 }; /* latents read at a time for the digest pass */

/* An attribute of the file's root group must read `want`; `what` says what a difference means. */
static int check_attribute(const OutputReader *in, const char *key, const char *want, int status_if_not,
                           const char *what)
{
    char *found = h5read_attr(in, key);
    int same = found && strcmp(found, want) == 0;
    free(found);
    if (!found) /* nothing to disagree: the record is gone, which is damage (exit 2), not a differing run */
        return SOWER_FAIL(SOWER_EINPUT, "%s: attribute '%s' is missing (or not a string): a damaged file", in->path, key);
    if (!same) return SOWER_FAIL(status_if_not, "%s: attribute '%s' %s", in->path, key, what);
    return SOWER_OK;
}

/* The model on disk must be the one the file was made with: weights and both configs. */
static int check_model(const OutputReader *in, const char *dir, const Model *model)
{
    char hex[DIGEST_HEX_CHARS];
    digest_hex(model->weights_sha256, hex);
    char *recorded = h5read_attr(in, LAYOUT_ATTR_WEIGHTS_SHA256);
    if (!recorded)
        return SOWER_FAIL(SOWER_EINPUT, "%s: attribute '%s' is missing (or not a string): a damaged file", in->path,
                          LAYOUT_ATTR_WEIGHTS_SHA256);
    int status = strcmp(hex, recorded) == 0
                     ? SOWER_OK
                     : SOWER_FAIL(SOWER_EINPUT,
                                  "%s: the model at %s changed since the file was made (weights sha256 "
                                  "%s, recorded %s): cannot re-render to compare",
                                  in->path, dir, hex, recorded);
    free(recorded);
    SOWER_TRY(status);
    SOWER_TRY(
        check_attribute(in, LAYOUT_ATTR_MODEL_CONFIG, model->unet_config_text, SOWER_EINPUT,
                        "differs from the model's config.json: the model changed since the file was made"));
    SOWER_TRY(check_attribute(
        in, LAYOUT_ATTR_SCHEDULER_CONFIG, model->scheduler_config_text, SOWER_EINPUT,
        "differs from the model's scheduler_config.json: the model changed since the file was made"));
    return SOWER_OK;
}

/* The text side and the VAE on disk must be the ones the file's job key records (their digests are in it):
 * another one is a changed model (exit 2), not an altered file. */
static int check_model_parts(const OutputReader *in, const char *dir, const Model *model)
{
    char *job_key = h5read_attr(in, LAYOUT_ATTR_JOB_KEY), *job_sha256 = h5read_attr(in, LAYOUT_ATTR_JOB_SHA256);
    /* the digests are read from the key only once it is whole and the stored manifest's: an edited digest is an
     * altered file (exit 1), not a changed model. (A missing key or job_sha256: check_attributes names it.) */
    if (job_key && job_sha256 && provenance_check_key(&in->job, job_key, job_sha256, in->path) != SOWER_OK) {
        free(job_key), free(job_sha256);
        return SOWER_FAIL(SOWER_EMISMATCH, "%s", sower_error_message());
    }
    free(job_sha256);
    const struct {
        const char *field, *what;
        int known;
        const unsigned char *digest; /* (DIGEST_BYTES,) of the model on disk */
    } parts[] = {{"\ntext_side_sha256: ", "text encoder and tokenizer", model->text_side_known, model->text_side_sha256},
                 {"vae_sha256=", "VAE", model->vae_known, model->vae_sha256}};
    int status = SOWER_OK;
    for (size_t i = 0; i < sizeof parts / sizeof *parts && status == SOWER_OK; i++) {
        char recorded[DIGEST_HEX_CHARS], hex[DIGEST_HEX_CHARS];
        if (!parts[i].known || !provenance_key_digest(job_key, parts[i].field, recorded)) continue; /* the key check names it */
        digest_hex(parts[i].digest, hex);
        if (strcmp(hex, recorded) != 0)
            status = SOWER_FAIL(SOWER_EINPUT, "%s: the %s at %s changed since the file was made (sha256 %s, recorded "
                                              "%s): cannot re-render to compare", in->path, parts[i].what, dir, hex,
                                recorded);
    }
    free(job_key);
    return status;
}

/* What the manifest stored in the file determines must be what the file says it is: an attribute
 * that disagrees was altered after the run (or by another program), so the file proves nothing.
 * (format and format_version were checked when the file was opened.) */
static int check_attributes(const OutputReader *in, const Model *model)
{
    Provenance p;
    SOWER_TRY(provenance_of(&in->job, model, &p));
    static const char altered[] = "disagrees with the manifest stored in the file (the file was altered)";
    SOWER_TRY(check_attribute(in, LAYOUT_ATTR_MANIFEST_SHA256, p.manifest_sha256, SOWER_EMISMATCH, altered));
    char *pipeline = h5read_attr(in, LAYOUT_ATTR_PIPELINE); /* JSON; "scheduler=ddim ..." in older files */
    const int legacy_pipeline = pipeline && pipeline[0] != '{';
    free(pipeline);
    SOWER_TRY(check_attribute(in, LAYOUT_ATTR_PIPELINE, legacy_pipeline ? p.pipeline : p.pipeline_json,
                              SOWER_EMISMATCH, altered));
    SOWER_TRY(check_attribute(in, LAYOUT_ATTR_JOB_KEY, p.job_key, SOWER_EMISMATCH, altered));
    SOWER_TRY(check_attribute(in, LAYOUT_ATTR_JOB_SHA256, p.job_sha256, SOWER_EMISMATCH, altered));
    SOWER_TRY(check_attribute(in, LAYOUT_ATTR_GENERATOR, p.generator, SOWER_EMISMATCH, altered));
    /* What says which program made the rows: nothing to compare them with here, but a file without them no
     * longer says what produced it. */
    static const char *const made_by[] = {LAYOUT_ATTR_SOWER_VERSION, LAYOUT_ATTR_SOURCE_REVISION,
                                          LAYOUT_ATTR_BACKEND_IDENTITY, LAYOUT_ATTR_DETERMINISM};
    for (size_t i = 0; i < sizeof made_by / sizeof made_by[0]; i++) {
        char *value = h5read_attr(in, made_by[i]);
        const int present = value && value[0];
        free(value);
        if (!present)
            return SOWER_FAIL(SOWER_EINPUT, "%s: attribute '%s' is missing (or not a string): a damaged file",
                              in->path, made_by[i]);
    }
    return SOWER_OK;
}

/* Stable Diffusion: the prompt table of the file's job and the text side's digest (the job key holds it);
 * *h, *w become the latent size: pipeline.height/width over the VAE's factor, when given. */
static int load_text_side(const Job *job, const char *dir, Model *model, PromptTable *text, int *h, int *w)
{
    if (!model->stable_diffusion)
        return SOWER_FAIL(SOWER_EINPUT, "the file's job has prompts, but '%s' is not a StableDiffusionPipeline folder",
                          dir);
    SOWER_TRY(prompt_table_init(text, dir, (const char *const *)job->prompts,
                                (const char *const *)job->negative_prompts, job->n_prompts, job->clip_skip,
                                job->guidance > 1.0));
    SOWER_TRY(prompt_encoder_digest(&text->encoder, model->text_side_sha256));
    model->text_side_known = 1;
    if (job->height) {
        const int f = model->vae_scale_factor;
        *h = job->height / f, *w = job->width / f;
    }
    return SOWER_OK;
}

/* Prints what the run's own verification (/verify) found; a finished file without one is damaged.
 * *differed: the rows the run's own verification found differing (a file that says its run failed
 * verification fails it here too, whichever rows this check re-renders). */
static int report_run_verification(const OutputReader *in, uint64_t *differed_out)
{
    VerifyTable t;
    int present = 0;
    *differed_out = 0;
    SOWER_TRY(h5read_verify_table(in, &t, &present));
    if (!present)
        return SOWER_FAIL(SOWER_EINPUT, "%s has no /%s, " LAYOUT_VERIFY_MISSING, in->path, LAYOUT_VERIFY);
    uint64_t differed = 0;
    int status = SOWER_OK;
    for (uint64_t i = 0; i < t.n && status == SOWER_OK; i++) { /* each entry a row of this file, with its seed */
        if (t.rows[i] < in->lo || t.rows[i] >= in->hi)
            status = SOWER_FAIL(SOWER_EINPUT, "%s: /%s names row %llu, not a row of this file (rows %llu-%llu): a "
                                              "damaged file", in->path, LAYOUT_VERIFY, (unsigned long long)t.rows[i],
                                (unsigned long long)in->lo, (unsigned long long)(in->hi - 1));
        else if (t.seeds[i] != job_seed_at(&in->job, t.rows[i]))
            status = SOWER_FAIL(SOWER_EINPUT, "%s: /%s gives row %llu the seed %llu, the job's is %llu: a damaged file",
                                in->path, LAYOUT_VERIFY, (unsigned long long)t.rows[i], (unsigned long long)t.seeds[i],
                                (unsigned long long)job_seed_at(&in->job, t.rows[i]));
        differed += t.match[i] != 1;
    }
    if (status != SOWER_OK) {
        verify_table_free(&t);
        return status;
    }
    *differed_out = differed;
    printf("%s: the run's own verification (/%s): %llu row%s re-rendered, %llu differed\n", in->path,
           LAYOUT_VERIFY, (unsigned long long)t.n, t.n == 1 ? "" : "s", (unsigned long long)differed);
    verify_table_free(&t);
    return SOWER_OK;
}

enum { VERIFY_ALL, VERIFY_SAMPLE, VERIFY_MODEL, VERIFY_THREADS, N_VERIFY_OPTS };
static const CliOption verify_options[N_VERIFY_OPTS] = {
    [VERIFY_ALL] = {"--all", NULL, 0}, [VERIFY_SAMPLE] = {"--sample", NULL, 1}, [VERIFY_MODEL] = {"--model", NULL, 1},
    [VERIFY_THREADS] = {"--threads", NULL, 1}};

static int on_verify_option(void *ctx, int which, const char *v)
{
    VerifyOptions *o = ctx;
    if (which == VERIFY_ALL || which == VERIFY_SAMPLE) {
        if (o->sample) /* the later would silently win: say which rows are meant */
            return SOWER_FAIL(SOWER_EUSAGE, "verify: give one of --sample N and --all, once");
        if (which == VERIFY_ALL)
            o->sample = -1;
        else
            SOWER_TRY(cli_parse_int("--sample", v, 1, LONG_MAX, &o->sample));
    } else if (which == VERIFY_THREADS) {
        SOWER_TRY(cli_parse_int("--threads", v, 1, 1024, &o->threads));
    } else {
        o->model_dir = v;
    }
    return SOWER_OK;
}

static int on_verify_path(void *ctx, const char *arg) { return cli_one_positional(&((VerifyOptions *)ctx)->path, arg); }

static int parse_options(int argc, char **argv, VerifyOptions *o, int *help)
{
    memset(o, 0, sizeof *o);
    const CliParser parser = {"verify", verify_options, N_VERIFY_OPTS, on_verify_option, on_verify_path, o};
    SOWER_TRY(cli_parse(&parser, argc, argv, help));
    if (*help)
        return SOWER_OK;
    if (!o->path)
        return SOWER_FAIL(SOWER_EUSAGE, "usage: sower verify OUT.h5 [--sample N | --all] [--model DIR] [--threads T]");
    return SOWER_OK;
}

int cmd_verify(int argc, char **argv)
{
    VerifyOptions o;
    int help = 0;
    SOWER_TRY(parse_options(argc, argv, &o, &help));
    if (help) {
        puts("usage: sower verify OUT.h5 [--sample N | --all] [--model DIR] [--threads T]\n\n"
             "Checks a finished output: structure, completion, every row's digest, the seeds against\n"
             "the stored manifest, the model on disk against the recorded weight digest, and re-renders\n"
             "sampled rows (default: the job's verify count; --all: every row) on the file's backend,\n"
             "comparing bits; the re-render needs the backend identity the file records (same CPU kernels\n"
             "or GPU and software), else verify says so and exits 2.\n"
             "  --model DIR  the model folder to check and re-render with (default: the path the run\n"
             "               recorded in /run); it must be the model the file was made with.\n"
             "  --threads T  threads of the re-render (default: the CPUs it may run on that other work does\n"
             "               not keep busy); the bits do not depend on it.");
        return SOWER_OK;
    }
    OutputReader in;
    const int threads = o.threads ? cpu_load_cap_threads((int)o.threads, "verify", "--threads", 1)
                                  : cpu_load_default_threads("verify");
    omp_set_num_threads(threads); /* it took every online CPU, busy or not */
    gemm_set_threads(threads);
    SOWER_TRY(h5read_open(&in, o.path));
    if (h5read_refuse_unfinished(&in) != SOWER_OK) { /* an unfinished file is said so, not "verified" */
        h5read_close(&in);
        return sower_trace(sower_error_status(), __FILE__, __LINE__, __func__);
    }
    int status = SOWER_OK;
    const Job *job = &in.job;
    Model model;
    Scheduler sched = {0};
    PromptTable text = {0}; /* Stable Diffusion: the file's prompts */
    memset(&model, 0, sizeof model);
    ComputeBackend backend = {0};
    float *latents = NULL, *fresh = NULL;
    uint64_t *seeds = NULL;
    unsigned char *digests = NULL;
    uint8_t *done = NULL;
    RowImages images = {0}; /* pipeline.decode: the VAE, to check the images' provenance and re-decode */
    unsigned char *pixels = NULL, *pixel_digests = NULL, *fresh_pixels = NULL;
    char *identity = h5read_attr(&in, LAYOUT_ATTR_BACKEND_IDENTITY);
    char *made_by = h5read_attr(&in, LAYOUT_ATTR_SOURCE_REVISION);
    char *model_path = h5read_run_attr(&in, LAYOUT_RUN_MODEL_PATH);
    const uint64_t lo = in.lo, n = in.rows;
    /* Provenance: the model on disk must be the one the file was made with, its rows the model's shape. */
    const char *dir = o.model_dir ? o.model_dir : model_path;
    if (!dir) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: no /%s %s recorded; pass --model DIR", o.path, LAYOUT_RUN,
                            LAYOUT_RUN_MODEL_PATH);
        goto done;
    }
    SOWER_TRY_GOTO(model_load(&model, dir), status, done);
    SOWER_TRY_GOTO(check_model(&in, dir, &model), status, done);
    const UNetConfig *cfg = &model.unet.cfg;
    int h = cfg->sample_height, w = cfg->sample_width;
    const int c = cfg->in_channels;
    if (job->n_prompts) /* Stable Diffusion: the text side decides the rows too (its digest is in the key) */
        SOWER_TRY_GOTO(load_text_side(job, dir, &model, &text, &h, &w), status, done);
    if (job->decode) /* and the VAE the images (its digest is in the key) */
        SOWER_TRY_GOTO(row_images_load(&images, &model, dir, c, h, w), status, done);
    SOWER_TRY_GOTO(h5read_check_layout(&in, c, h, w), status, done);
    SOWER_TRY_GOTO(h5read_check_images(&in), status, done);
    if (job->decode && ((size_t)in.ic * in.ih * in.iw != images.bytes || in.ic != images.c))
        SOWER_TRY_GOTO(SOWER_FAIL(SOWER_EINPUT, "%s: /%s is (%d, %d, %d) per row, the VAE of '%s' makes (%d, %d, %d)",
                                  o.path, LAYOUT_IMAGES, in.ic, in.ih, in.iw, dir, images.c, images.h, images.w),
                       status, done);
    SOWER_TRY_GOTO(check_model_parts(&in, dir, &model), status, done);
    SOWER_TRY_GOTO(check_attributes(&in, &model), status, done);
    SOWER_TRY_GOTO(h5read_check_prompt_record(&in), status, done);

    /* Integrity, a block of rows at a time: memory stays bounded whatever the file's size. */
    const size_t per = (size_t)c * h * w;
    size_t block = VERIFY_BLOCK_BYTES / (sizeof(float) * per + images.bytes);
    block = block < 1 ? 1 : block > n ? (size_t)n : block;
    latents = malloc(sizeof(float) * per * block); /* (block, c, h, w) */
    seeds = malloc(sizeof(uint64_t) * block);      /* (block,) */
    digests = malloc(DIGEST_BYTES * block);        /* (block, 32) */
    done = malloc(block);                          /* (block,) */
    fresh = malloc(sizeof(float) * per);           /* (c, h, w) a re-render */
    if (images.bytes) {
        pixels = malloc(images.bytes * block);         /* (block, ic, ih, iw) */
        pixel_digests = malloc(DIGEST_BYTES * block);  /* (block, 32) */
        fresh_pixels = malloc(images.bytes);           /* (ic, ih, iw) a re-render's image */
    }
    if (!latents || !seeds || !digests || !done || !fresh ||
        (images.bytes && (!pixels || !pixel_digests || !fresh_pixels))) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", o.path);
        goto done;
    }
    uint64_t bad_digest = 0, bad_seed = 0, not_done = 0;
    for (uint64_t r0 = 0; r0 < n; r0 += block) {
        const uint64_t m = n - r0 < block ? n - r0 : block;
        SOWER_TRY_GOTO(h5read_rows(&in, r0, m, latents, seeds, digests, done), status, done);
        if (images.bytes) SOWER_TRY_GOTO(h5read_images(&in, r0, m, pixels, pixel_digests), status, done);
        for (uint64_t i = 0; i < m; i++) {
            unsigned char d[DIGEST_BYTES], e[DIGEST_BYTES];
            SOWER_TRY_GOTO(digest_buffer(latents + per * i, sizeof(float) * per, d), status, done);
            if (images.bytes) SOWER_TRY_GOTO(digest_buffer(pixels + images.bytes * i, images.bytes, e), status, done);
            bad_digest += memcmp(d, digests + DIGEST_BYTES * i, DIGEST_BYTES) != 0 ||
                          (images.bytes && memcmp(e, pixel_digests + DIGEST_BYTES * i, DIGEST_BYTES) != 0);
            bad_seed += seeds[i] != job_seed_at(job, lo + r0 + i);
            not_done += done[i] != 1;
        }
    }
    printf("%s: %llu rows; digests: %llu mismatching; seeds vs manifest: %llu mismatching; incomplete rows: "
           "%llu\n",
           o.path, (unsigned long long)n, (unsigned long long)bad_digest, (unsigned long long)bad_seed,
           (unsigned long long)not_done);
    uint64_t run_differed = 0;
    SOWER_TRY_GOTO(report_run_verification(&in, &run_differed), status, done);
    if (bad_digest || bad_seed || not_done || run_differed) { /* the file itself says so: no re-render needed */
        status = SOWER_FAIL(SOWER_EMISMATCH,
                            "%s: verification failed (rows whose digest differs: %llu, whose seed differs: %llu, "
                            "incomplete: %llu, that its run's own verification found differing: %llu)",
                            o.path, (unsigned long long)bad_digest, (unsigned long long)bad_seed,
                            (unsigned long long)not_done, (unsigned long long)run_differed);
        goto done;
    }
    SOWER_TRY_GOTO(model_scheduler(&model, job->scheduler, job->sigmas, job->generator, job->steps, &sched), status, done);
    /* Re-render on the job's backend, and only where it computes exactly as the file's did. */
    SOWER_TRY_GOTO(compute_backend_open(&backend, job->backend, job->precision, &model.unet), status, done);
    if (!identity || strcmp(identity, backend.identity) != 0) {
        /* Another release may compute differently on the same node (a new convolution route). */
        char release[128] = "";
        if (made_by && strcmp(made_by, sower_revision()) != 0)
            snprintf(release, sizeof release, ", with the sower it was made by: revision %s, this is another",
                     made_by);
        status = SOWER_FAIL(
            SOWER_EINPUT,
            "%s: rendered by '%s', but here the backend is '%s': bits compare only between equal backend "
            "identities, so re-rendering here proves nothing (the digest checks above stand; verify on "
            "the kind of node that rendered it%s)",
            o.path, identity ? identity : "(no " LAYOUT_ATTR_BACKEND_IDENTITY " recorded)", backend.identity,
            release);
        goto done;
    }
    printf("%s: re-rendering on %s (the file's backend identity)\n", o.path, backend.identity);
    RenderSettings rs = {.model = &model,
                         .backend = &backend,
                         .scheduler = &sched,
                         .eta = (float)job->eta,
                         .generator = job->generator,
                         .batch = 1,
                         .height = h,
                         .width = w,
                         .guidance = (float)job->guidance,
                         .guidance_rescale = job->guidance_rescale,
                         .text_tokens = text.encoder.tokens};
    uint64_t v = o.sample < 0 ? n : o.sample > 0 ? (uint64_t)o.sample : job_verify_rows(job);
    if (v > n) v = n;
    uint64_t bad_render = 0;
    for (uint64_t k = 0; k < v; k++) {
        const uint64_t row = (uint64_t)((double)k * n / v);
        SOWER_TRY_GOTO(h5read_rows(&in, row, 1, latents, seeds, NULL, NULL), status, done);
        RowText row_text;
        const uint64_t prompt = job_prompt_at(job, lo + row);
        if (job->n_prompts) SOWER_TRY_GOTO(prompt_table_rows(&text, &prompt, 1, &row_text), status, done);
        SOWER_TRY_GOTO(render_seeds_text(&rs, seeds, job->n_prompts ? &row_text : NULL, 1, fresh), status, done);
        int same = memcmp(fresh, latents, sizeof(float) * per) == 0;
        if (same && images.bytes) { /* the image too, decoded again */
            unsigned char d[DIGEST_BYTES];
            SOWER_TRY_GOTO(h5read_images(&in, row, 1, pixels, NULL), status, done);
            SOWER_TRY_GOTO(row_images_decode(&images, &backend, fresh, h, w, fresh_pixels, d), status, done);
            same = memcmp(fresh_pixels, pixels, images.bytes) == 0;
        }
        if (!same) {
            bad_render++;
            fprintf(stderr, "sower verify: row %llu (seed %llu): re-render differs\n",
                    (unsigned long long)row, (unsigned long long)seeds[0]);
        }
    }
    printf("%s: re-rendered %llu row%s: %llu differ\n", o.path, (unsigned long long)v, v == 1 ? "" : "s",
           (unsigned long long)bad_render);
    if (bad_render)
        status = SOWER_FAIL(SOWER_EMISMATCH, "%s: verification failed (%llu of %llu re-rendered rows differ)",
                            o.path, (unsigned long long)bad_render, (unsigned long long)v);
done:
    free(model_path), free(identity), free(made_by);
    compute_backend_close(&backend);
    free(latents), free(fresh), free(seeds), free(digests), free(done), free(pixels), free(pixel_digests),
        free(fresh_pixels);
    row_images_free(&images);
    scheduler_free(&sched);
    prompt_table_free(&text);
    model_free(&model);
    h5read_close(&in);
    return status;
}
