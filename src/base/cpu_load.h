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

enum { CPU_LOAD_MAX_CPUS = 1024 }; /* glibc's CPU_SETSIZE */

/* A set of CPUs, bit c for CPU c: an affinity mask, plain bytes (MPI sends it as such). */
typedef struct {
    uint64_t bits[CPU_LOAD_MAX_CPUS / 64];
} CpuSet;

int cpu_set_count(const CpuSet *s);
/* This process's affinity mask (the online CPUs when it cannot be read). */
void cpu_load_affinity(CpuSet *mine);
/* Samples /proc/stat twice, window_ms apart (the caller sleeping meanwhile): *busy gets the CPUs of
 * this process's mask more than half busy over the window; none when /proc/stat cannot be read. */
void cpu_load_probe(int window_ms, CpuSet *busy);
/* The CPUs a process may count as its own beside the node's processes whose affinity masks are
 * masks (n,), its own among them: each CPU of mine that is not busy (busy may be NULL) counts 1/k
 * when k of the masks hold it. Ranks bound to a socket each (Open MPI's default past 2 ranks) share
 * its CPUs; unbound ranks share the node's. */
double cpu_load_entitlement(const CpuSet *mine, const CpuSet *masks, int n, const CpuSet *busy);
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
 * denoising steps the renderer polls; once a window of at least LOAD_WATCH_WINDOW_S has passed, the
 * CPU time the process's CPUs spent on other work (their busy time in /proc/stat less this process's
 * own, less what the ranks that share them take, reckoned as much as this one) says how many CPUs
 * others hold, and so the thread count from now on. Fewer at once; more only when two windows in a
 * row agree, so a short burst does not make it swing. */
typedef struct {
    CpuSet mine;        /* the CPUs watched: this process's mask */
    double entitlement; /* the process's share of them on a quiet node (cpu_load_entitlement) */
    double crowd;       /* processes per CPU of mine, on average: cpu_set_count(mine) / entitlement */
    int threads;        /* the count in use */
    int rising;         /* windows in a row that asked for more */
    int ok;             /* 0: /proc/stat or the clocks cannot be read; the count stays */
    double wall0, own0, busy0; /* the window's start: monotonic clock, process CPU time, mine's busy seconds */
} LoadWatch;

enum { LOAD_WATCH_WINDOW_MS = 1000 };

void load_watch_start(LoadWatch *w, int threads, double entitlement, const CpuSet *mine);
/* The thread count from now on; *others gets the CPUs other work holds (the window's average,
 * rounded) when the count changes. */
int load_watch_poll(LoadWatch *w, int *others);

#endif /* SOWER_CPU_LOAD_H */
