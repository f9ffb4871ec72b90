#!/usr/bin/python3
"""Soak: 20 kill -9 at random moments of a 2-rank `sower run --resume-auto` (the launcher and its
ranks, or one rank alone, which makes mpirun end the job), each followed by the same command again,
as a requeued Slurm script does. The output it ends with is byte-identical (datasets) to an
uninterrupted run, and no lock or half-made .partial is left behind. The moments come from a fixed
seed (rerun with SOWER_SOAK_SEED=N to try others).

usage: test_kill_soak.py SOWER_BINARY MPIEXEC MODEL_DIR
"""
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

JOB = """sower: 1
name: soak
model: {model}
pipeline: {{scheduler: ddim, steps: 30, eta: 0.3, batch: 3}}
seeds:
  ranges: [{{start: 100, count: 480}}]
output: {{path: out.h5}}
verify: {{count: 3}}
"""
DATASETS = ("latents", "seeds", "digest", "done")
KILLS = 20


def main():
    sower, mpiexec, model = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
    rng = random.Random(int(os.environ.get("SOWER_SOAK_SEED", "2026")))
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        open(job, "w").write(JOB.format(model=model))
        ref = os.path.join(tmp, "ref.h5")
        t0 = time.time()
        r = subprocess.run([sower, "run", job, "-o", ref], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: reference run: {r.stderr[-800:]}", file=sys.stderr)
            sys.exit(1)
        one_run = time.time() - t0
        out = os.path.join(tmp, "soak.h5")
        argv = [mpiexec, "-np", "2", "--oversubscribe", sower, "run", job, "-o", out, "--resume-auto"]
        outcomes = {}
        for k in range(KILLS):
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            # Start-up, setup, creation, rendering: each life renders a part of the job at most, so the
            # kills land in every phase and the last run has rows left to finish.
            time.sleep(rng.uniform(0.0, 0.6 + one_run / 60))
            target = rng.choice(("launcher", "one rank"))
            ranks = subprocess.run(["pgrep", "-f", out], capture_output=True, text=True).stdout.split()
            ranks = [int(x) for x in ranks if int(x) != p.pid]
            try:  # the job may have ended by itself in the meantime (done, or refused): nothing left to kill
                if target == "launcher" or not ranks:
                    os.killpg(p.pid, signal.SIGKILL)
                else:
                    os.kill(rng.choice(ranks), signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                failures.append(f"kill {k}: the job did not end within 60 s of killing {target}")
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            subprocess.run(["pkill", "-9", "-f", out], capture_output=True)
            for _ in range(100):
                if subprocess.run(["pgrep", "-f", out], capture_output=True).returncode != 0:
                    break
                time.sleep(0.1)
            state = "finished" if os.path.exists(out) else "partial" if os.path.exists(out + ".partial") else "none"
            outcomes[state] = outcomes.get(state, 0) + 1
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            failures.append(f"the final --resume-auto: exit {r.returncode}: {r.stderr[-1200:]}")
        else:
            with h5py.File(out, "r") as got, h5py.File(ref, "r") as want:
                for name in DATASETS:
                    if not np.array_equal(got[name][...], want[name][...]):
                        failures.append(f"/{name} differs from the uninterrupted run after {KILLS} kills")
        left = [f for f in os.listdir(tmp) if f.startswith("soak.h5.")]
        if left:
            failures.append(f"left behind: {left}")
        print(f"reference: {one_run:.1f} s; {KILLS} kill -9 (states after each: {outcomes}); "
              f"the final --resume-auto: exit {r.returncode}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_kill_soak: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
