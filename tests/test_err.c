/* test_err.c: the status table, exit codes and the trace an error gathers while unwinding; long
 * messages; regular_file_read_stream's buffer growth. */
#define _POSIX_C_SOURCE 200809L /* fmemopen */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "err.h"
#include "regular_file.h"

static int inner(int fail)
{
    if (fail)
        return SOWER_FAIL(SOWER_EINPUT, "value %d is bad", fail);
    return SOWER_OK;
}

static int middle(int fail)
{
    SOWER_TRY(inner(fail));
    return SOWER_OK;
}

static int outer(int fail)
{
    int status = SOWER_OK;
    SOWER_TRY_GOTO(middle(fail), status, cleanup);
cleanup:
    return status;
}

int main(void)
{
    CHECK(sower_status_exit_code(SOWER_OK) == 0, "ok -> 0");
    CHECK(sower_status_exit_code(SOWER_EMISMATCH) == 1, "mismatch -> 1");
    CHECK(sower_status_exit_code(SOWER_EUSAGE) == 2 && sower_status_exit_code(SOWER_EMANIFEST) == 2 &&
              sower_status_exit_code(SOWER_EMODEL) == 2,
          "bad input -> 2");
    CHECK(sower_status_exit_code(SOWER_ENOMEM) == 3 && sower_status_exit_code(SOWER_EMPI) == 3, "runtime -> 3");
    CHECK(sower_status_exit_code(-1) == 3 && sower_status_exit_code(SOWER_STATUS_COUNT) == 3,
          "unknown codes are runtime failures");
    CHECK(strcmp(sower_status_name(SOWER_EMODEL), "SOWER_EMODEL") == 0, "name table");

    CHECK(outer(0) == SOWER_OK && sower_error_status() == SOWER_OK, "success leaves no error");
    CHECK(outer(7) == SOWER_EINPUT, "status propagates");
    CHECK(strcmp(sower_error_message(), "value 7 is bad") == 0, "message kept: '%s'", sower_error_message());

    char buf[4096] = {0};
    FILE *mem = fmemopen(buf, sizeof buf - 1, "w");
    sower_error_print(mem, 1);
    fclose(mem);
    CHECK(strstr(buf, "sower: error: value 7 is bad") != NULL, "printed message: %s", buf);
    const char *p_inner = strstr(buf, "inner()"), *p_middle = strstr(buf, "middle()"), *p_outer = strstr(buf, "outer()");
    CHECK(p_inner && p_middle && p_outer && p_inner < p_middle && p_middle < p_outer, "trace order: %s", buf);
    CHECK(strstr(buf, "test_err.c:") != NULL, "trace has file:line: %s", buf);

    sower_error_clear();
    CHECK(sower_error_status() == SOWER_OK && sower_error_message()[0] == '\0', "clear");

    /* A message naming a few 4 KiB paths is kept whole, also when wrapped with its own text; one past
     * the record's size says it was cut. */
    static char path[4097], huge[40000];
    memset(path, 'p', sizeof path - 1);
    (void)SOWER_FAIL(SOWER_EPATH, "cannot open '%s'", path);
    (void)SOWER_FAIL(SOWER_EPATH, "job.yaml:3:8: model: %s (and '%s')", sower_error_message(), path);
    const char *m = sower_error_message();
    CHECK(strlen(m) == strlen("job.yaml:3:8: model: cannot open '' (and '')") + 2 * strlen(path) &&
              strncmp(m, "job.yaml:3:8: model: cannot open 'ppp", 37) == 0,
          "a wrapped 8 KiB message kept whole (%zu bytes)", strlen(m));
    memset(huge, 'h', sizeof huge - 1);
    (void)SOWER_FAIL(SOWER_EINPUT, "%s", huge);
    m = sower_error_message();
    CHECK(strlen(m) < sizeof huge && strlen(m) > 8192 && strcmp(m + strlen(m) - 6, " [...]") == 0,
          "a message past the record ends ' [...]'");
    sower_error_clear();

    /* regular_file_read_stream: a stream of unknown size (fmemopen: no file descriptor to stat) grows
     * its buffer from 4 KiB; the cap is exact. */
    enum { STREAM_BYTES = 100000 };
    char *content = malloc(STREAM_BYTES); /* (STREAM_BYTES,) */
    for (int i = 0; i < STREAM_BYTES; i++) content[i] = (char)('a' + i % 26);
    const size_t caps[] = {STREAM_BYTES * 2, STREAM_BYTES, STREAM_BYTES - 1, 5000};
    for (int c = 0; c < 4; c++) {
        FILE *in = fmemopen(content, STREAM_BYTES, "r");
        unsigned char *data = NULL;
        size_t n = 0;
        int err = regular_file_read_stream(in, caps[c], &data, &n);
        fclose(in);
        if (caps[c] >= STREAM_BYTES)
            CHECK(err == 0 && n == STREAM_BYTES && memcmp(data, content, n) == 0 && data[n] == '\0',
                  "a %d-byte stream read whole under a cap of %zu (err %d, %zu bytes)", STREAM_BYTES, caps[c], err, n);
        else
            CHECK(err == EFBIG && data == NULL, "a %d-byte stream refused under a cap of %zu (err %d)", STREAM_BYTES,
                  caps[c], err);
        free(data);
    }
    free(content);
    return check_exit("test_err");
}
