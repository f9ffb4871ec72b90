#!/usr/bin/python3
"""A full disk ends `sower run` cleanly: exit 3 naming the path, no crash, no lock left behind, and no
finished output holding a row that fails its digest.

- An uncompressed output (all its space taken at creation) that cannot fit on a 2 MB tmpfs is
  refused before HDF5 touches the disk: exit 3, how much it needs and how much is free, no .partial.
  (This used to end in "HDF5 failed to create the datasets", then a segfault in MPI_Finalize.)
- A gzip output that fills the tmpfs mid-render: exit 3, "No space left on device", the .partial
  kept. After the tmpfs grows, `--resume` keeps its rows: it copies them into a new file (HDF5 may
  not write again into a gzip file cut short) and ends byte-identical to an uninterrupted run.
- `sower export --imagefolder` of 600 rows into a 256 KB tmpfs: exit 3 naming the path, every PNG
  there whole (no half-written PNG under its final name); after the tmpfs grows, the same command
  completes the folder.

Needs to mount a tmpfs (root, or CAP_SYS_ADMIN): skipped (exit 77) where it cannot.

usage: test_full_disk.py SOWER_BINARY MODEL_DIR
"""
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

from testing import check, failures  # noqa: E402  (the tests' shared helpers)

JOB = """sower: 1
name: full-disk
model: {model}
pipeline: {{scheduler: ddim, steps: 2, batch: 8}}
seeds:
  ranges: [{{start: 0, count: {rows}}}]
output: {{path: {out}{extra}}}
verify: {{count: 2}}
"""


def run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        failures.append(f"{argv}: hung")
        return None


def clean_end(r, codes, texts, what):
    if r is None:
        return False
    crashed = any(t in r.stderr for t in ("Segmentation", "Signal:", "Sanitizer", "runtime error"))
    missing = [t for t in texts if t not in r.stderr]
    return check(r.returncode in codes and not crashed and not missing,
                 f"{what}: exit {r.returncode} (expected {codes}), missing {missing}: {r.stderr[-900:]}")


def main():
    sower, model = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "disk")
        os.mkdir(disk)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk], capture_output=True).returncode:
            print("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): skipped")
            sys.exit(77)
        try:
            job = os.path.join(tmp, "job.yaml")
            out = os.path.join(disk, "a.h5")
            open(job, "w").write(JOB.format(model=model, rows=100000, out=out, extra=""))
            r = run([sower, "run", job])
            clean_end(r, (3,), ["100000 rows need", "are free there", out], "an uncompressed output too large")
            check(os.listdir(disk) == [], f"a refused output left {os.listdir(disk)}")
            print("uncompressed, too large: exit 3 before HDF5 ran, nothing left")

            out = os.path.join(disk, "b.h5")
            open(job, "w").write(JOB.format(model=model, rows=10000, out=out, extra=", compression: gzip, chunk_rows: 16"))
            r = run([sower, "run", job])
            clean_end(r, (3,), ["No space left on device", out + ".partial", "--resume"], "a disk filled mid-render")
            check(os.path.exists(out + ".partial") and not os.path.exists(out + ".lock"),
                  f"after a full disk: expected the .partial and no lock, found {os.listdir(disk)}")
            subprocess.run(["mount", "-o", "remount,size=64m", disk], check=True)
            r = run([sower, "run", job, "--resume"])
            kept = re.search(r"resuming: (\d+) of 10000 rows already written", r.stderr) if r else None
            clean_end(r, (0,), ["is gzip-compressed: copying its rows into a new file"], "--resume after making room")
            check(kept and int(kept.group(1)) > 0, "the resume kept no row of the interrupted run")
            check(os.listdir(disk) == ["b.h5"], f"after the resume: {os.listdir(disk)}")
            whole = os.path.join(tmp, "whole.h5")
            open(job, "w").write(JOB.format(model=model, rows=10000, out=whole, extra=", compression: gzip, chunk_rows: 16"))
            r = run([sower, "run", job])
            if clean_end(r, (0,), [], "the uninterrupted run") and os.path.exists(out):
                with h5py.File(out, "r") as a, h5py.File(whole, "r") as b:
                    same = [k for k in ("latents", "seeds", "digest", "done") if np.array_equal(a[k][...], b[k][...])]
                check(len(same) == 4, f"resumed != uninterrupted: only {same} equal")
            r = run([sower, "verify", out])
            clean_end(r, (0,), [], "verify of the finished output")
            print(f"gzip, disk full mid-render: exit 3, .partial kept, no lock; after room, --resume keeps "
                  f"{kept.group(1) if kept else '?'} rows, rebuilds the file and ends == an uninterrupted run")

            for name in os.listdir(disk):
                os.unlink(os.path.join(disk, name))
            subprocess.run(["mount", "-o", "remount,size=256k", disk], check=True)
            src = os.path.join(tmp, "src.h5")
            open(job, "w").write(JOB.format(model=model, rows=600, out=src, extra=""))
            r = run([sower, "run", job])
            if not clean_end(r, (0,), [], "the output to export"):
                return
            folder = os.path.join(disk, "images")
            r = run([sower, "export", src, "--imagefolder", folder])
            clean_end(r, (3,), ["No space left on device", folder], "an export that fills the disk")
            pngs = [n for n in os.listdir(folder) if n.endswith(".png")]
            whole = all(open(os.path.join(folder, n), "rb").read()[-8:-4] == b"IEND" for n in pngs)
            check(0 < len(pngs) < 600 and whole and not os.path.exists(os.path.join(folder, "metadata.jsonl")),
                  f"after a full disk: {len(pngs)} PNGs, all whole: {whole}")
            subprocess.run(["mount", "-o", "remount,size=64m", disk], check=True)
            r = run([sower, "export", src, "--imagefolder", folder])
            clean_end(r, (0,), [f"{len(pngs)} already there"], "the export again after making room")
            check(len(open(os.path.join(folder, "metadata.jsonl")).readlines()) == 600, "metadata.jsonl incomplete")
            print(f"export filling the disk: exit 3 after {len(pngs)} whole PNGs; after room, the same command completes it")
        finally:
            subprocess.run(["umount", disk], capture_output=True)
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_full_disk: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
