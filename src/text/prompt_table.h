/* prompt_table.h: a job's prompts and negative prompts as the UNet sees them, each encoded once, when a
 * row first needs it (a rank renders few prompts of a big job: rows are prompt-major). The embeddings
 * depend only on the prompt, so a row's bits never depend on which rank or batch encoded it. */
#ifndef SOWER_PROMPT_TABLE_H
#define SOWER_PROMPT_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"
#include "pipeline.h"
#include "prompt_encoder.h"

typedef struct {
    PromptEncoder encoder;
    const char *const *prompts, *const *negatives; /* (n,) borrowed: the job's */
    size_t n;
    int clip_skip; /* the prompt's (diffusers never applies it to the negative prompt) */
    int guided;    /* guidance > 1: the negative prompts are encoded too */
    size_t per;    /* floats per embedding: tokens x dim */
    float **cond, **uncond; /* (n,) each NULL until encoded, then (tokens, dim) */
    double seconds;         /* spent encoding */
} PromptTable;

/* The encoder of pipeline folder dir, and the table of n prompts. clip_skip past the encoder's layers
 * is SOWER_EINPUT. On failure *t is left zeroed. */
int prompt_table_init(PromptTable *t, const char *dir, const char *const *prompts, const char *const *negatives,
                      size_t n, int clip_skip, int guided) SOWER_MUST_CHECK;
void prompt_table_free(PromptTable *t); /* safe on a zeroed one */
/* out (count,): the texts of prompts index (count,), encoding those not yet encoded. */
int prompt_table_rows(PromptTable *t, const uint64_t *index, int count, RowText *out) SOWER_MUST_CHECK;

/* sha256 over what decides the embeddings besides the prompt: the tokenizer's files (vocab.json,
 * merges.txt, tokenizer_config.json, special_tokens_map.json, each by name) and the text encoder's
 * config and weights digests. */
int prompt_encoder_digest(const PromptEncoder *pe, unsigned char out[DIGEST_BYTES]) SOWER_MUST_CHECK;

#endif /* SOWER_PROMPT_TABLE_H */
