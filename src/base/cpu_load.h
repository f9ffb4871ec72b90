/* cpu_load.h: which CPUs this process may count as its own, and how many of them other work keeps
 * busy, at the start and while it runs. The default thread count leaves busy CPUs out, and CPUs that
 * the node's ranks share count as a share each: threads that share a core with a busy neighbour, or
 * with another rank's threads, wait at every barrier for the one descheduled (jobs/quick.yaml took 7.7 s
 * with 2 threads beside two busy processes on 2 cores, 1.8 s with 1 thread, 1.2 s quiet; 256 digits
 * rows took 69.7 s when that load arrived 2 s into the run, 19.0 s when it was there from the start).
 * The thread count never changes a bit (the determinism contract), only the time. */
#ifndef SOWER_CPU_LOAD_H
#define SOWER_CPU_LOAD_H

#include <stdint.h>

#include "err.h"

enum { CPU_LOAD_MAX_CPUS = 1024 }; /* glibc's CPU_SETSIZE */

/* A set of CPUs, bit c for CPU c: an affinity mask, plain bytes (MPI sends it as such). */
typedef struct {
    uint64_t bits[CPU_LOAD_MAX_CPUS / 64];
} CpuSet;

/* One process of the node: its affinity mask and pid (MPI gathers these as bytes). */
typedef struct {
    CpuSet mask;
    int32_t pid;
} NodeRank;

int cpu_set_count(const CpuSet *s);
/* This process's affinity mask (the online CPUs when it cannot be read). */
void cpu_load_affinity(CpuSet *mine);
/* Samples /proc/stat twice, window_ms apart (the caller sleeping meanwhile): *busy gets the CPUs of
 * this process's mask more than half busy over the window; none when /proc/stat cannot be read. */
void cpu_load_probe(int window_ms, CpuSet *busy);
/* The CPUs a process may count as its own beside the node's processes ranks (n,), itself among them:
 * each CPU of mine that is not busy (busy may be NULL) counts 1/k when k of their masks hold it. Ranks
 * bound to a socket each (Open MPI's default past 2 ranks) share its CPUs; unbound ranks share the
 * node's. */
double cpu_load_entitlement(const CpuSet *mine, const NodeRank *ranks, int n, const CpuSet *busy);
/* Threads for an entitlement: its whole CPUs, at least 1. */
int cpu_load_threads(double entitlement);
/* The default --threads of a one-process command (sample, encode, export): a 50 ms probe's free
 * CPUs; when some are busy it says so on stderr, naming the command ("sample"). */
int cpu_load_default_threads(const char *command);
/* A thread count asked for (--threads, pipeline.threads), at most the CPUs this process may run on: more
 * threads than CPUs wait on each other at every barrier (BLIS's spin; 4 threads on 2 CPUs rendered in
 * minutes what 1 did in half a second), and the count never changes a bit. With say, it says so on stderr when
 * it cuts ("sower run: pipeline.threads 64 is more than ..."). */
int cpu_load_cap_threads(int asked, const char *command, const char *option, int say);

/* Watching the load while rendering: other work that starts on these CPUs after the start (another
 * job, a VM's neighbour stealing time) would slow spinning threads several times over. Between
 * denoising steps the renderer polls; once a window of at least LOAD_WATCH_WINDOW_MS has passed, the
 * CPU time the process's CPUs spent on other work (their busy time in /proc/stat less this process's
 * own and less what the node's ranks sharing them took, each read from /proc/PID/stat) says how many
 * CPUs others hold, and so the thread count from now on. A CPU counts as held from 0.6 of one and as
 * free again below 0.4; fewer threads at once, more only when two windows in a row agree, so that a
 * short burst or a neighbour near half a CPU does not make the count swing. */
typedef struct {
    CpuSet mine;        /* the CPUs watched: this process's mask */
    double entitlement; /* the process's share of them on a quiet node (cpu_load_entitlement) */
    double crowd;       /* processes per CPU of mine, on average: cpu_set_count(mine) / entitlement */
    int threads;        /* the count in use; 0: not watching (a zeroed LoadWatch does nothing) */
    int rising;         /* windows in a row that asked for more */
    int ok;             /* 0: /proc/stat or the clocks cannot be read; the count stays */
    int32_t *siblings;  /* (n_siblings,) pids of the node's other ranks whose masks meet mine */
    int n_siblings;
    double wall0, own0, busy0, siblings0; /* the window's start: monotonic clock, CPU seconds of this process,
                                           * of mine (busy), of the siblings */
} LoadWatch;

enum { LOAD_WATCH_WINDOW_MS = 1000 };

/* Starts watching with threads in use, the quiet entitlement, this process me among the node's ranks
 * (n,; me alone for a one-process command). SOWER_ENOMEM when the siblings' list cannot be made. */
int load_watch_start(LoadWatch *w, int threads, double entitlement, const NodeRank *me, const NodeRank *ranks,
                     int n) SOWER_MUST_CHECK;
/* A new window from now (the render starts: what came before was loading, not rendering). */
void load_watch_restart(LoadWatch *w);
/* The thread count from now on; *others gets the CPUs other work holds (the window's average, as
 * counted) when the count changes. */
int load_watch_poll(LoadWatch *w, int *others);
void load_watch_free(LoadWatch *w); /* safe on a zeroed LoadWatch */

#endif /* SOWER_CPU_LOAD_H */
