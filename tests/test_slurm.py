#!/usr/bin/python3
"""sower under a real Slurm cluster (slurmctld + slurmd + munge, brought up by tests/slurm/cluster.sh
on this machine and torn down by recorded pids). Skips with 77 when Slurm cannot be brought up.

1. `sower submit JOB --tasks 2`: one 2-task allocation (srun --mpi=pmix) COMPLETED, file verified;
2. `sower submit JOB --array 3`: 3 array tasks + the afterok stitch job; the stitched file's datasets
   and root attributes are byte-identical to 1's;
3. scancel mid-sweep: CANCELLED, OUT.partial kept with some rows; the same `sower submit` again
   resumes and finishes byte-identical;
4. the time-limit path: SIGUSR1 to the batch script (what --signal=B:USR1@180 sends) mid-sweep: the
   ranks stop, the script requeues the job, the job resumes and finishes byte-identical;
5. a bad manifest: `sower submit` refuses it (exit 2, nothing queued); submitted by hand with
   sbatch it FAILS fast with exit code 2 and the located error (FILE:LINE:COL) in its log;
6. a Stable Diffusion job (prompts listed and from a prompts_file) as `sower submit --array 2`: the
   stitched file's datasets, prompts included, equal a one-process `sower run` of the same manifest.

usage: test_slurm.py SOWER_BINARY CLUSTER_SH SBATCH_SCRIPT MODEL_DIR SD_DIR
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

failures = []
DATASETS = ("latents", "seeds", "digest", "done")

JOB = """sower: 1
name: slurm-sweep
model: {model}
pipeline: {{scheduler: ddim, steps: 40, eta: 0.3, batch: 4}}
seeds:
  ranges: [{{start: 0, count: 399}}]
  list: [4294967303]
output: {{path: out/sweep.h5}}
verify: {{count: 6}}
"""

BAD_JOB = """sower: 1
name: bad
model: {model}
pipeline: {{scheduler: ddim, steps: 0}}
seeds:
  ranges: [{{start: 0, count: 4}}]
output: {{path: out/bad.h5}}
"""


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def job_field(job_id, field):
    out = sh(["scontrol", "-o", "show", "job", str(job_id)]).stdout
    m = re.search(rf"\b{field}=(\S+)", out)
    return m.group(1) if m else None


def wait_state(job_id, states, timeout=300):
    deadline = time.time() + timeout
    state = None
    while time.time() < deadline:
        state = job_field(job_id, "JobState")
        if state in states:
            return state
        time.sleep(0.5)
    return state


def wait_rows(partial, log, timeout=120):
    """Waits until the log reports rendered rows (the progress line)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = open(log).read() if os.path.exists(log) else ""
        if re.search(r"\[sower\] [1-9][0-9]*/", text):
            return True
        time.sleep(0.2)
    return False


SD_JOB = """sower: 1
name: slurm-sd
model: {model}
pipeline: {{scheduler: euler-a, steps: 4, batch: 2, guidance: 7.5}}
prompts:
  - {{prompt: "a photograph of an astronaut riding a horse", negative_prompt: "blurry"}}
prompts_file: prompts.txt
seeds:
  list: [0, 4294967303, 5]
output: {{path: out/sd.h5}}
verify: {{count: 3}}
"""
SD_DATASETS = DATASETS + ("prompts", "negative_prompts", "prompt_index")


def same_as(path, ref, what, datasets=DATASETS, attrs=True):
    with h5py.File(path, "r") as a, h5py.File(ref, "r") as b:
        for k in datasets:
            check(np.array_equal(a[k][...], b[k][...]) and a[k].dtype == b[k].dtype, f"{what}: /{k} differs")
        check(not attrs or (set(a.attrs) == set(b.attrs) and all(a.attrs[k] == b.attrs[k] for k in a.attrs)),
              f"{what}: root attributes differ")


def submit(sower, job, *args):
    r = sh([sower, "submit", job, *args])
    if not check(r.returncode == 0, f"sower submit {' '.join(args)}: exit {r.returncode}: {r.stderr[-800:]}"):
        return []
    return r.stdout.strip().splitlines()[-1].split()


def timed(label, t0):
    dt = time.time() - t0
    print(f"{label}: {dt:.1f} s")
    return dt


