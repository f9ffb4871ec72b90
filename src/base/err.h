/* err.h: status codes, error messages and the trace an error gathers as it unwinds.
 *
 * Every function that can fail returns an int status: 0 (SOWER_OK) on success, else one of the
 * codes below. The code that detects a failure calls SOWER_FAIL(code, fmt, ...) once, which
 * records the message and the first frame; each caller on the way up wraps its call in SOWER_TRY,
 * which appends its own file:line:function. Only main() decides how the process ends: it prints
 * the message and the trace (sower_error_print) and exits with sower_status_exit_code().
 *
 * The error record is thread-local, so worker threads cannot garble each other's messages. */
#ifndef SOWER_ERR_H
#define SOWER_ERR_H

#include <stdio.h>

/* One table: enum name, process exit code, message. Exit codes follow docs/design.md:
 * 0 ok, 1 verification mismatch, 2 bad input (manifest, model, options), 3 runtime failure. */
#define SOWER_STATUS_TABLE(X)                                                   \
    X(SOWER_OK,        0, "success")                                            \
    X(SOWER_EUSAGE,    2, "bad command-line usage")                             \
    X(SOWER_EINPUT,    2, "bad input value")                                    \
    X(SOWER_EMANIFEST, 2, "bad job manifest")                                   \
    X(SOWER_EMODEL,    2, "bad model files")                                    \
    X(SOWER_EPATH,     2, "bad path")                                           \
    X(SOWER_EMISMATCH, 1, "verification mismatch")                              \
    X(SOWER_ENOMEM,    3, "out of memory")                                      \
    X(SOWER_EIO,       3, "input/output error")                                 \
    X(SOWER_EMPI,      3, "MPI error")                                          \
    X(SOWER_ECUDA,     3, "CUDA error")                                         \
    X(SOWER_ESTOPPED,  3, "stopped by a signal (resumable)")                    \
    X(SOWER_EINTERNAL, 3, "internal error (a bug in sower)")

#define SOWER_STATUS_ENUM_(name, exit_code, message) name,
typedef enum { SOWER_STATUS_TABLE(SOWER_STATUS_ENUM_) SOWER_STATUS_COUNT } SowerStatus;
#undef SOWER_STATUS_ENUM_

#if defined(__GNUC__)
#define SOWER_MUST_CHECK __attribute__((warn_unused_result))
#define SOWER_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define SOWER_MUST_CHECK
#define SOWER_PRINTF(fmt_index, first_arg)
#endif

#ifdef __cplusplus
extern "C" {
#endif

const char *sower_status_name(int status);
const char *sower_status_message(int status);
int sower_status_exit_code(int status);

/* Records a new error (replacing any earlier one) with its message and first frame; returns status. */
int sower_fail(int status, const char *file, int line, const char *func, const char *fmt, ...)
    SOWER_PRINTF(5, 6);
/* Appends a frame to the current error's trace; returns status unchanged. */
int sower_trace(int status, const char *file, int line, const char *func);

/* The current error's message ("" if none) and status (SOWER_OK if none). SOWER_FAIL may take the
 * message as an argument to wrap it ("where: %s"): the new text is formatted before the record changes. */
const char *sower_error_message(void);
int sower_error_status(void);
/* Prints "sower: error: MESSAGE" and, when verbose, the trace, to stream. */
void sower_error_print(FILE *stream, int verbose);
void sower_error_clear(void);

#ifdef __cplusplus
}
#endif

#define SOWER_FAIL(status, ...) sower_fail((status), __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Evaluates a status-returning call; on failure adds this frame and returns the status. */
#define SOWER_TRY(call)                                                          \
    do {                                                                         \
        int sower_try_status_ = (call);                                          \
        if (sower_try_status_ != SOWER_OK)                                       \
            return sower_trace(sower_try_status_, __FILE__, __LINE__, __func__); \
    } while (0)

/* Like SOWER_TRY but jumps to a cleanup label with the status stored in `status_var`. */
#define SOWER_TRY_GOTO(call, status_var, label)                                  \
    do {                                                                         \
        (status_var) = (call);                                                   \
        if ((status_var) != SOWER_OK) {                                          \
            sower_trace((status_var), __FILE__, __LINE__, __func__);             \
            goto label;                                                          \
        }                                                                        \
    } while (0)

#endif /* SOWER_ERR_H */
