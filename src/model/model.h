/* model.h: a diffusers model folder, as users download it.
 *   pipeline layout: DIR/model_index.json, DIR/unet/{config.json, diffusion_pytorch_model.safetensors},
 *                    DIR/scheduler/scheduler_config.json; a StableDiffusionPipeline folder also has
 *                    tokenizer/ and text_encoder/ (read by text/prompt_encoder.h) and vae/
 *   flat layout (google/ddpm-cifar10-32): DIR/{config.json, diffusion_pytorch_model.safetensors,
 *                    scheduler_config.json, model_index.json}
 * Weights are safetensors only: pickle files (.bin, .ckpt, .pt) are refused, because loading them
 * executes code. The weight file is mapped once and used in place. */
#ifndef SOWER_MODEL_H
#define SOWER_MODEL_H

#include <stddef.h>

#include "digest.h"
#include "err.h"
#include "safetensors.h"
#include "scheduler.h"
#include "unet.h"

typedef struct Model {
    char *dir;
    int flat_layout;
    char unet_config_path[4096];
    char weights_path[4096];
    char scheduler_config_path[4096];
    char *unet_config_text;      /* the config.json bytes, NUL-terminated */
    size_t unet_config_bytes;
    char *scheduler_config_text; /* scheduler_config.json, NUL-terminated */
    size_t scheduler_config_bytes;
    char scheduler_class[64];    /* its _class_name, e.g. "DDPMScheduler" ("" if absent) */
    char index_scheduler_class[64]; /* model_index.json's scheduler class ("" if not named there) */
    int folder_scheduler_known;  /* sower runs that class: folder_scheduler is valid */
    char folder_scheduler_problem[512]; /* a class sower runs, with values it cannot (UniPC of order 3): why; the
                                         * folder serves other schedulers, its own is refused with this */
    SchedulerConfig folder_scheduler; /* the folder's scheduler as its own class reads it (checked) */
    char pipeline_class[64];     /* model_index.json's _class_name ("" if none): DDPMPipeline, DDIMPipeline,
                                  * StableDiffusionPipeline */
    int stable_diffusion;        /* a StableDiffusionPipeline: a UNet2DConditionModel fed by a text encoder */
    int vae_scale_factor;        /* pixels per latent: 2^(len(vae.block_out_channels) - 1), 8 without vae/ */
    unsigned char weights_sha256[DIGEST_BYTES];
    /* Stable Diffusion: what decides the text embeddings besides the prompt (the tokenizer's files, the
     * text encoder's config and weights), set by whoever loads the text side (prompt_table.h) */
    unsigned char text_side_sha256[DIGEST_BYTES];
    int text_side_known;
    /* pipeline.decode: the VAE's weights' digest, set by whoever loads it (the images depend on it) */
    unsigned char vae_sha256[DIGEST_BYTES];
    int vae_known;
    StFile weights;
    UNet unet;
} Model;

/* Finds the layout, reads and checks configs and weights, binds the UNet. Errors are
 * SOWER_EMODEL naming the file (and key or tensor). */
int model_load(Model *m, const char *dir) SOWER_MUST_CHECK;
/* The same; read_weights 0 reads only the weight file's header (the tensors stay unread pages of
 * the mapping, weights_sha256 stays zero): for a rank that receives the weights over NCCL
 * (weight_share.h) and the digest from rank 0. */
int model_load_opt(Model *m, const char *dir, int read_weights) SOWER_MUST_CHECK;
void model_free(Model *m); /* safe on a zeroed Model */
/* The scheduler a render of m uses: the folder's scheduler config read as class `kind` reads it
 * (diffusers' from_config), with the sigma schedule `sigmas` forced on (a class that runs its key; SIGMAS_CONFIG: the
 * config's own); for a Stable Diffusion folder, the pipeline's rewrites of that config (its own class without one
 * runs them as the pipeline's own scheduler does, any other as from_config passes them on),
 * the torch kernel whose linspace bits to reproduce, set_timesteps(steps). The one setup `run`,
 * `sample` and `verify` share. */
int model_scheduler(const Model *m, SchedulerKind kind, SigmaSchedule sigmas, RngKernel kernel, int steps,
                    Scheduler *s) SOWER_MUST_CHECK;
/* The scheduler a render that names none runs, the same for `sample` and a manifest: a Stable Diffusion
 * folder its own (what StableDiffusionPipeline runs), any other model DDIM (what DDIMPipeline runs with any
 * folder). SOWER_EUSAGE when the folder's class is not one sower runs; `option` ("--scheduler",
 * "pipeline.scheduler") is how the message tells the user to choose. */
int model_default_scheduler(const Model *m, const char *option, SchedulerKind *kind) SOWER_MUST_CHECK;
/* SOWER_EMANIFEST "WHERE: model.digest: expected sha256:..., found sha256:... in FILE" unless the
 * weight file's SHA-256 equals want (DIGEST_BYTES,). */
int model_check_digest(const Model *m, const unsigned char *want, const char *where) SOWER_MUST_CHECK;
/* SOWER_EMODEL naming both configs unless a text encoder of hidden size text_dim (its config.json at
 * text_config) feeds this UNet: its cross_attention_dim. run and check ask the same. */
int model_check_text_width(const Model *m, int text_dim, const char *text_config) SOWER_MUST_CHECK;

#endif /* SOWER_MODEL_H */
