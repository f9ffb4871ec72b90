/* cli.c: option helpers for the subcommands. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "seeds.h"

int cli_one_positional(void *ctx, const char *arg)
{
    const char **slot = ctx;
    if (*slot)
        return SOWER_FAIL(SOWER_EUSAGE, "unexpected second argument '%s' (after '%s')", arg, *slot);
    *slot = arg;
    return SOWER_OK;
}

/* The option argv names: its table index and where its inline value starts ("--x=v"), or -1. */
static int find_option(const CliParser *p, const char *arg, const char **inline_value)
{
    *inline_value = NULL;
    for (int k = 0; k < p->n_options; k++) {
        const char *spellings[2] = {p->options[k].name, p->options[k].alias};
        for (int s = 0; s < 2; s++) {
            size_t n = spellings[s] ? strlen(spellings[s]) : 0;
            if (!n || strncmp(arg, spellings[s], n) != 0 || (arg[n] != '\0' && arg[n] != '='))
                continue;
            if (arg[n] == '=')
                *inline_value = arg + n + 1;
            return k;
        }
    }
    return -1;
}

int cli_parse(const CliParser *p, int argc, char **argv, int *help)
{
    *help = 0;
    int options_done = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)) {
            *help = 1;
            return SOWER_OK;
        }
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (!p->on_positional)
                return SOWER_FAIL(SOWER_EUSAGE, "%s: unexpected argument '%s' (see 'sower %s --help')", p->command, arg,
                                  p->command);
            SOWER_TRY(p->on_positional(p->ctx, arg));
            continue;
        }
        const char *value = NULL;
        int k = find_option(p, arg, &value);
        if (k < 0)
            return cli_unknown(p->command, arg);
        const CliOption *o = &p->options[k];
        if (!o->takes_value && value)
            return SOWER_FAIL(SOWER_EUSAGE, "%s: option %s takes no value, found '%s'", p->command, o->name, arg);
        if (o->takes_value && !value) {
            if (i + 1 >= argc)
                return SOWER_FAIL(SOWER_EUSAGE, "%s: option %s expects a value", p->command, o->name);
            value = argv[++i];
        }
        SOWER_TRY(p->on_option(p->ctx, k, value));
    }
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
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        uint64_t lo, hi;
        int parsed = seed_item_parse(p, len, &lo, &hi);
        if (parsed == SEED_REVERSED) {
            status = SOWER_FAIL(SOWER_EUSAGE, "%s: range '%.*s' ends before it starts", option, (int)len, p);
            goto fail;
        }
        if (parsed != 0) {
            status = SOWER_FAIL(SOWER_EUSAGE,
                                "%s: bad seed '%.*s' in '%s' (expected seeds 0..2^64-1, negatives -2^63..-1 as torch "
                                "takes them, or ranges A-B with A <= B)",
                                option, (int)len, p, text);
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
    if (errno || end == text || *end != '\0' || isspace((unsigned char)text[0]) || v < lo || v > hi)
        return SOWER_FAIL(SOWER_EUSAGE, "%s: expected an integer in %ld..%ld, found '%s'", option, lo, hi, text);
    *value = v;
    return SOWER_OK;
}

int cli_parse_double(const char *option, const char *text, double lo, double hi, double *value)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    /* as the manifest reads numbers: an underflow (1e-320) is the nearest double, no hex or inf/nan spelling,
     * no leading blank (a trailing one is refused by *end) */
    const int numeric = end != text && *end == '\0' && !isspace((unsigned char)text[0]) &&
                        strpbrk(text, "xXnNiI") == NULL;
    if (!numeric || (errno == ERANGE && fabs(v) > 1) || !(v >= lo && v <= hi))
        return SOWER_FAIL(SOWER_EUSAGE, "%s: expected a number in %g..%g, found '%s'", option, lo, hi, text);
    *value = v;
    return SOWER_OK;
}

int cli_extra_operand(const char *command, const char *arg, const char *the_one)
{
    return SOWER_FAIL(SOWER_EUSAGE, "%s: unexpected argument '%s': it takes one %s%s (see 'sower %s --help')", command,
                      arg, the_one, arg[0] == '-' ? ", and after '--' every argument is one" : "", command);
}

int cli_unknown(const char *command, const char *arg)
{
    if (arg[0] == '-')
        return SOWER_FAIL(SOWER_EUSAGE, "%s: unknown option '%s' (see 'sower %s --help')", command, arg, command);
    return SOWER_FAIL(SOWER_EUSAGE, "%s: unexpected argument '%s' (see 'sower %s --help')", command, arg, command);
}
