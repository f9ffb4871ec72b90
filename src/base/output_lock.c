/* output_lock.c: see output_lock.h. */
#define _GNU_SOURCE /* gethostname, kill, link in one place */
#include "output_lock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "outfile.h"
#include "regular_file.h"

/* The lock this process holds, for output_lock_release_from_signal ("": none). */
static char held_path[4200];

void output_lock_release_from_signal(void)
{
    if (held_path[0]) unlink(held_path);
}

/* What a lock file says about the run that holds it. */
typedef struct {
    char host[256];
    long pid;
    unsigned long long pid_start; /* the process's start time in clock ticks after boot; 0: unknown */
    char started[32];             /* UTC, ISO 8601 */
    char command[512];
    char slurm_job[64];           /* SLURM_JOB_ID of the run ("": not under Slurm) */
    long slurm_restart;           /* its SLURM_RESTART_COUNT (0 before any requeue); -1: not recorded */
    long heartbeat;               /* seconds between the holder's touches of the lock's mtime; 0: not recorded */
} LockOwner;

enum { LOCK_HEARTBEAT_DEFAULT_SECONDS = 10, LOCK_STALE_BEATS = 3 };

/* How often a holder touches its lock: SOWER_LOCK_HEARTBEAT_SECONDS (tests), else 10 s. */
static long heartbeat_seconds(void)
{
    const char *v = getenv("SOWER_LOCK_HEARTBEAT_SECONDS");
    const long s = v && *v ? strtol(v, NULL, 10) : 0;
    return s >= 1 && s <= 3600 ? s : LOCK_HEARTBEAT_DEFAULT_SECONDS;
}

static void this_host(char *out, size_t size)
{
    const char *test = getenv("SOWER_TEST_HOSTNAME");
    if (test && *test)
        snprintf(out, size, "%s", test);
    else if (gethostname(out, size) != 0)
        snprintf(out, size, "unknown-host");
    out[size - 1] = '\0';
}

/* From /proc/PID/stat: field 22, when the process started (with the pid it names one process for
 * as long as the machine runs, so a recycled pid is not taken for the lock's owner; 0: unknown),
 * and field 3, its state ('Z': a zombie, killed but not yet reaped, which holds nothing). */
static unsigned long long process_start(long pid, char *state)
{
    char path[64], buf[1024];
    if (state) *state = '?';
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name in parentheses may hold spaces */
    if (p && state && p[1] == ' ') *state = p[2];
    unsigned long long start = 0;
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p) sscanf(p + 1, "%llu", &start);
    return start;
}

static void owner_of_this_process(LockOwner *o, const char *command)
{
    memset(o, 0, sizeof *o);
    this_host(o->host, sizeof o->host);
    o->pid = (long)getpid();
    o->pid_start = process_start(o->pid, NULL);
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(o->started, sizeof o->started, "%Y-%m-%dT%H:%M:%SZ", &utc);
    snprintf(o->command, sizeof o->command, "%s", command ? command : "sower");
    for (char *c = o->command; *c; c++) /* one line per field */
        if (*c == '\n') *c = ' ';
    const char *job = getenv("SLURM_JOB_ID"), *restart = getenv("SLURM_RESTART_COUNT");
    o->slurm_restart = -1;
    if (job && *job && strlen(job) < sizeof o->slurm_job && !strpbrk(job, "\n\r")) {
        snprintf(o->slurm_job, sizeof o->slurm_job, "%s", job);
        o->slurm_restart = restart && *restart ? strtol(restart, NULL, 10) : 0;
    }
    o->heartbeat = heartbeat_seconds();
}

static int write_owner(int fd, const LockOwner *o)
{
    char text[2048];
    int n = snprintf(text, sizeof text, "host: %s\npid: %ld\npid_start: %llu\nstarted: %s\ncommand: %s\nheartbeat: %ld\n",
                     o->host, o->pid, o->pid_start, o->started, o->command, o->heartbeat);
    if (o->slurm_job[0])
        n += snprintf(text + n, sizeof text - (size_t)n, "slurm_job: %s\nslurm_restart: %ld\n", o->slurm_job,
                      o->slurm_restart);
    return write(fd, text, (size_t)n) == n && fsync(fd) == 0 ? 0 : -1;
}

