#!/usr/bin/python3
"""One run per output, and no finished row lost or falsely accepted, on the careless paths:

- two `sower run` of one job at once on one host: the second is refused (exit 2) naming the first
  (pid, start time), touches nothing, and the first finishes identical to an uninterrupted run; a
  `--resume` meanwhile is refused the same way ("in use", not "no interrupted run");
- two "hosts" (SOWER_TEST_HOSTNAME) sharing the directory: the second is refused naming the host and
  the lock to delete; after kill -9 of the first, the other host is still refused (it cannot check
  a remote pid), the first host takes the stale lock over;
- a requeued Slurm job on another host (same SLURM_JOB_ID, higher SLURM_RESTART_COUNT) takes over its earlier
  run's lock once that run stops touching it (its heartbeat), refuses it while it is still touched; another
  job or the same restart count is refused at once;
- kill -9, then a plain rerun without --resume: refused (exit 2) with how many rows the .partial
  holds, the .partial byte for byte as it was; --resume then finishes it identical;
- a manifest changed only where no bit changes (a comment, name, threads, batch, verify) resumes;
  one whose steps changed is refused naming the setting;
- SIGINT to mpirun (2 and 3 ranks) and SIGTERM to the ranks (as scancel does): the hint to resume
  printed once by rank 0, the status file says 3, the lock is gone, the rows kept match the
  reference; srun-style SIGTERM to the ranks gives exit 3 (Open MPI's mpirun itself exits 1 after
  its own SIGINT whatever the ranks return); --resume finishes identical;
- `sower verify` / `sower export` of a .partial: exit 2, "unfinished (N of M rows done)";
- partials edited with h5py (/done = 1 on zeroed rows, a flipped byte in a done row, an altered
  digest or seed): --resume re-renders exactly those rows (named in a warning) and finishes
  identical; --resume-auto refuses a finished output so damaged (exit 2, row numbers), unchanged;
  an empty .partial is refused and left empty;
- a rank stopped with SIGSTOP: rank 0 names it once it has been silent past the limit
  (SOWER_SILENCE_SECONDS here) and ends the job, exit 3, rows kept, no lock; --resume identical.

usage: test_output_safety.py SOWER_BINARY MPIEXEC MODEL_DIR
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import h5py
import numpy as np

from testing import check, failures  # noqa: E402  (the tests' shared helpers)
ROWS = 144  # enough that a fast idle machine cannot finish a run before a signal lands
# One thread for the single-process runs: on this tiny model a second thread costs more than it saves (CI time);
# the multi-rank runs take one per rank anyway, and no bit depends on the count.
ONE_THREAD = ", threads: 1"

JOB = """sower: 1
name: safety-test
model: {model}
pipeline: {{scheduler: ddim, steps: {steps}, eta: 0.3, batch: 2{extra}}}
seeds:
  ranges: [{{start: 0, count: {rows}}}]
output: {{path: out.h5}}
verify: {{count: 2}}
"""
DATASETS = ("latents", "seeds", "digest", "done")


def contents(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in DATASETS}


def same_as(path, ref, what):
    got, want = contents(path), contents(ref)
    for k in DATASETS:
        check(np.array_equal(got[k], want[k]), f"{what}: /{k} differs from the uninterrupted run")


def kept_rows_match(partial, ref, what):
    """The rows a stopped or killed run marked done are the reference's rows, bit for bit."""
    with h5py.File(partial, "r") as f:
        done = f["done"][...] == 1
        lat, dig = f["latents"][...], f["digest"][...]
    want = contents(ref)
    check(np.array_equal(lat[done], want["latents"][done]) and np.array_equal(dig[done], want["digest"][done]),
          f"{what}: a kept row differs from the reference")
    return int(done.sum())


def launch(argv, ranks, mpiexec):
    return argv if ranks == 1 else [mpiexec, "-np", str(ranks), "--oversubscribe"] + argv


def run(argv, env=None, timeout=300):
    try:
        return subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        failures.append(f"{argv}: hung (no exit in {timeout} s)")
        return None


def expect(r, code, texts, what):
    if r is None:
        return False
    missing = [t for t in texts if t not in r.stderr]
    return check(r.returncode == code and not missing,
                 f"{what}: exit {r.returncode} (expected {code}), missing {missing}: {r.stderr.strip()[-700:]}")


