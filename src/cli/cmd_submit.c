/* cmd_submit.c: `sower submit JOB.yaml`: hand a job to Slurm the way it should be run.
 *
 * Checks the job first (manifest and model, as `sower check` does: a bad job fails here, not
 * after waiting in the queue), writes slurm/sower.sbatch (carried in the binary) into the job's
 * log folder OUT.slurm/ beside the output, then runs sbatch: one allocation, or with --array N a
 * job array of N slices plus a stitch-and-verify job that starts when every slice has succeeded
 * (--dependency=afterok). Resources come from the manifest's slurm: section, overridden by flags.
 * The script owns no logic the binary should own: it launches `sower run` (srun --mpi=pmix) and
 * requeues on the time-limit signal; resuming, slicing and stitching are sower's. */
#define _XOPEN_SOURCE 700 /* fchmod, getcwd */
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "manifest.h"
#include "outfile.h"
#include "output_lock.h"
#include "utf8.h"

extern char **environ;
extern const char sower_sbatch_script[]; /* slurm/sower.sbatch, embedded at build time */

enum { MAX_EXTRA = 32, MAX_ARGV = 64 };

typedef struct {
    const char *manifest;
    int dry_run;
    int array;         /* -1: from the manifest */
    SlurmSettings over; /* flags; -1 / "" where not given */
    const char *extra[MAX_EXTRA]; /* --sbatch-arg values, passed to every sbatch */
    int n_extra;
} SubmitOptions;

static const char submit_usage[] =
    "usage: sower submit JOB.yaml [--array N] [--tasks T] [--cpus-per-task C] [--gpus-per-task G]\n"
    "                    [--time LIMIT] [--partition P] [--account A] [--sbatch-arg ARG]... [--dry-run]\n"
    "\n"
    "Checks the job, writes its sbatch script to OUT.slurm/sower.sbatch beside the output and submits:\n"
    "  one allocation            sbatch ... sower.sbatch JOB.yaml\n"
    "  --array N (N slices)      sbatch --array=0-(N-1) ... sower.sbatch JOB.yaml\n"
    "                            sbatch --dependency=afterok:ARRAY ... sower.sbatch JOB.yaml --stitch N\n"
    "Each allocation runs `srun --mpi=pmix sower run JOB.yaml --resume-auto [--slice K/N]`: resubmitting\n"
    "after a cancel or time-out resumes; near the time limit the job stops cleanly and requeues itself.\n"
    "Resources default to the manifest's slurm: section (tasks, cpus_per_task, gpus_per_task, slices,\n"
    "time, partition, account); flags override it. Logs: OUT.slurm/NAME-JOBID.out.\n"
    "  --dry-run          print the script and the sbatch commands; nothing is written or submitted\n"
    "  --sbatch-arg ARG   one more sbatch option for every job (repeatable), e.g. --sbatch-arg=--qos=long\n";

static int parse_int_flag(const char *flag, const char *text, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < lo || v > hi)
        return SOWER_FAIL(SOWER_EUSAGE, "%s: expected an integer in %d..%d, found '%s'", flag, lo, hi, text);
    *out = (int)v;
    return SOWER_OK;
}

/* A Slurm name (partition, account) or time limit given as a flag: no spaces, quotes or commas. */
static int copy_word(const char *flag, const char *text, char *dst, size_t cap, const char *allowed)
{
    if (!*text || strlen(text) >= cap || strspn(text, allowed) != strlen(text))
        return SOWER_FAIL(SOWER_EUSAGE, "%s: expected 1..%zu characters from [%s], found '%s'", flag, cap - 1, allowed,
                          text);
    snprintf(dst, cap, "%s", text);
    return SOWER_OK;
}

/* sbatch options sower sets itself (or the script relies on): given through --sbatch-arg they would
 * change what the job does behind the summary submit prints (an --array without its stitch job, an
 * --export that hides SOWER, an --ntasks the summary does not show). Long name, its short form, and the
 * flag of sower's own that sets it ("" when none: not to be changed). */