/* 0: read; -1: no such file (released meanwhile); 1: there but not a lock sower wrote. */
static int read_owner(const char *path, LockOwner *o)
{
    memset(o, 0, sizeof *o);
    FILE *f = regular_file_fopen(path); /* a FIFO there would block fopen for ever */
    if (!f) return errno == ENOENT ? -1 : 1;
    char line[1024];
    int fields = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "host: ", 6))
            fields += snprintf(o->host, sizeof o->host, "%s", line + 6) >= 0;
        else if (!strncmp(line, "pid: ", 5))
            fields += sscanf(line + 5, "%ld", &o->pid) == 1;
        else if (!strncmp(line, "pid_start: ", 11))
            fields += sscanf(line + 11, "%llu", &o->pid_start) == 1;
        else if (!strncmp(line, "started: ", 9))
            fields += snprintf(o->started, sizeof o->started, "%s", line + 9) >= 0;
        else if (!strncmp(line, "command: ", 9))
            fields += snprintf(o->command, sizeof o->command, "%s", line + 9) >= 0;
        else if (!strncmp(line, "heartbeat: ", 11) && /* the fields below: locks of sower since stop 44 */
                 (sscanf(line + 11, "%ld", &o->heartbeat) != 1 || o->heartbeat < 1 || o->heartbeat > 3600))
            o->heartbeat = 0; /* none that a requeued run could wait out */
        else if (!strncmp(line, "slurm_job: ", 11) && /* a job id cut short names no job */
                 snprintf(o->slurm_job, sizeof o->slurm_job, "%s", line + 11) >= (int)sizeof o->slurm_job)
            o->slurm_job[0] = '\0';
        else if (!strncmp(line, "slurm_restart: ", 15))
            sscanf(line + 15, "%ld", &o->slurm_restart);
    }
    if (!o->slurm_job[0])
        o->slurm_restart = -1;
    fclose(f);
    return fields == 5 && o->pid > 0 ? 0 : 1;
}

static int same_owner(const LockOwner *a, const LockOwner *b)
{
    return a->pid == b->pid && a->pid_start == b->pid_start && !strcmp(a->host, b->host) &&
           !strcmp(a->started, b->started);
}

/* A lock of this host whose process is gone, or whose pid now names a process started later. */
static int owner_is_gone(const LockOwner *o)
{
    char host[256];
    this_host(host, sizeof host);
    if (strcmp(host, o->host) != 0) return 0;
    if (kill((pid_t)o->pid, 0) != 0 && errno == ESRCH) return 1;
    char state;
    unsigned long long start = process_start(o->pid, &state);
    return state == 'Z' || (o->pid_start && start && start != o->pid_start);
}

static int refuse(const char *lock_path, const char *output_path, const LockOwner *o, int readable)
{
    if (!readable)
        return SOWER_FAIL(SOWER_EPATH,
                          "output '%s' is locked by '%s', which sower cannot read: if no run is writing this "
                          "output, delete '%s' and run again (with --resume to keep its rows)",
                          output_path, lock_path, lock_path);
    char host[256];
    this_host(host, sizeof host);
    if (!strcmp(host, o->host))
        return SOWER_FAIL(SOWER_EPATH,
                          "output '%s' is in use by another run: pid %ld on this host, started %s (%s). Wait "
                          "for it, or stop it with 'kill %ld' (its rows are kept: finish them with --resume)",
                          output_path, o->pid, o->started, o->command, o->pid);
    return SOWER_FAIL(SOWER_EPATH,
                      "output '%s' is in use by another run: host %s, pid %ld, started %s (%s). sower cannot "
                      "check a process on another host: if that run is gone (a crashed node), delete '%s' "
                      "and run again with --resume",
                      output_path, o->host, o->pid, o->started, o->command, lock_path);
}

