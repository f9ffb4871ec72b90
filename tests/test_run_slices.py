#!/usr/bin/python3
"""Sweeps split over job-array tasks, and graceful stops (what the Slurm templates rely on), without Slurm:

- `sower run --slice K/N` for K = 0..2 (different rank counts and batch sizes per slice), then
  `--stitch 3`: /latents, /seeds, /digest, /done and the root attributes are byte-identical to one
  2-rank run of the same manifest; `sower verify` passes on the stitched file and on a slice;
- stitching refuses a missing slice, a corrupt slice and a slice of another manifest (exit 2, named);
- SIGTERM to the ranks of a 2-rank run, and SIGUSR1 to a 1-rank run: exit 3, OUT.partial kept with
  some rows, no OUT; `--resume-auto` finishes it byte-identical; `--resume-auto` on a finished output
  exits 0 at once;
- bad --slice/--stitch/--resume-auto combinations exit 2;
- `sower submit --dry-run` prints the array and the afterok stitch sbatch commands and writes nothing;
  bad submit flags exit 2.

usage: test_run_slices.py SOWER_BINARY MPIEXEC MODEL_DIR
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

from testing import check, failures  # noqa: E402  (the tests' shared helpers)

JOB = """sower: 1
name: slices-test
model: {model}
pipeline: {{scheduler: ddim, steps: {steps}, eta: 0.3, batch: 4}}
seeds:
  ranges: [{{start: 0, count: {count}}}]
  list: [4294967303]