static const char *const managed_options[][3] = {
    {"--array", "-a", "--array"},          {"--dependency", "-d", ""},         {"--output", "-o", ""},
    {"--error", "-e", ""},                 {"--job-name", "-J", ""},           {"--ntasks", "-n", "--tasks"},
    {"--cpus-per-task", "-c", "--cpus-per-task"},                              {"--gpus-per-task", "", "--gpus-per-task"},
    {"--time", "-t", "--time"},            {"--partition", "-p", "--partition"}, {"--account", "-A", "--account"},
    {"--export", "", ""},                  {"--wrap", "", ""},                 {"--parsable", "", ""},
    {"--requeue", "", ""},                 {"--no-requeue", "", ""},           {"--signal", "", ""},
    {"--open-mode", "", ""},               {"--kill-on-invalid-dep", "", ""},
};

/* An --sbatch-arg value: one sbatch option ("--qos=long", "--mem=8G", "-q long" is two words: give
 * "--qos=long"), not one of managed_options. */
static int check_sbatch_arg(const char *v)
{
    if (v[0] != '-')
        return SOWER_FAIL(SOWER_EUSAGE, "--sbatch-arg '%s': expected an sbatch option such as --qos=long (sbatch "
                                        "would take '%s' for the script to run)", v, v);
    for (size_t i = 0; i < sizeof managed_options / sizeof managed_options[0]; i++) {
        const char *const *m = managed_options[i];
        const size_t long_len = strlen(m[0]), short_len = strlen(m[1]);
        const int is_long = !strncmp(v, m[0], long_len) && (v[long_len] == '\0' || v[long_len] == '=');
        const int is_short = short_len && !strncmp(v, m[1], short_len) && v[1] != '-';
        if (!is_long && !is_short) continue;
        if (m[2][0])
            return SOWER_FAIL(SOWER_EUSAGE, "--sbatch-arg '%s': sower submit sets %s itself: give it as %s", v, m[0],
                              m[2]);
        return SOWER_FAIL(SOWER_EUSAGE, "--sbatch-arg '%s': sower submit sets %s itself (the job relies on it)", v,
                          m[0]);
    }
    return SOWER_OK;
}

enum { SUB_DRY_RUN, SUB_SBATCH_ARG, SUB_ARRAY, SUB_TASKS, SUB_CPUS, SUB_GPUS, SUB_TIME, SUB_PARTITION, SUB_ACCOUNT,
       N_SUBMIT_OPTS };
static const CliOption submit_options[N_SUBMIT_OPTS] = {
    [SUB_DRY_RUN] = {"--dry-run", NULL, 0},          [SUB_SBATCH_ARG] = {"--sbatch-arg", NULL, 1},
    [SUB_ARRAY] = {"--array", NULL, 1},              [SUB_TASKS] = {"--tasks", "--ntasks", 1},
    [SUB_CPUS] = {"--cpus-per-task", NULL, 1},       [SUB_GPUS] = {"--gpus-per-task", NULL, 1},
    [SUB_TIME] = {"--time", NULL, 1},                [SUB_PARTITION] = {"--partition", NULL, 1},
    [SUB_ACCOUNT] = {"--account", NULL, 1},
};

static int on_submit_option(void *ctx, int which, const char *v)
{
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    static const char list_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-,";
    SubmitOptions *o = ctx;
    const char *flag = submit_options[which].name;
    switch (which) {
    case SUB_DRY_RUN: o->dry_run = 1; break;
    case SUB_SBATCH_ARG:
        if (o->n_extra == MAX_EXTRA)
            return SOWER_FAIL(SOWER_EUSAGE, "--sbatch-arg: at most %d", MAX_EXTRA);
        SOWER_TRY(check_sbatch_arg(v));
        o->extra[o->n_extra++] = v;
        break;
    case SUB_ARRAY: SOWER_TRY(parse_int_flag(flag, v, 0, 100000, &o->array)); break;
    case SUB_TASKS: SOWER_TRY(parse_int_flag(flag, v, 1, 100000, &o->over.tasks)); break;
    case SUB_CPUS: SOWER_TRY(parse_int_flag(flag, v, 1, 4096, &o->over.cpus_per_task)); break;
    case SUB_GPUS: SOWER_TRY(parse_int_flag(flag, v, 0, 64, &o->over.gpus_per_task)); break;
    case SUB_TIME:
        SOWER_TRY(copy_word(flag, v, o->over.time, sizeof o->over.time, "0123456789:-"));
        if (!slurm_time_valid(o->over.time)) /* as the manifest's slurm.time */
            return SOWER_FAIL(SOWER_EUSAGE, "%s %s: expected a Slurm time limit: MINUTES, HH:MM:SS or DAYS-HH:MM:SS",
                              flag, v);
        break;
    case SUB_PARTITION: /* one partition or a list of them, as sbatch --partition takes it */
        SOWER_TRY(copy_word(flag, v, o->over.partition, sizeof o->over.partition, list_chars));
        if (!slurm_partition_valid(v)) /* as the manifest's slurm.partition */
            return SOWER_FAIL(SOWER_EUSAGE, "%s %s: expected partition names separated by single commas", flag, v);
        break;
    case SUB_ACCOUNT: SOWER_TRY(copy_word(flag, v, o->over.account, sizeof o->over.account, name_chars)); break;
    }
    return SOWER_OK;
}

