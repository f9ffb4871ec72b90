/* cpu_load.c: see cpu_load.h. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_ISSET */
#include "cpu_load.h"

#include <ctype.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int has(const CpuSet *s, int c) { return (int)(s->bits[c / 64] >> (c % 64) & 1u); }
static void put(CpuSet *s, int c) { s->bits[c / 64] |= (uint64_t)1 << (c % 64); }

int cpu_set_count(const CpuSet *s)
{
    int n = 0;
    for (int c = 0; c < CPU_LOAD_MAX_CPUS; c++)
        n += has(s, c);
    return n;
}

/* SOWER_TEST_AFFINITY: a list of CPUs and ranges ("0-3,8") taken as the affinity mask, so that tests can
 * place ranks as a launcher on a bigger node would (tests/test_busy_cpus.py); 0 when unset or malformed. */
static int test_affinity(CpuSet *mine)
{
    const char *s = getenv("SOWER_TEST_AFFINITY");
    if (!s || !*s) return 0;
    while (*s) {
        char *end;
        const long lo = strtol(s, &end, 10);
        long hi = lo;
        if (end == s || lo < 0 || lo >= CPU_LOAD_MAX_CPUS) return 0;
        if (*end == '-') {
            s = end + 1;
            hi = strtol(s, &end, 10);
            if (end == s || hi < lo || hi >= CPU_LOAD_MAX_CPUS) return 0;
        }
        for (long c = lo; c <= hi; c++)
            put(mine, (int)c);
        if (*end != ',' && *end != '\0') return 0;
        s = *end ? end + 1 : end;
    }
    return cpu_set_count(mine) > 0;
}

void cpu_load_affinity(CpuSet *mine)
{
    memset(mine, 0, sizeof *mine);
    if (test_affinity(mine)) return;
    memset(mine, 0, sizeof *mine);
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
        for (int c = 0; c < CPU_LOAD_MAX_CPUS && c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &mask)) put(mine, c);
        if (cpu_set_count(mine) > 0) return;
    }
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    for (int c = 0; c < (online > 0 ? online : 1) && c < CPU_LOAD_MAX_CPUS; c++)
        put(mine, c);
}

/* Per-CPU jiffies from /proc/stat into total and idle (CPU_LOAD_MAX_CPUS,); 0 on success. */
static int read_stat(unsigned long long *total, unsigned long long *idle)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        int cpu = -1, used = 0;
        if (strncmp(line, "cpu", 3) != 0 || !isdigit((unsigned char)line[3]) || /* not the "cpu " total */
            sscanf(line, "cpu%d%n", &cpu, &used) != 1 || cpu < 0 || cpu >= CPU_LOAD_MAX_CPUS)
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

/* (2, CPU_LOAD_MAX_CPUS) jiffies: total, then idle. */
typedef struct {
    unsigned long long total[CPU_LOAD_MAX_CPUS], idle[CPU_LOAD_MAX_CPUS];
} StatSample;

void cpu_load_probe(int window_ms, CpuSet *busy)
{
    memset(busy, 0, sizeof *busy);
    CpuSet mine;
    cpu_load_affinity(&mine);
    StatSample *s = calloc(2, sizeof *s); /* before, after */
    if (!s) return;
    const struct timespec nap = {window_ms / 1000, (long)(window_ms % 1000) * 1000000L};
    if (read_stat(s[0].total, s[0].idle) == 0 && nanosleep(&nap, NULL) == 0 && read_stat(s[1].total, s[1].idle) == 0)
        for (int c = 0; c < CPU_LOAD_MAX_CPUS; c++) {
            const unsigned long long dt = s[1].total[c] - s[0].total[c], di = s[1].idle[c] - s[0].idle[c];
            if (has(&mine, c) && dt > 0 && di * 2 < dt) put(busy, c); /* more than half the window not idle */
        }
    free(s);
}

double cpu_load_entitlement(const CpuSet *mine, const NodeRank *ranks, int n, const CpuSet *busy)
{
    double share = 0;
    for (int c = 0; c < CPU_LOAD_MAX_CPUS; c++) {
        if (!has(mine, c) || (busy && has(busy, c))) continue;
        int k = 0;
        for (int i = 0; i < n; i++)
            k += has(&ranks[i].mask, c);
        share += 1.0 / (k > 0 ? k : 1);
    }
    return share;
}

int cpu_load_threads(double entitlement)
{
    const int threads = (int)floor(entitlement + 1e-9); /* 3 ranks sharing 3 CPUs: three thirds make 1 */
    return threads > 0 ? threads : 1;
}

int cpu_load_cap_threads(int asked, const char *command, const char *option, int say)
{
    CpuSet mine;
    cpu_load_affinity(&mine);
    const int allowed = cpu_set_count(&mine);
    if (asked <= allowed || allowed < 1) return asked;
    if (say)
        fprintf(stderr, "sower %s: %s %d is more than the %d CPU%s this process may run on: %d thread%s (more would "
                        "wait on each other; the bits are the same)\n",
                command, option, asked, allowed, allowed == 1 ? "" : "s", allowed, allowed == 1 ? "" : "s");
    return allowed;
}