output: {{path: {out}}}
verify: {{count: 6}}
"""

DATASETS = ("latents", "seeds", "digest", "done")


def contents(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in DATASETS}, {k: f.attrs[k] for k in f.attrs}


def same_as(path, ref, what):
    got, got_attrs = contents(path)
    want, want_attrs = contents(ref)
    for k in DATASETS:
        check(got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), f"{what}: /{k} differs from the reference")
    check(got_attrs.keys() == want_attrs.keys() and all(got_attrs[k] == want_attrs[k] for k in got_attrs),
          f"{what}: root attributes differ from the reference")


def run(argv, ranks, mpiexec, **kw):
    if ranks > 1:
        argv = [mpiexec, "-np", str(ranks), "--oversubscribe"] + argv
    return subprocess.run(argv, capture_output=True, **kw)


def expect(r, code, text, what):
    err = r.stderr.decode()
    check(r.returncode == code and text in err, f"{what}: expected exit {code} and '{text}', got {r.returncode}: {err[-600:]}")


def interrupt(argv, sig, launched):
    """Starts argv, waits until the progress line shows rows, sends sig to the sower processes
    (the ranks, not the launcher, as Slurm signals the tasks; a process started without a launcher
    has a helper child of Open MPI's, which is left alone), returns (exit code, stderr)."""
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline, err = time.time() + 120, b""
    while time.time() < deadline:
        line = p.stderr.readline()
        err += line
        if not line or (line.startswith(b"[sower]") and not line.startswith(b"[sower] 0/")):
            break
    ranks = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    for pid in ranks if launched else [str(p.pid)]:
        os.kill(int(pid), sig)
    err += p.stderr.read()
    return p.wait(), err.decode()


FAKE_SBATCH = """#!/bin/sh
# sbatch as far as sower submit sees it: logs its arguments, prints a job id, fails from call FAKE_FAIL_AT on
n=$(cat "$FAKE_DIR/count" 2>/dev/null || echo 100); n=$((n + 1)); echo "$n" > "$FAKE_DIR/count"
echo "$*" >> "$FAKE_DIR/sbatch.log"
if [ -n "${FAKE_FAIL_AT:-}" ] && [ "$n" -ge "$FAKE_FAIL_AT" ]; then echo "sbatch: error: refused" >&2; exit 1; fi
echo "$n"
"""


def submit_careless_paths(sower, model, tmp):
    """`sower submit` where a careless user goes, with a fake sbatch and scancel on PATH (no Slurm here)."""
    fake = os.path.join(tmp, "fake-slurm")
    os.makedirs(fake)
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", '#!/bin/sh\necho "$*" >> "$FAKE_DIR/scancel.log"\n')):
        open(os.path.join(fake, name), "w").write(text)
        os.chmod(os.path.join(fake, name), 0o755)
    env = dict(os.environ, PATH=fake + ":" + os.environ["PATH"], FAKE_DIR=fake)

    def submit(job_path, *args, **extra):
        return subprocess.run([sower, "submit", job_path, *args], capture_output=True, text=True,
                              env=dict(env, **extra), timeout=300)

    def job_at(folder, output):
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "job.yaml")
        open(path, "w").write(JOB.format(model=model, steps=2, count=4, out=output))
        return path

    # The dry run is a script a user may run: a newline in the output path stays inside the comment and
    # the quotes; a '$ARRAY_JOB_ID' in a folder's name is quoted (only the dependency expands); a '%' in the
    # log folder is doubled for sbatch --output (Slurm would read "%j" in it as the job id); a backslash
    # is refused (it turns Slurm's replacements off).
    pwned = os.path.join(tmp, "pwned")
    odd = job_at(os.path.join(tmp, "d$ARRAY_JOB_ID"), '"out/x\\ntouch ' + pwned + ' #/run%j/q.h5"')
    r = submit(odd, "--array", "2", "--dry-run")
    script = os.path.join(tmp, "dry.sh")
    open(script, "w").write(r.stdout)  # its sbatch: the fake one
    done = subprocess.run(["bash", script], capture_output=True, text=True, env=dict(env, ARRAY_JOB_ID="7"))
    check(r.returncode == 0 and done.returncode == 0 and not os.path.exists(pwned) and "run%%j" in r.stdout
          and "'" + os.path.join(tmp, "d$ARRAY_JOB_ID") in r.stdout and "--dependency=afterok:$ARRAY_JOB_ID " in r.stdout,
          f"submit --dry-run of odd paths: {r.returncode} {done.returncode} {r.stdout[-900:]} {r.stderr[-300:]}")
    # ...and it shows the script it would write (submit --help and docs/slurm.md say so), every line a comment.
    sbatch = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "slurm", "sower.sbatch")).read()
    check(all("#   " + line in r.stdout for line in sbatch.splitlines() if line.strip()),
          f"submit --dry-run does not show slurm/sower.sbatch: {r.stdout[:600]}")
    back = job_at(os.path.join(tmp, "back"), '"out/b\\\\s/q.h5"')
    r = submit(back, "--dry-run")
    check(r.returncode == 2 and "holds a backslash" in r.stderr, f"submit of a backslashed output: {r.returncode} {r.stderr}")
    # A manifest reached through a link reads its relative paths from the link's folder, as check and run do.
    real = job_at(os.path.join(tmp, "real"), "out/q.h5")
    os.makedirs(os.path.join(tmp, "other"))
    os.symlink(real, os.path.join(tmp, "other", "job.yaml"))
    r = submit(os.path.join(tmp, "other", "job.yaml"), "--dry-run")
    check(r.returncode == 0 and os.path.join(tmp, "other", "out", "q.slurm") in r.stdout
          and os.path.join(tmp, "real", "out") not in r.stdout, f"submit through a link: {r.stdout[-600:]}")
    # The script is written whole and renamed: a link planted at its name is replaced, not written through.
    plain = job_at(os.path.join(tmp, "plain"), "out/q.h5")
    victim = os.path.join(tmp, "victim")
    open(victim, "w").write("mine")
    os.makedirs(os.path.join(tmp, "plain", "out", "q.slurm"))
    os.symlink(victim, os.path.join(tmp, "plain", "out", "q.slurm", "sower.sbatch"))
    r = submit(plain)
    check(r.returncode == 0 and open(victim).read() == "mine"
          and not os.path.islink(os.path.join(tmp, "plain", "out", "q.slurm", "sower.sbatch")),
          f"submit over a planted link: {r.returncode} {r.stderr[-300:]}")
    # The stitch job refused after the array was queued: the array is cancelled, and that is said.
    count = int(open(os.path.join(fake, "count")).read())
    r = submit(plain, "--array", "2", FAKE_FAIL_AT=str(count + 2))
    cancelled = open(os.path.join(fake, "scancel.log")).read().split() if os.path.exists(os.path.join(fake, "scancel.log")) else []
    check(r.returncode == 2 and f"cancelled the array job {count + 1}" in r.stderr and cancelled == [str(count + 1)],
          f"a refused stitch job: {r.returncode} {r.stderr[-400:]} scancel {cancelled}")
    check("--kill-on-invalid-dep=yes" in open(os.path.join(fake, "sbatch.log")).read(),
          "the stitch job is not ended when a slice fails")
    # sbatch refusing the only job: no script left behind, nor the log folder made for it.
    fresh = job_at(os.path.join(tmp, "fresh"), "out/q.h5")
    count = int(open(os.path.join(fake, "count")).read())
    r = submit(fresh, FAKE_FAIL_AT=str(count + 1))
    check(r.returncode == 2 and "sbatch refused the job (exit 1" in r.stderr
          and not os.path.exists(os.path.join(tmp, "fresh", "out", "q.slurm")),
          f"a refused submission left its script: {r.returncode} {r.stderr[-300:]}")
    # A live run of the output (its lock, here another node's) is refused now, not after the queue.
    open(os.path.join(tmp, "plain", "out", "q.h5.lock"), "w").write(
        "host: node-z\npid: 4242\npid_start: 0\nstarted: 2026-01-01T00:00:00Z\ncommand: sower run job.yaml\n")
    calls = open(os.path.join(fake, "sbatch.log")).read()
    r = submit(plain)
    check(r.returncode == 2 and "in use by another run: host node-z" in r.stderr
          and open(os.path.join(fake, "sbatch.log")).read() == calls, f"submit beside a live run: {r.returncode} {r.stderr}")
    print("submit: dry run safe to run (newline, $, %), backslash refused, a linked manifest read from the link's "
          "folder, a planted link replaced, a refused stitch job cancels its array, a live run refused")


