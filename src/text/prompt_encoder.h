/* prompt_encoder.h: prompt -> the embeddings Stable Diffusion's UNet is conditioned on, as
 * StableDiffusionPipeline.encode_prompt computes them: tokenizer(prompt, padding="max_length",
 * max_length=77, truncation=True) (clip_tokenizer.h), then the text encoder (clip_text_model.h),
 * clip_skip applied to the prompt only (diffusers never applies it to the negative prompt). */
#ifndef SOWER_PROMPT_ENCODER_H
#define SOWER_PROMPT_ENCODER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clip_text_model.h"
#include "clip_tokenizer.h"
#include "err.h"

typedef struct {
    ClipTokenizer *tokenizer;
    ClipTextModel encoder;
    char tokenizer_dir[4096];
    int tokens; /* model_max_length: rows of every embedding */
    int dim;    /* the text encoder's hidden size: columns */
} PromptEncoder;

/* Reads DIR/tokenizer/ and DIR/text_encoder/ of a pipeline folder. SOWER_EMODEL / SOWER_EINPUT naming
 * the file and key; a tokenizer longer than the encoder's positions is refused. */
int prompt_encoder_load(PromptEncoder *pe, const char *dir) SOWER_MUST_CHECK;
void prompt_encoder_free(PromptEncoder *pe); /* safe on a zeroed one */

/* The ids (tokens,) of prompt; when it is truncated, warns on `warn` (if not NULL) quoting the words
 * dropped, as the pipeline's logger does, naming the prompt as `which` ("prompt 12"; NULL: "the prompt").
 * SOWER_EINPUT for invalid UTF-8 (the byte named). */
int prompt_tokenize(const PromptEncoder *pe, const char *prompt, int32_t *ids, size_t *untruncated, FILE *warn,
                    const char *which) SOWER_MUST_CHECK;
/* out (tokens, dim): the embeddings of prompt (clip_skip as clip_text_encode); warns as prompt_tokenize. */
int prompt_encode(const PromptEncoder *pe, const char *prompt, int clip_skip, float *out, FILE *warn,
                  const char *which) SOWER_MUST_CHECK;

#endif /* SOWER_PROMPT_ENCODER_H */
