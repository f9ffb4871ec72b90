/* cmd_check.c: `sower check JOB.yaml`: validate a job manifest and its model, print the normalised
 * job. Writes nothing. Exit 0 when the job could run, 2 with FILE:LINE:COLUMN: ... when not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "clip_text_model.h"
#include "config_file.h"
#include "gpu.h"
#include "commands.h"
#include "manifest.h"
#include "model.h"
#include "output_lock.h"
#include "prompt_encoder.h"
#include "regular_file.h"
#include "row_message.h"
#include "vae.h"

/* pipeline.clip_skip against the text encoder's layers (its config alone: the run loads the weights). */
static int check_clip_skip(const Job *job)
{
    if (!job->clip_skip) return SOWER_OK;
    char path[4200], where[4200];
    snprintf(path, sizeof path, "%s/text_encoder/config.json", job->model_path);
    char *text = NULL;
    size_t bytes = 0;
    ClipTextConfig cfg;
    int status = config_file_read(path, "text encoder config", 1 << 20, SOWER_EMODEL, &text, &bytes);
    if (status == SOWER_OK) status = clip_text_config_parse(text, bytes, path, &cfg);
    free(text);
    SOWER_TRY(status);
    if (job->clip_skip > cfg.num_layers) {
        job_mark_where(job, job->clip_skip_mark, where, sizeof where);
        return SOWER_FAIL(SOWER_EMANIFEST, "%s: pipeline.clip_skip %d: the text encoder has %d layers (%s)", where,
                          job->clip_skip, cfg.num_layers, path);
    }
    return SOWER_OK;
}

/* The parts a run loads beside the UNet: the tokenizer and text encoder (Stable Diffusion), the VAE
 * (pipeline.decode); a missing or broken one is named now, not after the job waited for its nodes.
 * *row_floats and *image_bytes: a row's latent and image (0: none), as run sizes its messages. */
static int check_pipeline_parts(const Job *job, const Model *m, size_t *row_floats, size_t *image_bytes)
{
    if (m->stable_diffusion) {
        PromptEncoder pe;
        SOWER_TRY(prompt_encoder_load(&pe, job->model_path));
        const int status = model_check_text_width(m, pe.dim, pe.encoder.config_path);
        prompt_encoder_free(&pe);
        SOWER_TRY(status);
    }
    /* A row's latent (C, h, w) and, with pipeline.decode, its image (the VAE's channels, h and w scaled). */
    const UNetConfig *cfg = &m->unet.cfg;
    const int h = m->stable_diffusion && job->height ? job->height / m->vae_scale_factor : cfg->sample_height;
    const int w = m->stable_diffusion && job->width ? job->width / m->vae_scale_factor : cfg->sample_width;
    *row_floats = (size_t)cfg->in_channels * h * w, *image_bytes = 0;
    if (job->decode) {
        Vae vae;
        SOWER_TRY(vae_load(&vae, job->model_path));
        *image_bytes = (size_t)vae.cfg.out_channels * h * vae.cfg.scale_factor * w * vae.cfg.scale_factor;
        const int status = vae.cfg.latent_channels == m->unet.cfg.in_channels
                               ? SOWER_OK
                               : SOWER_FAIL(SOWER_EMODEL, "%s: latent_channels %d, but the UNet's samples have %d "
                                            "channels", vae.config_path, vae.cfg.latent_channels, m->unet.cfg.in_channels);
        vae_free(&vae);
        SOWER_TRY(status);
    }
    return SOWER_OK;
}

/* output.path as `sower run` takes it: a file to be (output_path_check), not a name kept for a run's working
 * files, nor an input of the job (the manifest, its prompts file); an existing output is for run to refuse
 * or, with --force, replace. */
