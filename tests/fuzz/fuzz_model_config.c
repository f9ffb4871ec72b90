/* fuzz_model_config.c: a model folder's JSON configs. The same bytes go to the UNet config reader
 * (config.json, UNet2DModel or UNet2DConditionModel; then the model is laid out from it), the text
 * encoder's (text_encoder/config.json; then its tensors are listed) and every scheduler's config reader
 * (scheduler_config.json; then set_timesteps for a few step counts and every step, DPM SDE's tree noise too). Each either
 * succeeds or fails with exit code 2 and a message naming the file. */
#include "clip_text_model.h"
#include "fuzz.h"
#include "scheduler.h"
#include "unet.h"

static void fuzz_unet(const char *text, size_t size)
{
    static const char path[] = "fuzz-model/unet/config.json";
    UNetConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    int status = unet_config_parse(text, size, path, &cfg);
    if (status != SOWER_OK) {
        fuzz_expect_input_error(status, path);
        return;
    }
    UNet u;
    memset(&u, 0, sizeof u);
    status = unet_init(&u, &cfg);
    if (status != SOWER_OK) /* a config that parses must lay out; only memory may run out */
        FUZZ_ASSERT(status == SOWER_ENOMEM, "unet_init: %s", sower_error_message());
    unet_free(&u);
    sower_error_clear();
}

static void fuzz_text_encoder(const char *text, size_t size)
{
    static const char path[] = "fuzz-model/text_encoder/config.json";
    ClipTextConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    const int status = clip_text_config_parse(text, size, path, &cfg);
    if (status != SOWER_OK) {
        fuzz_expect_input_error(status, path);
        return;
    }
    FUZZ_ASSERT(cfg.num_layers >= 1 && cfg.hidden_size >= 1 && cfg.num_heads >= 1 &&
                    cfg.hidden_size % cfg.num_heads == 0 && cfg.max_positions >= 1 && cfg.vocab_size >= 1,
                "an accepted text encoder config that cannot be laid out");
}

/* A Brownian tree node's "randn": a fixed fill (the values do not matter here, the walk does). */
static int fixed_draw(void *ctx, uint64_t seed, float *out, size_t n)
{
    (void)ctx;
    for (size_t j = 0; j < n; j++)
        out[j] = (float)(seed % 7) - 3.0f;
    return SOWER_OK;
}

static void fuzz_scheduler(const char *text, size_t size, SchedulerKind kind)
{
    static const char path[] = "fuzz-model/scheduler/scheduler_config.json";
    SchedulerConfig cfg;
    int status = scheduler_config_parse(text, size, path, kind, &cfg);
    if (status != SOWER_OK) {
        fuzz_expect_input_error(status, path);
        return;
    }
    static const int steps[] = {1, 2, 7, 50, 1000};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        Scheduler s;
        status = scheduler_init(&s, &cfg, steps[i]);
        if (status != SOWER_OK) { /* e.g. more steps than the config's training timesteps */
            FUZZ_ASSERT(sower_status_exit_code(status) == 2, "scheduler_init: %s", sower_error_message());
            sower_error_clear();
            continue;
        }
        for (int j = 0; j < s.num_steps; j++) {
            FUZZ_ASSERT(!s.timesteps || (s.timesteps[j] >= 0 && s.timesteps[j] < cfg.num_train_timesteps),
                        "timestep %lld", (long long)s.timesteps[j]);
            FUZZ_ASSERT(!(s.unet_timesteps[j] < 0.0f) && !(s.unet_timesteps[j] > (float)cfg.num_train_timesteps),
                        "UNet timestep %g", (double)s.unet_timesteps[j]);
        }
        /* every step of a run over a few values: whatever the config, no crash and no read out of range */
        enum { VALUES = 4 };
        float x[VALUES] = {0.5f, -1.0f, 0.0f, 2.0f}, m[VALUES] = {0.1f, 0.2f, -0.3f, 0.0f}, z[VALUES] = {0};
        SchedulerRun run;
        if (scheduler_run_init(&run, &s, VALUES) == SOWER_OK) {
            for (int j = 0; j < s.num_steps; j++) {
                (void)scheduler_input_divisor(&s, j);
                /* DPM SDE: the first and last drawing calls' tree noise (a walk over the plan's nodes) */
                if (scheduler_noise_is_tree(&s) && scheduler_step_needs_noise(&s, j, 0.0f) &&
                    (j == 0 || j == s.num_steps - 2))
                    FUZZ_ASSERT(scheduler_tree_noise(&s, j, 12345, fixed_draw, NULL, z, VALUES) == SOWER_OK,
                                "tree noise: %s", sower_error_message());
                scheduler_run_step(&s, &run, j, 0.0f, m, x, z);
            }
            scheduler_run_free(&run);
        }
        scheduler_free(&s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    fuzz_unet(text, size);
    fuzz_text_encoder(text, size);
    for (SchedulerKind k = 0; k < scheduler_kind_count(); k++)
        fuzz_scheduler(text, size, k);
    return 0;
}
