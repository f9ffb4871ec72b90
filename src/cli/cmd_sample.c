/* cmd_sample.c: `sower sample`, one process, no MPI launcher or HDF5: render seeds of a diffusers
 * model folder to a .npy of raw final samples, as DDIMPipeline/DDPMPipeline compute them, or the
 * latents of a StableDiffusionPipeline folder for a prompt (output_type="latent"). */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cpu_load.h"
#include "backend_open.h"
#include "commands.h"
#include "gemm.h"
#include "model.h"
#include "npy.h"
#include "output_lock.h"
#include "pipeline.h"
#include "regular_file.h"
#include "prompt_encoder.h"
#include "sample_record.h"
#include "threads_follow.h"
#include "vae.h"

enum { SAMPLE_MAX_SEEDS = 1 << 20, SAMPLE_MAX_BATCH = 1024, SAMPLE_MAX_THREADS = 1024 };

static const char sample_usage[] =
    "usage: sower sample MODEL_DIR --seeds SEEDS [--steps N] [--scheduler S] [--karras | --sigmas S] [--eta E]\n"
    "                    [--batch B] [--threads T] [--generator NAME] [--trace DIR]\n"
    "                    [--backend cpu|cuda] [--precision fp32|tf32|bf16|fp16] [--force] -o OUT.npy\n"
    "       sower sample SD_DIR --prompt P [--negative-prompt N] [--guidance G] [--guidance-rescale R]\n"
    "                    [--height H --width W]\n"
    "                    [--clip-skip K] [--decode] --seeds SEEDS [options above] -o OUT.npy\n"
    "\n"
    "Renders each seed as diffusers' DDIMPipeline/DDPMPipeline does with one CPU generator per seed\n"
    "(torch.Generator('cpu').manual_seed(seed)) and writes the raw final samples (the scheduler's last\n"
    "prev_sample, before any post-processing) as float32 (N, C, H, W) in the order of SEEDS.\n"
    "A seed's bits are the same for every --batch and --threads.\n"
    "\n"
    "  MODEL_DIR        a diffusers folder: model_index.json + unet/ + scheduler/, or the flat\n"
    "                   UNet2DModel layout (config.json, diffusion_pytorch_model.safetensors,\n"
    "                   scheduler_config.json)\n"
    "  --seeds SEEDS    comma-separated seeds (uint64; negatives as torch takes them, -1 = 2^64-1) and\n"
    "                   inclusive ranges, e.g. 0-7,4294967303,-1 (a manifest's seeds.list takes the same)\n"
    "  --steps N        denoising steps (default 50)\n"
    "  --scheduler S    ddim, ddpm, ddim-parallel, pndm, euler, euler-a, dpm++2m (DPM-Solver++ 2M),\n"
    "                   dpm++2m-sde (its SDE form: draws noise from each seed's generator every step),\n"
    "                   unipc (UniPC, predictor-corrector), heun (two UNet calls per step but the\n"
    "                   last), lms (linear multistep), dpm2 (KDPM2: two calls per step but the last,\n"
    "                   the second at the log-midpoint sigma), dpm2-a (its ancestral form: draws noise\n"
    "                   from each seed's generator at each second call), dpm++2s (DPM-Solver++ in\n"
    "                   single steps), dpm++2s-sde (its SDE form: a draw every step), deis (DEIS,\n"
    "                   log-rho multistep) or dpm++sde (DPM++ SDE: two calls per step but the last, its\n"
    "                   noise from each seed's own Brownian tree, torchsde's, of entropy the seed or the\n"
    "                   scheduler config's noise_sampler_seed);\n"
    "                   default: ddim (as DDIMPipeline), or for Stable Diffusion the folder's own (as\n"
    "                   StableDiffusionPipeline); the folder's scheduler config carries over as\n"
    "                   diffusers' from_config carries it\n"
    "  --karras         Karras sigmas (use_karras_sigmas=True) for euler, dpm++2m[-sde], unipc, heun, lms,\n"
    "                   dpm2[-a], dpm++2s[-sde], deis, dpm++sde\n"
    "  --sigmas S       karras (as --karras), exponential or beta (use_exponential_sigmas=True,\n"
    "                   use_beta_sigmas=True: log-linear sigmas, or at Beta(0.6, 0.6) quantiles) for euler,\n"
    "                   heun, lms, dpm2[-a], dpm++sde (diffusers 0.31 fails on them elsewhere)\n"
    "  --eta E          DDIM eta in 0..1 (default 0); eta > 0 draws noise from each seed's generator\n"
    "  --batch B        seeds per forward pass (default 8)\n"
    "  --threads T      threads (default: the CPUs it may run on that other work does not keep busy)\n"
    "  --backend B      cpu (default) or cuda: the GPU this process's local rank maps to (SLURM_LOCALID\n"
    "                   or OMPI_COMM_WORLD_LOCAL_RANK mod visible devices); the noise is drawn on the\n"
    "                   CPU either way; bits are reproducible only on an equal backend identity\n"
    "  --precision P    fp32 (default), tf32, bf16 or fp16: the cuda backend's matrix products on\n"
    "                   tensor cores from inputs rounded to TF32, BF16 or FP16, summed in fp32\n"
    "                   (tf32: about 1e-3 relative from fp32; still deterministic and batch-invariant,\n"
    "                   each under its own backend identity)\n"
    "  --generator NAME torch-cpu (default) or torch-cpu-scalar (see `sower noise --help`), or torch-cuda\n"
    "                   (torch.Generator(\"cuda\"): Philox made on the GPU, --backend cuda only)\n"
    "  --trace DIR      also write, per seed, DIR/seed_S_samples.npy (the sample after every step)\n"
    "                   and DIR/seed_S_model_outputs.npy (the model output at every step)\n"
    "  -o, --output F   the .npy to write; beside it F.json records what produced it (model, settings,\n"
    "                   prompt, seeds, each row's SHA-256), which sower export reads. Neither may exist\n"
    "                   (checked before rendering, and again when written), unless --force\n"
    "  --force          replace an existing F and F.json (and --trace files)\n"
    "\n"
    "Stable Diffusion (SD_DIR a StableDiffusionPipeline folder: tokenizer/, text_encoder/, unet/,\n"
    "scheduler/, vae/): the latents StableDiffusionPipeline(prompt, generator=[one CPU generator per seed],\n"
    "output_type=\"latent\") returns, float32 (N, 4, H/8, W/8):\n"
    "  --prompt P            the prompt (UTF-8; past 77 tokens truncated, with a warning)\n"
    "  --negative-prompt N   what classifier-free guidance steers away from (default \"\")\n"
    "  --guidance G          guidance_scale (default 7.5); <= 1: no unconditional pass\n"
    "  --guidance-rescale R  guidance_rescale in 0..1 (default 0: off): each guided prediction rescaled\n"
    "                        toward the prompt's own standard deviation (rescale_noise_cfg; 0.7 with\n"
    "                        zero-terminal-SNR models)\n"
    "  --height H --width W  image size in pixels, multiples of 8 (the latents are pixels / the VAE's factor;\n"
    "                        default: the UNet's sample_size times the VAE's scale factor)\n"
    "  --clip-skip K         diffusers' clip_skip (default 0: the text encoder's last layer)\n"
    "  --decode              write images instead: vae.decode(latents / scaling_factor).sample, float32\n"
    "                        (N, 3, H, W) in about [-1, 1], unclamped (what output_type=\"pt\" gives before\n"
    "                        its (x / 2 + 0.5).clamp(0, 1)); the VAE decodes on the CPU, one image at a time\n";

