/* cli.h: small helpers shared by the subcommands' option parsers.
 * Options take values as "--name VALUE" or "--name=VALUE"; every parse error is SOWER_EUSAGE with
 * a message naming the option, what was expected and what was found. */
#ifndef SOWER_CLI_H
#define SOWER_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum { CLI_MAX_DIMS = 8 };

/* One option of a command: every command describes its options in a table and parses argv with
 * cli_parse, so every option is spelled the same way everywhere. */
typedef struct {
    const char *name;  /* "--batch" */
    const char *alias; /* another spelling ("-o", "--ntasks"), or NULL */
    int takes_value;   /* 1: "--name VALUE" or "--name=VALUE"; 0: a flag ("--name=x" is refused) */
} CliOption;

/* What cli_parse calls: on_option with the option's index in the table and its value (NULL for a
 * flag), on_positional with every other argument (NULL: the command takes none). A handler's
 * failure stops the parse and is returned. */
typedef struct {
    const char *command; /* "run", for messages */
    const CliOption *options;
    int n_options;
    int (*on_option)(void *ctx, int index, const char *value);
    int (*on_positional)(void *ctx, const char *arg);
    void *ctx;
} CliParser;

/* Walks argv in order. "-h"/"--help" sets *help and stops. "--" ends the options (what follows is
 * positional). An unknown option, a missing value or a value given to a flag is SOWER_EUSAGE naming
 * the option and the command. A value is taken as it is, even when it starts with '-' ("--seed -1"). */
int cli_parse(const CliParser *p, int argc, char **argv, int *help) SOWER_MUST_CHECK;
/* The positional handler of a command that takes exactly one: stores it in *(const char **)ctx and
 * refuses a second. */
int cli_one_positional(void *ctx, const char *arg) SOWER_MUST_CHECK;

/* An unsigned 64-bit integer, decimal or 0x-hex; with allow_negative, -2^63..-1 are taken as
 * their two's complement (as torch takes negative seeds). */
int cli_parse_u64(const char *option, const char *text, int allow_negative, uint64_t *value) SOWER_MUST_CHECK;

/* "D1,D2,..." (1..CLI_MAX_DIMS dims, each >= 0) into dims; *numel = product, at most max_numel. */
int cli_parse_shape(const char *option, const char *text, int64_t *dims, int *ndims, uint64_t max_numel,
                    uint64_t *numel) SOWER_MUST_CHECK;

/* SEEDS: comma-separated items of base/seeds.h's syntax (e.g. "0-7,4294967303,-1"), in order, at
 * most max_seeds in all. *seeds is a new array (caller frees). */
int cli_parse_seed_list(const char *option, const char *text, size_t max_seeds, uint64_t **seeds,
                        size_t *n_seeds) SOWER_MUST_CHECK;

/* A positive integer in lo..hi. */
int cli_parse_int(const char *option, const char *text, long lo, long hi, long *value) SOWER_MUST_CHECK;

/* A finite number in lo..hi. */
int cli_parse_double(const char *option, const char *text, double lo, double hi, double *value) SOWER_MUST_CHECK;

/* The status for an option this command does not know, or a stray argument. */
int cli_unknown(const char *command, const char *arg) SOWER_MUST_CHECK;
/* SOWER_EUSAGE for an operand past the one a command takes (the_one: what that is, e.g. "JOB.yaml"). */
int cli_extra_operand(const char *command, const char *arg, const char *the_one) SOWER_MUST_CHECK;

#endif /* SOWER_CLI_H */