/* This process's private file beside the lock: LOCK.HOST.PID plus suffix (remove_dead_drafts clears those of dead
 * processes). */
static void private_name(const char *lock_path, const char *suffix, char *out, size_t size)
{
    char host[256];
    this_host(host, sizeof host);
    snprintf(out, size, "%s.%s.%ld%s", lock_path, host, (long)getpid(), suffix);
}

/* Moves a stale lock aside, checking that what moved is the lock judged stale (another run may
 * have taken it over in between: then it is put back). */
static void take_over(const char *lock_path, const LockOwner *stale, const char *why)
{
    char aside[4300];
    private_name(lock_path, ".stale", aside, sizeof aside);
    if (rename(lock_path, aside) != 0) return;
    LockOwner moved;
    if (read_owner(aside, &moved) == 0 && same_owner(&moved, stale)) {
        fprintf(stderr, "sower: taking over the stale lock '%s' of pid %ld on %s (started %s): %s\n", lock_path,
                stale->pid, stale->host, stale->started, why);
    } else if (link(aside, lock_path) != 0) {
        fprintf(stderr, "sower: warning: the lock '%s' changed hands while it was checked\n", lock_path);
    }
    unlink(aside);
}

/* One attempt to create lock_path holding `me`: 0 made, 1 exists, -1 failed (errno). The lock is
 * written to a private file first and linked into place, so it never appears half-written. */
