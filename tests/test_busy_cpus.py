#!/usr/bin/python3
"""The default thread count leaves out CPUs that other work keeps busy (src/base/cpu_load.h): beside one
busy process per CPU, `sower sample` without --threads says so and runs 1 thread, as `encode` and
`export` do; --threads still
overrides (no message); the samples are the same bits either way (the thread count never changes a
bit). Timing is bench/busy_neighbours.py's, not a test's.

usage: test_busy_cpus.py SOWER MODEL_DIR SD_DIR
"""
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from testing import check, finish


def spin():
    while True:
        pass


def main():
    sower, model, sd = sys.argv[1], sys.argv[2], sys.argv[3]
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
    sys.exit(finish())


if __name__ == "__main__":
    main()
