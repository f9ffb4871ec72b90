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

int cli_unknown(const char *command, const char *arg)
{
    if (arg[0] == '-')
        return SOWER_FAIL(SOWER_EUSAGE, "%s: unknown option '%s' (see 'sower %s --help')", command, arg, command);
    return SOWER_FAIL(SOWER_EUSAGE, "%s: unexpected argument '%s' (see 'sower %s --help')", command, arg, command);
}