def start(argv, env=None):
    """Starts argv in its own session; returns once it reports written rows (so it holds the lock)."""
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline, err = time.time() + 120, b""
    while time.time() < deadline:
        line = p.stderr.readline()
        err += line
        if not line or (line.startswith(b"[sower]") and not line.startswith(b"[sower] 0/")):
            break
    p.early_err = err
    return p


class Throttle:
    """Lets a started run work a fifth of the time (SIGSTOP 0.4 s, SIGCONT 0.1 s), so that it outlasts the checks
    made beside it on any machine while its heartbeat thread still touches its lock after each pause (a fast CI
    machine finished the unthrottled run before the requeue checks could kill it)."""

    def __init__(self, p):
        self.p, self.done = p, threading.Event()
        self.thread = threading.Thread(target=self._cycle, daemon=True)
        self.thread.start()

    def _cycle(self):
        try:
            while not self.done.is_set():
                os.kill(self.p.pid, signal.SIGSTOP)
                self.done.wait(0.4)
                os.kill(self.p.pid, signal.SIGCONT)
                self.done.wait(0.1)
        except ProcessLookupError:
            pass

    def stop(self):
        self.done.set()
        self.thread.join()


def kill9(p, out):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:  # the launcher ended already; its ranks may not have
        pass
    p.wait()
    subprocess.run(["pkill", "-9", "-f", out], capture_output=True)  # ranks outside the launcher's group
    for _ in range(100):
        if subprocess.run(["pgrep", "-f", out], capture_output=True).returncode != 0:
            break
        time.sleep(0.1)


def env_host(name):
    env = dict(os.environ)
    env["SOWER_TEST_HOSTNAME"] = name
    return env


