/* cli.h: small helpers shared by the subcommands' option parsers.
 * Options take values as "--name VALUE" or "--name=VALUE"; every parse error is SOWER_EUSAGE with
 * a message naming the option, what was expected and what was found. */
#ifndef SOWER_CLI_H
#define SOWER_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum { CLI_MAX_DIMS = 8 };

/* If argv[*i] is the option `name` ("--seed"), sets *matched, stores its value and advances *i
 * past it. Fails if the option is present but its value is missing. */
int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value,
                     int *matched) SOWER_MUST_CHECK;

/* An unsigned 64-bit integer, decimal or 0x-hex; with allow_negative, -2^63..-1 are taken as
 * their two's complement (as torch takes negative seeds). */
int cli_parse_u64(const char *option, const char *text, int allow_negative, uint64_t *value) SOWER_MUST_CHECK;

/* "D1,D2,..." (1..CLI_MAX_DIMS dims, each >= 0) into dims; *numel = product, at most max_numel. */
int cli_parse_shape(const char *option, const char *text, int64_t *dims, int *ndims, uint64_t max_numel,
                    uint64_t *numel) SOWER_MUST_CHECK;

/* SEEDS: comma-separated uint64 values and inclusive ranges "a-b" (e.g. "0-7,4294967303"), in
 * order, at most max_seeds in all. *seeds is a new array (caller frees). */
int cli_parse_seed_list(const char *option, const char *text, size_t max_seeds, uint64_t **seeds,
                        size_t *n_seeds) SOWER_MUST_CHECK;

/* A positive integer in lo..hi. */
int cli_parse_int(const char *option, const char *text, long lo, long hi, long *value) SOWER_MUST_CHECK;

/* A finite number in lo..hi. */
int cli_parse_double(const char *option, const char *text, double lo, double hi, double *value) SOWER_MUST_CHECK;

/* The status for an option this command does not know, or a stray argument. */
int cli_unknown(const char *command, const char *arg) SOWER_MUST_CHECK;

#endif /* SOWER_CLI_H */
