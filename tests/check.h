/* check.h: the assertions the C tests share. A failed CHECK prints where and what, and counts;
 * check_exit() turns the count into the exit code (0 pass, 1 fail). Tests never pass silently. */
#ifndef SOWER_TEST_CHECK_H
#define SOWER_TEST_CHECK_H

#include <stdio.h>

static int check_failures;
static int check_count;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        check_count++;                                                     \
        if (!(cond)) {                                                     \
            check_failures++;                                              \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

static inline int check_exit(const char *test_name)
{
    if (check_count == 0) {
        fprintf(stderr, "%s: no checks ran\n", test_name);
        return 1;
    }
    printf("%s: %d checks, %d failed\n", test_name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif /* SOWER_TEST_CHECK_H */
