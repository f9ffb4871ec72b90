/* cli.c: option helpers for the subcommands. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value, int *matched)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    *matched = 0;
    if (strncmp(arg, name, n) != 0)
        return SOWER_OK;
    if (arg[n] == '=') {
        *matched = 1;
        *value = arg + n + 1;
        return SOWER_OK;
    }
    if (arg[n] != '\0')
        return SOWER_OK;
    *matched = 1;
    if (*i + 1 >= argc)
        return SOWER_FAIL(SOWER_EUSAGE, "option %s expects a value", name);
    *i += 1;
    *value = argv[*i];
    return SOWER_OK;
}

int cli_parse_u64(const char *option, const char *text, int allow_negative, uint64_t *value)
{
    const char *p = text;
    int negative = 0;
    if (*p == '-' && allow_negative) {
        negative = 1;
        p++;
    }
    if (!isdigit((unsigned char)*p))
        goto bad;
    errno = 0;
    char *end = NULL;
    int base = (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) ? 16 : 10; /* never octal */
    unsigned long long magnitude = strtoull(p, &end, base);
    if (errno == ERANGE || *end != '\0' || end == p)
        goto bad;
    if (negative) {
        if (magnitude == 0 || magnitude > (1ull << 63))
            goto bad;
        *value = (uint64_t)0 - (uint64_t)magnitude; /* two's complement */
    } else {
        *value = (uint64_t)magnitude;
    }
    return SOWER_OK;
bad:
    if (allow_negative)
        return SOWER_FAIL(SOWER_EUSAGE,
                          "%s: expected an integer in -9223372036854775808..18446744073709551615, found '%s'",
                          option, text);
    return SOWER_FAIL(SOWER_EUSAGE, "%s: expected an integer in 0..18446744073709551615, found '%s'", option, text);
}

int cli_parse_shape(const char *option, const char *text, int64_t *dims, int *ndims, uint64_t max_numel,
                    uint64_t *numel)
{
    const char *p = text;
    uint64_t product = 1;
    *ndims = 0;
    for (;;) {
        if (*ndims == CLI_MAX_DIMS)
            return SOWER_FAIL(SOWER_EUSAGE, "%s: at most %d dimensions, found more in '%s'", option, CLI_MAX_DIMS,
                              text);
        if (!isdigit((unsigned char)*p))
            return SOWER_FAIL(SOWER_EUSAGE, "%s: expected comma-separated sizes like 1,4,64,64, found '%s'", option,
                              text);
        errno = 0;
        char *end = NULL;
        unsigned long long d = strtoull(p, &end, 10);
        if (errno == ERANGE || d > max_numel)
            return SOWER_FAIL(SOWER_EUSAGE, "%s: size %.*s in '%s' is larger than the limit of %llu values", option,
                              (int)(end - p), p, text, (unsigned long long)max_numel);
        dims[(*ndims)++] = (int64_t)d;
        if (d != 0 && product > max_numel / d)
            return SOWER_FAIL(SOWER_EUSAGE, "%s: shape '%s' has more than the limit of %llu values", option, text,
                              (unsigned long long)max_numel);
        product *= d;
        p = end;
        if (*p == '\0')
            break;
        if (*p != ',')
            return SOWER_FAIL(SOWER_EUSAGE, "%s: expected comma-separated sizes like 1,4,64,64, found '%s'", option,
                              text);
        p++;
    }
    *numel = product;
    return SOWER_OK;
}

int cli_parse_seed_list(const char *option, const char *text, size_t max_seeds, uint64_t **seeds, size_t *n_seeds)
{
    *seeds = NULL;
    *n_seeds = 0;
    size_t cap = 0;
    const char *p = text;
    int status = SOWER_OK;
    if (*p == '\0')
        return SOWER_FAIL(SOWER_EUSAGE, "%s: expected seeds like 0-7,42, found an empty list", option);
    while (*p) {
        char item[64];
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof item) {
            status = SOWER_FAIL(SOWER_EUSAGE, "%s: expected seeds like 0-7,42, found '%s'", option, text);
            goto fail;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        uint64_t lo, hi;
        char *dash = strchr(item, '-');
        if (dash && dash != item) {
            *dash = '\0';
            if (cli_parse_u64(option, item, 0, &lo) != SOWER_OK || cli_parse_u64(option, dash + 1, 0, &hi) != SOWER_OK) {
                status = SOWER_FAIL(SOWER_EUSAGE, "%s: bad range '%.*s' in '%s' (expected A-B with 0 <= A <= B < 2^64)",
                                    option, (int)len, p, text);
                goto fail;
            }
        } else {
            if (cli_parse_u64(option, item, 0, &lo) != SOWER_OK) {
                status = SOWER_FAIL(SOWER_EUSAGE, "%s: bad seed '%s' in '%s' (expected integers in 0..2^64-1)", option,
                                    item, text);
                goto fail;
            }
            hi = lo;
        }
        if (hi < lo) {
            status = SOWER_FAIL(SOWER_EUSAGE, "%s: range '%.*s' ends before it starts", option, (int)len, p);
            goto fail;
        }
        if (hi - lo >= max_seeds || *n_seeds + (size_t)(hi - lo) + 1 > max_seeds) {
            status = SOWER_FAIL(SOWER_EUSAGE, "%s: more than %zu seeds", option, max_seeds);
            goto fail;
        }
        size_t need = *n_seeds + (size_t)(hi - lo) + 1;
        if (need > cap) {
            cap = need * 2;
            uint64_t *grown = realloc(*seeds, cap * sizeof **seeds);
            if (!grown) {
                status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for the seed list");
                goto fail;
            }
            *seeds = grown;
        }
        for (uint64_t s = lo;; s++) {
            (*seeds)[(*n_seeds)++] = s;
            if (s == hi)
                break;
        }
        p += len;
        if (*p == ',') {
            p++;
            if (*p == '\0') {
                status = SOWER_FAIL(SOWER_EUSAGE, "%s: trailing comma in '%s'", option, text);
                goto fail;
            }
        }
    }
    return SOWER_OK;
fail:
    free(*seeds);
    *seeds = NULL;
    *n_seeds = 0;
    return status;
}

int cli_parse_int(const char *option, const char *text, long lo, long hi, long *value)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < lo || v > hi)
        return SOWER_FAIL(SOWER_EUSAGE, "%s: expected an integer in %ld..%ld, found '%s'", option, lo, hi, text);
    *value = v;
    return SOWER_OK;
}

int cli_parse_double(const char *option, const char *text, double lo, double hi, double *value)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !(v >= lo && v <= hi))
        return SOWER_FAIL(SOWER_EUSAGE, "%s: expected a number in %g..%g, found '%s'", option, lo, hi, text);
    *value = v;
    return SOWER_OK;
}

int cli_unknown(const char *command, const char *arg)
{
    if (arg[0] == '-')
        return SOWER_FAIL(SOWER_EUSAGE, "%s: unknown option '%s' (see 'sower %s --help')", command, arg, command);
    return SOWER_FAIL(SOWER_EUSAGE, "%s: unexpected argument '%s' (see 'sower %s --help')", command, arg, command);
}