static int on_submit_manifest(void *ctx, const char *arg)
{
    return cli_one_positional(&((SubmitOptions *)ctx)->manifest, arg);
}

static int parse_options(int argc, char **argv, SubmitOptions *o, int *help)
{
    memset(o, 0, sizeof *o);
    o->array = -1;
    o->over.tasks = o->over.cpus_per_task = o->over.gpus_per_task = -1;
    const CliParser parser = {"submit", submit_options, N_SUBMIT_OPTS, on_submit_option, on_submit_manifest, o};
    SOWER_TRY(cli_parse(&parser, argc, argv, help));
    if (*help)
        return SOWER_OK;
    if (!o->manifest)
        return SOWER_FAIL(SOWER_EUSAGE, "submit: JOB.yaml is required (see 'sower submit --help')");
    return SOWER_OK;
}

/* The manifest's settings with the flags on top; gpus default to 1 per task for the cuda backend. */
static SlurmSettings effective(const Job *job, const SubmitOptions *o)
{
    SlurmSettings s = job->slurm;
    if (o->over.tasks > 0)
        s.tasks = o->over.tasks;
    if (o->over.cpus_per_task > 0)
        s.cpus_per_task = o->over.cpus_per_task;
    if (o->over.gpus_per_task >= 0)
        s.gpus_per_task = o->over.gpus_per_task;
    if (s.gpus_per_task < 0)
        s.gpus_per_task = job->backend == BACKEND_CUDA ? 1 : 0;
    if (o->array >= 0)
        s.slices = o->array;
    if (o->over.time[0])
        snprintf(s.time, sizeof s.time, "%s", o->over.time);
    if (o->over.partition[0])
        snprintf(s.partition, sizeof s.partition, "%s", o->over.partition);
    if (o->over.account[0])
        snprintf(s.account, sizeof s.account, "%s", o->over.account);
    return s;
}

/* OUT.slurm beside OUT.h5 (".h5" replaced). */
static int log_dir_path(const Job *job, char *dir, size_t cap)
{
    size_t len = h5_stem_length(job->output_path);
    if (snprintf(dir, cap, "%.*s.slurm", (int)len, job->output_path) >= (int)cap)
        return SOWER_FAIL(SOWER_EPATH, "output path '%s' is too long", job->output_path);
    return SOWER_OK;
}

/* dir/NAME as sbatch's --output pattern (out: cap bytes): '%' doubled, since Slurm reads "%j" in a folder's
 * name as the job id too (the log would go to a folder that does not exist, and the job fail unlogged). A
 * backslash turns every replacement off and is dropped, so no such pattern names the folder: refused. */
static int log_pattern(const char *dir, const char *name, char *out, size_t cap)
{
    if (strchr(dir, '\\'))
        return SOWER_FAIL(SOWER_EPATH, "the job's log folder '%s' holds a backslash, which Slurm's --output reads as "
                                       "'no replacements' and drops: choose an output path without one", dir);
    size_t n = 0;
    for (const char *p = dir; *p && n + 2 < cap; p++) {
        if (*p == '%') out[n++] = '%';
        out[n++] = *p;
    }
    if (n + strlen(name) + 2 > cap) return SOWER_FAIL(SOWER_EPATH, "the log folder '%s' is too long", dir);
    snprintf(out + n, cap - n, "/%s", name);
    return SOWER_OK;
}

/* Path as an absolute one without resolving links (out: cap bytes): the manifest's relative paths are
 * read from the folder it is named in, as `sower check` and `sower run` read them, not from the folder a
 * link to it points into. */
