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

/* text[0..len) as it may be shown on a terminal or in a log (a new string: free; NULL when out of memory):
 * a byte that starts no valid UTF-8 sequence becomes U+FFFD (as Python decodes with errors="replace"), a
 * control character (C0, DEL, C1) its escape \xNN. */
char *utf8_printable(const char *text, size_t len);
#endif /* SOWER_UTF8_H */
