/* cmd_info.c: `sower info MODEL_DIR`: what a model folder holds and its weight digest. */
#include <stdio.h>
#include <string.h>

#include "backend_open.h"
#include "cpu_backend.h"
#include "weight_packs.h"
#include "cli.h"
#include "commands.h"
#include "digest.h"
#include "gpu.h"
#include "model.h"
#include "prompt_encoder.h"
#include "vae.h"

static void print_config(const UNetConfig *c)
{
    printf("  sample size:        %dx%d, %d -> %d channels\n", c->sample_height, c->sample_width,
           c->in_channels, c->out_channels);
    const char *attn = c->conditional ? "CrossAttn" : "Attn";
    printf("  blocks:            ");
    for (int i = 0; i < c->n_blocks; i++)
        printf(" %s%s(%d)", c->down_has_attention[i] ? attn : "", "Down", c->block_out_channels[i]);
    printf(" | mid%s |", c->add_attention ? (c->conditional ? "(cross-attn)" : "(attn)") : "");
    for (int i = 0; i < c->n_blocks; i++)
        printf(" %s%s", c->up_has_attention[i] ? attn : "", "Up");
    printf("\n  layers per block:   %d\n", c->layers_per_block);
    if (c->conditional) {
        printf("  transformers:       heads");
        for (int i = 0; i < c->n_blocks; i++)
            printf(" %d", c->heads[i]);
        printf(" (per block), cross_attention_dim %d, %s projections%s\n", c->cross_attention_dim,
               c->use_linear_projection ? "linear" : "1x1 conv",
               c->upcast_attention ? ", upcast_attention" : "");
    } else if (c->attention_head_dim)
        printf("  attention:          head dim %d\n", c->attention_head_dim);
    else
        printf("  attention:          one head per block\n");
    printf("  groups, eps:        %d, %g\n", c->norm_num_groups, (double)c->norm_eps);
    printf("  time embedding:     flip_sin_to_cos %s, freq_shift %g\n", c->flip_sin_to_cos ? "true" : "false",
           (double)c->freq_shift);
}

