/* clip_tokenizer.h: transformers' CLIPTokenizer (the slow class Stable Diffusion folders name), exact
 * token ids, as StableDiffusionPipeline calls it:
 *     tokenizer(prompt, padding="max_length", max_length=model_max_length, truncation=True).input_ids
 * = [bos] + content[:max_length - 2] + [eos] + [pad] * (max_length - 2 - len(content[:max_length-2])).
 *
 * From a tokenizer folder: vocab.json (token -> id), merges.txt (first line skipped, at most 48894
 * merges, rank = line order, a repeated pair keeps its last rank), tokenizer_config.json
 * (model_max_length, bos/eos/unk/pad tokens as strings or AddedToken objects, added_tokens_decoder) and
 * special_tokens_map.json, whose tokens override the config's, as transformers reads them.
 * Exact occurrences of the special and added tokens (SD 2.x pads with "!", an added token) are cut
 * out of the prompt first and become their ids; each piece between them goes through clip_text.h
 * and byte-level BPE. docs/reference/stable-diffusion.md section 1. */
#ifndef SOWER_CLIP_TOKENIZER_H
#define SOWER_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct ClipTokenizer ClipTokenizer;

/* Reads the folder `dir`. SOWER_EINPUT naming the file and key for anything malformed or unsupported
 * (single_word added tokens, a special token found neither in the vocabulary nor in
 * added_tokens_decoder, a model_max_length outside 2..4096). */
int clip_tokenizer_load(ClipTokenizer **out, const char *dir) SOWER_MUST_CHECK;
void clip_tokenizer_free(ClipTokenizer *t); /* safe on NULL */

/* model_max_length: the length of every id sequence clip_tokenize writes (77 for SD). */
int clip_tokenizer_max_length(const ClipTokenizer *t);
/* The largest id the tokenizer can give (vocab.json's, added and special tokens'), and that token's text. */
int32_t clip_tokenizer_max_id(const ClipTokenizer *t, const char **token);
int32_t clip_tokenizer_pad_id(const ClipTokenizer *t);
/* The ids of its bos_token, eos_token and pad_token. */
void clip_tokenizer_special_ids(const ClipTokenizer *t, int32_t *bos, int32_t *eos, int32_t *pad);

/* ids (max_length,) for prompt (UTF-8, len bytes); *untruncated: the length the ids would have
 * without truncation (bos + content + eos), so > max_length means words were dropped. SOWER_EINPUT
 * for invalid UTF-8 (the byte offset named). */
int clip_tokenize(const ClipTokenizer *t, const char *prompt, size_t len, int32_t *ids, size_t *untruncated)
    SOWER_MUST_CHECK;

/* The words truncation drops from prompt, as the pipeline's warning quotes them (batch_decode of the
 * ids past max_length - 1, "</w>" read as a space): a malloc'ed string, "" when nothing is dropped. */
int clip_tokenizer_dropped_text(const ClipTokenizer *t, const char *prompt, size_t len, char **text)
    SOWER_MUST_CHECK;

#endif /* SOWER_CLIP_TOKENIZER_H */
