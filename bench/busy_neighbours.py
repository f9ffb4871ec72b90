#!/usr/bin/env python3
"""Default thread count on a shared node: `sower run jobs/quick.yaml` quiet and beside a reproducible
competing load (LOAD busy processes, default: one per online CPU, each a tight loop), with the default
thread count and with --threads 1 equivalents (pipeline.threads: 1), alternating, best of N.

The default must not be slower than one thread under load (issue 18): threads sharing a core with a
busy neighbour wait at every barrier for the descheduled one. sower's default leaves out the CPUs
other work keeps busy (src/base/cpu_load.h).

With --arrive S, the load arrives S seconds into each run instead (another job starting on the node):
a longer job (256 rows, --rows) with the default thread count, which follows the load between denoising
steps, against the same starting count fixed by pipeline.threads, which does not (sower before 2026-12-06).

usage: bench/busy_neighbours.py BUILD_DIR [--load N] [--repeats 3] [--arrive S [--rows R]]
Timing only, never asserts.
"""
import argparse
import multiprocessing
import os
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spin():
    while True:
        pass


def timed(argv):
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{argv}: {r.stderr[-500:]}")
    return time.perf_counter() - t0, [l for l in r.stderr.splitlines() if "busy with other work" in l]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--load", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--arrive", type=float, help="the load starts this many seconds into each run")
    ap.add_argument("--rows", type=int, default=256)
    a = ap.parse_args()
    sower = os.path.join(os.path.abspath(a.build), "sower")
    text = open(os.path.join(ROOT, "jobs", "quick.yaml")).read().replace("../models/digits", os.path.join(ROOT, "models", "digits"))
    if a.arrive is not None:
        return arriving(a, sower, text)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = {"default threads": os.path.join(tmp, "default.yaml"), "1 thread": os.path.join(tmp, "one.yaml")}
        open(jobs["default threads"], "w").write(text)
        open(jobs["1 thread"], "w").write(text.replace("  steps: 20\n", "  steps: 20\n  threads: 1\n"))
        out = os.path.join(tmp, "q.h5")
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), "?")
        print(f"CPU: {model}, {os.cpu_count()} online; competing load: {a.load} busy processes")
        print("| case | quiet s | under load s |\n| --- | --- | --- |")
        best = {}
        for loaded in (False, True):
            workers = [multiprocessing.Process(target=spin, daemon=True) for _ in range(a.load if loaded else 0)]
            for w in workers:
                w.start()
            time.sleep(0.5)
            try:
                for _ in range(a.repeats):
                    for name, job in jobs.items():
                        s, note = timed([sower, "run", job, "--force", "-o", out])
                        key = (name, loaded)
                        best[key] = min(best.get(key, s), s)
                        if note and loaded:
                            best[("note", True)] = note[0]
            finally:
                for w in workers:
                    w.terminate()
        for name in jobs:
            print(f"| {name} | {best[(name, False)]:.2f} | {best[(name, True)]:.2f} |")
        if ("note", True) in best:
            print(best[("note", True)])


def arriving(a, sower, text):
    """Quiet start, load after a.arrive s: default threads (following the load) against the same count fixed."""
    text = text.replace("count: 32}", f"count: {a.rows}}}").replace("  count: 4\n", "  count: 0\n")
    threads = len(os.sched_getaffinity(0))
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), "?")
    print(f"CPU: {model}, {os.cpu_count()} online; {a.rows} rows of jobs/quick.yaml's model; {a.load} busy "
          f"processes from {a.arrive:g} s into each run")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = {"default (follows the load)": os.path.join(tmp, "default.yaml"),
                f"pipeline.threads: {threads} (fixed)": os.path.join(tmp, "fixed.yaml")}
        open(jobs["default (follows the load)"], "w").write(text)
        open(jobs[f"pipeline.threads: {threads} (fixed)"], "w").write(
            text.replace("  steps: 20\n", f"  steps: 20\n  threads: {threads}\n"))
        out = os.path.join(tmp, "q.h5")
        times = {name: [] for name in jobs}
        for _ in range(a.repeats):
            for name, job in jobs.items():
                time.sleep(2)  # the previous load gone
                workers = [multiprocessing.Process(target=spin, daemon=True) for _ in range(a.load)]
                t0 = time.perf_counter()
                run = subprocess.Popen([sower, "run", job, "--force", "-o", out], stderr=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, text=True)
                time.sleep(a.arrive)
                for w in workers:
                    w.start()
                _, err = run.communicate()
                times[name].append(time.perf_counter() - t0)
                for w in workers:
                    w.terminate()
                if run.returncode:
                    raise SystemExit(f"{name}: {err[-500:]}")
                said = [l for l in err.splitlines() if "other work" in l]
                print(f"  {name}: {times[name][-1]:.1f} s" + (f" ({said[0].strip()})" if said else ""))
        print("| case | best s | runs |\n| --- | --- | --- |")
        for name, t in times.items():
            print(f"| {name} | {min(t):.1f} | {', '.join(f'{x:.1f}' for x in t)} |")


if __name__ == "__main__":
    main()