static void print_scheduler(const SchedulerConfig *s)
{
    static const char *const betas[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
    static const char *const predictions[] = {"epsilon", "v_prediction", "sample"};
    static const char *const spacings[] = {"leading", "trailing", "linspace"};
    const uint64_t keys = scheduler_class(s->kind)->config_keys;
    printf("  scheduler config:   T %d, %s betas %g..%g, %s, %s spacing (offset %d)", s->num_train_timesteps,
           betas[s->beta_schedule], s->beta_start, s->beta_end, predictions[s->prediction_type],
           spacings[s->timestep_spacing], s->steps_offset);
    if (keys & SCHED_KEY(KEY_CLIP_SAMPLE))
        printf(", clip %s", s->clip_sample ? "on" : "off");
    if (keys & SCHED_KEY(KEY_VARIANCE_TYPE) && !(keys & SCHED_KEY(KEY_SOLVER_ORDER)))
        printf(", %s variance", s->variance_type == VARIANCE_FIXED_SMALL ? "fixed_small" : "fixed_large");
    if (keys & SCHED_KEY(KEY_SKIP_PRK_STEPS))
        printf(", %s", s->skip_prk_steps ? "PLMS only (skip_prk_steps)" : "Runge-Kutta warm-up");
    if (keys & SCHED_KEY(KEY_PREDICT_X0)) /* UniPC */
        printf(", order %d (%s, %s form%s)", s->solver_order, s->solver_bh1 ? "bh1" : "bh2",
               s->predict_x0 ? "data" : "noise", s->n_disable_corrector ? ", some correctors off" : "");
    else if (strcmp(scheduler_class_name(s->kind), "DEISMultistepScheduler") == 0)
        printf(", deis (log-rho) order %d", s->solver_order);
    else if (keys & SCHED_KEY(KEY_SOLVER_ORDER))
        printf(", %s order %d (%s)",
               s->algorithm_sde ? "sde-dpmsolver++" : s->algorithm_type == DPM_ALGORITHM_PLUS_PLUS ? "dpmsolver++" : "dpmsolver",
               s->solver_order, s->solver_type == DPM_SOLVER_MIDPOINT ? "midpoint" : "heun");
    if (keys & SCHED_KEY(KEY_USE_KARRAS_SIGMAS))
        printf(", %s sigmas", s->use_karras_sigmas        ? "Karras"
                              : s->use_exponential_sigmas ? "exponential"
                              : s->use_beta_sigmas        ? "beta"
                                                          : "interpolated");
    if (keys & SCHED_KEY(KEY_NOISE_SAMPLER_SEED)) { /* DPM++ SDE's Brownian tree */
        if (s->has_noise_sampler_seed)
            printf(", Brownian tree noise of entropy %llu (noise_sampler_seed) for every seed",
                   (unsigned long long)s->noise_sampler_seed);
        else
            printf(", Brownian tree noise of entropy each seed");
    }
    if (s->rescale_betas_zero_snr)
        printf(", zero terminal SNR (rescale_betas_zero_snr)");
    printf("\n");
}

/* A StableDiffusionPipeline's pipeline-level facts and text side (tokenizer and text encoder). */
static int print_text_side(const Model *m)
{
    PromptEncoder pe;
    int status = prompt_encoder_load(&pe, m->dir);
    if (status == SOWER_OK) {
        const ClipTextConfig *c = &pe.encoder.cfg;
        char config_hex[DIGEST_HEX_CHARS], weights_hex[DIGEST_HEX_CHARS];
        digest_hex(pe.encoder.config_sha256, config_hex);
        digest_hex(pe.encoder.weights_sha256, weights_hex);
        printf("  pipeline:           %s, vae_scale_factor %d (default image %dx%d)\n", m->pipeline_class,
               m->vae_scale_factor, m->unet.cfg.sample_height * m->vae_scale_factor,
               m->unet.cfg.sample_width * m->vae_scale_factor);
        printf("  tokenizer:          %s (CLIPTokenizer, %d tokens, pad id %d)\n", pe.tokenizer_dir,
               pe.tokens, (int)clip_tokenizer_pad_id(pe.tokenizer));
        printf("  text encoder:       %s\n", pe.encoder.weights_path);
        printf("  text encoder sha256: %s (config sha256 %.16s...)\n", weights_hex, config_hex);
        printf(
            "  text encoder shape: CLIPTextModel, %d layers, hidden %d, %d heads, mlp %d, %s, vocab %d, %lld "
            "parameters\n",
            c->num_layers, c->hidden_size, c->num_heads, c->intermediate_size,
            c->act == CLIP_ACT_GELU ? "gelu" : "quick_gelu", c->vocab_size,
            (long long)pe.encoder.weights.n_values);
    }
    prompt_encoder_free(&pe);
    return status;
}

/* A StableDiffusionPipeline's VAE (what `sample --decode` and `export` decode with). */
static int print_vae(const Model *m)
{
    Vae v;
    int status = vae_load(&v, m->dir);
    if (status == SOWER_OK) {
        char hex[DIGEST_HEX_CHARS];
        digest_hex(v.weights_sha256, hex);
        printf("  vae:                %s\n", v.weights_path);
        printf("  vae sha256:         %s\n", hex);
        printf("  vae decoder:        AutoencoderKL, channels");
        for (int i = 0; i < v.cfg.n_blocks; i++) printf(" %d", v.cfg.block_out_channels[i]);
        printf(", %d+1 resnets per block, %d groups, mid attention %s, scaling_factor %g, %lld parameters\n",
               v.cfg.layers_per_block, v.cfg.norm_num_groups, v.cfg.mid_attention ? "yes" : "no",
               (double)v.cfg.scaling_factor, (long long)v.weights_list.n_values);
    }
    vae_free(&v);
    return status;
}

int cmd_info(int argc, char **argv)
{
    const char *arg = NULL;
    int help = 0;
    const CliParser parser = {"info", NULL, 0, NULL, cli_one_positional, &arg};
    SOWER_TRY(cli_parse(&parser, argc, argv, &help));
    if (help) {
        puts("usage: sower info MODEL_DIR\n\nPrints the model's layout, config summary, parameter count and "
             "the "
             "SHA-256 of its weight file.");
        return SOWER_OK;
    }
    if (!arg) return SOWER_FAIL(SOWER_EUSAGE, "usage: sower info MODEL_DIR");
    Model m;
    int status = model_load(&m, arg);
    if (status == SOWER_OK) {
        char hex[DIGEST_HEX_CHARS];
        digest_hex(m.weights_sha256, hex);
        printf("model %s (%s layout)\n", m.dir, m.flat_layout ? "flat UNet2DModel" : "diffusers pipeline");
        printf("  config:             %s\n", m.unet_config_path);
        printf("  weights:            %s\n", m.weights_path);
        printf("  weights sha256:     %s\n", hex);
        printf("  parameters:         %lld in %d tensors\n", (long long)m.unet.weights.n_values,
               m.unet.weights.n_params);
        printf("  scheduler:          %s (%s)%s%s\n", m.scheduler_class[0] ? m.scheduler_class : "unnamed",
               m.scheduler_config_path,
               m.folder_scheduler_known
                   ? ""
                   : m.folder_scheduler_problem[0] ? "\n                      not run as configured: "
                                                   : "\n                      not one sower runs: read as DDIM reads it below; "
                                                     "choose one with --scheduler / pipeline.scheduler",
               m.folder_scheduler_problem);
        print_scheduler(&m.folder_scheduler);
        print_config(&m.unet.cfg);
        if (m.stable_diffusion) status = print_text_side(&m);
        if (m.stable_diffusion && status == SOWER_OK) status = print_vae(&m);
        printf("  CPU kernels:        %s\n", compute_backend_cpu_identity());
        size_t pack_budget = 0;
        if (status == SOWER_OK && (status = weight_packs_budget(&pack_budget)) == SOWER_OK)
            printf("  CPU weight packs:   kept up to %zu MiB per process (SOWER_WEIGHT_CACHE_MB%s)\n", pack_budget >> 20,
                   pack_budget ? "" : "=0: repacked every forward");
        int gpus = 0;
        if (!gpu_backend_built())
            printf("  CUDA devices:       none (this build has no CUDA backend)\n");
        else if (gpu_device_count(&gpus) == SOWER_OK)
            printf("  CUDA devices:       %d visible%s%s\n", gpus, gpus ? "" : ": ",
                   gpus ? "" : gpu_no_device_reason());
    }
    model_free(&m);
    SOWER_TRY(status);
    return SOWER_OK;
}