static int try_create(const char *lock_path, const LockOwner *me)
{
    char mine[4300];
    private_name(lock_path, "", mine, sizeof mine);
    int fd = open(mine, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int wrote = write_owner(fd, me);
    close(fd);
    int made = wrote == 0 ? link(mine, lock_path) : -1, err = errno;
    struct stat st;
    if (made != 0 && wrote == 0 && stat(mine, &st) == 0 && st.st_nlink == 2) /* NFS: the reply was lost */
        made = 0;
    if (made != 0 && wrote == 0 && err != EEXIST) { /* no hard links here: exclusive create instead */
        fd = open(lock_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        err = errno;
        if (fd >= 0) {
            made = write_owner(fd, me), err = errno;
            close(fd);
        }
    }
    unlink(mine);
    errno = err;
    return made == 0 ? 0 : err == EEXIST ? 1 : -1;
}

/* Private files of this host's dead processes, killed between making and removing them, are removed
 * once the lock is held: LOCK.HOST.PID (try_create's drafts), LOCK.HOST.PID.stale (take_over's) and
 * LOCK.HOST.PID.clock (file_system_now's). */
static void remove_dead_drafts(const char *lock_path, const char *host)
{
    char dir[4096], prefix[4400];
    snprintf(dir, sizeof dir, "%s", lock_path);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : lock_path;
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    snprintf(prefix, sizeof prefix, "%s.%s.", base, host);
    DIR *d = opendir(dir[0] ? dir : "/");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        long pid = 0;
        int used = 0;
        const char *rest = e->d_name + strlen(prefix);
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || sscanf(rest, "%ld%n", &pid, &used) != 1 ||
            (rest[used] && strcmp(rest + used, ".stale") != 0 && strcmp(rest + used, ".clock") != 0) ||
            pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            char path[8600];
            snprintf(path, sizeof path, "%s/%s", dir[0] ? dir : "", e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

/* The length of dir's first prefix (a whole component) that does not exist: the topmost folder
 * make_dirs would create; 0 when dir exists. */
static size_t first_missing_folder(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) return 0;
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", dir);
    for (size_t i = 1; prefix[i]; i++) {
        if (prefix[i] != '/') continue;
        prefix[i] = '\0';
        int missing = stat(prefix, &st) != 0;
        prefix[i] = '/';
        if (missing) return i;
    }
    return strlen(prefix);
}

/* The folders this run made for its output, deepest first, while they are empty (rmdir removes nothing
 * else): a run refused before it wrote leaves the tree as it found it. */
static void remove_made_folders(OutputLock *lock)
{
    if (!lock->made_dir) return;
    char *dir = lock->made_dir;
    for (size_t len = strlen(dir); len >= lock->made_top && rmdir(dir) == 0; len = strlen(dir)) {
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < lock->made_top) break;
        *slash = '\0';
    }
    free(lock->made_dir);
    lock->made_dir = NULL;
}

/* Whether lock owner o is an earlier run of this Slurm job: the same SLURM_JOB_ID at a lower SLURM_RESTART_COUNT, and a
 * lock that says how often its holder touches it. Slurm ends every process of a job before it requeues it, so o is
 * gone, unless its node only lost touch with Slurm: its heartbeat tells (wait_until_stale). */
static int earlier_run_of_this_job(const LockOwner *o, const LockOwner *me)
{
    return me->slurm_job[0] && !strcmp(o->slurm_job, me->slurm_job) && o->slurm_restart >= 0 &&
           o->slurm_restart < me->slurm_restart && o->heartbeat > 0;
}

/* The file system's clock: the mtime of a file made now beside the lock (what the lock's mtime is measured in,
 * whatever this host's own clock says). -1 when no file can be made there. */
static int file_system_now(const char *lock_path, struct timespec *now)
{
    char probe[4300];
    private_name(lock_path, ".clock", probe, sizeof probe);
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    struct stat st;
    const int ok = fstat(fd, &st) == 0; /* made now: its mtime is the file system's time */
    close(fd);
    unlink(probe);
    if (!ok) return -1;
    *now = st.st_mtim;
    return 0;
}

/* Waits while the lock of `o` is fresh: 1 once it has gone LOCK_STALE_BEATS of its heartbeats untouched, 0 when it is
 * still touched after that long and one beat more, -1 when it was released or changed hands. *age: its last
 * untouched time, in seconds. */
static int wait_until_stale(const char *lock_path, const LockOwner *o, double *age)
{
    const double stale_after = (double)(LOCK_STALE_BEATS * o->heartbeat);
    const struct timespec pause = {.tv_sec = o->heartbeat >= 2 ? 1 : 0, .tv_nsec = o->heartbeat >= 2 ? 0 : 250000000};
    for (double waited = 0;; waited += (double)pause.tv_sec + pause.tv_nsec * 1e-9) {
        struct stat st;
        struct timespec now;
        LockOwner again;
        if (stat(lock_path, &st) != 0 || read_owner(lock_path, &again) != 0 || !same_owner(&again, o)) return -1;
        if (file_system_now(lock_path, &now) != 0) return 0;
        *age = (double)(now.tv_sec - st.st_mtim.tv_sec) + (now.tv_nsec - st.st_mtim.tv_nsec) * 1e-9;
        if (*age > stale_after) return 1;
        if (waited > stale_after + (double)o->heartbeat) return 0;
        nanosleep(&pause, NULL);
    }
}

/* The holder's heartbeat: a thread that touches the lock's mtime every `seconds` while the lock is held, so that a
 * requeued run of the same Slurm job elsewhere can tell a holder that is gone from one that still runs. */
struct LockHeartbeat {
    char *path;
    long seconds;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
};

static void *heartbeat_main(void *arg)
{
    LockHeartbeat *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += h->seconds;
        if (pthread_cond_timedwait(&h->cv, &h->mu, &until) == ETIMEDOUT && !h->stop)
            utimensat(AT_FDCWD, h->path, NULL, 0); /* mtime = now; gone (released from a signal): nothing */
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* Starts the heartbeat of a lock just taken; without one (no memory, no thread) the lock still holds, and a requeued
 * run finds it untouched since it was made. */
static void heartbeat_start(OutputLock *lock)
{
    LockHeartbeat *h = calloc(1, sizeof *h);
    if (!h || !(h->path = strdup(lock->path))) {
        free(h);
        return;
    }
    h->seconds = heartbeat_seconds();
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    sigset_t all, before; /* the thread takes no signal: the stop flag's handlers run in the others */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &before);
    const int made = pthread_create(&h->thread, NULL, heartbeat_main, h);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    if (made != 0) {
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h->path);
        free(h);
        return;
    }
    lock->heartbeat = h;
}

static void heartbeat_stop(OutputLock *lock)
{
    LockHeartbeat *h = lock->heartbeat;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->path);
    free(h);
    lock->heartbeat = NULL;
}