def main():
    sower, mpiexec, model = sys.argv[1:4]
    # Progress lines every 0.1 s: the stop tests signal as soon as rows are written, well before
    # the end of the render however fast the machine is.
    os.environ["SOWER_PROGRESS_SECONDS"] = "0.1"
    model = os.path.abspath(model)
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        out = os.path.join(tmp, "out", "sweep.h5")
        open(job, "w").write(JOB.format(model=model, steps=32, count=299, out=out))
        ref = os.path.join(tmp, "ref.h5")
        t0 = time.time()
        r = run([sower, "run", job, "-o", ref], 2, mpiexec)
        if not check(r.returncode == 0, f"reference run failed: {r.stderr.decode()[-800:]}"):
            return
        print(f"reference: 300 rows on 2 ranks in {time.time() - t0:.1f} s")

        # Three array tasks, each its own launch, then the stitch.
        for k, (ranks, batch) in enumerate([(2, 4), (1, 3), (1, 8)]):
            r = run([sower, "run", job, "--slice", f"{k}/3", "--batch", str(batch)], ranks, mpiexec)
            check(r.returncode == 0, f"slice {k}/3 failed: {r.stderr.decode()[-800:]}")
        slices = [os.path.join(tmp, "out", f"sweep.slice-{k}-of-3.h5") for k in range(3)]
        check(all(os.path.exists(s) for s in slices), f"slice files missing: {os.listdir(os.path.join(tmp, 'out'))}")
        r = run([sower, "verify", slices[1], "--all"], 1, mpiexec)
        check(r.returncode == 0, f"sower verify of a slice: exit {r.returncode} {r.stderr.decode()[-400:]}")
        r = run([sower, "run", job, "--stitch", "3"], 2, mpiexec)
        if check(r.returncode == 0, f"stitch failed: {r.stderr.decode()[-800:]}"):
            same_as(out, ref, "stitched file")
            with h5py.File(out, "r") as f:
                check(f["verify/match"][...].all() and len(f["verify/match"]) == 6, "stitched /verify is not 6 matches")
                check(list(f["run/rank_slices"][...]) == [0, 100, 200, 300], "stitched /run/rank_slices")
            r = run([sower, "verify", out], 1, mpiexec)
            check(r.returncode == 0, f"sower verify of the stitched file: exit {r.returncode}")
            status = os.path.join(tmp, "status")
            r = run([sower, "run", job, "--stitch", "3", "--resume-auto", "--status-file", status], 1, mpiexec)
            check(r.returncode == 0 and b"already finished" in r.stdout, f"--resume-auto on a finished output: {r}")
            check(open(status).read() == "0\n", "--status-file does not hold 0")
            # An array task run again once its stitch job has finished (a resubmission) renders nothing.
            os.rename(slices[1], slices[1] + ".away")
            r = run([sower, "run", job, "--slice", "1/3", "--resume-auto"], 1, mpiexec)
            check(r.returncode == 0 and b"slice 1/3 has nothing to do" in r.stdout and not os.path.exists(slices[1])
                  and not os.path.exists(slices[1] + ".partial"), f"a slice after its stitch: {r.returncode} {r.stdout!r}")
            os.rename(slices[1] + ".away", slices[1])
            r = run([sower, "run", job, "--resume-auto", "--status-file", "/nonexistent/dir/status"], 1, mpiexec)
            check(r.returncode == 2 and b"its folder '/nonexistent/dir' does not exist" in r.stderr,
                  f"--status-file in a missing directory: {r.returncode} {r.stderr!r}")
        print("3 slices (2 ranks b4, 1 rank b3, 1 rank b8) stitched on 2 ranks: identical to the one-allocation run")

        # Stitching refuses what it cannot trust.
        os.rename(slices[2], slices[2] + ".away")
        expect(run([sower, "run", job, "--stitch", "3", "--force"], 1, mpiexec), 2, "sweep.slice-2-of-3.h5",
               "stitch with a missing slice")
        check(not os.path.exists(out + ".partial"), "a failed stitch left OUT.partial")
        os.rename(slices[2] + ".away", slices[2])
        with h5py.File(slices[1], "r+") as f:
            f["latents"][5, 0, 0, 0] += 1.0
        expect(run([sower, "run", job, "--stitch", "3", "--force"], 1, mpiexec), 2, "corrupt", "stitch of a corrupt slice")
        with h5py.File(slices[1], "r+") as f:
            identity = f.attrs["backend_identity"]  # checked before the rows: the corrupt row does not matter
            f.attrs["backend_identity"] = "cuda: some other GPU"
        expect(run([sower, "run", job, "--stitch", "3", "--force"], 1, mpiexec), 2, "rendered by another backend",
               "stitch of a slice from another backend")
        with h5py.File(slices[1], "r+") as f:
            f.attrs["backend_identity"] = identity
        other = os.path.join(tmp, "other.yaml")
        open(other, "w").write(JOB.format(model=model, steps=32, count=299, out=out).replace("eta: 0.3", "eta: 0.4"))
        expect(run([sower, "run", other, "--stitch", "3", "--force"], 1, mpiexec), 2, "'pipeline: scheduler=ddim steps=32 eta=0.3' there,",
               "stitch of another manifest's slices")

        # Graceful stops, then --resume-auto.
        for ranks, sig in ((2, signal.SIGTERM), (1, signal.SIGUSR1)):
            target = os.path.join(tmp, f"stopped{ranks}.h5")
            argv = [sower, "run", job, "-o", target]
            if ranks > 1:
                argv = [mpiexec, "-np", str(ranks), "--oversubscribe"] + argv
            code, err = interrupt(argv, sig, ranks > 1)
            if not check(code == 3 and "stopped early" in err, f"{ranks} ranks, {sig.name}: exit {code}: {err[-800:]}"):
                continue
            check(os.path.exists(target + ".partial") and not os.path.exists(target),
                  f"{ranks} ranks, {sig.name}: expected only OUT.partial")
            with h5py.File(target + ".partial", "r") as f:
                kept = int(f["done"][...].sum())
            check(0 < kept < 300, f"{ranks} ranks, {sig.name}: {kept} rows kept")
            r = run([sower, "run", job, "-o", target, "--resume-auto"], ranks, mpiexec)
            if check(r.returncode == 0, f"{ranks} ranks: --resume-auto failed: {r.stderr.decode()[-800:]}"):
                same_as(target, ref, f"{ranks} ranks, {sig.name} + --resume-auto")
            print(f"{ranks} rank(s): {sig.name} after {kept} rows -> exit 3, OUT.partial kept; --resume-auto: identical")

        # sower submit --dry-run (no Slurm needed): the commands, nothing written.
        r = run([sower, "submit", job, "--array", "3", "--tasks", "2", "--time", "30", "--dry-run"], 1, mpiexec)
        lines = [l for l in r.stdout.decode().splitlines() if "sbatch" in l and not l.startswith("#")]
        check(r.returncode == 0 and len(lines) == 2 and "--array=0-2" in lines[0] and "--ntasks=2" in lines[0]
              and "--time=30" in lines[0] and "--dependency=afterok:" in lines[1] and lines[1].endswith("--stitch 3"),
              f"submit --dry-run: {r.returncode} {r.stdout.decode()} {r.stderr.decode()}")
        check(not os.path.exists(os.path.join(tmp, "out", "sweep.slurm")), "submit --dry-run wrote the log folder")
        for args, text in ((["--array", "-1"], "--array"), (["--time", "1 h"], "--time"), (["--nodes", "2"], "unknown"),
                           (["--time", "3"], "shorter than the 4 minutes"), (["--time", "0:3:59"], "shorter than"),
                           (["--sbatch-arg", "qos"], "expected an sbatch option"),
                           (["--sbatch-arg=--array=0-1"], "give it as --array"),
                           (["--sbatch-arg=-n4"], "give it as --tasks"),
                           (["--sbatch-arg=--export=NONE"], "sets --export itself"),
                           (["--partition", "gpu,,cpu"], "separated by single commas")):
            expect(run([sower, "submit", job, "--dry-run"] + args, 1, mpiexec), 2, text, f"sower submit {' '.join(args)}")
        r = run([sower, "submit", job, "--dry-run", "--time", "4", "--sbatch-arg=--qos=long", "--partition", "gpu,cpu"],
                1, mpiexec)
        check(r.returncode == 0 and "--qos=long" in r.stdout.decode() and "--partition=gpu,cpu" in r.stdout.decode(),
              f"submit --time 4 --sbatch-arg=--qos=long --partition gpu,cpu: {r.stderr}")
        submit_careless_paths(sower, model, tmp)

        # Bad options.
        for args, text in ((["--slice", "3/3"], "--slice"), (["--slice", "x"], "--slice"), (["--stitch", "0"], "--stitch"),
                           (["--slice", "0/2", "--stitch", "2"], "exclude"), (["--resume", "--resume-auto"], "exclude")):
            expect(run([sower, "run", job] + args, 1, mpiexec), 2, text, f"sower run {' '.join(args)}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_run_slices: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
