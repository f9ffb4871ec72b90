/* regular_file.c: opening only regular files (regular_file.h). */
#define _GNU_SOURCE /* fdopen, O_CLOEXEC, realpath */
#include "regular_file.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int regular_file_open(const char *path)
{
    /* Refused before any open: opening some devices acts (a watchdog arms, a tape rewinds). */
    struct stat before;
    if (stat(path, &before) != 0) return -1;
    if (!S_ISREG(before.st_mode)) {
        errno = S_ISDIR(before.st_mode) ? EISDIR : ENOTSUP;
        return -1;
    }
    /* O_NONBLOCK: should it be swapped for a FIFO meanwhile, the open returns at once, and fstat refuses it. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    int err = 0;
    if (fstat(fd, &st) != 0)
        err = errno;
    else if (S_ISDIR(st.st_mode))
        err = EISDIR;
    else if (!S_ISREG(st.st_mode))
        err = ENOTSUP;
    int flags = err ? 0 : fcntl(fd, F_GETFL);
    if (!err && (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)) err = errno;
    if (err) {
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

FILE *regular_file_fopen(const char *path)
{
    int fd = regular_file_open(path);
    if (fd < 0) return NULL;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        int err = errno;
        close(fd);
        errno = err;
    }
    return fp;
}

const char *regular_file_why(int err)
{
    if (err == EISDIR) return "it is a directory";
    if (err == ENOTSUP) return "it is not a regular file (a FIFO, socket or device)";
    return strerror(err);
}

int regular_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int path_present(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Splits path into its folder (folder_size bytes: "." when there is no '/', "/" for the root) and its
 * last name; 0 when the folder does not fit. */
static int split_folder(const char *path, char *folder, size_t folder_size, const char **name)
{
    const char *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n + 2 > folder_size) return 0;
    if (n == 0)
        strcpy(folder, ".");
    else
        memcpy(folder, path, n), folder[n] = '\0';
    return 1;
}

int path_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char fa[PATH_MAX], fb[PATH_MAX], ra[PATH_MAX], rb[PATH_MAX];
    const char *na, *nb;
    if (!split_folder(a, fa, sizeof fa, &na) || !split_folder(b, fb, sizeof fb, &nb)) return strcmp(a, b) == 0;
    if (strcmp(na, nb) != 0) return 0;
    if (!realpath(fa, ra) || !realpath(fb, rb)) return strcmp(fa, fb) == 0;
    return strcmp(ra, rb) == 0;
}

int path_folder_exists(const char *path, char *why, size_t why_size)
{
    char folder[PATH_MAX];
    const char *name;
    struct stat st;
    if (!split_folder(path, folder, sizeof folder, &name)) {
        snprintf(why, why_size, "its folder's name is too long");
        return 0;
    }
    if (stat(folder, &st) != 0) {
        snprintf(why, why_size, "its folder '%s' does not exist", folder);
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, why_size, "'%s' is not a folder", folder);
        return 0;
    }
    return 1;
}

int regular_file_read_stream(FILE *fp, size_t max_bytes, unsigned char **data, size_t *n)
{
    *data = NULL, *n = 0;
    struct stat st;
    size_t cap = fstat(fileno(fp), &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 4096;
    if (cap > max_bytes) cap = max_bytes; /* then one byte more tells it is larger */
    unsigned char *buf = malloc(cap + 1); /* (cap + 1,): room to see the end, then the '\0' */
    if (!buf) return ENOMEM;
    size_t got = 0;
    for (;;) {
        got += fread(buf + got, 1, cap + 1 - got, fp);
        const int err = ferror(fp) ? EIO : got > max_bytes ? EFBIG : 0;
        if (!err && got <= cap) break; /* the end of the file */
        const size_t next = cap > max_bytes / 2 ? max_bytes : 2 * cap;
        unsigned char *grown = err ? NULL : realloc(buf, next + 1);
        if (!grown) {
            free(buf);
            return err ? err : ENOMEM;
        }
        buf = grown, cap = next;
    }
    unsigned char *shrunk = realloc(buf, got + 1); /* (got + 1,) */
    if (shrunk) buf = shrunk;
    buf[got] = '\0';
    *data = buf, *n = got;
    return 0;
}

/* 1 when a file in dir or its folders, at most depth levels down, is `target` (same device and inode). */
static int folder_holds(const char *dir, const struct stat *target, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));) {
        char path[PATH_MAX];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path || stat(path, &st) != 0)
            continue;
        if (S_ISREG(st.st_mode))
            found = st.st_dev == target->st_dev && st.st_ino == target->st_ino;
        else if (S_ISDIR(st.st_mode) && depth > 0)
            found = folder_holds(path, target, depth - 1);
    }
    closedir(d);
    return found;
}

int folder_holds_file(const char *dir, const char *path)
{
    struct stat target;
    return stat(path, &target) == 0 && S_ISREG(target.st_mode) && folder_holds(dir, &target, 2);
}

int output_path_check(const char *path, const char *what)
{
    const size_t n = strlen(path);
    struct stat st;
    if (n == 0) return SOWER_FAIL(SOWER_EPATH, "the %s path is empty", what);
    if (path[n - 1] == '/' || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
        return SOWER_FAIL(SOWER_EPATH, "%s '%s' is a directory: name the file to write (e.g. %s%sout.h5)", what, path,
                          path, path[n - 1] == '/' ? "" : "/");
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) /* the final rename would replace a device */
        return SOWER_FAIL(SOWER_EPATH, "%s '%s' is not a regular file (a device, FIFO or socket)", what, path);
    return SOWER_OK;
}