int output_lock_take(OutputLock *lock, const char *output_path, const char *command)
{
    memset(lock, 0, sizeof *lock);
    size_t len = strlen(output_path);
    char *path = malloc(len + 8);
    if (!path) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    snprintf(path, len + 8, "%s.lock", output_path);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", output_path);
    char *slash = strrchr(dir, '/');
    int status = SOWER_OK;
    if (slash && slash != dir) {
        *slash = '\0';
        size_t top = first_missing_folder(dir);
        status = make_dirs(dir);
        if (status == SOWER_OK && top) { /* made here: removed again if the run leaves them empty */
            lock->made_dir = strdup(dir);
            lock->made_top = top;
        }
    }
    LockOwner me, other;
    owner_of_this_process(&me, command);
    for (int attempt = 0; status == SOWER_OK && attempt < 4; attempt++) {
        int made = try_create(path, &me);
        if (made == 0) {
            lock->path = path;
            snprintf(held_path, sizeof held_path, "%s", path);
            remove_dead_drafts(path, me.host);
            heartbeat_start(lock);
            return SOWER_OK;
        }
        if (made < 0) {
            status = SOWER_FAIL(SOWER_EPATH, "cannot create the lock '%s' of output '%s': %s", path,
                                output_path, strerror(errno));
            break;
        }
        int found = read_owner(path, &other);
        if (found < 0) continue; /* released meanwhile */
        if (found == 0 && owner_is_gone(&other)) {
            take_over(path, &other, "that process no longer runs");
            continue;
        }
        if (found == 0 && earlier_run_of_this_job(&other, &me)) { /* a requeued Slurm job on another node */
            double age = 0;
            const int stale = wait_until_stale(path, &other, &age);
            if (stale < 0) continue; /* released or changed hands meanwhile */
            if (stale == 1) {
                char why[200];
                snprintf(why, sizeof why, "an earlier run of Slurm job %s (restart %ld), its lock untouched for %.0f s",
                         other.slurm_job, other.slurm_restart, age);
                take_over(path, &other, why);
                continue;
            }
            status = SOWER_FAIL(SOWER_EPATH,
                                "output '%s' is held by an earlier run of this Slurm job (job %s, restart %ld) on host "
                                "%s that still touches its lock (%.0f s ago): a node Slurm has lost but that still "
                                "reaches this file system. sower will not write beside it: once that node is down, "
                                "delete '%s' and run again with --resume",
                                output_path, other.slurm_job, other.slurm_restart, other.host, age, path);
            break;
        }
        status = refuse(path, output_path, &other, found == 0);
    }
    remove_made_folders(lock);
    if (status == SOWER_OK)
        status = SOWER_FAIL(SOWER_EPATH, "output '%s': its lock '%s' keeps changing hands; try again",
                            output_path, path);
    free(path);
    return status;
}

void output_lock_release(OutputLock *lock)
{
    if (!lock->path) return;
    heartbeat_stop(lock);
    LockOwner me, found;
    owner_of_this_process(&me, NULL);
    /* Only our own lock: one taken over after this process was judged gone is not ours to remove. */
    held_path[0] = '\0';
    if (read_owner(lock->path, &found) == 0 && found.pid == me.pid && found.pid_start == me.pid_start &&
        !strcmp(found.host, me.host))
        unlink(lock->path);
    free(lock->path);
    lock->path = NULL;
    remove_made_folders(lock);
}

