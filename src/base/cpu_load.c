/* cpu_load.c: see cpu_load.h. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_ISSET */
#include "cpu_load.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CPUS = CPU_SETSIZE };

/* Per-CPU jiffies from /proc/stat into total and idle (MAX_CPUS,); 0 on success. */
static int read_stat(unsigned long long *total, unsigned long long *idle)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        int cpu = -1, used = 0;
        if (strncmp(line, "cpu", 3) != 0 || sscanf(line, "cpu%d%n", &cpu, &used) != 1 || cpu < 0 || cpu >= MAX_CPUS)
            continue;
        unsigned long long v[8] = {0}; /* user nice system idle iowait irq softirq steal */
        if (sscanf(line + used, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]) < 4)
            continue;
        total[cpu] = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
        idle[cpu] = v[3] + v[4];
        found = 1;
    }
    fclose(f);
    return found ? 0 : -1;
}

/* The CPUs of this process's affinity mask (the online ones where it cannot be read). */
static int allowed_cpus(void)
{
    cpu_set_t mask;
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    return sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : (online > 0 ? (int)online : 1);
}

void cpu_load_probe(int window_ms, int *allowed, int *busy)
{
    cpu_set_t mask;
    const int have_mask = sched_getaffinity(0, sizeof mask, &mask) == 0;
    *allowed = allowed_cpus();
    *busy = 0;
    unsigned long long *t0 = calloc(4 * MAX_CPUS, sizeof *t0); /* (4, MAX_CPUS): total, idle before; after */
    if (!t0) return;
    unsigned long long *i0 = t0 + MAX_CPUS, *t1 = t0 + 2 * MAX_CPUS, *i1 = t0 + 3 * MAX_CPUS;
    const struct timespec nap = {window_ms / 1000, (long)(window_ms % 1000) * 1000000L};
    if (read_stat(t0, i0) == 0 && nanosleep(&nap, NULL) == 0 && read_stat(t1, i1) == 0)
        for (int c = 0; c < MAX_CPUS; c++) {
            if (have_mask ? !CPU_ISSET(c, &mask) : c >= *allowed) continue;
            const unsigned long long dt = t1[c] - t0[c], di = i1[c] - i0[c];
            if (dt > 0 && di * 2 < dt) ++*busy; /* more than half of the window not idle */
        }
    free(t0);
    if (*busy > *allowed) *busy = *allowed;
}

int cpu_load_threads(int allowed, int busy, int share)
{
    const int free_cpus = allowed - busy;
    const int threads = share > 0 ? free_cpus / share : free_cpus;
    return threads > 0 ? threads : 1;
}

int cpu_load_cap_threads(int asked, const char *command, const char *option, int say)
{
    const int allowed = allowed_cpus();
    if (asked <= allowed || allowed < 1) return asked;
    if (say)
        fprintf(stderr, "sower %s: %s %d is more than the %d CPU%s this process may run on: %d thread%s (more would "
                        "wait on each other; the bits are the same)\n",
                command, option, asked, allowed, allowed == 1 ? "" : "s", allowed, allowed == 1 ? "" : "s");
    return allowed;
}

int cpu_load_default_threads(const char *command)
{
    int allowed = 1, busy = 0;
    cpu_load_probe(50, &allowed, &busy);
    const int threads = cpu_load_threads(allowed, busy, 1);
    if (busy)
        fprintf(stderr, "sower %s: %d of the %d CPUs here are busy with other work: %d thread%s (--threads "
                        "overrides)\n", command, busy, allowed, threads, threads == 1 ? "" : "s");
    return threads;
}
