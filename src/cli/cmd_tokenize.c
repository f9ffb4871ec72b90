/* cmd_tokenize.c: the text side of Stable Diffusion, one prompt at a time, so each step can be compared
 * with transformers':
 *   sower tokenize DIR --prompt P   the token ids (text/clip_tokenizer.h), one line of JSON;
 *   sower encode DIR --prompt P     the text encoder's embeddings (text/clip_text_model.h), as .npy. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cpu_load.h"
#include "clip_tokenizer.h"
#include "prompt_encoder.h"
#include "commands.h"
#include "gemm.h"
#include "npy.h"
#include "output_lock.h"
#include "regular_file.h"

static const char tokenize_usage[] =
    "usage: sower tokenize DIR --prompt P\n"
    "\n"
    "Prints the ids of tokenizer(P, padding=\"max_length\", max_length=model_max_length, truncation=True),\n"
    "as StableDiffusionPipeline calls transformers' CLIPTokenizer (without ftfy, as diffusers installs it),\n"
    "as one line of JSON: {\"input_ids\": [...], \"untruncated_length\": N}. A prompt longer than the model's\n"
    "limit is truncated, with a warning quoting the words dropped.\n"
    "\n"
    "  DIR          a Stable Diffusion pipeline folder (its tokenizer/ is read) or a tokenizer folder\n"
    "               (vocab.json, merges.txt, tokenizer_config.json)\n"
    "  --prompt P   the prompt, UTF-8\n";

enum { TOK_PROMPT, N_TOK_OPTS };
static const CliOption tokenize_options[N_TOK_OPTS] = {[TOK_PROMPT] = {"--prompt", NULL, 1}};

typedef struct {
    const char *dir, *prompt;
} TokenizeOptions;

static int on_tokenize_option(void *ctx, int which, const char *v)
{
    (void)which;
    ((TokenizeOptions *)ctx)->prompt = v;
    return SOWER_OK;
}

static int on_tokenize_dir(void *ctx, const char *arg) { return cli_one_positional(&((TokenizeOptions *)ctx)->dir, arg); }

int cmd_tokenize(int argc, char **argv)
{
    TokenizeOptions o = {0};
    int help = 0;
    const CliParser parser = {"tokenize", tokenize_options, N_TOK_OPTS, on_tokenize_option, on_tokenize_dir, &o};
    SOWER_TRY(cli_parse(&parser, argc, argv, &help));
    if (help) {
        fputs(tokenize_usage, stdout);
        return SOWER_OK;
    }
    if (!o.dir || !o.prompt)
        return SOWER_FAIL(SOWER_EUSAGE, "usage: sower tokenize DIR --prompt P");
    /* the tokenizer alone (a tokenizer folder needs no text encoder) */
    PromptEncoder pe = {0};
    char sub[4096];
    struct stat st;
    snprintf(sub, sizeof sub, "%s/tokenizer", o.dir);
    SOWER_TRY(clip_tokenizer_load(&pe.tokenizer, stat(sub, &st) == 0 && S_ISDIR(st.st_mode) ? sub : o.dir));
    pe.tokens = clip_tokenizer_max_length(pe.tokenizer);
    int32_t *ids = malloc((size_t)pe.tokens * sizeof *ids); /* (tokens,) */
    size_t untruncated = 0;
    int status = ids ? prompt_tokenize(&pe, o.prompt, ids, &untruncated, stderr, NULL)
                     : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (status == SOWER_OK) {
        printf("{\"input_ids\": [");
        for (int i = 0; i < pe.tokens; i++)
            printf("%s%d", i ? ", " : "", ids[i]);
        printf("], \"untruncated_length\": %zu}\n", untruncated);
    }
    free(ids);
    clip_tokenizer_free(pe.tokenizer);
    return status;
}

/* ---- sower encode ---- */

static const char encode_usage[] =
    "usage: sower encode DIR --prompt P [--clip-skip K] [--threads T] [--force] -o OUT.npy\n"
    "\n"
    "Writes the prompt embeddings Stable Diffusion's UNet is conditioned on: text_encoder(ids)[0] of\n"
    "transformers' CLIPTextModel for the ids `sower tokenize` prints, float32 (1, model_max_length, hidden)\n"
    "as .npy. The bits do not depend on --threads.\n"
    "\n"
    "  DIR            a Stable Diffusion pipeline folder (tokenizer/ and text_encoder/ are read)\n"
    "  --prompt P     the prompt, UTF-8\n"
    "  --clip-skip K  the output of the K-th layer from the end, through the final layer norm, as\n"
    "                 diffusers' clip_skip=K (default 0: last_hidden_state)\n"
    "  --threads T    threads (default: the CPUs it may run on that other work does not keep busy)\n"
    "  -o OUT.npy     where to write (an existing file is replaced only with --force)\n";

