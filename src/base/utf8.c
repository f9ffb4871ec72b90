/* utf8.c: see utf8.h. */
#include "utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int utf8_valid(const char *text, size_t len, size_t *bad_offset)
{
    size_t i = 0;
    while (i < len) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0) {
            *bad_offset = i;
            return 0;
        }
        i += (size_t)k;
    }
    return 1;
}

size_t utf8_chars(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((unsigned char)text[i] & 0xC0) != 0x80;
    return n;
}

char *utf8_printable(const char *text, size_t len)
{
    char *out = malloc(len * 4 + 1); /* at most "\xNN" (4 bytes) or U+FFFD (3) per input byte */
    if (!out) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0) { /* a byte that starts no valid sequence: U+FFFD, as Python's errors="replace" */
            memcpy(out + n, "\xEF\xBF\xBD", 3), n += 3, i++;
            continue;
        }
        if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) /* a control: escaped, never sent to the terminal */
            n += (size_t)sprintf(out + n, "\\x%02X", (unsigned)cp);
        else
            memcpy(out + n, text + i, (size_t)k), n += (size_t)k;
        i += (size_t)k;
    }
    out[n] = '\0';
    return out;
}
