#!/usr/bin/python3
"""Weights that change under a running job end it cleanly, and no row rendered from other weights is
recorded under the recorded weights digest:

- the weight file truncated while a 2-rank run renders (reads of the mapping past the new end raise
  SIGBUS): exit 3, a message naming the file (no "Bus error" crash), no finished output;
- one byte of the weight file rewritten in place: exit 3 naming the file ("was modified");
- in both, every row the .partial marks done equals the uninterrupted run's row, and after the
  model is restored `--resume` finishes identical to it.

usage: test_weights_changed.py SOWER_BINARY MPIEXEC MODEL_DIR
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

JOB = """sower: 1
name: weights-changed
model: {model}
pipeline: {{scheduler: ddim, steps: 120, batch: 2}}
seeds:
  ranges: [{{start: 0, count: 48}}]
output: {{path: out.h5}}
verify: {{count: 2}}
"""


def main():
    sower, mpiexec, model = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
    os.environ["SOWER_PROGRESS_SECONDS"] = "0.1"
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "model")
        shutil.copytree(model, copy)
        weights = glob.glob(os.path.join(copy, "unet", "*.safetensors"))[0]
        pristine = open(weights, "rb").read()
        job = os.path.join(tmp, "job.yaml")
        open(job, "w").write(JOB.format(model=copy))
        ref = os.path.join(tmp, "ref.h5")
        r = subprocess.run([sower, "run", job, "-o", ref], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: reference run: {r.stderr[-600:]}", file=sys.stderr)
            sys.exit(1)

        def truncate():
            os.truncate(weights, 100)

        def modify():
            with open(weights, "r+b") as f:
                f.seek(-4, 2)
                b = f.read(1)
                f.seek(-4, 2)
                f.write(bytes([b[0] ^ 1]))

        for name, change, text in (("truncated", truncate, "were truncated or replaced"), ("modified", modify, "was modified")):
            out = os.path.join(tmp, f"{name}.h5")
            p = subprocess.Popen([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job, "-o", out],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            err = b""
            while True:  # change the weights once rows are written
                line = p.stderr.readline()
                err += line
                if not line or (line.startswith(b"[sower]") and not line.startswith(b"[sower] 0/")):
                    break
            change()
            err = (err + p.stderr.read()).decode()
            code = p.wait()
            crashed = any(t in err for t in ("Bus error", "Signal:", "Segmentation", "Sanitizer"))
            if code != 3 or text not in err or weights not in err or crashed:
                failures.append(f"{name}: exit {code}, expected 3 and '{text}' naming {weights}: {err[-900:]}")
            if os.path.exists(out):
                failures.append(f"{name}: a finished output was written")
            open(weights, "wb").write(pristine)
            if not os.path.exists(out + ".partial"):
                failures.append(f"{name}: no .partial kept")
                continue
            with h5py.File(out + ".partial", "r") as f, h5py.File(ref, "r") as g:
                done = f["done"][...] == 1
                if not np.array_equal(f["latents"][...][done], g["latents"][...][done]):
                    failures.append(f"{name}: a row marked done differs from the reference (other weights recorded)")
                kept = int(done.sum())
            r = subprocess.run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job, "-o", out, "--resume"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"{name}: --resume with the model restored: exit {r.returncode}: {r.stderr[-600:]}")
            else:
                with h5py.File(out, "r") as f, h5py.File(ref, "r") as g:
                    for k in ("latents", "seeds", "digest", "done"):
                        if not np.array_equal(f[k][...], g[k][...]):
                            failures.append(f"{name}: /{k} differs from the reference after --resume")
            print(f"weights {name} mid-run: exit {code}, named; {kept} rows kept, all equal to the reference; "
                  f"--resume identical")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_weights_changed: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