def main():
    sower, cluster_sh, sbatch_script, model, sd_model = sys.argv[1:6]
    model, sd_model = os.path.abspath(model), os.path.abspath(sd_model)
    root = tempfile.mkdtemp(prefix="sower-slurm-")
    os.chmod(root, 0o755)  # munged runs as user munge and must reach its socket under here
    cdir = os.path.join(root, "cluster")
    t0 = time.time()
    up = sh([cluster_sh, "up", cdir])
    if up.returncode == 77:
        print(up.stderr.strip())
        shutil.rmtree(root, ignore_errors=True)
        sys.exit(77)
    if up.returncode != 0:
        print(f"cluster.sh up failed ({up.returncode}): {up.stderr}", file=sys.stderr)
        sh([cluster_sh, "down", cdir])
        sys.exit(1)
    timed("cluster up", t0)
    os.environ["SLURM_CONF"] = os.path.join(cdir, "slurm.conf")
    # Exported into the jobs. Progress lines every 0.1 s: the cancel and requeue tests signal as
    # soon as rows are written, well before the end of the render however fast the machine is.
    os.environ.update(OMPI_MCA_pml="ob1", OMPI_MCA_btl="self,vader", SOWER_PROGRESS_SECONDS="0.1")
    try:
        run_tests(sower, sbatch_script, model, root)
        run_sd_test(sower, sd_model, root)
    finally:
        sh([cluster_sh, "down", cdir])
        if failures:
            for log in ("slurmctld.log", "slurmd.log"):
                path = os.path.join(cdir, "log", log)
                if os.path.exists(path):
                    print(f"--- {log} (last lines)\n" + "".join(open(path).readlines()[-15:]), file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
    print(f"test_slurm: {len(failures)} failures")
    sys.exit(1 if failures else 0)


def run_tests(sower, sbatch_script, model, root):
    work = os.path.join(root, "work")
    os.makedirs(work)
    job = os.path.join(work, "job.yaml")
    open(job, "w").write(JOB.format(model=model))
    out = os.path.join(work, "out", "sweep.h5")
    logs = os.path.join(work, "out", "sweep.slurm")

    def set_aside(name):
        os.rename(out, os.path.join(work, name))
        return os.path.join(work, name)

    # 1. one allocation of 2 tasks
    t0 = time.time()
    ids = submit(sower, job, "--tasks", "2", "--cpus-per-task", "1")
    if not ids:
        return
    state = wait_state(ids[0], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
    timed("1. 2-task sbatch sweep (400 rows)", t0)
    log = os.path.join(logs, f"slurm-sweep-{ids[0]}.out")
    if not check(state == "COMPLETED" and job_field(ids[0], "ExitCode") == "0:0",
                 f"2-task job {ids[0]}: {state}, log: {open(log).read()[-1500:] if os.path.exists(log) else '(none)'}"):
        return
    r = sh([sower, "verify", out])
    check(r.returncode == 0, f"sower verify after the 2-task job: exit {r.returncode} {r.stderr[-500:]}")
    check("srun --mpi=pmix" in open(log).read() and "on 2 ranks" in open(log).read(), "log lacks the srun line or 2 ranks")
    ref = set_aside("reference.h5")

    # 2. job array of 3 slices + stitch
    t0 = time.time()
    ids = submit(sower, job, "--array", "3", "--tasks", "1", "--cpus-per-task", "1")
    if check(len(ids) == 2, f"--array 3 should print two job ids, got {ids}"):
        state = wait_state(ids[1], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
        timed("2. array of 3 slices + stitch/verify job", t0)
        stitch_log = os.path.join(logs, f"slurm-sweep-stitch-{ids[1]}.out")
        text = open(stitch_log).read() if os.path.exists(stitch_log) else "(no log)"
        if check(state == "COMPLETED", f"stitch job {ids[1]}: {state}: {text[-1500:]}"):
            same_as(out, ref, "array + stitch")
            check("0 mismatches" in text, "stitch log lacks the verification result")
            for k in range(3):
                check(os.path.exists(os.path.join(work, "out", f"sweep.slice-{k}-of-3.h5")), f"slice {k} missing")
            set_aside("stitched.h5")

    # 3. scancel mid-sweep, then resubmit
    t0 = time.time()
    ids = submit(sower, job, "--tasks", "2", "--cpus-per-task", "1")
    if ids:
        log = os.path.join(logs, f"slurm-sweep-{ids[0]}.out")
        check(wait_state(ids[0], {"RUNNING"}) == "RUNNING" and wait_rows(out + ".partial", log), "job 3 never rendered")
        sh(["scancel", ids[0]])
        state = wait_state(ids[0], {"CANCELLED", "COMPLETED", "FAILED"})
        check(state == "CANCELLED", f"scancel: job {ids[0]} ended {state}")
        wait_gone(job)
        kept = rows_done(out + ".partial")
        check(0 < kept < 400 and not os.path.exists(out), f"after scancel: {kept} rows kept, OUT exists: {os.path.exists(out)}")
        ids2 = submit(sower, job, "--tasks", "2", "--cpus-per-task", "1")
        if ids2:
            state = wait_state(ids2[0], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
            log2 = os.path.join(logs, f"slurm-sweep-{ids2[0]}.out")
            text = open(log2).read() if os.path.exists(log2) else ""
            if check(state == "COMPLETED", f"resubmitted job {ids2[0]}: {state}: {text[-1500:]}"):
                check(f"resuming: {kept} of 400" in text, f"resubmission did not resume {kept} rows: {text[-800:]}")
                same_as(out, ref, "scancel + resubmit")
                set_aside("resumed.h5")
        timed(f"3. scancel after {kept} rows + resubmit", t0)

    # 4. time-limit signal -> clean stop -> requeue -> resume
    t0 = time.time()
    ids = submit(sower, job, "--tasks", "2", "--cpus-per-task", "1")
    if ids:
        log = os.path.join(logs, f"slurm-sweep-{ids[0]}.out")
        check(wait_state(ids[0], {"RUNNING"}) == "RUNNING" and wait_rows(out + ".partial", log), "job 4 never rendered")
        sh(["scancel", "--batch", "--signal=USR1", ids[0]])
        deadline = time.time() + 120
        while time.time() < deadline and job_field(ids[0], "Restarts") in (None, "0"):
            time.sleep(0.3)
        check(job_field(ids[0], "Restarts") == "1", f"job {ids[0]} was not requeued")
        # A requeued job becomes eligible ~2 minutes later: once the first start's processes are
        # gone (as they would be by then), let it start now.
        wait_gone(job)
        wait_gone(f"slurmstepd: \\[{ids[0]}\\.")  # slurmd refuses a job whose last steps are still ending
        wait_state(ids[0], {"PENDING"}, 60)
        sh(["scontrol", "update", f"jobid={ids[0]}", "StartTime=now"])
        state = wait_state(ids[0], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
        text = open(log).read() if os.path.exists(log) else ""
        if check(state == "COMPLETED", f"requeued job {ids[0]}: {state} ({job_field(ids[0], 'Reason')}): {text[-1500:]}"):
            check("requeueing" in text and "resuming:" in text, f"log lacks requeue/resume: {text[-1500:]}")
            same_as(out, ref, "USR1 + requeue + resume")
            set_aside("requeued.h5")
        timed("4. time-limit signal, requeue, resume", t0)

    # 5. a bad manifest
    t0 = time.time()
    bad = os.path.join(work, "bad.yaml")
    open(bad, "w").write(BAD_JOB.format(model=model))
    r = sh([sower, "submit", bad])
    check(r.returncode == 2 and "bad.yaml:4:" in r.stderr, f"sower submit of a bad manifest: {r.returncode} {r.stderr}")
    r = sh(["sbatch", "--parsable", "-n", "1", f"--output={work}/bad-%j.out", "--export=ALL,SOWER=" + sower,
            sbatch_script, bad])
    if check(r.returncode == 0, f"sbatch of the bad manifest: {r.stderr}"):
        bad_id = r.stdout.strip().split(";")[0]
        state = wait_state(bad_id, {"FAILED", "COMPLETED", "CANCELLED"}, 60)
        text = open(f"{work}/bad-{bad_id}.out").read()
        check(state == "FAILED" and job_field(bad_id, "ExitCode") == "2:0",
              f"bad manifest job: {state} {job_field(bad_id, 'ExitCode')}")
        check(re.search(r"bad\.yaml:4:\d+: key 'pipeline.steps'", text) is not None, f"bad manifest log: {text[-800:]}")
    timed("5. bad manifest fails fast", t0)


def run_sd_test(sower, sd_model, root):
    """6. Stable Diffusion (prompts list + prompts_file) as an array of 2 slices + stitch."""
    t0 = time.time()
    work = os.path.join(root, "sd")
    os.makedirs(work)
    job = os.path.join(work, "sd.yaml")
    open(job, "w").write(SD_JOB.format(model=sd_model))
    open(os.path.join(work, "prompts.txt"), "w", encoding="utf-8").write("l'été à Paris 🐱\na third prompt\n")
    ref = os.path.join(work, "reference.h5")
    r = sh([sower, "run", job, "-o", ref])
    if not check(r.returncode == 0, f"local SD run: {r.returncode} {r.stderr[-800:]}"):
        return
    ids = submit(sower, job, "--array", "2", "--tasks", "1", "--cpus-per-task", "1")
    if check(len(ids) == 2, f"SD --array 2 should print two job ids, got {ids}"):
        state = wait_state(ids[1], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
        log = os.path.join(work, "out", "sd.slurm", f"slurm-sd-stitch-{ids[1]}.out")
        text = open(log).read() if os.path.exists(log) else "(no log)"
        if check(state == "COMPLETED", f"SD stitch job {ids[1]}: {state}: {text[-1500:]}"):
            same_as(os.path.join(work, "out", "sd.h5"), ref, "SD array + stitch", SD_DATASETS, attrs=False)
            with h5py.File(os.path.join(work, "out", "sd.h5"), "r") as f:
                check(len(f["prompts"]) == 3 and len(f["latents"]) == 9, "SD: expected 3 prompts x 3 seeds")
    timed("6. Stable Diffusion array of 2 slices + stitch", t0)


def rows_done(partial):
    with h5py.File(partial, "r") as f:
        return int(f["done"][...].sum())


def wait_gone(job, timeout=60):
    """After a cancel, waits until the job's processes (their argv names the manifest) have exited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sh(["pgrep", "-f", job]).returncode != 0:
            return
        time.sleep(0.2)
    check(False, "the cancelled job's processes did not exit")


if __name__ == "__main__":
    main()
