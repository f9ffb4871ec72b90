/* prompt_encoder.c: see prompt_encoder.h. */
#define _POSIX_C_SOURCE 200809L
#include "prompt_encoder.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int load_parts(PromptEncoder *pe, const char *dir)
{
    /* a pipeline folder holds the tokenizer in tokenizer/; a bare tokenizer folder is accepted too */
    struct stat st;
    snprintf(pe->tokenizer_dir, sizeof pe->tokenizer_dir, "%s/tokenizer", dir);
    if (stat(pe->tokenizer_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        snprintf(pe->tokenizer_dir, sizeof pe->tokenizer_dir, "%s", dir);
    SOWER_TRY(clip_tokenizer_load(&pe->tokenizer, pe->tokenizer_dir));
    SOWER_TRY(clip_text_model_load(&pe->encoder, dir));
    pe->tokens = clip_tokenizer_max_length(pe->tokenizer);
    pe->dim = pe->encoder.cfg.hidden_size;
    const char *token = NULL;
    const int32_t max_id = clip_tokenizer_max_id(pe->tokenizer, &token);
    if (max_id >= pe->encoder.cfg.vocab_size) { /* found now, not when a prompt first meets the token mid-run */
        char *shown = utf8_printable(token, strlen(token)); /* a file's bytes, shown as a terminal can */
        const int status = SOWER_FAIL(SOWER_EMODEL, "%s: token '%s' has id %d, past the %d embeddings of the text "
                                      "encoder (%s)", pe->tokenizer_dir, shown ? shown : "?", max_id,
                                      pe->encoder.cfg.vocab_size, pe->encoder.config_path);
        free(shown);
        return status;
    }
    if (pe->tokens > pe->encoder.cfg.max_positions)
        return SOWER_FAIL(SOWER_EMODEL, "%s/tokenizer_config.json: model_max_length %d exceeds the %d positions of "
                                        "the text encoder (%s)",
                          pe->tokenizer_dir, pe->tokens, pe->encoder.cfg.max_positions, pe->encoder.config_path);
    return SOWER_OK;
}

int prompt_encoder_load(PromptEncoder *pe, const char *dir)
{
    memset(pe, 0, sizeof *pe);
    const int status = load_parts(pe, dir);
    if (status != SOWER_OK)
        prompt_encoder_free(pe); /* a failed load holds nothing */
    return status;
}

void prompt_encoder_free(PromptEncoder *pe)
{
    clip_tokenizer_free(pe->tokenizer);
    clip_text_model_free(&pe->encoder);
    memset(pe, 0, sizeof *pe);
}

int prompt_tokenize(const PromptEncoder *pe, const char *prompt, int32_t *ids, size_t *untruncated, FILE *warn,
                    const char *which)
{
    const size_t len = strlen(prompt);
    if (clip_tokenize(pe->tokenizer, prompt, len, ids, untruncated) != SOWER_OK)
        return SOWER_FAIL(sower_error_status(), "%s: %s", which ? which : "the prompt", sower_error_message());
    if (warn && *untruncated > (size_t)pe->tokens) {
        char *dropped = NULL;
        SOWER_TRY(clip_tokenizer_dropped_text(pe->tokenizer, prompt, len, &dropped));
        /* the cut may fall inside a character, and a prompt may hold controls: shown as a terminal can */
        char *shown = utf8_printable(dropped, strlen(dropped));
        free(dropped);
        if (!shown) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        fprintf(warn, "sower: warning: %s is longer than %d tokens; truncated, dropping: %s\n",
                which ? which : "the prompt", pe->tokens, shown);
        free(shown);
    }
    return SOWER_OK;
}

int prompt_encode(const PromptEncoder *pe, const char *prompt, int clip_skip, float *out, FILE *warn,
                  const char *which)
{
    int32_t *ids = malloc((size_t)pe->tokens * sizeof *ids); /* (tokens,) */
    if (!ids)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    size_t untruncated = 0;
    int status = prompt_tokenize(pe, prompt, ids, &untruncated, warn, which);
    if (status == SOWER_OK) {
        /* the tokenizer's attention_mask (its real tokens, then padding), where the text encoder's config asks
         * the pipeline to pass it (diffusers' encode_prompt: text_encoder.config.use_attention_mask) */
        const int mask = pe->encoder.cfg.use_attention_mask && untruncated < (size_t)pe->tokens;
        status = clip_text_encode(&pe->encoder, ids, pe->tokens, mask ? (int)untruncated : pe->tokens, clip_skip, out);
    }
    free(ids);
    return status;
}
