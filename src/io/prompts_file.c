/* prompts_file.c: a manifest's prompts_file, one UTF-8 prompt per line, appended after prompts:'s
 * (manifest.h). Its bytes come from disk (manifest_load, sower check/submit), from rank 0 by
 * broadcast (sower run: every rank parses the same bytes), or, for readers of a finished output, from
 * the output's own /prompts (the file may have changed or gone since; the job key holds its digest). */
#define _POSIX_C_SOURCE 200809L /* strndup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_file.h"
#include "manifest.h"
#include "utf8.h"

/* Room for `more` prompts after the n_prompts there are. */
static int grow(Job *job, size_t more)
{
    const size_t n = job->n_prompts + more;
    char **prompts = realloc(job->prompts, n * sizeof *prompts);
    if (prompts) job->prompts = prompts;
    char **negatives = realloc(job->negative_prompts, n * sizeof *negatives);
    if (negatives) job->negative_prompts = negatives;
    Mark *marks = realloc(job->prompt_marks, n * sizeof *marks);
    if (marks) job->prompt_marks = marks;
    if (!prompts || !negatives || !marks) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu prompts", n);
    return SOWER_OK;
}

static int append(Job *job, const char *prompt, size_t len, const char *negative, Mark mark)
{
    const size_t k = job->n_prompts;
    job->prompts[k] = strndup(prompt, len);
    job->negative_prompts[k] = strdup(negative);
    job->prompt_marks[k] = mark;
    job->n_prompts++; /* counted as made: job_free frees what is there */
    if (!job->prompts[k] || !job->negative_prompts[k]) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    return SOWER_OK;
}

/* The prompts are final: rows are every (prompt, seed) pair. */
static int count_rows(Job *job, const char *where)
{
    if (!job->n_prompts) return SOWER_FAIL(SOWER_EMANIFEST, "%s: expected at least one prompt, found none", where);
    if (job->n_seeds > JOB_MAX_ROWS / job->n_prompts)
        return SOWER_FAIL(SOWER_EMANIFEST, "%s: expected at most 2^40 rows, found %zu prompts x %llu seeds", where,
                          job->n_prompts, (unsigned long long)job->n_seeds);
    job->n_rows = job->n_seeds * job->n_prompts;
    job->prompts_file_pending = 0;
    return SOWER_OK;
}

/* A line is blank when it holds only spaces and tabs. */
static int blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t') return 0;
    return 1;
}

static int read_lines(Job *job, const char *text, size_t bytes)
{
    const char *path = job->prompts_file;
    if (bytes >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3, bytes -= 3; /* a byte-order mark */
    size_t lines = 1; /* at most one prompt each, and at most JOB_MAX_PROMPTS in all */
    for (size_t i = 0; i < bytes; i++) lines += text[i] == '\n';
    const size_t room = JOB_MAX_PROMPTS - job->n_prompts;
    SOWER_TRY(grow(job, lines < room ? lines : room));
    const size_t before = job->n_prompts;
    const char *line = text, *end = text + bytes;
    for (uint32_t number = 1; line < end; number++) {
        const char *newline = memchr(line, '\n', (size_t)(end - line));
        const char *next = newline ? newline + 1 : end;
        size_t len = (size_t)((newline ? newline : end) - line);
        if (len && line[len - 1] == '\r') len--;
        size_t bad = 0;
        if (memchr(line, '\0', len))
            return SOWER_FAIL(SOWER_EMANIFEST, "%s:%u:%zu: expected a prompt of UTF-8 text, found a NUL byte", path,
                              number, (size_t)((const char *)memchr(line, '\0', len) - line) + 1);
        if (!utf8_valid(line, len, &bad))
            return SOWER_FAIL(SOWER_EMANIFEST, "%s:%u:%zu: expected a prompt of valid UTF-8, found byte 0x%02X", path,
                              number, bad + 1, (unsigned)(unsigned char)line[bad]);
        if (!blank(line, len)) {
            if (utf8_chars(line, len) > JOB_MAX_PROMPT_CHARS)
                return SOWER_FAIL(SOWER_EMANIFEST, "%s:%u:1: expected a prompt of at most %d characters, found %zu",
                                  path, number, JOB_MAX_PROMPT_CHARS, utf8_chars(line, len));
            if (job->n_prompts == JOB_MAX_PROMPTS)
                return SOWER_FAIL(SOWER_EMANIFEST,
                                  "%s:%u:1: expected at most %d prompts (prompts: and prompts_file together), found more",
                                  path, number, JOB_MAX_PROMPTS);
            SOWER_TRY(append(job, line, len, job->prompts_file_negative, (Mark){number, 1}));
        }
        line = next;
    }
    if (job->n_prompts == before)
        return SOWER_FAIL(SOWER_EMANIFEST, "%s: expected one prompt per line, found no prompt (%zu bytes)", path,
                          bytes);
    return count_rows(job, path);
}

int job_read_prompts_text(Job *job, const char *text, size_t bytes)
{
    int status = read_lines(job, text, bytes);
    if (status != SOWER_OK && status != SOWER_ENOMEM) { /* name the manifest too, as its own errors do */
        char role[4200];
        job_prompts_file_role(job, role, sizeof role);
        return SOWER_FAIL(status, "%s (the %s)", sower_error_message(), role);
    }
    return status;
}

void job_prompts_file_role(const Job *job, char *out, size_t size)
{
    snprintf(out, size, "prompts file (named at %s:%u:%u)", job->manifest_path, job->prompts_file_mark.line,
             job->prompts_file_mark.column);
}

int job_load_prompts_file(Job *job)
{
    char *text = NULL; /* (bytes + 1,) */
    size_t bytes = 0;
    char what[4200];
    job_prompts_file_role(job, what, sizeof what);
    SOWER_TRY(config_file_read(job->prompts_file, what, JOB_MAX_PROMPTS_FILE_BYTES, SOWER_EMANIFEST, &text, &bytes));
    int status = job_read_prompts_text(job, text, bytes);
    free(text);
    SOWER_TRY(status);
    return SOWER_OK;
}

int job_adopt_recorded_prompts(Job *job, char *const *prompts, char *const *negatives, size_t n, const char *where)
{
    if (n <= job->n_listed_prompts || n > JOB_MAX_PROMPTS)
        return SOWER_FAIL(SOWER_EINPUT,
                          "%s: /prompts holds %zu prompts; its manifest lists %zu and names a prompts_file (expected "
                          "%zu..%d)",
                          where, n, job->n_listed_prompts, job->n_listed_prompts + 1, JOB_MAX_PROMPTS);
    for (size_t i = 0; i < job->n_listed_prompts; i++)
        if (strcmp(prompts[i], job->prompts[i]) || strcmp(negatives[i], job->negative_prompts[i]))
            return SOWER_FAIL(SOWER_EINPUT, "%s: /prompts[%zu] is not its manifest's prompt %zu", where, i, i);
    SOWER_TRY(grow(job, n - job->n_listed_prompts));
    for (size_t i = job->n_listed_prompts; i < n; i++)
        SOWER_TRY(append(job, prompts[i], strlen(prompts[i]), negatives[i], (Mark){0, 0}));
    int status = count_rows(job, where);
    if (status != SOWER_OK) return SOWER_FAIL(SOWER_EINPUT, "%s", sower_error_message());
    return SOWER_OK;
}
