/* regular_file.c: opening only regular files (regular_file.h). */
#define _GNU_SOURCE /* fdopen, O_CLOEXEC */
#include "regular_file.h"

#include <errno.h>
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