enum { ENC_PROMPT, ENC_CLIP_SKIP, ENC_THREADS, ENC_OUTPUT, ENC_FORCE, N_ENC_OPTS };
static const CliOption encode_options[N_ENC_OPTS] = {
    [ENC_PROMPT] = {"--prompt", NULL, 1},
    [ENC_CLIP_SKIP] = {"--clip-skip", NULL, 1},
    [ENC_THREADS] = {"--threads", NULL, 1},
    [ENC_OUTPUT] = {"--output", "-o", 1},
    [ENC_FORCE] = {"--force", NULL, 0},
};

typedef struct {
    const char *dir, *prompt, *output;
    long clip_skip, threads;
    int force; /* replace an existing OUT.npy */
} EncodeOptions;

static int on_encode_option(void *ctx, int which, const char *v)
{
    EncodeOptions *o = ctx;
    switch (which) {
    case ENC_PROMPT: o->prompt = v; break;
    case ENC_CLIP_SKIP: SOWER_TRY(cli_parse_int("--clip-skip", v, 0, CLIP_MAX_LAYERS, &o->clip_skip)); break;
    case ENC_THREADS: SOWER_TRY(cli_parse_int("--threads", v, 1, 1024, &o->threads)); break;
    case ENC_OUTPUT: o->output = v; break;
    case ENC_FORCE: o->force = 1; break;
    }
    return SOWER_OK;
}

static int on_encode_dir(void *ctx, const char *arg) { return cli_one_positional(&((EncodeOptions *)ctx)->dir, arg); }

int cmd_encode(int argc, char **argv)
{
    EncodeOptions o = {0};
    o.threads = 0; /* the free CPUs (cpu_load.h), unless given */
    int help = 0;
    const CliParser parser = {"encode", encode_options, N_ENC_OPTS, on_encode_option, on_encode_dir, &o};
    SOWER_TRY(cli_parse(&parser, argc, argv, &help));
    if (help) {
        fputs(encode_usage, stdout);
        return SOWER_OK;
    }
    if (!o.dir || !o.prompt || !o.output)
        return SOWER_FAIL(SOWER_EUSAGE, "usage: sower encode DIR --prompt P [--clip-skip K] [--threads T] [--force] -o OUT.npy");
    SOWER_TRY(output_lock_check_new_file(o.output, "-o", o.force)); /* the write refuses one made meanwhile too */
    if (folder_holds_file(o.dir, o.output)) /* --force: never the weights it reads */
        return SOWER_FAIL(SOWER_EPATH, "-o %s is a file of the model folder '%s', which encode reads: choose another "
                          "path", o.output, o.dir);
    o.threads = o.threads ? cpu_load_cap_threads((int)o.threads, "encode", "--threads", 1) : cpu_load_default_threads("encode");
    gemm_set_threads((int)o.threads);
    SOWER_TRY(gemm_reserve_packing());
    PromptEncoder pe;
    SOWER_TRY(prompt_encoder_load(&pe, o.dir));
    float *embeddings = NULL; /* (tokens, hidden) */
    int status = SOWER_OK;
    if (o.clip_skip > pe.encoder.cfg.num_layers) {
        status = SOWER_FAIL(SOWER_EUSAGE, "--clip-skip %ld: the text encoder has %d layers (0..%d)", o.clip_skip,
                            pe.encoder.cfg.num_layers, pe.encoder.cfg.num_layers);
        goto done;
    }
    embeddings = malloc((size_t)pe.tokens * pe.dim * sizeof *embeddings);
    if (!embeddings) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        goto done;
    }
    SOWER_TRY_GOTO(prompt_encode(&pe, o.prompt, (int)o.clip_skip, embeddings, stderr, NULL), status, done);
    const int64_t shape[3] = {1, pe.tokens, pe.dim};
    SOWER_TRY_GOTO(npy_write_f32_opt(o.output, embeddings, shape, 3, o.force), status, done);
done:
    free(embeddings);
    prompt_encoder_free(&pe);
    return status;
}