def main():
    sower, mpiexec, model = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
    os.environ["SOWER_PROGRESS_SECONDS"] = "0.1"
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        open(job, "w").write(JOB.format(model=model, steps=60, rows=ROWS, extra=ONE_THREAD))
        ref = os.path.join(tmp, "ref.h5")
        r = run([sower, "run", job, "-o", ref])
        if not expect(r, 0, [], "the reference run"):
            return

        # 1. Two runs of one output at once, one host.
        out = os.path.join(tmp, "two.h5")
        first = start([sower, "run", job, "-o", out])
        os.kill(first.pid, signal.SIGSTOP)  # it holds the lock and stays alive however slow the machine is
        r = run([sower, "run", job, "-o", out])
        expect(r, 2, ["is in use by another run", f"pid {first.pid} on this host", "sower run"], "a second run")
        r = run([sower, "run", job, "-o", out, "--resume"])
        expect(r, 2, ["is in use by another run"], "--resume of a partial in use")
        r = run([sower, "run", job, "-o", out, "--force"])
        expect(r, 2, ["is in use by another run"], "--force on an output in use")
        os.kill(first.pid, signal.SIGCONT)
        first.stderr.read()
        check(first.wait() == 0, f"the first run failed beside the refused ones: {first.returncode}")
        same_as(out, ref, "the first of two concurrent runs")
        check(not os.path.exists(out + ".lock"), "the lock outlived its run")
        print("two runs at once: the second (plain, --resume, --force) refused, the first finished identical")

        # 2. Two hosts on one shared directory; kill -9; a plain rerun.
        out = os.path.join(tmp, "hosts.h5")
        first = start([sower, "run", job, "-o", out], env=env_host("node-a"))
        os.kill(first.pid, signal.SIGSTOP)  # mid-run until the kill -9 below, however fast it would finish
        r = run([sower, "run", job, "-o", out], env=env_host("node-b"))
        expect(r, 2, ["host node-a", f"pid {first.pid}", f"delete '{out}.lock'"], "a run on another host")
        kill9(first, out)
        check(os.path.exists(out + ".lock") and os.path.exists(out + ".partial"), "kill -9 left no lock or .partial")
        before = open(out + ".partial", "rb").read()
        r = run([sower, "run", job, "-o", out, "--resume"], env=env_host("node-b"))
        expect(r, 2, ["host node-a", "cannot check a process on another host"], "--resume from another host after kill -9")
        r = run([sower, "run", job, "-o", out], env=env_host("node-a"))
        with h5py.File(out + ".partial", "r") as f:
            held = int(f["done"][...].sum())
        expect(r, 2, ["taking over the stale lock", f"holds {held} of {ROWS} rows", "--resume", "--force"],
               "a plain rerun after kill -9")
        check(open(out + ".partial", "rb").read() == before, "a refused run changed the .partial")
        check(not os.path.exists(out), "a refused run made OUT")
        r = run([sower, "run", job, "-o", out, "--resume"], env=env_host("node-a"))
        if expect(r, 0, [f"resuming: {held} of {ROWS} rows already written"], "--resume after kill -9"):
            same_as(out, ref, "kill -9 + --resume")
        check(not os.path.exists(out + ".lock"), "a stale lock was left behind")
        print(f"two hosts: refused across hosts; kill -9 after {held} rows; plain rerun refused; --resume identical")

        # 2b. A requeued Slurm job on another node (SLURM_JOB_ID the same, SLURM_RESTART_COUNT higher): it takes over the
        # lock of its earlier run once that run's heartbeat has stopped (here SIGSTOP stands for a crashed node: Slurm
        # requeues a job only once it has ended it), and refuses one still beating (a node Slurm lost that still
        # reaches the file system); another job, or the same run count, is refused as any other host's run.
        def slurm(host, job, restart=None):
            env = dict(env_host(host), SLURM_JOB_ID=job, SOWER_LOCK_HEARTBEAT_SECONDS="1")
            env.pop("SLURM_RESTART_COUNT", None)
            if restart is not None:
                env["SLURM_RESTART_COUNT"] = restart
            return env

        out = os.path.join(tmp, "requeue.h5")
        first = start([sower, "run", job, "-o", out], env=slurm("node-a", "77"))
        throttle = Throttle(first)
        lock_text = open(out + ".lock").read()
        check("slurm_job: 77\nslurm_restart: 0\n" in lock_text and "heartbeat: 1\n" in lock_text,
              f"the lock does not name its Slurm job and heartbeat: {lock_text}")
        for env, what in ((slurm("node-b", "78", "1"), "another Slurm job"), (slurm("node-b", "77", "0"), "the same run")):
            t0 = time.time()
            r = run([sower, "run", job, "-o", out, "--resume"], env=env)
            expect(r, 2, ["host node-a", "cannot check a process on another host"], f"{what} on another host")
            check(time.time() - t0 < 2.5, f"{what}: refused only after {time.time() - t0:.1f} s (no wait expected)")
        t0 = time.time()
        r = run([sower, "run", job, "-o", out, "--resume"], env=slurm("node-b", "77", "1"))
        waited = time.time() - t0
        expect(r, 2, ["an earlier run of this Slurm job (job 77, restart 0) on host node-a that still touches its lock",
                      f"delete '{out}.lock'"], "a requeued run beside its earlier run, still beating")
        check(waited >= 3, f"a requeued run refused after {waited:.1f} s, before the earlier run's heartbeat could stop")
        throttle.stop()
        check(first.poll() is None and not os.path.exists(out), "the earlier run ended before its node could crash")
        kill9(first, out)  # its node crashes: the lock stays, its heartbeat stops
        t0 = time.time()
        r = run([sower, "run", job, "-o", out, "--resume"], env=slurm("node-b", "77", "2"))
        took = time.time() - t0
        if expect(r, 0, ["taking over the stale lock", "an earlier run of Slurm job 77 (restart 0)", "resuming:"],
                  "a requeued run after its earlier run's node crashed"):
            same_as(out, ref, "a requeued Slurm run")
        untouched = re.search(r"its lock untouched for (\d+) s", r.stderr if r else "")
        check(untouched is not None and int(untouched.group(1)) >= 3,
              f"the lock of a run just killed taken over before 3 of its beats passed: {r.stderr[-400:] if r else ''}")
        check(not os.path.exists(out + ".lock"), "a requeued run left its lock")
        # a lock whose heartbeat no holder keeps (hand-written, or damaged): refused at once, never waited out
        odd = os.path.join(tmp, "odd-heartbeat.h5")
        for beat in ("99999999", "-5", "soon"):
            open(odd + ".lock", "w").write(f"host: node-a\npid: 4242\npid_start: 1\nstarted: 2026-01-01T00:00:00Z\n"
                                           f"command: sower run\nheartbeat: {beat}\nslurm_job: 77\nslurm_restart: 0\n")
            t0 = time.time()
            r = run([sower, "run", job, "-o", odd], env=slurm("node-b", "77", "1"))
            expect(r, 2, ["host node-a", "cannot check a process on another host"], f"a lock with heartbeat {beat}")
            check(time.time() - t0 < 2.5 and not os.path.exists(odd + ".partial"),
                  f"a lock with heartbeat {beat}: waited {time.time() - t0:.1f} s or wrote")
        os.remove(odd + ".lock")
        print(f"requeued Slurm run: refused beside its earlier run while it beats ({waited:.1f} s); once its node "
              f"crashed, takes over after its beats stop ({took:.1f} s) and finishes identical; another job or the "
              "same run count refused at once")

        # 3. What may change between a run and its --resume: what changes no bit.
        out = os.path.join(tmp, "edited.h5")
        kill9(start([sower, "run", job, "-o", out]), out)
        edited = os.path.join(tmp, "edited.yaml")
        text = JOB.format(model=model, steps=60, rows=ROWS, extra=", threads: 2").replace("batch: 2", "batch: 5")
        open(edited, "w").write("# edited after the kill\n" + text.replace("safety-test", "renamed")
                                .replace("count: 2}", "count: 5}"))
        steps = os.path.join(tmp, "steps.yaml")
        open(steps, "w").write(JOB.format(model=model, steps=50, rows=ROWS, extra=ONE_THREAD))
        r = run([sower, "run", steps, "-o", out, "--resume"])
        expect(r, 2, ["'pipeline: scheduler=ddim steps=60 eta=0.3' there, 'pipeline: scheduler=ddim steps=50 eta=0.3'"],
               "--resume with other steps")
        r = run([sower, "run", edited, "-o", out, "--resume"])
        if expect(r, 0, [], "--resume with a comment, name, threads, batch and verify changed"):
            same_as(out, ref, "edited manifest + --resume")
        print("--resume: comment/name/threads/batch/verify changed accepted (identical); steps changed refused")

        # 4. Stops under mpirun: SIGINT to mpirun (2, 3 ranks), SIGTERM to the ranks (3 ranks).
        for case, (ranks, how) in enumerate(((2, "SIGINT to mpirun"), (3, "SIGINT to mpirun"),
                                             (3, "SIGTERM to the ranks"))):
            out = os.path.join(tmp, f"stop{case}.h5")
            status = os.path.join(tmp, "status")
            if os.path.exists(status):
                os.remove(status)
            p = start(launch([sower, "run", job, "-o", out, "--status-file", status], ranks, mpiexec))
            if how.endswith("mpirun"):
                os.kill(p.pid, signal.SIGINT)
            else:
                for pid in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
                    os.kill(int(pid), signal.SIGTERM)
            err = (p.early_err + p.stderr.read()).decode()
            code = p.wait()
            what = f"{ranks} ranks, {how}"
            check(err.count("stopped early:") == 1 and "--resume" in err, f"{what}: the hint is not printed once: {err[-900:]}")
            check(os.path.exists(status) and open(status).read() == "3\n", f"{what}: the status file does not say 3")
            if how.endswith("ranks"):
                check(code == 3, f"{what}: exit {code}, expected 3")
            check(not os.path.exists(out + ".lock"), f"{what}: the lock was left behind")
            if not check(os.path.exists(out + ".partial") and not os.path.exists(out), f"{what}: expected only OUT.partial"):
                continue
            kept = kept_rows_match(out + ".partial", ref, what)
            r = run(launch([sower, "run", job, "-o", out, "--resume"], ranks, mpiexec))
            if expect(r, 0, [], f"{what}: --resume"):
                same_as(out, ref, f"{what} + --resume")
            print(f"{what}: exit {code}, {kept} rows kept, hint once, status file 3, no lock; --resume identical")

        # 5. Readers of an unfinished file say so.
        out = os.path.join(tmp, "reader.h5")
        kill9(start([sower, "run", job, "-o", out]), out)
        with h5py.File(out + ".partial", "r") as f:
            held = int(f["done"][...].sum())
        for argv in ([sower, "verify", out + ".partial", "--model", model],
                     [sower, "export", out + ".partial", "--png", os.path.join(tmp, "x.png")]):
            expect(run(argv), 2, [f"unfinished ({held} of {ROWS} rows done", "--resume"], f"sower {argv[1]} of a .partial")
        check(not os.path.exists(os.path.join(tmp, "x.png")), "export of a .partial wrote a PNG")
        print(f"verify and export of a .partial: exit 2, unfinished (N of M rows done)")

        # 6. Rows are re-checked, not trusted for their mark.
        def zero_row(f):
            f["latents"][3] = 0
            f["digest"][3] = 0

        def flip_byte(f):
            f["latents"][5, 0, 0, 0] = -f["latents"][5, 0, 0, 0]

        def alter_digest(f):
            f["digest"][6, 0] ^= 1

        def alter_seed(f):
            f["seeds"][7] = 10**12

        edits = (("a zeroed row 3 marked done", zero_row, "3"), ("a flipped byte in row 5", flip_byte, "5"),
                 ("an altered digest of row 6", alter_digest, "6"), ("an altered seed of row 7", alter_seed, "7"))
        for name, edit, row in edits:
            out = os.path.join(tmp, "edited-rows.h5")
            with open(out + ".partial", "wb") as f:
                f.write(open(ref, "rb").read())
            with h5py.File(out + ".partial", "r+") as f:
                del f["run"], f["verify"]
                f["done"][ROWS - 4:] = 0  # an interrupted run's file (4 rows to go: CI time)
                edit(f)
            r = run([sower, "run", job, "-o", out, "--resume"])
            if expect(r, 0, [f"1 row marked done fails the check", f"(row {row})"], f"--resume of a partial with {name}"):
                same_as(out, ref, f"--resume of a partial with {name}")
            for left in (out, out + ".partial"):  # a failed --resume may leave either
                if os.path.exists(left):
                    os.remove(left)
            finished = os.path.join(tmp, "finished-edited.h5")
            with open(finished, "wb") as f:
                f.write(open(ref, "rb").read())
            with h5py.File(finished, "r+") as f:
                edit(f)
            before = open(finished, "rb").read()
            r = run([sower, "run", job, "-o", finished, "--resume-auto"])
            expect(r, 2, [f"1 of its rows fail the check", f"(row {row})", "--force"], f"--resume-auto of an output with {name}")
            check(open(finished, "rb").read() == before, f"--resume-auto changed an output with {name}")
        # A finished output whose /verify was deleted by hand has lost the record of its verification:
        # --resume-auto refuses it as damaged rather than reporting "already finished" (exit 0).
        unverified = os.path.join(tmp, "unverified.h5")
        with open(unverified, "wb") as f:
            f.write(open(ref, "rb").read())
        with h5py.File(unverified, "r+") as f:
            del f["verify"]
        before = open(unverified, "rb").read()
        expect(run([sower, "run", job, "-o", unverified, "--resume-auto"]), 2,
               ["has no /verify/match", "a damaged file", "--force"], "--resume-auto of a finished output without /verify")
        check(open(unverified, "rb").read() == before, "--resume-auto changed an output without /verify")
        empty = os.path.join(tmp, "empty.h5")
        open(empty + ".partial", "wb").close()
        expect(run([sower, "run", job, "-o", empty, "--resume"]), 2, ["an empty file"], "--resume of an empty .partial")
        expect(run([sower, "run", job, "-o", empty]), 2, ["not replacing it without --force"], "a rerun beside an empty .partial")
        check(os.path.getsize(empty + ".partial") == 0, "a refused --resume wrote into an empty .partial")
        print("edited partials: the edited rows re-rendered, identical; damaged finished outputs (rows, no /verify) "
              "refused; empty refused")

        # 7. A rank that goes silent (SIGSTOP) is named and the job ends instead of hanging.
        out = os.path.join(tmp, "silent.h5")
        env = dict(os.environ, SOWER_SILENCE_SECONDS="2")
        p = start(launch([sower, "run", job, "-o", out], 2, mpiexec), env=env)
        rank1 = None
        for pid in subprocess.run(["pgrep", "-f", out], capture_output=True, text=True).stdout.split():
            try:
                if b"OMPI_COMM_WORLD_RANK=1\0" in open(f"/proc/{pid}/environ", "rb").read():
                    rank1 = int(pid)
            except OSError:
                pass
        if check(rank1 is not None, "could not find rank 1 to stop"):
            os.kill(rank1, signal.SIGSTOP)
            try:
                err = (p.early_err + p.communicate(timeout=120)[1]).decode()
            except subprocess.TimeoutExpired:
                err = "(no exit in 120 s)"
                failures.append("a silent rank: the job hung")
            kill9(p, out)
            check(p.returncode == 3 and "rank 1 has sent nothing for" in err,
                  f"a silent rank: exit {p.returncode}, expected 3 naming rank 1: {err[-700:]}")
            check(os.path.exists(out + ".partial") and not os.path.exists(out + ".lock"),
                  "a silent rank: expected the .partial kept and no lock")
            r = run(launch([sower, "run", job, "-o", out, "--resume"], 2, mpiexec))
            if expect(r, 0, [], "--resume after a silent rank"):
                same_as(out, ref, "a silent rank + --resume")
            print("a rank stopped with SIGSTOP: named after the silence limit, exit 3, rows kept; --resume identical")

        # 8. Careless paths refused before anything is made or rendered: a status file naming the output
        # (a finished one, with and without --force) or the manifest, an output that is a directory,
        # named as one, or empty.
        before = open(ref, "rb").read()
        for extra in ([], ["--force"]):
            r = run([sower, "run", job, "-o", ref, "--status-file", ref] + extra)
            expect(r, 2, ["--status-file", "that is the job's output"], f"--status-file naming the output {extra}")
        r = run([sower, "run", job, "-o", os.path.join(tmp, "new.h5"), "--status-file", job])
        expect(r, 2, ["--status-file", "that is the job's manifest"], "--status-file naming the manifest")
        # The same files under other names, a new output's name, names kept for working files, no name, a
        # missing folder: each refused up front, and nothing made (not even after a manifest error).
        os.mkdir(os.path.join(tmp, "sub"))
        dotted = os.path.join(tmp, ".", "sub", "..", "new.h5")
        for status, text in ((dotted, "that is the job's output"), (os.path.join(tmp, "new.h5.partial.new"), "kept"),
                             (dotted + ".partial", "kept for a run's working files"),
                             (dotted + ".lock", "kept for a run's working files"),
                             ("", "the path is empty"),
                             (os.path.join(tmp, "no-such-folder", "status"), "does not exist")):
            r = run([sower, "run", job, "-o", os.path.join(tmp, "new.h5"), "--status-file", status])
            expect(r, 2, ["--status-file", text], f"--status-file {status!r}")
        broken = os.path.join(tmp, "broken.yaml")
        open(broken, "w").write("sower: 1\nname: [\n")
        r = run([sower, "run", broken, "--status-file", os.path.join(tmp, "j.h5.partial")])
        expect(r, 2, ["--status-file", "kept for a run's working files"], "a status file named as a partial")
        r = run([sower, "run", broken, "--status-file", ref])  # the output unknown: only a status file is replaced
        expect(r, 2, ["not writing the status file", "not a status file"], "a failed manifest's status file at an output")
        check(not [f for f in os.listdir(tmp) if f.startswith("new.h5") or f.startswith("j.h5")],
              f"a refused status file was written: {sorted(os.listdir(tmp))}")
        check(open(ref, "rb").read() == before and "sower: 1" in open(job).read(),
              "a status file replaced the output or the manifest")
        folder = os.path.join(tmp, "a-folder")
        os.mkdir(folder)
        for target, text in ((folder, "is a directory"), (os.path.join(tmp, "new-dir") + "/", "is a directory"),
                             ("", "the output path is empty")):
            r = run([sower, "run", job, "-o", target, "--force"])
            expect(r, 2, [text], f"output {target!r}")
        check(not os.path.exists(os.path.join(tmp, "new-dir")) and not os.path.exists(folder + ".partial")
              and os.listdir(folder) == [], "a refused output path made a folder or a partial")
        # Another run's working files (OUT.partial, OUT.lock) are never an output, even with --force: the run
        # would rename a stranger's rows into place as its own.
        live = os.path.join(tmp, "live.h5")
        first = start([sower, "run", job, "-o", live])
        os.kill(first.pid, signal.SIGSTOP)
        deadline = time.time() + 60
        while not os.path.exists(live + ".lock") and time.time() < deadline:
            time.sleep(0.05)
        for target in (live + ".partial", live + ".lock"):
            r = run([sower, "run", job, "-o", target, "--force"])
            expect(r, 2, ["is a working file of the run writing", live], f"an output at {os.path.basename(target)}")
            r = run([sower, "export", ref, "--png", target, "--force"])
            expect(r, 2, ["is a working file of the run writing"], f"export --png at {os.path.basename(target)}")
        os.kill(first.pid, signal.SIGCONT)
        first.stderr.read()
        check(first.wait() == 0, f"the run beside the refused ones failed: {first.returncode}")
        same_as(live, ref, "a run whose working files others tried to write")
        # Not even --force renders over an input: the weights it reads (a copy of the model here).
        copy = os.path.join(tmp, "model-copy")
        shutil.copytree(model, copy)
        copied_job = os.path.join(tmp, "copy.yaml")
        open(copied_job, "w").write(JOB.format(model=copy, steps=2, rows=2, extra=""))
        weights = next(os.path.join(d, f) for d, _, fs in os.walk(copy) for f in fs if f.endswith(".safetensors"))
        kept = open(weights, "rb").read()
        r = run([sower, "run", copied_job, "-o", weights, "--force"])
        expect(r, 2, ["is a file of the model folder"], "an output over the model's weights")
        check(open(weights, "rb").read() == kept, "a run replaced the weights it reads")
        # A run refused after taking its output's lock (here: no model) removes the folders it made for it.
        nomodel = os.path.join(tmp, "nomodel.yaml")
        open(nomodel, "w").write(JOB.format(model=os.path.join(tmp, "no-such-model"), steps=2, rows=2, extra=""))
        r = run([sower, "run", nomodel, "-o", os.path.join(tmp, "new-tree", "a", "out.h5")])
        expect(r, 2, ["no-such-model"], "a run without its model")
        check(not os.path.exists(os.path.join(tmp, "new-tree")), "a refused run left the folders it made")
        status = os.path.join(tmp, "status")
        for k in range(2):  # an earlier status file is replaced (a 2-row job: CI time)
            r = run([sower, "run", copied_job, "-o", os.path.join(tmp, "st.h5"), "--force", "--status-file", status])
            check(r.returncode == 0 and open(status).read() == "0\n", f"status file, run {k}: {r.returncode}")
        print("status file / output path mistakes: exit 2 before any work, nothing replaced")

        # 9. Names kept for working files are no output, live run or not: a finished output named
        # X.partial.new would be removed by the next run of X (an unfinished creation), one named X.partial
        # renamed to X as that run's rows, one named X.lock would hold X's lock. Nor is a live run's output
        # a status file.
        stem = os.path.join(tmp, "stem.h5")
        for suffix in (".partial.new", ".partial", ".lock"):
            for argv in ([sower, "run", job, "-o", stem + suffix], [sower, "export", ref, "--png", stem + suffix],
                         [sower, "noise", "--seed", "1", "--shape", "4", "-o", stem + suffix],
                         [sower, "noise", "--seed", "1", "--shape", "4", "-o", "-", "--state-out", stem + suffix]):
                expect(run(argv), 2, [f"a name ending in {suffix} is kept for a run's working files"],
                       f"sower {argv[1]} writing {os.path.basename(stem + suffix)}")
        check(not [f for f in os.listdir(tmp) if f.startswith("stem.h5")],
              f"a refused working-file name was written: {sorted(os.listdir(tmp))}")
        open(stem + ".lock", "w").write("host: elsewhere\n")  # a run of stem.h5 (its lock) on another node
        r = run([sower, "run", job, "-o", os.path.join(tmp, "other.h5"), "--status-file", stem])
        expect(r, 2, ["--status-file", "that is the output of the run holding"], "a status file at a live run's output")
        check(not os.path.exists(stem), "a status file was written at a live run's output")
        os.remove(stem + ".lock")
        # A run whose OUT.partial another process replaces while it renders (here: a finished file moved
        # over it) renames nothing into place and removes nothing: what is there stays.
        race = os.path.join(tmp, "race.h5")
        first = start([sower, "run", job, "-o", race])
        os.kill(first.pid, signal.SIGSTOP)
        shutil.copyfile(ref, race + ".stranger")
        os.rename(race + ".stranger", race + ".partial")
        os.kill(first.pid, signal.SIGCONT)
        err = (first.early_err + first.stderr.read()).decode()
        code = first.wait()
        check(code == 3 and "is no longer the file this run wrote" in err,
              f"a run whose .partial was replaced: exit {code}, expected 3 naming it: {err[-700:]}")
        check(not os.path.exists(race) and not os.path.exists(race + ".lock")
              and open(race + ".partial", "rb").read() == open(ref, "rb").read(),
              "a run whose .partial was replaced renamed or removed the stranger's file, or left its lock")
        # A FIFO where a working file goes is named, never opened (the open would block for ever); a
        # dangling link at the output is an existing output, not a new one.
        fifo = os.path.join(tmp, "fifo.h5")
        os.mkfifo(fifo + ".partial")
        for extra in ([], ["--resume"]):
            expect(run([sower, "run", job, "-o", fifo] + extra, timeout=60), 2, ["not a regular file"],
                   f"a FIFO at OUT.partial {extra}")
        os.remove(fifo + ".partial")
        os.mkfifo(fifo + ".lock")
        expect(run([sower, "run", job, "-o", fifo], timeout=60), 2, ["which sower cannot read"], "a FIFO at OUT.lock")
        os.remove(fifo + ".lock")
        # A link at OUT.partial is not what a run leaves: --resume refuses it and writes nothing through it.
        elsewhere = os.path.join(tmp, "elsewhere.h5")
        shutil.copyfile(ref, elsewhere)
        with h5py.File(elsewhere, "r+") as f:
            del f["run"], f["verify"]
            f["done"][20:] = 0
        os.symlink(elsewhere, fifo + ".partial")
        kept = open(elsewhere, "rb").read()
        expect(run([sower, "run", job, "-o", fifo, "--resume"]), 2, ["a link, not the file"], "--resume through a link")
        check(open(elsewhere, "rb").read() == kept and not os.path.exists(fifo), "--resume wrote through a link")
        os.remove(fifo + ".partial")
        link = os.path.join(tmp, "link.h5")
        os.symlink(os.path.join(tmp, "nowhere.h5"), link)
        expect(run([sower, "run", job, "-o", link]), 2, ["exists", "--force"], "a dangling link at the output")
        expect(run([sower, "run", job, "-o", link, "--resume-auto"]), 2, ["a link to a missing file", "--force"],
               "--resume-auto with a dangling link at the output")
        check(os.path.islink(link) and not os.path.exists(os.path.join(tmp, "nowhere.h5")),
              "a run replaced a dangling link at its output without --force")
        # --resume-auto with an interrupted run's OUT.partial and something else at OUT: OUT is kept (it was
        # replaced by the partial's rows, exit 0); plain --resume refused it already.
        beside = os.path.join(tmp, "beside.h5")
        shutil.copyfile(ref, beside + ".partial")
        with h5py.File(beside + ".partial", "r+") as f:
            del f["run"], f["verify"]
            f["done"][20:] = 0
        open(beside, "w").write("precious, not sower\n")
        partial_before = open(beside + ".partial", "rb").read()
        expect(run([sower, "run", job, "-o", beside, "--resume-auto"]), 2, ["exists and is not an HDF5 file"],
               "--resume-auto beside a file at OUT")
        check(open(beside).read() == "precious, not sower\n" and open(beside + ".partial", "rb").read() == partial_before,
              "--resume-auto replaced the file at OUT, or changed the .partial")
        # An MPMD launch whose ranks were given other options (--resume on one only) ends at once, naming them.
        mixed = os.path.join(tmp, "mixed.h5")
        r = run([mpiexec, "-np", "1", "--oversubscribe", sower, "run", job, "-o", mixed, ":", "-np", "1", sower, "run",
                 job, "-o", mixed, "--resume"], timeout=120)
        expect(r, 2, ["rank 1 was started with other options than rank 0", "--resume"], "ranks with other options")
        check(not [f for f in os.listdir(tmp) if f.startswith("mixed.h5")], "ranks with other options wrote an output")
        print("working-file names refused for run, export, noise; a replaced .partial not renamed (exit 3); "
              "FIFOs named; a dangling link kept")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_output_safety: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
