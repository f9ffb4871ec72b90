/* outfile.c: temp-file-and-rename output, and a capped whole-file reader. */
#define _GNU_SOURCE /* syscall */
#include "outfile.h"
#include "regular_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}

/* A character device or FIFO (through any link: /dev/null, /dev/stdout, a pipe): written to as it is,
 * never replaced. Block devices and sockets are refused (outfile_open): a disk is no output. */
static int is_special(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode));
}

int outfile_open(OutFile *f, const char *path)
{
    memset(f, 0, sizeof *f);
    if (path[0] == '\0')
        return SOWER_FAIL(SOWER_EPATH, "output path is empty");
    f->path = dup_string(path);
    if (!f->path)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for an output path");
    if (strcmp(path, "-") == 0) {
        f->fp = stdout;
        return SOWER_OK;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return SOWER_FAIL(SOWER_EPATH, "output '%s' is a directory, expected a file path", path);
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !is_special(path))
        return SOWER_FAIL(SOWER_EPATH, "output '%s' is a block device or socket, expected a file path", path);
    if (is_special(path)) { /* written in place: a rename would replace /dev/null with a file */
        f->fp = fopen(path, "wb");
        if (!f->fp) return SOWER_FAIL(SOWER_EPATH, "cannot open output '%s': %s", path, strerror(errno));
        return SOWER_OK;
    }
    size_t n = strlen(path) + 48;
    f->tmp_path = malloc(n);
    if (!f->tmp_path)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for an output path");
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    const char *slash = strrchr(f->tmp_path, '/');
    const size_t name_len = strlen(slash ? slash + 1 : f->tmp_path);
    if (name_len > NAME_MAX) { /* a long output name: the temporary one is cut to fit, numbered to stay apart */
        static _Atomic unsigned serial;
        const size_t dir_len = slash ? (size_t)(slash + 1 - f->tmp_path) : 0;
        snprintf(f->tmp_path, n, "%.*s%.*s.tmp.%ld.%u", (int)dir_len, path, NAME_MAX - 48, path + dir_len,
                 (long)getpid(), serial++);
    }
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        int err = errno;
        free(f->tmp_path);
        f->tmp_path = NULL;
        return SOWER_FAIL(SOWER_EPATH, "cannot create output '%s': %s", path, strerror(err));
    }
    return SOWER_OK;
}

int outfile_open_new(OutFile *f, const char *path)
{
    struct stat st;
    if (strcmp(path, "-") != 0 && lstat(path, &st) == 0 && !is_special(path)) {
        memset(f, 0, sizeof *f);
        return SOWER_FAIL(SOWER_EPATH, "'%s' exists: not replacing it without --force", path);
    }
    SOWER_TRY(outfile_open(f, path));
    f->keep_existing = 1;
    return SOWER_OK;
}

int outfile_write(OutFile *f, const void *data, size_t bytes)
{
    if (bytes && fwrite(data, 1, bytes, f->fp) != bytes)
        return SOWER_FAIL(SOWER_EIO, "cannot write output '%s': %s", f->path, strerror(errno));
    return SOWER_OK;
}

int rename_no_replace(const char *from, const char *to)
{
#ifdef SYS_renameat2 /* the system call, not glibc's wrapper: clusters still run glibc < 2.28 */
    if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) return -1;
#endif
    if (link(from, to) == 0) { /* NFS and others without RENAME_NOREPLACE: link(2) fails where rename(2) replaces */
        if (unlink(from) == 0) return 0;
        const int err = errno; /* two names for one file: a later truncation of `from` would reach `to` */
        unlink(to);
        return errno = err, -1;
    }
    if (errno == EEXIST || (errno != EPERM && errno != ENOSYS && errno != EOPNOTSUPP)) return -1;
    struct stat st; /* no hard links either: a look first, then rename (a window of microseconds) */
    if (lstat(to, &st) == 0) return errno = EEXIST, -1;
    return rename(from, to);
}

int outfile_commit(OutFile *f)
{
    if (fflush(f->fp) != 0)
        return SOWER_FAIL(SOWER_EIO, "cannot write output '%s': %s", f->path, strerror(errno));
    if (!f->tmp_path) {
        f->committed = 1;
        return SOWER_OK;
    }
    if (fsync(fileno(f->fp)) != 0 && errno != EINVAL)
        return SOWER_FAIL(SOWER_EIO, "cannot sync output '%s': %s", f->path, strerror(errno));
    FILE *fp = f->fp;
    f->fp = NULL;
    if (fclose(fp) != 0)
        return SOWER_FAIL(SOWER_EIO, "cannot close output '%s': %s", f->path, strerror(errno));
    if (f->keep_existing) {
        if (rename_no_replace(f->tmp_path, f->path) != 0)
            return SOWER_FAIL(errno == EEXIST ? SOWER_EPATH : SOWER_EIO, "cannot create '%s': %s%s", f->path,
                              strerror(errno), errno == EEXIST ? " (another process wrote it meanwhile: not replacing it)" : "");
    } else if (rename(f->tmp_path, f->path) != 0) {
        return SOWER_FAIL(SOWER_EIO, "cannot rename '%s' to '%s': %s", f->tmp_path, f->path, strerror(errno));
    }
    f->committed = 1;
    return SOWER_OK;
}

void outfile_free(OutFile *f)
{
    if (f->fp && f->fp != stdout)
        fclose(f->fp);
    if (f->tmp_path && !f->committed)
        remove(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    memset(f, 0, sizeof *f);
}

int file_read_all(const char *path, size_t max_bytes, unsigned char **data, size_t *bytes)
{
    *data = NULL;
    *bytes = 0;
    FILE *fp = regular_file_fopen(path); /* never blocks on a FIFO */
    if (!fp)
        return SOWER_FAIL(SOWER_EPATH, "cannot open '%s': %s", path, regular_file_why(errno));
    int err = regular_file_read_stream(fp, max_bytes, data, bytes);
    fclose(fp);
    if (err == ENOMEM) return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading '%s'", path);
    if (err == EFBIG) return SOWER_FAIL(SOWER_EINPUT, "'%s' is larger than the %zu bytes expected", path, max_bytes);
    if (err) return SOWER_FAIL(SOWER_EIO, "cannot read '%s'", path);
    return SOWER_OK;
}

int file_read_if_present(const char *path, size_t max_bytes, unsigned char **data, size_t *bytes, int *present)
{
    struct stat st;
    *data = NULL, *bytes = 0, *present = 0;
    if (lstat(path, &st) != 0 && errno == ENOENT)
        return SOWER_OK;
    *present = 1;
    return file_read_all(path, max_bytes, data, bytes);
}

int make_dirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return SOWER_FAIL(SOWER_EPATH, "path '%s' is too long", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(path, 0777);
        *p = '/';
    }
    struct stat st;
    if (mkdir(path, 0777) != 0 && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)))
        return SOWER_FAIL(SOWER_EPATH, "cannot create the directory '%s'", path);
    return SOWER_OK;
}

size_t h5_stem_length(const char *path)
{
    size_t len = strlen(path);
    return len > 3 && !strcmp(path + len - 3, ".h5") ? len - 3 : len;
}
