#!/usr/bin/python3
"""The default thread count leaves out CPUs that other work keeps busy (src/base/cpu_load.h): beside one
busy process per CPU, `sower sample` without --threads says so and runs 1 thread, as `encode` and
`export` do; --threads still overrides (no message); the samples are the same bits either way (the thread
count never changes a bit). Timing is bench/busy_neighbours.py's, not a test's.

Then `sower run`:
- Ranks that share CPUs share them: two ranks whose affinity masks are the same 4 CPUs (Open MPI binds to
  a socket past 2 ranks) take 2 threads each, not 4 (then 8 threads spun on 4 CPUs); three take 1; two with
  2 CPUs each of their own take 2 (kept small: the threads really run on this machine's CPUs). The masks are given through SOWER_TEST_AFFINITY (CPUs numbered past
  this machine's, so that nothing here counts as their load).
- Load that arrives while a run renders: the rank goes down to the CPUs left (it said nothing before and
  spun 5x slower), then back up when the load leaves; the rows it kept are the quiet run's bits. Skipped
  when the machine is already busy when the run starts, or has 1 CPU.

usage: test_busy_cpus.py SOWER MODEL_DIR SD_DIR MPIEXEC
"""
import multiprocessing
import os
import signal
import threading
import subprocess
import sys
import tempfile
import time

import numpy as np

from testing import check, finish

import h5py  # noqa: E402

JOB = """sower: 1
name: busy
model: {model}
pipeline: {{scheduler: ddim, steps: {steps}, batch: 8}}
seeds: {{ranges: [{{start: 0, count: {rows}}}]}}
output: {{path: {out}}}
verify: {{count: 0}}
"""


def spin():
    while True:
        pass


