/* seeds.c: see seeds.h. */
#include "seeds.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A non-negative integer filling text[0..len): decimal, or 0x hex (never octal). */
static int parse_unsigned(const char *text, size_t len, uint64_t *value)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf || !isdigit((unsigned char)text[0]))
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    int base = (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X')) ? 16 : 10;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, base);
    if (errno == ERANGE || end != buf + len || end == buf) /* all len bytes: a NUL inside is not the end */
        return -1;
    *value = (uint64_t)v;
    return 0;
}

int seed_item_parse(const char *text, size_t len, uint64_t *lo, uint64_t *hi)
{
    if (len > 0 && text[0] == '-') { /* a negative seed: two's complement */
        uint64_t magnitude;
        if (parse_unsigned(text + 1, len - 1, &magnitude) != 0 || magnitude == 0 || magnitude > (UINT64_C(1) << 63))
            return -1;
        *lo = *hi = (uint64_t)0 - magnitude;
        return 0;
    }
    const char *dash = memchr(text, '-', len);
    if (!dash)
        return parse_unsigned(text, len, lo) == 0 ? (*hi = *lo, 0) : -1;
    if (parse_unsigned(text, (size_t)(dash - text), lo) != 0 ||
        parse_unsigned(dash + 1, len - (size_t)(dash - text) - 1, hi) != 0)
        return -1;
    return *hi < *lo ? SEED_REVERSED : 0;
}
