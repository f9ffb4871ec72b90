/* cpu_load.h: how many of the CPUs this process may run on are kept busy by other work right now.
 * The default thread count leaves those out: threads that share a core with a busy neighbour wait
 * at every barrier for the one descheduled (jobs/quick.yaml took 7.7 s with 2 threads beside two
 * busy processes on 2 cores, 1.8 s with 1 thread, 1.2 s quiet). The thread count never changes a bit
 * (the determinism contract), only the time. */
#ifndef SOWER_CPU_LOAD_H
#define SOWER_CPU_LOAD_H

/* Samples /proc/stat twice, window_ms apart (the caller sleeping meanwhile), for the CPUs of this
 * process's affinity mask: *allowed of them, *busy more than half busy over the window. When
 * /proc/stat cannot be read, *busy is 0 (the CPUs are taken as free). */
void cpu_load_probe(int window_ms, int *allowed, int *busy);
/* Threads for `share` processes of this node that run at once (ranks), from a probe's counts: the
 * free CPUs split among them, at least 1. */
int cpu_load_threads(int allowed, int busy, int share);
/* The default --threads of a one-process command (sample, encode, export): a 50 ms probe's free
 * CPUs; when some are busy it says so on stderr, naming the command ("sample"). */
int cpu_load_default_threads(const char *command);
/* A thread count asked for (--threads, pipeline.threads), at most the CPUs this process may run on: more
 * threads than CPUs wait on each other at every barrier (BLIS's spin; 4 threads on 2 CPUs rendered in
 * minutes what 1 did in half a second), and the count never changes a bit. With say, it says so on stderr when
 * it cuts ("sower run: pipeline.threads 64 is more than ..."). */
int cpu_load_cap_threads(int asked, const char *command, const char *option, int say);

#endif /* SOWER_CPU_LOAD_H */
