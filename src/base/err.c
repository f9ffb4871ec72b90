/* err.c: the status table's accessors and the thread-local error record. */
#include "err.h"

#include <stdarg.h>
#include <string.h>

/* A message may name several paths of up to 4096 bytes each (a manifest's, a model folder's, an output's). */
enum { ERR_MESSAGE_MAX = 16384, ERR_TRACE_MAX = 32 };

typedef struct {
    const char *file;
    const char *func;
    int line;
} ErrFrame;

typedef struct {
    int status;
    char message[ERR_MESSAGE_MAX];
    ErrFrame frames[ERR_TRACE_MAX]; /* frames[0] = where the error was detected */
    int n_frames;
    int n_dropped; /* frames beyond ERR_TRACE_MAX, counted but not kept */
} ErrRecord;

static _Thread_local ErrRecord err_current;

#define STATUS_NAME_(name, exit_code, message) #name,
#define STATUS_EXIT_(name, exit_code, message) exit_code,
#define STATUS_MESSAGE_(name, exit_code, message) message,
static const char *const status_names[] = {SOWER_STATUS_TABLE(STATUS_NAME_)};
static const int status_exit_codes[] = {SOWER_STATUS_TABLE(STATUS_EXIT_)};
static const char *const status_messages[] = {SOWER_STATUS_TABLE(STATUS_MESSAGE_)};

static int status_valid(int status) { return status >= 0 && status < SOWER_STATUS_COUNT; }

const char *sower_status_name(int status)
{
    return status_valid(status) ? status_names[status] : "SOWER_E?";
}

const char *sower_status_message(int status)
{
    return status_valid(status) ? status_messages[status] : "unknown status";
}

int sower_status_exit_code(int status)
{
    return status_valid(status) ? status_exit_codes[status] : 3;
}

static void push_frame(const char *file, int line, const char *func)
{
    if (err_current.n_frames < ERR_TRACE_MAX) {
        ErrFrame *f = &err_current.frames[err_current.n_frames++];
        f->file = file;
        f->line = line;
        f->func = func;
    } else {
        err_current.n_dropped++;
    }
}

int sower_fail(int status, const char *file, int line, const char *func, const char *fmt, ...)
{
    /* Format first: the arguments may point into the record being replaced. */
    char message[ERR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int full = vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (full >= (int)sizeof message) /* say that it was cut, rather than end mid-word */
        memcpy(message + sizeof message - sizeof " [...]", " [...]", sizeof " [...]");
    memset(&err_current, 0, sizeof err_current);
    err_current.status = status;
    memcpy(err_current.message, message, sizeof message);
    push_frame(file, line, func);
    return status;
}

int sower_trace(int status, const char *file, int line, const char *func)
{
    if (err_current.status == SOWER_OK) {
        /* A status with no recorded message: a caller forgot SOWER_FAIL. Keep the code honest. */
        err_current.status = status;
        snprintf(err_current.message, sizeof err_current.message, "%s", sower_status_message(status));
    }
    push_frame(file, line, func);
    return status;
}

const char *sower_error_message(void) { return err_current.message; }

int sower_error_status(void) { return err_current.status; }

void sower_error_print(FILE *stream, int verbose)
{
    if (err_current.status == SOWER_OK)
        return;
    fprintf(stream, "sower: error: %s\n", err_current.message);
    if (!verbose)
        return;
    fprintf(stream, "  (%s: %s)\n", sower_status_name(err_current.status),
            sower_status_message(err_current.status));
    for (int i = 0; i < err_current.n_frames; i++)
        fprintf(stream, "  at %s:%d %s()\n", err_current.frames[i].file, err_current.frames[i].line,
                err_current.frames[i].func);
    if (err_current.n_dropped)
        fprintf(stream, "  ... %d more frames\n", err_current.n_dropped);
}

void sower_error_clear(void) { memset(&err_current, 0, sizeof err_current); }