static int absolute_path(const char *path, char *out, size_t cap)
{
    char cwd[PATH_MAX];
    if (path[0] != '/' && !getcwd(cwd, sizeof cwd))
        return SOWER_FAIL(SOWER_EPATH, "cannot read the current folder: %s", strerror(errno));
    const int relative = path[0] != '/';
    if (snprintf(out, cap, "%s%s%s", relative ? cwd : "", relative && strcmp(cwd, "/") ? "/" : "", path) >= (int)cap)
        return SOWER_FAIL(SOWER_EPATH, "%s: the path is too long", path);
    return SOWER_OK;
}

/* The time limit must leave sower.sbatch its margin: it asks Slurm for SIGUSR1 180 s before the limit to
 * stop and requeue, so a shorter limit stops a job as it starts, and requeues it for ever. */
static int check_time_limit(const SlurmSettings *s)
{
    enum { MIN_SECONDS = 240 };
    const double seconds = s->time[0] ? slurm_time_seconds(s->time) : 0;
    if (seconds > 0 && seconds < MIN_SECONDS)
        return SOWER_FAIL(SOWER_EUSAGE, "time limit '%s': shorter than the %d minutes a job needs (sower.sbatch asks "
                                        "Slurm to signal it 180 s before the limit, to stop and requeue): give at "
                                        "least %d, or 0 for none", s->time, MIN_SECONDS / 60, MIN_SECONDS / 60);
    return SOWER_OK;
}

/* A live run of the output (its lock held) is refused now, not when the job starts after its wait in the
 * queue: the lock is taken and given back at once (a dead run's is taken over). */
static int check_output_free(const Job *job)
{
    OutputLock lock;
    SOWER_TRY(output_lock_take(&lock, job->output_path, "sower submit (checking the output is free)"));
    output_lock_release(&lock);
    return SOWER_OK;
}

/* After the array was queued and its stitch job was not: the array is cancelled (its slices would render
 * with no job to stitch them), or, when scancel fails, named so that the user can. */
static void cancel_array(const char *array_id)
{
    const char *argv[] = {"scancel", array_id, NULL};
    pid_t pid;
    int status = -1;
    if (posix_spawnp(&pid, "scancel", NULL, NULL, (char *const *)argv, environ) == 0) waitpid(pid, &status, 0);
    if (status == 0)
        fprintf(stderr, "sower submit: cancelled the array job %s, queued before the stitch job failed\n", array_id);
    else
        fprintf(stderr, "sower submit: the array job %s was queued, its stitch job was not: cancel it with "
                        "'scancel %s'\n", array_id, array_id);
}


/* OUT.slurm/sower.sbatch, written whole and renamed into place: whatever was at the name (an earlier
 * script, a link) is replaced, never written through. */
static int write_script(const char *path)
{
    OutFile f;
    int status = outfile_open(&f, path);
    if (status == SOWER_OK) status = outfile_write(&f, sower_sbatch_script, strlen(sower_sbatch_script));
    if (status == SOWER_OK && fchmod(fileno(f.fp), 0755) != 0)
        status = SOWER_FAIL(SOWER_EIO, "cannot make '%s' executable: %s", path, strerror(errno));
    if (status == SOWER_OK) status = outfile_commit(&f);
    outfile_free(&f);
    return status;
}

/* An sbatch command line: argv (MAX_ARGV,) pointing into store (the formatted options). */
typedef struct {
    const char *argv[MAX_ARGV];
    int argc;
    char store[16][4352];
    int n_store;
    const char *expand; /* the one word --dry-run prints for the shell to expand ($ARRAY_JOB_ID), or NULL */
} Command;

static void add(Command *c, const char *arg) { c->argv[c->argc++] = arg; }

static void addf(Command *c, const char *fmt, const char *value)
{
    char *slot = c->store[c->n_store++];
    snprintf(slot, sizeof c->store[0], fmt, value);
    add(c, slot);
}

static void addi(Command *c, const char *fmt, int value)
{
    char *slot = c->store[c->n_store++];
    snprintf(slot, sizeof c->store[0], fmt, value);
    add(c, slot);
}

