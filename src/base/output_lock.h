/* output_lock.h: one run per output. Before a run touches OUT or OUT.partial it takes OUT.lock, a
 * small text file naming the run that holds it (host, pid, start time, command). The lock is made
 * by link(2) of a file already written, which is atomic on local file systems and on NFS, Lustre
 * and GPFS alike (unlike flock, which several parallel file systems ignore); where link is not
 * supported it falls back to open(O_CREAT | O_EXCL).
 *
 * A lock left by a run that died (kill -9, a node crash) is stale. On the host that made it, a
 * lock whose process no longer runs (or whose pid now belongs to a younger process) is taken over
 * with a notice. A lock from another host cannot be checked from here: the run is refused with
 * the owner's name and how to remove the lock once that run is known to be gone, unless it is an
 * earlier run of this very Slurm job (the same SLURM_JOB_ID, a lower SLURM_RESTART_COUNT: Slurm
 * requeued the job, from a node that crashed or was preempted) whose holder has stopped touching it.
 * A holder touches its lock's mtime every 10 s (a thread; SOWER_LOCK_HEARTBEAT_SECONDS in tests), so
 * a lock untouched for 3 beats, measured by the file system's own clock, is gone; a requeued run
 * waits up to 4 beats for that, and refuses a lock that is still touched (a node Slurm lost that
 * still reaches the file system). */
#ifndef SOWER_OUTPUT_LOCK_H
#define SOWER_OUTPUT_LOCK_H

#include "err.h"

typedef struct LockHeartbeat LockHeartbeat;

typedef struct {
    char *path;     /* OUT.lock; NULL when not held */
    LockHeartbeat *heartbeat; /* the thread touching it while held; NULL if none */
    char *made_dir; /* the output's folder when this run made it (and its new parents: made_top), else NULL */
    size_t made_top; /* made_dir[0..made_top) is the topmost folder this run made */
} OutputLock;

/* Takes OUT.lock for output_path; SOWER_EPATH (exit 2) naming the holder when another live run has
 * it, or when the lock cannot be made (directory missing or not writable). `command` ("sower run
 * job.yaml") is recorded for whoever finds the lock. The host name is gethostname's, or
 * SOWER_TEST_HOSTNAME's when set (tests simulate a second node with it). */
int output_lock_take(OutputLock *lock, const char *output_path, const char *command) SOWER_MUST_CHECK;
/* From a signal handler about to end the process: removes the lock this process holds, if any
 * (async-signal-safe: unlink only). */
void output_lock_release_from_signal(void);
/* Removes the lock if this process holds it; safe on a zeroed OutputLock. */
void output_lock_release(OutputLock *lock);

/* SOWER_EPATH when path is the working file of a run's output OUT (OUT.partial, OUT.partial.new or
 * OUT.lock) while OUT.lock exists: `what` ("output", "--png") must not write there, even with --force (it
 * would replace that run's rows, which it then renames into place as its own). */
int output_lock_check_not_working_file(const char *path, const char *what) SOWER_MUST_CHECK;
/* The test behind it, without an error: 1 when path is such a working file, with that run's OUT in
 * owner (owner_size bytes), else 0. */
int output_lock_is_working_file(const char *path, char *owner, size_t owner_size);

/* The working-file suffix path ends in (".partial", ".partial.new" or ".lock"; the longest that fits),
 * or NULL: a name no output may take, live run or not. */
const char *output_lock_working_suffix(const char *path);
/* SOWER_EPATH (exit 2) when path may not be an output that `what` writes: another run's live working
 * file (output_lock_check_not_working_file), or any name ending in a working-file suffix. A finished
 * output named X.partial.new would be deleted by the next run of X as a creation left unfinished, one
 * named X.partial renamed to X as that run's rows, one named X.lock would take X's lock. */
int output_lock_check_output_name(const char *path, const char *what) SOWER_MUST_CHECK;

/* For a file a command other than run writes (noise, sample, encode, export's sheet; convert takes OUT.lock):
 * SOWER_EPATH (exit 2) when output_lock_check_output_name refuses path, or when PATH.lock is there: the
 * output of a run, which would rename its rows over what the command wrote when it ends (or fail
 * then, not to), or of one that died and left the lock. */
int output_lock_check_command_output(const char *path, const char *what) SOWER_MUST_CHECK;
/* Before the work of a command that renders (sample, encode), for the file it writes at the end: the
 * above, and SOWER_EPATH when its folder is missing, when it is a folder, or, without force, when a
 * file or link is there already (a device or FIFO is written in place, outfile.h). Hours of rendering
 * must not end in a refusal that was known at the start. */
int output_lock_check_new_file(const char *path, const char *what, int force) SOWER_MUST_CHECK;

#endif /* SOWER_OUTPUT_LOCK_H */
