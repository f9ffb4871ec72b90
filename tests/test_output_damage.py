#!/usr/bin/python3
"""Damaged and altered output files: `sower verify`, `sower run --resume` and `--stitch` read files
that may have been truncated, edited or made by something else (`sower export`: test_export.py).
Each must refuse them with the right exit code and a message naming the file and what is wrong:
never crash, hang, or read past a buffer (datasets longer than the job used to overflow verify's and
resume's buffers).

  exit 2  not checkable: missing or misshapen datasets, wrong element types, unknown format
          version, a model whose weights or configs changed since the file was made
  exit 1  checkable and wrong: an attribute that disagrees with the manifest stored in the file,
          rows whose bytes do not match their digests

usage: test_output_damage.py SOWER_BINARY MODEL_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

failures = []

JOB = """sower: 1
name: damage-test
model: {model}
pipeline: {{scheduler: ddim, steps: 2, batch: 3}}
seeds:
  ranges: [{{start: 10, count: 6}}]
output: {{path: out.h5}}
verify: {{count: 2}}
"""
ROWS = 6


def replace(name, data):
    def mutate(f):
        del f[name]
        f[name] = data
    return mutate


def set_attr(key, value):
    return lambda f: f.attrs.__setitem__(key, value)


def flip_latent(f):
    row = f["latents"][2]
    row.flat[0] = np.nextafter(row.flat[0], np.float32(9))
    f["latents"][2] = row


def latents_elsewhere(kind):
    """/latents kept in a victim file beside this one: through an external link, or as external raw storage.
    --resume used to write its rows there (and a reader to take that file's bytes as the rows)."""
    def mutate(f):
        victim = os.path.join(os.path.dirname(f.filename), f"victim-{kind}")
        latents = f["latents"][...]
        del f["latents"]
        if kind == "link":
            with h5py.File(victim, "w") as v:
                v["latents"] = latents
            f["latents"] = h5py.ExternalLink(victim, "/latents")
        else:
            open(victim, "wb").write(latents.tobytes())
            f.create_dataset("latents", shape=latents.shape, dtype="f4", external=[(victim, 0, h5py.h5f.UNLIMITED)])
    return mutate


# (name, mutation, expected exit code, text the message must contain)
DAMAGE = [
    ("no-digest", lambda f: f.__delitem__("digest"), 2, "no /digest dataset"),
    # A finished file always has /verify (empty when verify.count is 0); --resume of such a .partial is fine,
    # so the text has no "/" (that would also try it as an interrupted run's file).
    ("no-verify", lambda f: f.__delitem__("verify"), 2, "the record of its run's verification (every finished"),
    ("seeds-longer", replace("seeds", np.arange(100000, dtype="u8")), 2, "/seeds is (100000,), expected (6,)"),
    ("digest-longer", replace("digest", np.zeros((50000, 32), "u1")), 2, "/digest is (50000, 32), expected (6, 32)"),
    ("done-longer", replace("done", np.ones(1000000, "u1")), 2, "/done is (1000000,), expected (6,)"),
    ("done-shorter", replace("done", np.ones(2, "u1")), 2, "/done is (2,), expected (6,)"),
    ("latents-5d", replace("latents", np.zeros((ROWS, 1, 8, 8, 1), "f4")), 2, "/latents is (6, 1, 8, 8, 1), expected"),
    ("latents-smaller-rows", replace("latents", np.zeros((ROWS, 1, 4, 4), "f4")), 2, "expected (6, 1, 8, 8)"),
    ("latents-float64", replace("latents", np.zeros((ROWS, 1, 8, 8), "f8")), 2, "/latents is not float32"),
    ("seeds-signed", replace("seeds", np.arange(ROWS, dtype="i8")), 2, "/seeds is not uint64"),
    ("format-version", set_attr("format_version", "2"), 2, "format_version '2': this sower reads version 1"),
    ("model-config", set_attr("model_config", "{}"), 2, "'model_config' differs from the model's config.json"),
    ("manifest-digest", set_attr("manifest_sha256", "0" * 64), 1, "'manifest_sha256' disagrees with the manifest"),
    ("pipeline", set_attr("pipeline", '{"scheduler": "ddim", "steps": 3, "eta": 0, "karras": false}'), 1,
     "'pipeline' disagrees with the manifest"),
    ("pipeline-legacy", set_attr("pipeline", "scheduler=ddim steps=3 eta=0"), 1, "'pipeline' disagrees with the manifest"),
    ("generator", set_attr("generator", "torch-cpu-scalar"), 1, "'generator' disagrees with the manifest"),
    ("latent-bit", flip_latent, 1, "verification failed (rows whose digest differs: 1,"),
    # /verify's rows must be this file's, with their seeds (verify reported "0 differed", exit 0)
    ("slice-negative", set_attr("slice", "-0/2"), 2, "bad slice attribute"),
    # a record gone is damage (exit 2), not a differing run (exit 1) nor a changed model
    ("no-job-sha", lambda f: f.attrs.__delitem__("job_sha256"), 2, "attribute 'job_sha256' is missing"),
    ("no-weights-sha", lambda f: f.attrs.__delitem__("weights_sha256"), 2, "attribute 'weights_sha256' is missing"),
    # ...every record of what made the rows, the job key among them (verify passed a file without these)
    ("no-job-key", lambda f: f.attrs.__delitem__("job_key"), 2, "attribute 'job_key' is missing"),
    ("no-sower-version", lambda f: f.attrs.__delitem__("sower_version"), 2, "attribute 'sower_version' is missing"),
    ("no-source-revision", lambda f: f.attrs.__delitem__("source_revision"), 2,
     "attribute 'source_revision' is missing"),
    ("no-determinism", lambda f: f.attrs.__delitem__("determinism"), 2, "attribute 'determinism' is missing"),
    ("no-backend-identity", lambda f: f.attrs.__delitem__("backend_identity"), 2,
     "attribute 'backend_identity' is missing"),
    ("verify-row-outside", lambda f: f["verify/rows"].__setitem__(1, 99), 2, "names row 99, not a row of this file"),
    ("verify-seed", lambda f: f["verify/seeds"].__setitem__(0, 12345), 2, "the seed 12345, the job's is"),
    ("latents-external-link", latents_elsewhere("link"), 2, "/latents is a link to another file"),
    ("latents-external-raw", latents_elsewhere("raw"), 2, "/latents keeps its data in other files"),
]


def run(argv, **kw):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    except subprocess.TimeoutExpired:
        failures.append(f"{argv}: hung (no exit in 120 s)")
        return None


def expect(r, what, code, text):
    if r is None:
        return
    err = r.stderr
    if r.returncode != code or text not in err:
        failures.append(f"{what}: exit {r.returncode} (expected {code}), message {err.strip()[-300:]!r} "
                        f"(expected to contain {text!r})")
    if "Sanitizer" in err or "runtime error" in err or "Signal" in err:
        failures.append(f"{what}: crashed: {err[-600:]}")


def main():
    sower, model = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        open(job, "w").write(JOB.format(model=model))
        r = run([sower, "run", job])
        good = os.path.join(tmp, "good.h5")
        if r is None or r.returncode != 0:
            print(f"FAIL: the reference run: {r and r.stderr}", file=sys.stderr)
            sys.exit(1)
        os.rename(os.path.join(tmp, "out.h5"), good)
        expect(run([sower, "verify", good, "--all"]), "verify of the undamaged file", 0, "")

        for name, mutate, code, text in DAMAGE:
            damaged = os.path.join(tmp, name + ".h5")
            shutil.copy(good, damaged)
            with h5py.File(damaged, "r+") as f:
                mutate(f)
            expect(run([sower, "verify", damaged]), f"verify {name}", code, text)
            if code == 2 and "/" in text:
                # The same file left as an interrupted run: --resume must refuse it and keep it as it was.
                partial = os.path.join(tmp, "resumed.h5.partial")
                shutil.copy(damaged, partial)
                before = open(partial, "rb").read()
                r = run([sower, "run", job, "--resume", "-o", os.path.join(tmp, "resumed.h5")])
                expect(r, f"--resume {name}", 2, text.split(",")[0])
                if (os.path.exists(os.path.join(tmp, "resumed.h5")) or not os.path.exists(partial)
                        or open(partial, "rb").read() != before):
                    failures.append(f"--resume {name}: the refused file was changed or finished")
                for leftover in (partial, os.path.join(tmp, "resumed.h5")):
                    if os.path.exists(leftover):
                        os.remove(leftover)

        # --resume reads only this format (h5_layout.h): another format or format_version is refused,
        # the file kept as it was.
        # String attributes are single strings: an array of them (fixed or variable length) overflowed the
        # one-string buffer (a heap or stack overflow; under --resume a hang), text after a NUL was cut off.
        missing = "not a sower output (format attribute 'sower-latents' missing)"
        for name, key, value, text in (("format", "format", "x", "not a sower output (format attribute 'x'"),
                                       ("format-version", "format_version", "2",
                                        "format_version '2': this sower reads version 1"),
                                       ("format-fixed-array", "format", np.array([b"sower-latents"] * 4), missing),
                                       ("format-vlen-array", "format", ["sower-latents"] * 3, missing),
                                       ("format-nul", "format", np.bytes_(b"sower-latents\0junk"), missing)):
            partial = os.path.join(tmp, "resumed.h5.partial")
            shutil.copy(good, partial)
            with h5py.File(partial, "r+") as f:
                f.attrs[key] = value
            before = open(partial, "rb").read()
            r = run([sower, "run", job, "--resume", "-o", os.path.join(tmp, "resumed.h5")])
            expect(r, f"--resume, {name}", 2, text)
            expect(run([sower, "verify", partial]), f"verify, {name}", 2, text)
            if not os.path.exists(partial) or open(partial, "rb").read() != before:
                failures.append(f"--resume, {name}: the refused file was changed or finished")
            for leftover in (partial, os.path.join(tmp, "resumed.h5")):
                if os.path.exists(leftover):
                    os.remove(leftover)

        # --resume-auto (requeued Slurm scripts) takes a finished output as done only when it is whole.
        out = os.path.join(tmp, "auto.h5")
        shutil.copy(good, out)
        r = run([sower, "run", job, "--resume-auto", "-o", out])
        expect(r, "--resume-auto of a finished output", 0, "")
        for name, mutate, text in (("done-zero", replace("done", np.array([1, 1, 0, 1, 1, 1], "u1")),
                                    "1 of its 6 rows are not marked done"),
                                   ("seeds-longer", replace("seeds", np.arange(100000, dtype="u8")),
                                    "/seeds is (100000,), expected (6,)"),
                                   # /verify as sower verify reads it (it took these as "finished", exit 0)
                                   ("verify-match-float", replace("verify/match", np.ones(2, "f8")),
                                    "/verify is not the record sower writes"),
                                   ("verify-match-only", lambda f: [f.__delitem__(f"verify/{k}") for k in ("rows", "seeds")],
                                    "/verify is not the record sower writes"),
                                   ("verify-longer", lambda f: [replace(f"verify/{k}", np.ones(7, t))(f) for k, t in
                                                                (("match", "u1"), ("rows", "u8"), ("seeds", "u8"))],
                                    "at most the file's 6 rows")):
            shutil.copy(good, out)
            with h5py.File(out, "r+") as f:
                mutate(f)
            before = open(out, "rb").read()
            expect(run([sower, "run", job, "--resume-auto", "-o", out]), f"--resume-auto, {name}", 2, text)
            if open(out, "rb").read() != before:
                failures.append(f"--resume-auto, {name}: the refused output was changed")

        # A slice with a misshapen dataset is refused by --stitch (exit 2), naming the slice.
        r = run([sower, "run", job, "--slice", "0/2"], cwd=tmp)
        r2 = run([sower, "run", job, "--slice", "1/2"], cwd=tmp)
        slices = sorted(p for p in os.listdir(tmp) if ".slice-" in p and p.endswith(".h5"))
        if r is None or r2 is None or r.returncode or r2.returncode or len(slices) != 2:
            failures.append(f"slices: {r and r.stderr} {r2 and r2.stderr} {slices}")
        else:
            with h5py.File(os.path.join(tmp, slices[1]), "r+") as f:
                replace("done", np.ones(999, "u1"))(f)
            r = run([sower, "run", job, "--stitch", "2"], cwd=tmp)
            expect(r, "--stitch with a damaged slice", 2, "/done is (999,), expected (3,)")
            if r is not None and slices[1] not in r.stderr:
                failures.append(f"--stitch: the message does not name the slice: {r.stderr.strip()!r}")

        # Truncated files are not HDF5 files sower can open.
        data = open(good, "rb").read()
        for frac in (0.3, 0.8):
            cut = os.path.join(tmp, f"cut{frac}.h5")
            open(cut, "wb").write(data[:int(len(data) * frac)])
            expect(run([sower, "verify", cut]), f"verify of a file cut at {frac}", 2, "cut")

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_output_damage: {len(DAMAGE)} kinds of damage, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