typedef struct {
    const char *prompt, *negative_prompt; /* Stable Diffusion */
    double guidance, guidance_rescale;
    long height, width, clip_skip;
    int decode;       /* --decode: images from the VAE, not latents */
    int force;        /* --force: replace an existing output and its record */
    int text_options; /* some option above was given */
    const char *model_dir, *output, *trace_dir;
    uint64_t *seeds;
    size_t n_seeds;
    long steps, batch, threads;
    double eta;
    SchedulerKind scheduler;
    int scheduler_given;
    SigmaSchedule sigmas;              /* --karras, --sigmas: forced over the folder's config */
    const char *sigmas_option;         /* which of the two set it, for messages */
    RngKernel generator;
    Backend backend;
    Precision precision;
} SampleOptions;

enum {
    OPT_SEEDS,
    OPT_STEPS,
    OPT_SCHEDULER,
    OPT_ETA,
    OPT_BATCH,
    OPT_THREADS,
    OPT_GENERATOR,
    OPT_TRACE,
    OPT_OUTPUT,
    OPT_BACKEND,
    OPT_PRECISION,
    OPT_KARRAS,
    OPT_SIGMAS,
    OPT_PROMPT,
    OPT_NEGATIVE,
    OPT_GUIDANCE,
    OPT_GUIDANCE_RESCALE,
    OPT_HEIGHT,
    OPT_WIDTH,
    OPT_CLIP_SKIP,
    OPT_DECODE,
    OPT_FORCE,
    N_SAMPLE_OPTS
};
static const CliOption sample_options[N_SAMPLE_OPTS] = {
    [OPT_SEEDS] = {"--seeds", NULL, 1},
    [OPT_STEPS] = {"--steps", NULL, 1},
    [OPT_SCHEDULER] = {"--scheduler", NULL, 1},
    [OPT_KARRAS] = {"--karras", NULL, 0},
    [OPT_SIGMAS] = {"--sigmas", NULL, 1},
    [OPT_ETA] = {"--eta", NULL, 1},
    [OPT_BATCH] = {"--batch", NULL, 1},
    [OPT_THREADS] = {"--threads", NULL, 1},
    [OPT_GENERATOR] = {"--generator", NULL, 1},
    [OPT_TRACE] = {"--trace", NULL, 1},
    [OPT_OUTPUT] = {"--output", "-o", 1},
    [OPT_BACKEND] = {"--backend", NULL, 1},
    [OPT_PRECISION] = {"--precision", NULL, 1},
    [OPT_PROMPT] = {"--prompt", NULL, 1},
    [OPT_NEGATIVE] = {"--negative-prompt", NULL, 1},
    [OPT_GUIDANCE] = {"--guidance", NULL, 1},
    [OPT_GUIDANCE_RESCALE] = {"--guidance-rescale", NULL, 1},
    [OPT_HEIGHT] = {"--height", NULL, 1},
    [OPT_WIDTH] = {"--width", NULL, 1},
    [OPT_CLIP_SKIP] = {"--clip-skip", NULL, 1},
    [OPT_DECODE] = {"--decode", NULL, 0},
    [OPT_FORCE] = {"--force", NULL, 0},
};

