#!/usr/bin/python3
"""`cmake --install` gives a working tree: PREFIX/bin/sower runs from there, finds its CUDA plug-in in
PREFIX/lib (in a build with the CUDA backend) and renders on the CPU; the schema and example jobs
are in PREFIX/share/sower.

usage: test_install.py BUILD_DIR MODEL_DIR
"""
import os
import subprocess
import sys
import tempfile

failures = []


def main():
    build, model = sys.argv[1], os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory() as prefix:
        r = subprocess.run(["cmake", "--install", build, "--prefix", prefix], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: cmake --install: {r.stdout}{r.stderr}", file=sys.stderr)
            sys.exit(1)
        sower = os.path.join(prefix, "bin", "sower")
        for path in (sower, "share/sower/schema/sower-job.schema.json", "share/sower/jobs/cifar-sweep.yaml"):
            if not os.path.exists(os.path.join(prefix, path)):
                failures.append(f"not installed: {path}")
        r = subprocess.run([sower, "info", model], capture_output=True, text=True)
        if r.returncode != 0 or "parameters:" not in r.stdout:
            failures.append(f"installed sower info: exit {r.returncode} {r.stderr}")
        cuda_build = "this build has no CUDA backend" not in r.stdout
        plugin = os.path.join(prefix, "lib", "libsower_cuda.so")
        if cuda_build and not os.path.exists(plugin):
            failures.append("a CUDA build installed no lib/libsower_cuda.so")
        if cuda_build and ("was not found" in r.stdout or "cannot be loaded" in r.stdout):
            failures.append(f"the installed sower does not load its plug-in: {r.stdout}")
        out = os.path.join(prefix, "x.npy")
        r = subprocess.run([sower, "sample", model, "--seeds", "0-1", "--steps", "2", "-o", out],
                           capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(out):
            failures.append(f"installed sower sample: exit {r.returncode} {r.stderr}")
        print(f"installed into {prefix}: CUDA plug-in {'found' if cuda_build else 'not built'}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_install: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
