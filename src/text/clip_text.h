/* clip_text.h: the text side of transformers' CLIPTokenizer (4.46) before BPE, as diffusers' default
 * install runs it (no ftfy: BasicTokenizer(lower=True, strip_accents=False, split_on_punc=False)):
 *   1. delete U+0000, U+FFFD and every character of a category C* except \t \n \r; turn \t \n \r and
 *      every Zs character into a space;
 *   2. put spaces around CJK ideographs;
 *   3. NFC;
 *   4. split on Python's whitespace, lowercase each piece as Python's str.lower() does (full mapping:
 *      U+0130 -> "i" U+0307; a capital sigma becomes final sigma by Unicode's Final_Sigma rule),
 *      join the pieces with single spaces;
 *   5. cut the result with CLIP's pattern (Python `regex`, IGNORECASE):
 *      <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * Unicode properties come from utf8proc (Unicode 15.0, as Python 3.12's tables). Python 3.11's tables are
 * Unicode 14.0: there the 4,482 characters new in 15.0 (among them 20 emoji such as U+1FA77 pink heart) are
 * unassigned and deleted, where sower (and diffusers under Python 3.12) tokenizes them. A differential fuzz
 * of 21,440 prompts against CLIPTokenizer (stop 38) found no other difference. docs/reference/
 * stable-diffusion.md section 1 has the facts. */
#ifndef SOWER_CLIP_TEXT_H
#define SOWER_CLIP_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Called once per regex match, in order: word is UTF-8 (not NUL-terminated), len bytes. A non-zero
 * status stops the walk and is returned. */
typedef int (*ClipWordFn)(void *ctx, const char *word, size_t len);

/* Runs steps 1-5 over text (UTF-8, len bytes). SOWER_EINPUT naming the byte offset when text is
 * not valid UTF-8; `what` names the text in messages ("prompt"). */
int clip_pretokenize(const char *text, size_t len, const char *what, ClipWordFn emit, void *ctx) SOWER_MUST_CHECK;


/* Python's str.isspace() for one code point (Python 3.11). */
int clip_py_isspace(int32_t cp);

#endif /* SOWER_CLIP_TEXT_H */