def main():
    sower, model, sd, mpiexec = sys.argv[1:5]
    cpus = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        quiet = os.path.join(tmp, "quiet.npy")
        base = [sower, "sample", model, "--seeds", "0,1,2", "--steps", "3"]
        r = subprocess.run(base + ["--threads", str(max(2, cpus)), "-o", quiet], capture_output=True, text=True)
        check(r.returncode == 0, f"quiet sample: {r.stderr[-400:]}")
        workers = [multiprocessing.Process(target=spin, daemon=True) for _ in range(cpus)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        try:
            loaded = os.path.join(tmp, "loaded.npy")
            r = subprocess.run(base + ["-o", loaded], capture_output=True, text=True)
            want = f"of the {cpus} CPUs here are busy with other work: 1 thread (--threads overrides)"
            check(r.returncode == 0 and want in r.stderr, f"under load: expected '{want}': {r.stderr[-400:]}")
            check(" 1 thread -> " in r.stderr, f"under load, not 1 thread: {r.stderr[-300:]}")
            # encode and export take the same default (they took every online CPU, busy or not).
            emb = os.path.join(tmp, "emb.npy")
            r3 = subprocess.run([sower, "encode", sd, "--prompt", "a cat", "-o", emb], capture_output=True, text=True)
            check(r3.returncode == 0 and "sower encode: " in r3.stderr and want in r3.stderr, f"encode under load: expected '{want}': {r3.stderr[-400:]}")
            pngs = os.path.join(tmp, "pngs")
            r4 = subprocess.run([sower, "export", quiet, "--pngs", pngs], capture_output=True, text=True)
            check(r4.returncode == 0 and "sower export: " in r4.stderr and want in r4.stderr,
                  f"export under load: expected '{want}': {r4.stderr[-400:]}")
            given = os.path.join(tmp, "given.npy")
            r2 = subprocess.run(base + ["--threads", "2", "-o", given], capture_output=True, text=True)
            check(r2.returncode == 0 and "busy with other work" not in r2.stderr and "2 threads" in r2.stderr,
                  f"--threads 2 under load: {r2.stderr[-300:]}")
        finally:
            for w in workers:
                w.terminate()
        if os.path.exists(loaded) and os.path.exists(given):
            a, b, c = np.load(quiet), np.load(loaded), np.load(given)
            check(np.array_equal(a, b) and np.array_equal(a, c), "the samples differ with the thread count")
        print(f"beside {cpus} busy processes: 1 thread by default (sample, encode, export), --threads 2 obeyed, "
              "samples identical to a quiet run")
        shared_masks(sower, model, mpiexec, tmp)
        load_arrives(sower, model, tmp, cpus, quiet)
    sys.exit(finish())


def rank0_threads(stderr):
    """Rank 0's thread count at the end, from the timings line; None when it names none."""
    for line in stderr.splitlines():
        if "sower run: timings:" in line and "(rank 0: " in line:
            count = line.split("(rank 0: ")[1].split(" thread")[0]
            return int(count) if count.isdigit() else None
    return None


def shared_masks(sower, model, mpiexec, tmp):
    job = os.path.join(tmp, "shared.yaml")
    open(job, "w").write(JOB.format(model=model, steps=2, rows=4, out=os.path.join(tmp, "shared.h5")))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for masks, want in ((["100-103", "100-103"], 2), (["100-103"] * 3, 1), (["100-101", "102-103"], 2)):
        argv = [mpiexec, "--oversubscribe", "--bind-to", "none"]
        for k, m in enumerate(masks):
            argv += ([":"] if k else []) + ["-np", "1", "env", f"SOWER_TEST_AFFINITY={m}", sower, "run", job,
                                            "--force"]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        got = rank0_threads(r.stderr)
        check(r.returncode == 0 and got == want, f"ranks with CPU masks {masks}: rank 0 took {got} threads, "
                                                 f"expected {want}: {r.stderr[-600:]}")


def load_arrives(sower, model, tmp, cpus, quiet_npy):
    if cpus < 2:
        print("note: 1 CPU: no thread to give up when load arrives; not checked")
        return
    job, out = os.path.join(tmp, "long.yaml"), os.path.join(tmp, "long.h5")
    steps = 3  # as the quiet sample's
    open(job, "w").write(JOB.format(model=model, steps=steps, rows=100000, out=out))
    run = subprocess.Popen([sower, "run", job], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr), daemon=True)
    reader.start()

    def wait_for(words, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline and not any(words in line for line in lines) and run.poll() is None:
            time.sleep(0.1)
        return any(words in line for line in lines)

    workers = []
    try:
        if not wait_for("[sower]", 60):
            check(False, f"the long run printed no progress: {''.join(lines)[-500:]}")
            return
        if any("busy with other work" in line for line in lines):
            print("note: the machine was busy when the run started; load arriving not checked")
            return
        workers = [multiprocessing.Process(target=spin, daemon=True) for _ in range(cpus)]
        for w in workers:
            w.start()
        down = wait_for("[rank 0] other work now keeps", 30)
        check(down, f"beside {cpus} new busy processes the run kept its threads: {''.join(lines)[-800:]}")
        for w in workers:
            w.terminate()
        workers = []
        if down:
            up = wait_for("[rank 0] other work keeps only 0 ", 30)
            check(up and f"{cpus} threads from now on" in "".join(lines),
                  f"the load left and the run did not take its CPUs back: {''.join(lines)[-800:]}")
    finally:
        for w in workers:
            w.terminate()
        run.send_signal(signal.SIGINT)
        run.wait(timeout=120)
        reader.join(timeout=10)
    check(run.returncode == 3, f"the stopped long run: exit {run.returncode}: {''.join(lines)[-400:]}")
    with h5py.File(out + ".partial", "r") as f:
        done, latents = f["done"][:3], f["latents"][:3]
    if done.all():
        check(np.array_equal(latents, np.load(quiet_npy)), "rows rendered while the threads changed differ from "
                                                           "the quiet sample's")
    else:
        print("note: seeds 0-2 were not kept; their bits not compared")


if __name__ == "__main__":
    main()