typedef struct {
    SampleOptions *o;
    const char *seeds_text;
} SampleParse;

static int on_sample_option(void *ctx, int which, const char *v)
{
    SampleParse *sp = ctx;
    SampleOptions *o = sp->o;
    switch (which) {
    case OPT_SEEDS:
        sp->seeds_text = v;
        break;
    case OPT_STEPS:
        SOWER_TRY(cli_parse_int("--steps", v, 1, 100000, &o->steps));
        break;
    case OPT_SCHEDULER:
        if (scheduler_kind_parse(v, &o->scheduler) != SOWER_OK) {
            sower_error_clear();
            return SOWER_FAIL(SOWER_EUSAGE, "--scheduler: expected one of %s, found '%s'", scheduler_names(0),
                              v);
        }
        o->scheduler_given = 1;
        break;
    case OPT_KARRAS:
    case OPT_SIGMAS: {
        SigmaSchedule s = SIGMAS_KARRAS;
        if (which == OPT_SIGMAS && sigma_schedule_parse(v, &s) != 0)
            return SOWER_FAIL(SOWER_EUSAGE, "--sigmas: expected karras, exponential or beta, found '%s'", v);
        if (o->sigmas_option && o->sigmas != s)
            return SOWER_FAIL(SOWER_EUSAGE, "%s and %s ask for two sigma schedules: give one", o->sigmas_option,
                              which == OPT_SIGMAS ? "--sigmas" : "--karras");
        o->sigmas = s, o->sigmas_option = which == OPT_SIGMAS ? "--sigmas" : "--karras";
        break;
    }
    case OPT_ETA:
        SOWER_TRY(cli_parse_double("--eta", v, 0.0, 1.0, &o->eta));
        break;
    case OPT_BATCH:
        SOWER_TRY(cli_parse_int("--batch", v, 1, SAMPLE_MAX_BATCH, &o->batch));
        break;
    case OPT_THREADS:
        SOWER_TRY(cli_parse_int("--threads", v, 1, SAMPLE_MAX_THREADS, &o->threads));
        break;
    case OPT_GENERATOR:
        if (rng_kernel_parse(v, &o->generator) != SOWER_OK)
            return SOWER_FAIL(SOWER_EUSAGE, "--generator: expected " RNG_GENERATOR_CHOICES ", found '%s'", v);
        break;
    case OPT_TRACE:
        o->trace_dir = v;
        break;
    case OPT_BACKEND:
        if (strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0)
            return SOWER_FAIL(SOWER_EUSAGE, "--backend: expected cpu or cuda, found '%s'", v);
        o->backend = strcmp(v, "cuda") == 0 ? BACKEND_CUDA : BACKEND_CPU;
        break;
    case OPT_PRECISION:
        if (!precision_from_name(v, &o->precision))
            return SOWER_FAIL(SOWER_EUSAGE, "--precision: expected fp32, tf32, bf16 or fp16, found '%s'", v);
        break;
        break;
    case OPT_OUTPUT:
        o->output = v;
        break;
    case OPT_PROMPT:
        o->prompt = v;
        break;
    case OPT_NEGATIVE:
        o->negative_prompt = v;
        break;
    case OPT_GUIDANCE:
        SOWER_TRY(cli_parse_double("--guidance", v, 0.0, 1000.0, &o->guidance));
        break;
    case OPT_GUIDANCE_RESCALE:
        SOWER_TRY(cli_parse_double("--guidance-rescale", v, 0.0, 1.0, &o->guidance_rescale));
        break;
    case OPT_HEIGHT:
        SOWER_TRY(cli_parse_int("--height", v, 8, 16384, &o->height));
        break;
    case OPT_WIDTH:
        SOWER_TRY(cli_parse_int("--width", v, 8, 16384, &o->width));
        break;
    case OPT_CLIP_SKIP:
        SOWER_TRY(cli_parse_int("--clip-skip", v, 0, CLIP_MAX_LAYERS, &o->clip_skip));
        break;
    case OPT_DECODE:
        o->decode = 1;
        break;
    case OPT_FORCE:
        o->force = 1;
        break;
    }
    if (which >= OPT_PROMPT && which <= OPT_DECODE) o->text_options = 1;
    return SOWER_OK;
}

