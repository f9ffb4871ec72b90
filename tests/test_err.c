/* test_err.c: the status table, exit codes and the trace an error gathers while unwinding. */
#define _POSIX_C_SOURCE 200809L /* fmemopen */
#include <string.h>

#include "check.h"
#include "err.h"

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
    return check_exit("test_err");
}
