/* mapped_file.c: see mapped_file.h. */
#define _GNU_SOURCE /* siginfo_t's si_addr, st_mtim */
#include "mapped_file.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

enum { MAX_WATCHED = 16, PATH_BYTES = 1024 };

typedef struct {
    volatile const char *base; /* NULL: a free slot */
    size_t bytes;
    char path[PATH_BYTES];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} Watched;

static Watched watched[MAX_WATCHED];
static void (*volatile on_fatal)(void);

void mapped_file_on_fatal(void (*fn)(void))
{
    on_fatal = fn;
}

/* Async-signal-safe: write(2) and _exit(2) only, on data set before the mapping was used. */
static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    (void)context;
    const char *addr = info ? (const char *)info->si_addr : NULL;
    for (int i = 0; i < MAX_WATCHED; i++) {
        const char *base = (const char *)watched[i].base;
        if (!base || addr < base || addr >= base + watched[i].bytes) continue;
        static const char head[] = "sower: error: the weights '", tail[] =
            "' were truncated or replaced while this run read them (SIGBUS in their mapping): the run ends "
            "here; rows written before are kept, none of the batch in hand is recorded\n";
        ssize_t ignored = write(2, head, sizeof head - 1);
        ignored = write(2, watched[i].path, strlen(watched[i].path));
        ignored = write(2, tail, sizeof tail - 1);
        (void)ignored;
        if (on_fatal) on_fatal();
        _exit(3);
    }
    signal(sig, SIG_DFL); /* not ours: the default action (a core dump), as without this handler */
    raise(sig);
}

void mapped_file_register(const char *path, const void *base, size_t bytes, const struct stat *st)
{
    static int installed;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
        installed = 1;
    }
    for (int i = 0; i < MAX_WATCHED; i++) {
        if (watched[i].base) continue;
        Watched *w = &watched[i];
        strncpy(w->path, path, PATH_BYTES - 1);
        w->path[PATH_BYTES - 1] = '\0';
        w->bytes = bytes, w->dev = st->st_dev, w->ino = st->st_ino, w->size = st->st_size;
        w->mtime = st->st_mtim;
        w->base = base; /* last: the handler sees a slot only once it is whole */
        return;
    }
}

void mapped_file_unregister(const void *base)
{
    for (int i = 0; i < MAX_WATCHED; i++)
        if (watched[i].base == base) watched[i].base = NULL;
}

int mapped_file_check_unchanged(void)
{
    for (int i = 0; i < MAX_WATCHED; i++) {
        const Watched *w = &watched[i];
        if (!w->base) continue;
        struct stat now;
        const char *what = NULL;
        if (stat(w->path, &now) != 0)
            what = "was removed or renamed";
        else if (now.st_dev != w->dev || now.st_ino != w->ino)
            what = "was replaced by another file";
        else if (now.st_size != w->size)
            what = "changed size";
        else if (now.st_mtim.tv_sec != w->mtime.tv_sec || now.st_mtim.tv_nsec != w->mtime.tv_nsec)
            what = "was modified";
        if (what)
            return SOWER_FAIL(SOWER_EIO,
                              "the weights file '%s' %s while this run used them: rows rendered since could come from "
                              "other weights than the recorded digest says, so the run ends; rows written "
                              "before are kept (resume once the model is settled: --resume checks its digest)",
                              w->path, what);
    }
    return SOWER_OK;
}