/* sbatch --parsable [resources] --job-name --output [extra] SCRIPT JOB.yaml */
static void sbatch_command(Command *c, const SlurmSettings *s, const SubmitOptions *o, const char *name,
                           const char *log_pattern)
{
    memset(c, 0, sizeof *c);
    add(c, "sbatch");
    add(c, "--parsable");
    addf(c, "--job-name=%s", name);
    addi(c, "--ntasks=%d", s->tasks);
    if (s->cpus_per_task)
        addi(c, "--cpus-per-task=%d", s->cpus_per_task);
    if (s->gpus_per_task > 0)
        addi(c, "--gpus-per-task=%d", s->gpus_per_task);
    if (s->time[0])
        addf(c, "--time=%s", s->time);
    if (s->partition[0])
        addf(c, "--partition=%s", s->partition);
    if (s->account[0])
        addf(c, "--account=%s", s->account);
    addf(c, "--output=%s", log_pattern);
    for (int i = 0; i < o->n_extra; i++)
        add(c, o->extra[i]);
}

/* A word as a POSIX shell reads it back: as it is when plain, or when it is the command's one word to
 * expand (the stitch job's --dependency=afterok:$ARRAY_JOB_ID); else in single quotes (a path with
 * spaces, a '$' of a folder's name). */
