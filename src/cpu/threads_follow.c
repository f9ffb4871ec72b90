/* threads_follow.c: see threads_follow.h. */
#include "threads_follow.h"

#include <stdio.h>

#include "err.h"
#include "gemm.h"

void threads_follow_load(LoadWatch *w, const char *who)
{
    const int before = w->threads;
    int others = 0;
    const int threads = load_watch_poll(w, &others);
    if (threads == before) return;
    if (gemm_change_threads(threads) != SOWER_OK) {
        sower_error_clear();
        w->threads = before, w->ok = 0;
        return;
    }
    fprintf(stderr, "%s other work %s %d of the %d CPUs here: %d thread%s from now on (the bits are the same)\n",
            who, threads < before ? "now keeps" : "keeps only", others, cpu_set_count(&w->mine), threads,
            threads == 1 ? "" : "s");
}
