/* utf8.h: the one UTF-8 validity check (utf8proc's decoder: no overlongs, surrogates or code points
 * past U+10FFFF), shared by the tokenizer and the prompts-file reader. */
#ifndef SOWER_UTF8_H
#define SOWER_UTF8_H

#include <stddef.h>

/* 1 when text[0..len) is valid UTF-8, else 0 and *bad_offset the first bad byte. */
int utf8_valid(const char *text, size_t len, size_t *bad_offset);

#endif /* SOWER_UTF8_H */
