/* cmd_info.c: `sower info MODEL_DIR`: what a model folder holds and its weight digest. */
#include <stdio.h>
#include <string.h>

#include "backend_open.h"
#include "cpu_backend.h"
#include "cli.h"
#include "commands.h"
#include "digest.h"
#include "gpu.h"
#include "model.h"

static void print_config(const UNetConfig *c)
{
    printf("  sample size:        %dx%d, %d -> %d channels\n", c->sample_height, c->sample_width, c->in_channels,
           c->out_channels);
    printf("  blocks:            ");
    for (int i = 0; i < c->n_blocks; i++)
        printf(" %s(%d)", c->down_has_attention[i] ? "AttnDown" : "Down", c->block_out_channels[i]);
    printf(" | mid%s |", c->add_attention ? "(attn)" : "");
    for (int i = 0; i < c->n_blocks; i++)
        printf(" %s", c->up_has_attention[i] ? "AttnUp" : "Up");
    printf("\n  layers per block:   %d\n", c->layers_per_block);
    if (c->attention_head_dim)
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
    printf("  scheduler config:   T %d, %s betas %g..%g, %s, %s spacing (offset %d), clip %s", s->num_train_timesteps,
           betas[s->beta_schedule], s->beta_start, s->beta_end, predictions[s->prediction_type],
           spacings[s->timestep_spacing], s->steps_offset, s->clip_sample ? "on" : "off");
    if (scheduler_class(s->kind)->config_keys & SCHED_KEY(KEY_VARIANCE_TYPE))
        printf(", %s variance", s->variance_type == VARIANCE_FIXED_SMALL ? "fixed_small" : "fixed_large");
    printf("\n");
}

int cmd_info(int argc, char **argv)
{
    const char *arg = NULL;
    int help = 0;
    const CliParser parser = {"info", NULL, 0, NULL, cli_one_positional, &arg};
    SOWER_TRY(cli_parse(&parser, argc, argv, &help));
    if (help) {
        puts("usage: sower info MODEL_DIR\n\nPrints the model's layout, config summary, parameter count and the "
             "SHA-256 of its weight file.");
        return SOWER_OK;
    }
    if (!arg)
        return SOWER_FAIL(SOWER_EUSAGE, "usage: sower info MODEL_DIR");
    Model m;
    int status = model_load(&m, arg);
    if (status == SOWER_OK) {
        char hex[DIGEST_HEX_CHARS];
        digest_hex(m.weights_sha256, hex);
        printf("model %s (%s layout)\n", m.dir, m.flat_layout ? "flat UNet2DModel" : "diffusers pipeline");
        printf("  config:             %s\n", m.unet_config_path);
        printf("  weights:            %s\n", m.weights_path);
        printf("  weights sha256:     %s\n", hex);
        printf("  parameters:         %lld in %d tensors\n", (long long)m.unet.weights.n_values, m.unet.weights.n_params);
        printf("  scheduler:          %s (%s)\n", m.scheduler_class[0] ? m.scheduler_class : "unnamed",
               m.scheduler_config_path);
        print_scheduler(&m.folder_scheduler);
        print_config(&m.unet.cfg);
        printf("  CPU kernels:        %s\n", compute_backend_cpu_identity());
        int gpus = 0;
        if (!gpu_backend_built())
            printf("  CUDA devices:       none (this build has no CUDA backend)\n");
        else if (gpu_device_count(&gpus) == SOWER_OK)
            printf("  CUDA devices:       %d visible%s%s\n", gpus, gpus ? "" : ": ", gpus ? "" : gpu_no_device_reason());
    }
    model_free(&m);
    SOWER_TRY(status);
    return SOWER_OK;
}
