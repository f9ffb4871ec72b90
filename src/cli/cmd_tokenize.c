/* cmd_tokenize.c: `sower tokenize DIR --prompt P`: the token ids Stable Diffusion's text encoder gets
 * for a prompt (text/clip_tokenizer.h), one line of JSON, so they can be compared with transformers'. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "clip_tokenizer.h"
#include "commands.h"

static const char tokenize_usage[] =
    "usage: sower tokenize DIR --prompt P\n"
    "\n"
    "Prints the ids of tokenizer(P, padding=\"max_length\", max_length=model_max_length, truncation=True),\n"
    "as StableDiffusionPipeline calls transformers' CLIPTokenizer (without ftfy, as diffusers installs it),\n"
    "as one line of JSON: {\"ids\": [...], \"untruncated_length\": N}. A prompt longer than the model's\n"
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
    /* a pipeline folder holds the tokenizer in tokenizer/ */
    char sub[4096];
    struct stat st;
    snprintf(sub, sizeof sub, "%s/tokenizer", o.dir);
    const char *dir = stat(sub, &st) == 0 && S_ISDIR(st.st_mode) ? sub : o.dir;
    ClipTokenizer *t = NULL;
    SOWER_TRY(clip_tokenizer_load(&t, dir));
    const int n = clip_tokenizer_max_length(t);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    size_t untruncated = 0;
    int status = ids ? clip_tokenize(t, o.prompt, strlen(o.prompt), ids, &untruncated)
                     : SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (status == SOWER_OK && untruncated > (size_t)n) {
        char *dropped = NULL;
        status = clip_tokenizer_dropped_text(t, o.prompt, strlen(o.prompt), &dropped);
        if (status == SOWER_OK)
            fprintf(stderr, "sower: warning: the prompt is longer than %d tokens; truncated, dropping: %s\n", n,
                    dropped);
        free(dropped);
    }
    if (status == SOWER_OK) {
        printf("{\"ids\": [");
        for (int i = 0; i < n; i++)
            printf("%s%d", i ? ", " : "", ids[i]);
        printf("], \"untruncated_length\": %zu}\n", untruncated);
    }
    free(ids);
    clip_tokenizer_free(t);
    return status;
}
