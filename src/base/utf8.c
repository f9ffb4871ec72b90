/* utf8.c: see utf8.h. */
#include "utf8.h"

#include <stdint.h>
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