/* The names a run's working files take beside its output OUT: OUT.partial (its rows so far),
 * OUT.partial.new (OUT.partial while it is made) and OUT.lock. */
static const char *const working_suffixes[] = {".partial", ".partial.new", ".lock"};
enum { N_WORKING_SUFFIXES = sizeof working_suffixes / sizeof working_suffixes[0] };

const char *output_lock_working_suffix(const char *path)
{
    const size_t n = strlen(path);
    const char *found = NULL;
    for (int i = 0; i < N_WORKING_SUFFIXES; i++) { /* the longest: ".partial.new", not ".new" */
        const size_t k = strlen(working_suffixes[i]);
        if (n > k && strcmp(path + n - k, working_suffixes[i]) == 0 && (!found || k > strlen(found)))
            found = working_suffixes[i];
    }
    return found;
}

int output_lock_is_working_file(const char *path, char *owner, size_t owner_size)
{
    const size_t n = strlen(path);
    for (int i = 0; i < N_WORKING_SUFFIXES; i++) {
        const size_t k = strlen(working_suffixes[i]);
        if (n <= k || strcmp(path + n - k, working_suffixes[i]) != 0) continue;
        char lock[4200];
        snprintf(lock, sizeof lock, "%.*s.lock", (int)(n - k), path);
        struct stat st;
        if (lstat(lock, &st) == 0) {
            snprintf(owner, owner_size, "%.*s", (int)(n - k), path);
            return 1;
        }
    }
    return 0;
}

int output_lock_check_not_working_file(const char *path, const char *what)
{
    char owner[4200];
    if (output_lock_is_working_file(path, owner, sizeof owner))
        return SOWER_FAIL(SOWER_EPATH, "%s '%s' is a working file of the run writing '%s' (its lock '%s.lock' is there): "
                                       "choose another path",
                          what, path, owner, owner);
    return SOWER_OK;
}

int output_lock_check_output_name(const char *path, const char *what)
{
    SOWER_TRY(output_lock_check_not_working_file(path, what));
    const char *suffix = output_lock_working_suffix(path);
    if (suffix)
        return SOWER_FAIL(SOWER_EPATH,
                          "%s '%s': a name ending in %s is kept for a run's working files (a run writing '%.*s' "
                          "would take it for its own, remove it or rename it into place): choose another path",
                          what, path, suffix, (int)(strlen(path) - strlen(suffix)), path);
    return SOWER_OK;
}

int output_lock_check_command_output(const char *path, const char *what)
{
    SOWER_TRY(output_lock_check_output_name(path, what));
    char lock[4200];
    snprintf(lock, sizeof lock, "%s.lock", path);
    struct stat st;
    if (lstat(lock, &st) == 0)
        return SOWER_FAIL(SOWER_EPATH, "%s '%s' is a sower run's output (its lock '%s' is there: a run still going renames "
                                       "its rows to that name when it ends; one that died left the lock): choose another "
                                       "path",
                          what, path, lock);
    return SOWER_OK;
}

int output_lock_check_new_file(const char *path, const char *what, int force)
{
    SOWER_TRY(output_lock_check_command_output(path, what));
    char why[4400];
    struct stat st;
    if (!path_folder_exists(path, why, sizeof why))
        return SOWER_FAIL(SOWER_EPATH, "%s '%s': %s", what, path, why);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return SOWER_FAIL(SOWER_EPATH, "%s '%s' is a folder: name the file to write", what, path);
    if (stat(path, &st) == 0 && (S_ISBLK(st.st_mode) || S_ISSOCK(st.st_mode))) /* outfile.h refuses them at the end */
        return SOWER_FAIL(SOWER_EPATH, "%s '%s' is a block device or socket, expected a file path", what, path);
    if (!force && lstat(path, &st) == 0 && (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)))
        return SOWER_FAIL(SOWER_EPATH, "%s '%s' exists (an earlier command's?): it is never replaced without --force: "
                                       "choose another name, or --force to replace it",
                          what, path);
    return SOWER_OK;
}
