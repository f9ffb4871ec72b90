/* threads_follow.h: a renderer's thread count following the load on its CPUs (cpu_load.h's LoadWatch),
 * between denoising steps. The count never changes a bit, only the time. */
#ifndef SOWER_THREADS_FOLLOW_H
#define SOWER_THREADS_FOLLOW_H

#include "cpu_load.h"

/* Polls w (a zeroed LoadWatch does nothing); when the count changes, applies it (gemm_change_threads) and
 * says so on stderr after `who` ("sower run: [rank 1]", "sower sample:"). Without the memory for more
 * threads the count stays as it is and the watch ends. */
void threads_follow_load(LoadWatch *w, const char *who);

#endif /* SOWER_THREADS_FOLLOW_H */
