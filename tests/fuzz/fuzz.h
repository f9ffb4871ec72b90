/* fuzz.h: what the fuzz targets (tests/fuzz/fuzz_*.c) share.
 *
 * A target is one LLVMFuzzerTestOneInput over one of sower's readers of untrusted bytes (job
 * manifests, model configs, safetensors files, generator state images, command-line values). It
 * checks the contract for bad input, not only "no crash": a reader either succeeds with a result
 * that keeps its invariants, or fails with a bad-input status (exit code 2) and a message that
 * names where (the file or the option). A broken property aborts, which both drivers report:
 *   - libFuzzer (clang, -DSOWER_FUZZ=ON): explores new inputs, see tests/fuzz/README.md;
 *   - fuzz_replay.c (every build, ctest fuzz_*): runs the committed corpora, so that inputs found
 *     once stay fixed, under the sanitizers in CI. */
#ifndef SOWER_FUZZ_H
#define SOWER_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond, ...)                                                          \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: property broken: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                               \
            fprintf(stderr, "\n");                                                      \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* A failed read of bad bytes: a bad-input status whose message names `where`. Clears the error. */
static inline void fuzz_expect_input_error(int status, const char *where)
{
    const char *message = sower_error_message();
    FUZZ_ASSERT(sower_status_exit_code(status) == 2, "status %s, message \"%s\"", sower_status_name(status),
                message);
    FUZZ_ASSERT(strstr(message, where) != NULL, "the message \"%s\" does not name %s", message, where);
    sower_error_clear();
}

/* The input as a NUL-terminated string (cut at its first NUL, as argv or a C string would be). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    FUZZ_ASSERT(s != NULL, "out of memory");
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif /* SOWER_FUZZ_H */