static int on_sample_model(void *ctx, const char *arg)
{
    SampleOptions *o = ((SampleParse *)ctx)->o;
    if (o->model_dir) return cli_extra_operand("sample", arg, "MODEL_DIR");
    o->model_dir = arg;
    return SOWER_OK;
}

/* --eta and --karras / --sigmas against the scheduler (given, or the folder's). */
static int check_scheduler_options(const SampleOptions *o)
{
    if (o->eta > 0 && !scheduler_class(o->scheduler)->takes_eta)
        return SOWER_FAIL(SOWER_EUSAGE, "--eta applies to the ddim and ddim-parallel schedulers only (the scheduler is %s)",
                          scheduler_kind_name(o->scheduler));
    if (o->sigmas != SIGMAS_CONFIG && !scheduler_runs_key(o->scheduler, sigma_schedule_key(o->sigmas)))
        return SOWER_FAIL(SOWER_EUSAGE, "%s%s%s applies to the %s schedulers (the scheduler is %s)", o->sigmas_option,
                          strcmp(o->sigmas_option, "--sigmas") == 0 ? " " : "",
                          strcmp(o->sigmas_option, "--sigmas") == 0 ? sigma_schedule_name(o->sigmas) : "",
                          scheduler_names_taking(sigma_schedule_key(o->sigmas)), scheduler_kind_name(o->scheduler));
    return SOWER_OK;
}