static int check_output_path(const Job *job)
{
    SOWER_TRY(output_path_check(job->output_path, "output.path"));
    SOWER_TRY(output_lock_check_output_name(job->output_path, "output.path"));
    struct stat out, input;
    if (stat(job->output_path, &out) != 0) return SOWER_OK;
    const char *inputs[] = {job->manifest_path, job->prompts_file};
    for (int k = 0; k < 2; k++)
        if (inputs[k] && stat(inputs[k], &input) == 0 && out.st_dev == input.st_dev && out.st_ino == input.st_ino)
            return SOWER_FAIL(SOWER_EPATH, "output.path '%s' is %s, an input of the job: choose another path",
                              job->output_path, inputs[k]);
    return SOWER_OK;
}

int check_job_model(Job *job)
{
    if (check_output_path(job) != SOWER_OK)
        return SOWER_FAIL(sower_error_status(), "%s: %s", job->manifest_path ? job->manifest_path : "(manifest)",
                          sower_error_message());
    /* A job is often checked on a login node without a GPU, so backend cuda passes; but this binary's own run
     * would refuse it on every node (the compute nodes may run another build: a warning, not an error). */
    if (job->backend == BACKEND_CUDA && !gpu_backend_built())
        fprintf(stderr, "sower: warning: %s: pipeline.backend cuda: this sower was built without the CUDA backend, so "
                        "its run refuses the job (a build configured with -DSOWER_CUDA=ON runs it)\n",
                job->manifest_path ? job->manifest_path : "(manifest)");
    Model m;
    int status = model_load(&m, job->model_path);
    char where[4200];
    job_model_where(job, where, sizeof where);
    if (status != SOWER_OK) {
        model_free(&m);
        return SOWER_FAIL(status, "%s: model: %s", where, sower_error_message());
    }
    if (job->model_digest_pinned) status = model_check_digest(&m, job->model_digest, where);
    if (status == SOWER_OK) status = job_check_model_kind(job, &m);
    if (status == SOWER_OK) status = job_resolve_scheduler(job, &m); /* the listing names the one it runs */
    if (status == SOWER_OK) { /* its timesteps for the job's steps, as run sets them up (steps past the table...) */
        Scheduler sched = {0};
        status = model_scheduler(&m, job->scheduler, job->sigmas, job->generator, job->steps, &sched);
        scheduler_free(&sched);
        if (status != SOWER_OK) status = SOWER_FAIL(sower_error_status(), "%s: %s", where, sower_error_message());
    }
    if (status == SOWER_OK && m.stable_diffusion) status = check_clip_skip(job);
    size_t row_floats = 0, image_bytes = 0;
    if (status == SOWER_OK && check_pipeline_parts(job, &m, &row_floats, &image_bytes) != SOWER_OK)
        status = SOWER_FAIL(sower_error_status(), "%s: model: %s", where, sower_error_message());
    if (status == SOWER_OK) /* a batch must fit one MPI message, as run checks before rendering */
        status = row_message_fits(row_floats, image_bytes, (uint64_t)job->batch, job->manifest_path);
    model_free(&m);
    return status;
}

int cmd_check(int argc, char **argv)
{
    const char *arg = NULL;
    int help = 0;
    const CliParser parser = {"check", NULL, 0, NULL, cli_one_positional, &arg};
    SOWER_TRY(cli_parse(&parser, argc, argv, &help));
    if (help) {
        puts("usage: sower check JOB.yaml\n\nValidates a job manifest (schema/README.md) and the model it names, "
             "and prints the\nnormalised job with every default filled in. Writes nothing.");
        return SOWER_OK;
    }
    if (!arg)
        return SOWER_FAIL(SOWER_EUSAGE, "usage: sower check JOB.yaml");
    Job job;
    int status = manifest_load(&job, arg);
    if (status == SOWER_OK)
        status = check_job_model(&job);
    if (status == SOWER_OK) {
        job_warn_seed_collisions(&job, stderr);
        job_print(&job, stdout);
    }
    job_free(&job);
    SOWER_TRY(status);
    return SOWER_OK;
}