int cpu_load_default_threads(const char *command)
{
    NodeRank me = {.pid = 0};
    CpuSet busy;
    cpu_load_affinity(&me.mask);
    cpu_load_probe(50, &busy);
    const int threads = cpu_load_threads(cpu_load_entitlement(&me.mask, &me, 1, &busy));
    const int n_busy = cpu_set_count(&busy);
    if (n_busy)
        fprintf(stderr, "sower %s: %d of the %d CPUs here are busy with other work: %d thread%s (--threads "
                        "overrides)\n", command, n_busy, cpu_set_count(&me.mask), threads, threads == 1 ? "" : "s");
    return threads;
}

/* ---- watching the load while rendering ---- */

static double clock_seconds(clockid_t id)
{
    struct timespec t;
    return clock_gettime(id, &t) == 0 ? (double)t.tv_sec + 1e-9 * (double)t.tv_nsec : -1;
}

/* The busy seconds of the CPUs in `mine` since boot; -1 when /proc/stat cannot be read. */
static double busy_seconds(const CpuSet *mine)
{
    static StatSample s; /* only the rendering thread polls */
    const long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0 || read_stat(s.total, s.idle) != 0) return -1;
    unsigned long long jiffies = 0;
    for (int c = 0; c < CPU_LOAD_MAX_CPUS; c++)
        if (has(mine, c)) jiffies += s.total[c] - s.idle[c];
    return (double)jiffies / (double)hz;
}

/* CPU seconds (user + system) the processes pids (n,) have used; one that has ended counts nothing. */
static double processes_seconds(const int32_t *pids, int n)
{
    const long hz = sysconf(_SC_CLK_TCK);
    double seconds = 0;
    for (int i = 0; i < n && hz > 0; i++) {
        char path[64], line[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        const int got = fgets(line, sizeof line, f) != NULL;
        fclose(f);
        const char *after = got ? strrchr(line, ')') : NULL; /* the command name may hold spaces */
        unsigned long long utime = 0, stime = 0;
        /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
        if (after && sscanf(after + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) == 2)
            seconds += (double)(utime + stime) / (double)hz;
    }
    return seconds;
}

static void window_begin(LoadWatch *w)
{
    w->wall0 = clock_seconds(CLOCK_MONOTONIC);
    w->own0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    w->busy0 = busy_seconds(&w->mine);
    w->siblings0 = processes_seconds(w->siblings, w->n_siblings);
    w->ok = w->wall0 >= 0 && w->own0 >= 0 && w->busy0 >= 0;
}

int load_watch_start(LoadWatch *w, int threads, double entitlement, const NodeRank *me, const NodeRank *ranks, int n)
{
    memset(w, 0, sizeof *w);
    w->siblings = calloc((size_t)n + 1, sizeof *w->siblings); /* (n,) at most */
    if (!w->siblings) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        int meets = 0;
        for (int k = 0; k < CPU_LOAD_MAX_CPUS / 64 && !meets; k++)
            meets = (ranks[i].mask.bits[k] & me->mask.bits[k]) != 0;
        if (meets && ranks[i].pid != me->pid) w->siblings[w->n_siblings++] = ranks[i].pid;
    }
    w->mine = me->mask;
    w->entitlement = entitlement;
    w->crowd = entitlement > 0 ? cpu_set_count(&me->mask) / entitlement : 1;
    w->threads = threads;
    window_begin(w);
    return SOWER_OK;
}

void load_watch_restart(LoadWatch *w)
{
    if (w->threads) window_begin(w);
}

void load_watch_free(LoadWatch *w)
{
    free(w->siblings);
    memset(w, 0, sizeof *w);
}

/* The thread count when others hold `taken` of mine: this process's share of the rest. */
static int threads_beside(const LoadWatch *w, int taken) { return cpu_load_threads(w->entitlement - taken / w->crowd); }

int load_watch_poll(LoadWatch *w, int *others)
{
    if (!w->ok || !w->threads) return w->threads;
    const double wall = clock_seconds(CLOCK_MONOTONIC) - w->wall0;
    if (wall < LOAD_WATCH_WINDOW_MS / 1000.0) return w->threads;
    const double own = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - w->own0, busy = busy_seconds(&w->mine) - w->busy0;
    const double siblings = processes_seconds(w->siblings, w->n_siblings) - w->siblings0;
    window_begin(w);
    if (!w->ok || wall <= 0) return w->threads;
    /* CPUs other work held over the window: what the CPUs were busy with, less this process and the node's
     * ranks that share them. Counted held from 0.6 of a CPU (going down), free below 0.4 (going up). */
    const double held = (busy - own - siblings) / wall;
    const int n_mine = cpu_set_count(&w->mine);
    const double h = held < 0 ? 0 : held > n_mine ? n_mine : held;
    const int taken_down = (int)(h + 0.4), taken_up = (int)(h + 0.6);
    const int down = threads_beside(w, taken_down), up = threads_beside(w, taken_up);
    w->rising = up > w->threads ? w->rising + 1 : 0;
    if (down < w->threads) {
        w->threads = down, w->rising = 0, *others = taken_down;
    } else if (up > w->threads && w->rising >= 2) {
        w->threads = up, w->rising = 0, *others = taken_up;
    }
    return w->threads;
}