static int compare_u64(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* --trace writes one pair of files per seed: a seed listed twice would write them twice. */
static int check_trace_seeds_once(const uint64_t *seeds, size_t n)
{
    uint64_t *sorted = malloc(n * sizeof *sorted); /* (n,) */
    if (!sorted) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    memcpy(sorted, seeds, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, compare_u64);
    size_t i = 1;
    while (i < n && sorted[i] != sorted[i - 1]) i++;
    const uint64_t twice = i < n ? sorted[i] : 0;
    free(sorted);
    if (i < n)
        return SOWER_FAIL(SOWER_EUSAGE, "--trace: seed %llu is listed twice in --seeds (its trace files are "
                                        "per seed): list each seed once",
                          (unsigned long long)twice);
    return SOWER_OK;
}

static int parse_sample_options(int argc, char **argv, SampleOptions *o, int *help)
{
    memset(o, 0, sizeof *o);
    o->steps = 50;
    o->batch = 8;
    o->threads = 0; /* the free CPUs this process may run on (cpu_load.h), unless given */
    o->scheduler = SCHED_DDIM;
    o->generator = RNG_KERNEL_TORCH_CPU;
    o->guidance = 7.5; /* StableDiffusionPipeline's default guidance_scale */
    SampleParse sp = {o, NULL};
    const CliParser parser = {"sample",         sample_options,  N_SAMPLE_OPTS,
                              on_sample_option, on_sample_model, &sp};
    SOWER_TRY(cli_parse(&parser, argc, argv, help));
    if (*help) return SOWER_OK;
    const char *seeds_text = sp.seeds_text;
    if (!o->model_dir)
        return SOWER_FAIL(SOWER_EUSAGE, "sample: MODEL_DIR is required (see 'sower sample --help')");
    if (!seeds_text) return SOWER_FAIL(SOWER_EUSAGE, "sample: --seeds is required, e.g. --seeds 0-7");
    if (!o->output) return SOWER_FAIL(SOWER_EUSAGE, "sample: an output is required: -o OUT.npy");
    const size_t len = strlen(o->output);
    if (len < 4 || strcmp(o->output + len - 4, ".npy") != 0)
        return SOWER_FAIL(SOWER_EUSAGE,
                          "-o %s: sample writes a NumPy .npy file, name it OUT.npy (for PNGs: sower run a manifest, "
                          "then sower export OUT.h5 --pngs DIR)",
                          o->output);
    if (o->generator == RNG_KERNEL_TORCH_CUDA && o->backend != BACKEND_CUDA)
        return SOWER_FAIL(SOWER_EUSAGE, "--generator torch-cuda needs --backend cuda (its noise is made on the GPU, "
                                        "with the GPU's own sin/cos)");
    if (o->precision != PRECISION_FP32 && o->backend != BACKEND_CUDA)
        return SOWER_FAIL(SOWER_EUSAGE, "--precision %s needs --backend cuda (the CPU backend computes in fp32)",
                          precision_name(o->precision));
    if (o->scheduler_given) SOWER_TRY(check_scheduler_options(o));
    if (o->guidance_rescale > 0 && !(o->guidance > 1.0)) /* diffusers rescales only guided predictions */
        return SOWER_FAIL(SOWER_EUSAGE, "--guidance-rescale %g needs --guidance above 1 (classifier-free guidance to "
                                        "rescale), found --guidance %g", o->guidance_rescale, o->guidance);
    struct stat st;
    if (o->trace_dir) {
        if (stat(o->trace_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return SOWER_FAIL(SOWER_EPATH, "--trace: '%s' is not an existing directory", o->trace_dir);
    }
    char record[4200];
    sample_record_path(o->output, record, sizeof record);
    /* Checked before the render, which may take hours; the commit checks again. */
    SOWER_TRY(output_lock_check_new_file(o->output, "-o", o->force));
    SOWER_TRY(output_lock_check_new_file(record, "-o's record", o->force));
    for (const char *p = o->output; p; p = p == o->output ? record : NULL) /* --force: never the weights it reads */
        if (folder_holds_file(o->model_dir, p))
            return SOWER_FAIL(SOWER_EPATH, "-o %s: '%s' is a file of the model folder '%s', which sample reads: choose "
                              "another path", o->output, p, o->model_dir);
    SOWER_TRY(cli_parse_seed_list("--seeds", seeds_text, SAMPLE_MAX_SEEDS, &o->seeds, &o->n_seeds));
    if (o->trace_dir) SOWER_TRY(check_trace_seeds_once(o->seeds, o->n_seeds));
    for (size_t i = 0; o->trace_dir && i < o->n_seeds; i++) /* the traces likewise */
        for (int k = 0; k < 2; k++) {
            char path[4200];
            snprintf(path, sizeof path, "%s/seed_%llu_%s.npy", o->trace_dir, (unsigned long long)o->seeds[i],
                     k ? "model_outputs" : "samples");
            if (path_same_file(path, o->output)) /* --force replaces earlier files, not this run's own */
                return SOWER_FAIL(SOWER_EUSAGE, "-o %s is the trace file '%s' of seed %llu: choose another name or "
                                  "--trace folder", o->output, path, (unsigned long long)o->seeds[i]);
            if (!o->force && lstat(path, &st) == 0)
                return SOWER_FAIL(SOWER_EPATH, "--trace %s: '%s' exists (an earlier sample's?); sample never "
                                  "replaces a file: choose another folder, or --force to replace it", o->trace_dir, path);
        }
    return SOWER_OK;
}

/* Warns about seeds that give identical noise under torch's 32-bit seeding. */
static void warn_seed_collisions(const uint64_t *seeds, size_t n)
{
    for (size_t i = 0; i < n && i < 4096; i++)
        for (size_t j = i + 1; j < n && j < 4096; j++)
            if (seeds[i] != seeds[j] && rng_seed_key(seeds[i]) == rng_seed_key(seeds[j])) {
                fprintf(
                    stderr,
                    "sower: warning: seeds %llu and %llu give identical noise (torch seeds with the low 32 "
                    "bits only)\n",
                    (unsigned long long)seeds[i], (unsigned long long)seeds[j]);
                return;
            }
}

/* Stable Diffusion's text side for `sample`: one prompt for every seed. */
typedef struct {
    PromptEncoder encoder;
    float *cond, *uncond; /* (tokens, dim) each; uncond NULL without guidance */
    RowText *rows;        /* (n_seeds,) all pointing at cond / uncond */
    int tokens;
    double encode_seconds; /* encoding the prompts, loading excluded */
} SdText;

static void sd_text_free(SdText *t)
{
    prompt_encoder_free(&t->encoder);
    free(t->cond), free(t->uncond), free(t->rows);
    memset(t, 0, sizeof *t);
}

/* Encodes the prompt (and the negative prompt, or "", under guidance) and sizes the latents: height and
 * width in pixels (default the UNet's sample_size times the VAE's factor) -> latent height and width. */
static int prepare_text(const SampleOptions *o, const Model *m, SdText *t, int *height, int *width)
{
    if (!o->prompt)
        return SOWER_FAIL(SOWER_EUSAGE, "'%s' is a StableDiffusionPipeline: --prompt is required",
                          o->model_dir);
    const int f = m->vae_scale_factor;
    long h = o->height ? o->height : (long)m->unet.cfg.sample_height * f;
    long w = o->width ? o->width : (long)m->unet.cfg.sample_width * f;
    if ((o->height != 0) != (o->width != 0))
        return SOWER_FAIL(SOWER_EUSAGE, "--height and --width go together");
    if (h % 8 || w % 8) /* the pipeline's own check_inputs rule */
        return SOWER_FAIL(SOWER_EUSAGE, "--height %ld --width %ld: both must be multiples of 8", h, w);
    *height = (int)(h / f), *width = (int)(w / f);
    char why[256];
    if (unet_size_problem(&m->unet.cfg, *height, *width, why, sizeof why))
        return SOWER_FAIL(SOWER_EUSAGE, "--height %ld --width %ld: latents of %dx%d are %s (%s)", h, w, *height, *width, why,
                          m->unet_config_path);
    SOWER_TRY(prompt_encoder_load(&t->encoder, o->model_dir));
    if (t->encoder.dim != m->unet.cfg.cross_attention_dim)
        return SOWER_FAIL(SOWER_EMODEL,
                          "%s: the text encoder's hidden_size %d is not the UNet's cross_attention_dim %d "
                          "(%s)",
                          t->encoder.encoder.config_path, t->encoder.dim, m->unet.cfg.cross_attention_dim,
                          m->unet_config_path);
    if (o->clip_skip > t->encoder.encoder.cfg.num_layers)
        return SOWER_FAIL(SOWER_EUSAGE, "--clip-skip %ld: the text encoder has %d layers", o->clip_skip,
                          t->encoder.encoder.cfg.num_layers);
    t->tokens = t->encoder.tokens;
    const size_t per = (size_t)t->tokens * t->encoder.dim;
    const int guided = o->guidance > 1.0;
    t->cond = malloc(per * sizeof *t->cond);
    t->uncond = guided ? malloc(per * sizeof *t->uncond) : NULL;
    t->rows = malloc(o->n_seeds * sizeof *t->rows);
    if (!t->cond || (guided && !t->uncond) || !t->rows)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the text embeddings");
    t->encode_seconds = omp_get_wtime();
    SOWER_TRY(prompt_encode(&t->encoder, o->prompt, (int)o->clip_skip, t->cond, stderr, "the prompt"));
    if (guided) /* diffusers encodes the negative prompt without clip_skip */
        SOWER_TRY(
            prompt_encode(&t->encoder, o->negative_prompt ? o->negative_prompt : "", 0, t->uncond, stderr,
                          "the negative prompt"));
    t->encode_seconds = omp_get_wtime() - t->encode_seconds;
    for (size_t i = 0; i < o->n_seeds; i++)
        t->rows[i] = (RowText){t->cond, t->uncond};
    prompt_encoder_free(&t->encoder); /* every embedding is made: the encoder's memory goes before the render */
    return SOWER_OK;
}

/* latents *out (shape) -> images (shape becomes (N, out_channels, H, W)); *out is replaced. */
static int decode_latents(const ComputeBackend *be, const Vae *vae, size_t n, int64_t *shape, float **out)
{
    const int f = vae->cfg.scale_factor, h = (int)shape[2], w = (int)shape[3];
    if ((int)shape[1] != vae->cfg.latent_channels)
        return SOWER_FAIL(SOWER_EMODEL, "%s: latent_channels %d, but the UNet gives %d channels", vae->config_path,
                          vae->cfg.latent_channels, (int)shape[1]);
    float *images = malloc(sizeof(float) * n * vae->cfg.out_channels * h * f * w * f); /* (n, 3, H, W) */
    if (!images) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu decoded images", n);
    int status = vae_decode(be, vae, *out, (int)n, h, w, images);
    if (status != SOWER_OK) {
        free(images);
        return status;
    }
    free(*out);
    *out = images;
    shape[1] = vae->cfg.out_channels, shape[2] = (int64_t)h * f, shape[3] = (int64_t)w * f;
    return SOWER_OK;
}

/* OUT.npy.json: what produced the array (sample_record.h), so that sower export can say it per row. */
static int write_record(const SampleOptions *o, const Model *m, const Vae *vae, const float *rows,
                        const int64_t *shape, const char *backend)
{
    char *prompt = (char *)(o->prompt ? o->prompt : ""), *negative = (char *)(o->negative_prompt ? o->negative_prompt : "");
    Job job = {.model_path = (char *)o->model_dir, /* borrowed throughout: never job_free'd */
               .scheduler = o->scheduler, .steps = (int)o->steps, .eta = o->eta, .sigmas = o->sigmas,
               .generator = o->generator, .list = o->seeds, .n_list = o->n_seeds, .n_seeds = o->n_seeds,
               .n_rows = o->n_seeds, .guidance = o->guidance, .guidance_rescale = o->guidance_rescale, .clip_skip = (int)o->clip_skip, .decode = o->decode};
    if (m->stable_diffusion) {
        job.prompts = &prompt, job.negative_prompts = &negative, job.n_prompts = 1;
        const int f = vae ? vae->cfg.scale_factor : m->vae_scale_factor, images = vae != NULL;
        job.height = (int)shape[2] * (images ? 1 : f), job.width = (int)shape[3] * (images ? 1 : f);
    }
    const SampleRows rows_are = vae ? SAMPLE_ROWS_IMAGES : m->stable_diffusion ? SAMPLE_ROWS_LATENTS : SAMPLE_ROWS_SAMPLES;
    return sample_record_write(o->output, &job, rows_are, rows, shape, m->weights_sha256,
                               vae ? vae->sha256 : NULL, backend, o->force);
}

/* RenderSettings.on_step: the thread count follows the load (threads_follow.h). */
static void follow_load(void *ctx, int done, int steps)
{
    (void)done, (void)steps;
    threads_follow_load(ctx, "sower sample:");
}

int cmd_sample(int argc, char **argv)
{
    SampleOptions o;
    int help = 0;
    int status = parse_sample_options(argc, argv, &o, &help);
    if (status != SOWER_OK || help) {
        free(o.seeds);
        if (help) fputs(sample_usage, stdout);
        SOWER_TRY(status);
        return SOWER_OK;
    }
    LoadWatch load = {0}; /* without --threads a CPU render's thread count follows the load on these CPUs */
    if (o.threads) {
        o.threads = cpu_load_cap_threads((int)o.threads, "sample", "--threads", 1);
    } else {
        o.threads = cpu_load_default_threads("sample");
        NodeRank me = {.pid = 0};
        cpu_load_affinity(&me.mask);
        if (o.backend == BACKEND_CPU &&
            load_watch_start(&load, (int)o.threads, cpu_set_count(&me.mask), &me, &me, 1) != SOWER_OK) {
            free(o.seeds);
            return sower_error_status();
        }
    }
    omp_set_num_threads((int)o.threads);
    gemm_set_threads((int)o.threads);
    warn_seed_collisions(o.seeds, o.n_seeds);

    Model model;
    Scheduler sched = {0};
    ComputeBackend backend = {0};
    SdText text = {0};
    Vae vae = {0};
    float *out = NULL;
    SOWER_TRY_GOTO(model_load(&model, o.model_dir), status, done);
    if (o.decode && !model.stable_diffusion) {
        status = SOWER_FAIL(SOWER_EUSAGE, "--decode needs a StableDiffusionPipeline folder (its vae/); '%s' is a %s",
                            o.model_dir, model.pipeline_class[0] ? model.pipeline_class : "UNet2DModel folder");
        goto done;
    }
    if (o.decode) /* before the render: a broken vae/ fails in a second, not after it */
        SOWER_TRY_GOTO(vae_load(&vae, o.model_dir), status, done);
    const UNetConfig *ucfg = &model.unet.cfg;
    int height = ucfg->sample_height, width = ucfg->sample_width; /* the samples' (latents') size */
    if (model.stable_diffusion)
        SOWER_TRY_GOTO(prepare_text(&o, &model, &text, &height, &width), status, done);
    else if (o.text_options) {
        status =
            SOWER_FAIL(SOWER_EUSAGE,
                       "--prompt, --negative-prompt, --guidance, --guidance-rescale, --height, --width and --clip-skip "
                       "apply to Stable Diffusion folders; '%s' is a %s",
                       o.model_dir, model.pipeline_class[0] ? model.pipeline_class : "UNet2DModel folder");
        goto done;
    }
    if (!height) {
        status = SOWER_FAIL(SOWER_EMODEL, "%s: key 'sample_size' is null; sower needs it to size the noise%s",
                            model.unet_config_path,
                            model.stable_diffusion ? " (or give --height and --width)" : "");
        goto done;
    }
    if (!o.scheduler_given) { /* a Stable Diffusion folder's own, as StableDiffusionPipeline; else DDIM */
        SOWER_TRY_GOTO(model_default_scheduler(&model, "--scheduler", &o.scheduler), status, done);
        SOWER_TRY_GOTO(check_scheduler_options(&o), status, done);
    }
    status = model_scheduler(&model, o.scheduler, o.sigmas, o.generator, (int)o.steps, &sched);
    if (status == SOWER_EINPUT) {
        status = SOWER_FAIL(SOWER_EUSAGE, "--steps %ld: %s", o.steps, sower_error_message());
    }
    if (status != SOWER_OK) goto done;
    const size_t per = (size_t)ucfg->in_channels * height * width;
    out = malloc(per * o.n_seeds * sizeof(float)); /* (n_seeds, C, H, W) */
    if (!out) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu samples", o.n_seeds);
        goto done;
    }
    SOWER_TRY_GOTO(compute_backend_open(&backend, o.backend, o.precision, &model.unet), status, done);
    if (ucfg->conditional && !backend_runs_conditional(backend.ops)) {
        status = SOWER_FAIL(SOWER_EUSAGE,
                            "--backend %s does not run Stable Diffusion's UNet2DConditionModel yet; "
                            "use --backend cpu",
                            o.backend == BACKEND_CUDA ? "cuda" : "cpu");
        goto done;
    }
    RenderSettings rs = {.model = &model,
                         .backend = &backend,
                         .scheduler = &sched,
                         .eta = (float)o.eta,
                         .generator = o.generator,
                         .batch = (int)o.batch,
                         .height = height,
                         .width = width,
                         .trace_dir = o.trace_dir,
                         .trace_replace = o.force,
                         .guidance = (float)o.guidance,
                         .guidance_rescale = o.guidance_rescale,
                         .text_tokens = text.tokens,
                         .on_step = follow_load,
                         .on_step_ctx = &load};
    double render_seconds = omp_get_wtime();
    SOWER_TRY_GOTO(render_seeds_text(&rs, o.seeds, text.rows, (int)o.n_seeds, out), status, done);
    render_seconds = omp_get_wtime() - render_seconds;
    int64_t shape[4] = {(int64_t)o.n_seeds, ucfg->in_channels, height, width};
    double decode_seconds = 0;
    if (o.decode) {
        decode_seconds = omp_get_wtime();
        SOWER_TRY_GOTO(decode_latents(&backend, &vae, o.n_seeds, shape, &out), status, done);
        decode_seconds = omp_get_wtime() - decode_seconds;
    }
    SOWER_TRY_GOTO(npy_write_f32_opt(o.output, out, shape, 4, o.force), status, done);
    SOWER_TRY_GOTO(write_record(&o, &model, o.decode ? &vae : NULL, out, shape, backend.identity), status, done);
    fprintf(stderr,
            "sower sample: %zu seed%s, %s %ld steps, eta %g, batch %ld, %ld thread%s -> %s\n  backend: %s\n",
            o.n_seeds, o.n_seeds == 1 ? "" : "s", scheduler_kind_name(o.scheduler), o.steps, o.eta, o.batch,
            (long)gemm_threads(), gemm_threads() == 1 ? "" : "s", o.output, /* at the end (the load may move it) */
            backend.identity);
    fprintf(stderr, "  timings: text encoder %.3f s, render %.3f s (%.3f s per step)", text.encode_seconds,
            render_seconds, render_seconds / (double)o.steps);
    if (o.decode) fprintf(stderr, ", VAE decode %.3f s", decode_seconds);
    fputc('\n', stderr);
done:
    free(out);
    free(o.seeds);
    load_watch_free(&load);
    sd_text_free(&text);
    vae_free(&vae);
    scheduler_free(&sched);
    compute_backend_close(&backend);
    model_free(&model);
    return status;
}