static void print_word(const char *w, int expand)
{
    const int plain = strspn(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:=%,+@-") == strlen(w);
    if (*w && (plain || expand)) {
        fputs(w, stdout);
        return;
    }
    putchar('\'');
    for (; *w; w++) *w == '\'' ? fputs("'\\''", stdout) : putchar(*w);
    putchar('\'');
}

static void print_command(const Command *c, const char *sower, const char *status_dir)
{
    fputs("SOWER=", stdout);
    print_word(sower, 0);
    fputs(" SOWER_STATUS_DIR=", stdout);
    print_word(status_dir, 0);
    for (int i = 0; i < c->argc; i++) {
        putchar(' ');
        print_word(c->argv[i], c->argv[i] == c->expand);
    }
    putchar('\n');
}

/* Runs the command with SOWER set; returns the job id sbatch --parsable prints. */
static int submit(Command *c, const char *sower, const char *status_dir, char *job_id, size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0)
        return SOWER_FAIL(SOWER_EIO, "pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    setenv("SOWER", sower, 1); /* sbatch exports the environment to the job (--export=ALL) */
    setenv("SOWER_STATUS_DIR", status_dir, 1);
    c->argv[c->argc] = NULL;
    pid_t pid;
    int rc = posix_spawnp(&pid, "sbatch", &fa, NULL, (char *const *)c->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return SOWER_FAIL(SOWER_EPATH, "cannot run sbatch (%s): is Slurm installed here? (--dry-run prints the commands)",
                          strerror(rc));
    }
    size_t used = 0;
    ssize_t got;
    while ((got = read(fds[0], job_id + used, cap - 1 - used)) > 0 && used + (size_t)got < cap - 1)
        used += (size_t)got;
    if (got > 0)
        used += (size_t)got;
    close(fds[0]);
    job_id[used] = '\0';
    job_id[strcspn(job_id, ";\n")] = '\0'; /* "ID" or "ID;CLUSTER" */
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !job_id[0])
        return SOWER_FAIL(SOWER_EINPUT, "sbatch refused the job (%s %d; its message, if it printed one, is above)",
                          WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return SOWER_OK;
}

int cmd_submit(int argc, char **argv)
{
    SubmitOptions o;
    int help = 0;
    SOWER_TRY(parse_options(argc, argv, &o, &help));
    if (help) {
        fputs(submit_usage, stdout);
        return SOWER_OK;
    }
    char sower[PATH_MAX], manifest[PATH_MAX], log_dir[PATH_MAX], script[PATH_MAX + 16], log[PATH_MAX + 160];
    ssize_t n = readlink("/proc/self/exe", sower, sizeof sower - 1);
    if (n <= 0)
        return SOWER_FAIL(SOWER_EINTERNAL, "cannot find the sower binary's path (/proc/self/exe)");
    sower[n] = '\0';
    SOWER_TRY(absolute_path(o.manifest, manifest, sizeof manifest));
    Job job;
    memset(&job, 0, sizeof job);
    int status = manifest_load(&job, manifest);
    if (status == SOWER_OK)
        status = check_job_model(&job); /* before anything waits in a queue */
    SlurmSettings s = effective(&job, &o);
    if (status == SOWER_OK)
        status = check_time_limit(&s);
    if (status == SOWER_OK)
        status = log_dir_path(&job, log_dir, sizeof log_dir);
    if (status == SOWER_OK)
        status = log_pattern(log_dir, s.slices ? "%x-%A_%a.out" : "%x-%j.out", log, sizeof log);
    if (status == SOWER_OK && !o.dry_run)
        status = check_output_free(&job);
    if (status == SOWER_OK && !o.dry_run)
        status = make_dirs(log_dir);
    if (status != SOWER_OK) {
        job_free(&job);
        SOWER_TRY(status);
    }
    snprintf(script, sizeof script, "%s/sower.sbatch", log_dir);
    if (o.dry_run) {
        char *shown = utf8_printable(script, strlen(script)); /* a newline in the path would end the comment */
        printf("# dry run: nothing written or submitted. sower submit would write %s (slurm/sower.sbatch):\n",
               shown ? shown : "OUT.slurm/sower.sbatch");
        free(shown);
        for (const char *line = sower_sbatch_script; *line;) { /* as comments: the dry run stays a runnable script */
            const size_t len = strcspn(line, "\n");
            printf("#   %.*s\n", (int)len, line);
            line += len + (line[len] == '\n');
        }
        printf("# and run (ARRAY_JOB_ID: the id the first sbatch prints):\n");
    }
    struct stat before;
    const int script_new = !o.dry_run && lstat(script, &before) != 0; /* removed again if nothing is queued */
    if (!o.dry_run && status == SOWER_OK) status = write_script(script);
    Command c;
    char array_id[64] = "", stitch_id[64] = "", slices[16], range[32], dependency[96];
    snprintf(slices, sizeof slices, "%d", s.slices);
    snprintf(range, sizeof range, "--array=0-%d", s.slices - 1);
    /* 1. one allocation, or the array of slices */
    sbatch_command(&c, &s, &o, job.name, log);
    if (s.slices)
        add(&c, range);
    add(&c, script);
    add(&c, manifest);
    if (status == SOWER_OK && o.dry_run)
        print_command(&c, sower, log_dir);
    else if (status == SOWER_OK && (status = submit(&c, sower, log_dir, array_id, sizeof array_id)) != SOWER_OK &&
             script_new) {
        unlink(script); /* nothing was queued: leave no script, and the log folder only if it holds more */
        rmdir(log_dir);
    }
    /* 2. the stitch-and-verify job, once every slice has succeeded */
    if (status == SOWER_OK && s.slices) {
        char name[160];
        snprintf(name, sizeof name, "%s-stitch", job.name);
        status = log_pattern(log_dir, "%x-%j.out", log, sizeof log);
        sbatch_command(&c, &s, &o, name, log);
        snprintf(dependency, sizeof dependency, "--dependency=afterok:%s", o.dry_run ? "$ARRAY_JOB_ID" : array_id);
        add(&c, dependency);
        c.expand = dependency;
        add(&c, "--kill-on-invalid-dep=yes"); /* a failed slice ends it, rather than leaving it queued for ever */
        add(&c, script);
        add(&c, manifest);
        add(&c, "--stitch");
        add(&c, slices);
        if (status == SOWER_OK && o.dry_run)
            print_command(&c, sower, log_dir);
        else if (status == SOWER_OK && (status = submit(&c, sower, log_dir, stitch_id, sizeof stitch_id)) != SOWER_OK)
            cancel_array(array_id);
    }
    if (status == SOWER_OK && !o.dry_run) {
        if (s.slices)
            printf("sower submit: %s: array job %s (%llu rows in %d slices, each into its own .slice-K-of-%d.h5 "
                   "file); stitch job %s (after the array succeeds) -> %s; logs in %s\n", job.name, array_id,
                   (unsigned long long)job.n_rows, s.slices, s.slices, stitch_id, job.output_path, log_dir);
        else
            printf("sower submit: %s: job %s (%llu rows on %d task%s) -> %s; log in %s\n", job.name, array_id,
                   (unsigned long long)job.n_rows, s.tasks, s.tasks == 1 ? "" : "s", job.output_path, log_dir);
        printf("%s%s%s\n", array_id, s.slices ? " " : "", stitch_id);
    }
    job_free(&job);
    SOWER_TRY(status);
    return SOWER_OK;
}
