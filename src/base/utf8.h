/* utf8.h: the one UTF-8 validity check (utf8proc's decoder: no overlongs, surrogates or code points
 * past U+10FFFF), shared by the tokenizer and the prompts-file reader. */
#ifndef SOWER_UTF8_H
#define SOWER_UTF8_H

#include <stddef.h>

/* 1 when text[0..len) is valid UTF-8, else 0 and *bad_offset the first bad byte. */
int utf8_valid(const char *text, size_t len, size_t *bad_offset);

/* The code points of valid UTF-8 text[0..len) (the characters JSON Schema's maxLength and Python's
 * len() count): the bytes that do not continue a sequence. */
size_t utf8_chars(const char *text, size_t len);

#endif /* SOWER_UTF8_H */
