#!/usr/bin/python3
"""kill -9 in the middle of `sower run`, then `--resume`: the rows written before the kill are kept,
the rest rendered, and the finished datasets are byte-identical to an uninterrupted run's.
A resume of another manifest's output is refused.

usage: test_run_resume.py SOWER_BINARY MPIEXEC MODEL_DIR
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

failures = []

JOB = """sower: 1
name: resume-test
model: {model}
pipeline: {{scheduler: ddim, steps: 40, eta: 0.3, batch: 2, threads: 1}}
seeds:
  ranges: [{{start: 0, count: {count}}}]
output: {{path: out.h5}}
verify: {{count: 4}}
"""


def datasets(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in ("latents", "seeds", "digest", "done")}, {k: f.attrs[k] for k in f.attrs}


def launch(argv, ranks, mpiexec):
    if ranks > 1:
        argv = [mpiexec, "-np", str(ranks), "--oversubscribe"] + argv
    return argv


def main():
    sower, mpiexec, model = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        open(job, "w").write(JOB.format(model=os.path.abspath(model), count=400))
        ref_path = os.path.join(tmp, "ref.h5")
        r = subprocess.run(launch([sower, "run", job, "-o", ref_path], 2, mpiexec), capture_output=True)
        if r.returncode != 0:
            failures.append(f"reference run failed: {r.stderr.decode()[-500:]}")
        for ranks in (1, 2):
            out = os.path.join(tmp, f"killed{ranks}.h5")
            p = subprocess.Popen(launch([sower, "run", job, "-o", out], ranks, mpiexec), stderr=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, start_new_session=True)
            # Kill everything (launcher and ranks) with SIGKILL once some rows are reported written.
            deadline = time.time() + 120
            line = b""
            while time.time() < deadline:
                line = p.stderr.readline()
                if not line:
                    break
                if line.startswith(b"[sower]") and not line.startswith(b"[sower] 0/"):
                    break
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            # Ranks the launcher started outside its process group die too (their argv names `out`).
            subprocess.run(["pkill", "-9", "-f", out], capture_output=True)
            for _ in range(100):
                if subprocess.run(["pgrep", "-f", out], capture_output=True).returncode != 0:
                    break
                time.sleep(0.1)
            if os.path.exists(out) or not os.path.exists(out + ".partial"):
                failures.append(f"{ranks} ranks: after kill -9 expected only {out}.partial")
                continue
            r = subprocess.run(launch([sower, "run", job, "-o", out, "--resume"], ranks, mpiexec), capture_output=True)
            err = r.stderr.decode()
            if r.returncode != 0:
                failures.append(f"{ranks} ranks: resume failed: {err[:1500]}")
                continue
            kept = [l for l in err.splitlines() if "already written" in l]
            n_kept = int(kept[0].split("resuming: ")[1].split()[0]) if kept else -1
            if not 0 < n_kept < 400:
                failures.append(f"{ranks} ranks: the resume kept {n_kept} rows (expected some, not all): {kept}")
            got, attrs = datasets(out)
            want, want_attrs = datasets(ref_path)
            for k in got:
                if not np.array_equal(got[k], want[k]):
                    failures.append(f"{ranks} ranks: /{k} after kill + resume differs from the uninterrupted run")
            if attrs.keys() != want_attrs.keys() or any(attrs[k] != want_attrs[k] for k in attrs):
                failures.append(f"{ranks} ranks: root attributes differ after resume")
            print(f"{ranks} rank(s): killed after '{line.decode().strip()}', resumed with {n_kept} rows kept: identical")
        # --resume refuses an output of a job whose rows differ, naming the setting.
        other = os.path.join(tmp, "other.yaml")
        open(other, "w").write(JOB.format(model=os.path.abspath(model), count=401))
        partial = os.path.join(tmp, "mixed.h5")
        open(partial + ".partial", "wb").write(open(ref_path, "rb").read())
        r = subprocess.run([sower, "run", other, "-o", partial, "--resume"], capture_output=True)
        if r.returncode != 2 or b"rows differ from this one's: 'rows: 400' there, 'rows: 401' in this job" not in r.stderr:
            failures.append(f"resume of another manifest's output: exit {r.returncode} {r.stderr!r}")
        if open(partial + ".partial", "rb").read() != open(ref_path, "rb").read():
            failures.append("a refused --resume changed or removed the file it refused")
        # --resume refuses rows of another backend identity (bits compare only between equal ones),
        # and `sower verify` will not re-render a file made on another backend.
        with h5py.File(partial + ".partial", "r+") as f:
            f.attrs["backend_identity"] = "cuda: some other GPU"
        r = subprocess.run([sower, "run", job, "-o", partial, "--resume"], capture_output=True)
        if r.returncode != 2 or b"rendered by another backend ('cuda: some other GPU'" not in r.stderr:
            failures.append(f"resume of another backend's rows: exit {r.returncode} {r.stderr!r}")
        foreign = os.path.join(tmp, "foreign.h5")
        open(foreign, "wb").write(open(ref_path, "rb").read())
        with h5py.File(foreign, "r+") as f:
            f.attrs["backend_identity"] = "cuda: some other GPU"
        r = subprocess.run([sower, "verify", foreign], capture_output=True)
        if r.returncode != 2 or b"bits compare only" not in r.stderr or b"0 mismatching" not in r.stdout \
                or b"made by" in r.stderr:
            failures.append(f"verify of another backend's file: exit {r.returncode} {r.stdout!r} {r.stderr!r}")
        # made by another release (whose CPU kernels may differ): verify says which one to use
        with h5py.File(foreign, "r+") as f:
            f.attrs["source_revision"] = "0123456789ab"
        r = subprocess.run([sower, "verify", foreign], capture_output=True)
        if r.returncode != 2 or b"with the sower it was made by: revision 0123456789ab" not in r.stderr:
            failures.append(f"verify of another release's file: exit {r.returncode} {r.stderr!r}")
        r = subprocess.run([sower, "run", job, "-o", os.path.join(tmp, "none.h5"), "--resume"], capture_output=True)
        if r.returncode != 2 or b"no interrupted run" not in r.stderr:
            failures.append(f"resume with nothing to resume: exit {r.returncode} {r.stderr!r}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_run_resume: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
