#!/usr/bin/python3
"""`sower run` across ranks: the same bits whatever the rank count and batch, verification that
catches a flipped bit, a failing rank that ends the job, an existing output left alone.

usage: test_run_mpi.py SOWER_BINARY MPIEXEC MANIFEST (tests/data/manifests/run_small.yaml)
Reads the files with python3-h5py (Debian) and checks the layout with h5dump.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

failures = []
RUN_ATTRS_DIFFER = {"hosts", "world_size", "batch", "timings"}


def run(argv, env=None, timeout=300):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, env=e, timeout=timeout)


def sower_run(sower, mpiexec, manifest, out, ranks, batch, env=None):
    argv = [sower, "run", manifest, "-o", out, "--force", "--batch", str(batch)]
    if ranks > 1:
        argv = [mpiexec, "-np", str(ranks), "--oversubscribe"] + argv
    return run(argv, env)


def ranks_see_other_models(sower, mpiexec, tmp):
    """Each rank loads the model folder itself: a rank whose copy differs (node-local copies; here a manifest
    whose relative model path each rank resolves in its own working directory) is refused before any row,
    naming the rank and the part (it rendered its rows with its own model under rank 0's provenance)."""
    import json
    import shutil
    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "diffusers", "models", "mono_v")
    out = os.path.join(tmp, "mixed.h5")
    for node, edit in (("a", None), ("b", "steps_offset")):
        os.makedirs(os.path.join(tmp, node))
        shutil.copytree(model, os.path.join(tmp, node, "model"))
        open(os.path.join(tmp, node, "job.yaml"), "w").write(
            "sower: 1\nname: mixed\nmodel: model\npipeline:\n  steps: 2\nseeds:\n  list: [1, 2, 3, 4]\n"
            f"output:\n  path: {out}\n")
        if edit:
            path = os.path.join(tmp, node, "model", "scheduler", "scheduler_config.json")
            cfg = json.load(open(path))
            cfg[edit] = 1
            json.dump(cfg, open(path, "w"))
    r = run([mpiexec, "--oversubscribe", "-np", "1", "-wdir", os.path.join(tmp, "a"), sower, "run", "job.yaml", ":",
             "-np", "1", "-wdir", os.path.join(tmp, "b"), sower, "run", "job.yaml"])
    if (r.returncode != 2 or b"rank 1 loaded another model than rank 0: its scheduler config differs" not in r.stderr
            or os.path.exists(out) or os.path.exists(out + ".partial")):
        failures.append(f"ranks with different model copies: exit {r.returncode}, output made: "
                        f"{os.path.exists(out) or os.path.exists(out + '.partial')} {r.stderr.decode()[-500:]!r}")


def main():
    sower, mpiexec, manifest = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        ranks_see_other_models(sower, mpiexec, tmp)
        ref = None
        for ranks, batch in [(1, 1), (2, 4), (3, 1), (4, 4), (1, 4), (3, 3)]:
            out = os.path.join(tmp, f"r{ranks}_b{batch}.h5")
            r = sower_run(sower, mpiexec, manifest, out, ranks, batch)
            if r.returncode != 0:
                failures.append(f"{ranks} ranks batch {batch}: exit {r.returncode}: {r.stderr.decode()[-800:]}")
                continue
            with h5py.File(out, "r") as f:
                got = {k: f[k][...] for k in ("latents", "seeds", "digest", "done")}
                attrs = {k: f.attrs[k] for k in f.attrs}
                if not f["verify/match"][...].all():
                    failures.append(f"{ranks} ranks: verification reported a mismatch")
                if ranks > 1 and (f["verify/renderer_rank"][...] == f["verify/verifier_rank"][...]).any():
                    failures.append(f"{ranks} ranks: a row was verified by the rank that rendered it")
                if int(f["run"].attrs["world_size"]) != ranks or not got["done"].all():
                    failures.append(f"{ranks} ranks: run facts or completion record wrong")
            if ref is None:
                ref = (got, attrs)
                seeds = got["seeds"].tolist()
                if seeds != [3, 4, 5, 6, 7, 8, 9, 100, 4294967303, 42, 7000000000000000000]:
                    failures.append(f"/seeds not in manifest order: {seeds}")
                continue
            for k, v in got.items():
                if v.dtype != ref[0][k].dtype or not np.array_equal(v, ref[0][k]):
                    failures.append(f"{ranks} ranks batch {batch}: /{k} differs from 1 rank batch 1")
            if attrs.keys() != ref[1].keys() or any(attrs[k] != ref[1][k] for k in attrs):
                failures.append(f"{ranks} ranks batch {batch}: root attributes differ")
        # More ranks than seeds: ranks with nothing to render still take part.
        with h5py.File(os.path.join(tmp, "r1_b1.h5"), "r") as f:
            model_dir = f["run"].attrs["model_path"].decode()
        two = os.path.join(tmp, "two.yaml")
        open(two, "w").write(f"sower: 1\nname: two\nmodel: {model_dir}\npipeline: {{steps: 3}}\n"
                             "seeds: {list: [5, 9]}\noutput: {path: two.h5}\nverify: {count: 2}\n")
        try:
            r = run([mpiexec, "-np", "4", "--oversubscribe", sower, "run", two], timeout=120)
            if r.returncode != 0 or not os.path.exists(os.path.join(tmp, "two.h5")):
                failures.append(f"4 ranks, 2 seeds: exit {r.returncode}: {r.stderr.decode()[-300:]}")
        except subprocess.TimeoutExpired:
            failures.append("4 ranks, 2 seeds: hung")
        # backend: cuda where no device is visible (CI): every rank learns it, the job ends with exit 2
        # and one message, nothing is written, nobody waits in a collective.
        info = run([sower, "info", model_dir], timeout=60).stdout
        if b"CUDA devices:       0 visible" in info or b"no CUDA backend" in info:
            gpu_job = os.path.join(tmp, "gpu.yaml")
            open(gpu_job, "w").write(f"sower: 1\nname: gpu\nmodel: {model_dir}\npipeline: {{steps: 3, backend: cuda}}\n"
                                     "seeds: {list: [5, 9]}\noutput: {path: gpu.h5}\nverify: {count: 2}\n")
            try:
                r = run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", gpu_job], timeout=120)
                if (r.returncode != 2 or r.stderr.count(b"backend cuda") != 1 or
                        os.path.exists(os.path.join(tmp, "gpu.h5")) or os.path.exists(os.path.join(tmp, "gpu.h5.partial"))):
                    failures.append(f"2 ranks, backend cuda, no device: exit {r.returncode}: {r.stderr.decode()[-400:]}")
            except subprocess.TimeoutExpired:
                failures.append("2 ranks, backend cuda, no device: hung")
        # Malformed manifests are refused by `sower run` too: exit 2, a located message, nothing written
        # (the corpus is copied so relative outputs land in tmp). Every 6th file of the corpus: each
        # `sower run` starts MPI, and all of them are checked through `sower check` (same parser) by
        # test_manifest_schema.py.
        corpus = os.path.join(os.path.dirname(manifest), "bad")
        bad_dir = os.path.join(tmp, "bad")
        subprocess.run(["cp", "-r", corpus, bad_dir], check=True)
        before = set(os.listdir(bad_dir))
        refused = 0
        for name in sorted(before)[::6]:
            path = os.path.join(bad_dir, name)
            r = run([sower, "run", path], timeout=60)
            if r.returncode == 2 and (path + ":").encode() in r.stderr:
                refused += 1
            else:
                failures.append(f"sower run {name}: exit {r.returncode}, {r.stderr.decode()[-200:]}")
        if set(os.listdir(bad_dir)) != before:
            failures.append(f"sower run of bad manifests created {set(os.listdir(bad_dir)) - before}")
        print(f"sower run refused {refused} of {len(sorted(before)[::6])} malformed manifests with a located message")
        # Bad flags of run / check / verify: exit 2 with a message naming the problem.
        for argv, text in [([sower, "run"], b"JOB.yaml is required"),
                           ([sower, "run", manifest, "--batch", "0"], b"--batch"),
                           ([sower, "run", manifest, "--bogus"], b"--bogus"),
                           ([sower, "run", os.path.join(tmp, "missing.yaml")], b"missing.yaml"),
                           ([sower, "check"], b"usage: sower check"),
                           ([sower, "check", os.path.join(tmp, "missing.yaml")], b"missing.yaml"),
                           ([sower, "verify"], b"usage: sower verify"),
                           ([sower, "verify", os.path.join(tmp, "r1_b1.h5"), "--sample", "0"], b"--sample"),
                           ([sower, "verify", os.path.join(tmp, "missing.h5")], b"missing.h5")]:
            r = run(argv, timeout=60)
            if r.returncode != 2 or text not in r.stderr:
                failures.append(f"{argv[1:]}: exit {r.returncode}, {r.stderr.decode()[-200:]}")
        # Layout readable without sower.
        first = os.path.join(tmp, "r1_b1.h5")
        r = run(["h5dump", "-H", first])
        for name in (b"latents", b"seeds", b"digest", b"done", b"verify", b"run", b"manifest_sha256"):
            if name not in r.stdout:
                failures.append(f"h5dump -H does not show {name!r}")
        # sower verify: a good file passes (sampled and all rows); a tampered row, a changed model and
        # a file that is not sower's are reported.
        for extra in ([], ["--all"]):
            r = run([sower, "verify", first] + extra)
            if r.returncode != 0:
                failures.append(f"verify {extra}: exit {r.returncode}: {r.stderr.decode()[-300:]}")
        tampered = os.path.join(tmp, "tampered.h5")
        open(tampered, "wb").write(open(first, "rb").read())
        with h5py.File(tampered, "r+") as f:
            row = f["latents"][5]
            row.flat[0] = np.nextafter(row.flat[0], np.float32(2))
            f["latents"][5] = row
        r = run([sower, "verify", tampered])
        if r.returncode != 1 or b"rows whose digest differs: 1," not in r.stderr:
            failures.append(f"verify of a tampered file: exit {r.returncode} {r.stderr!r}")
        with h5py.File(first, "r") as f:
            model_dir = f["run"].attrs["model_path"].decode()
        changed = os.path.join(tmp, "changed_model")
        subprocess.run(["cp", "-r", model_dir, changed], check=True)
        weights = os.path.join(changed, "unet", "diffusion_pytorch_model.safetensors")
        data = bytearray(open(weights, "rb").read())
        data[-1] ^= 1
        open(weights, "wb").write(bytes(data))
        r = run([sower, "verify", first, "--model", changed])
        if r.returncode != 2 or b"changed since the file was made" not in r.stderr:
            failures.append(f"verify against a changed model: exit {r.returncode} {r.stderr!r}")
        r = run([sower, "verify", manifest])
        if r.returncode != 2:
            failures.append(f"verify of a non-HDF5 file: exit {r.returncode} {r.stderr!r}")
        # sower export: a PNG contact sheet (11 rows of 1x8x8: 4 columns, 3 rows, 2-px gaps -> 38 x 28 grey).
        png = os.path.join(tmp, "sheet.png")
        r = run([sower, "export", first, "--png", png])
        head = open(png, "rb").read(26) if os.path.exists(png) else b""
        if r.returncode != 0 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[16:24] != (38).to_bytes(4, "big") + (28).to_bytes(4, "big") \
                or head[25] != 0:
            failures.append(f"export: exit {r.returncode}, header {head!r}, {r.stderr!r}")
        for bad in (["--png", png, "--rows", "5-99"], ["--rows", "0-3"], ["--png", png, "--bogus"]):
            r = run([sower, "export", first] + bad)
            if r.returncode != 2:
                failures.append(f"export {bad}: exit {r.returncode}, expected 2")
        # A flipped bit in one rank's output is caught (row 4 is rank 1's with 3 ranks; rows 0,2,4,6,8 verified).
        out = os.path.join(tmp, "fault.h5")
        r = sower_run(sower, mpiexec, manifest, out, 3, 2, {"SOWER_FAULT_INJECT": "1:4"})
        if r.returncode != 1 or b"row 4" not in r.stderr:
            failures.append(f"fault injection: exit {r.returncode}, stderr {r.stderr.decode()[-400:]}")
        else:
            with h5py.File(out, "r") as f:
                if f["verify/match"][...].tolist() != [1, 1, 0, 1, 1]:
                    failures.append(f"fault injection: /verify/match {f['verify/match'][...]}")
            # That file stays a failure: a requeue's --resume-auto (Slurm) and any verify say exit 1 again,
            # whichever rows they re-render, and the file is left as it was.
            before = open(out, "rb").read()
            r = run([sower, "run", manifest, "-o", out, "--resume-auto"])
            if r.returncode != 1 or b"verification found 1 row differing" not in r.stderr:
                failures.append(f"--resume-auto of a failed run's file: exit {r.returncode} {r.stderr[-400:]!r}")
            for extra in ([], ["--sample", "3"]):
                r = run([sower, "verify", out] + extra)
                if r.returncode != 1 or b"that its run's own verification found differing: 1)" not in r.stderr:
                    failures.append(f"verify {extra} of a failed run's file: exit {r.returncode} {r.stderr[-400:]!r}")
            if open(out, "rb").read() != before:
                failures.append("the failed run's file changed")
        # A failing rank ends the job promptly, naming itself; no finished output appears.
        out = os.path.join(tmp, "fail.h5")
        try:
            r = sower_run(sower, mpiexec, manifest, out, 3, 1, {"SOWER_FAULT_FAIL_RANK": "2"})
            if r.returncode == 0 or b"rank 2" not in r.stderr or os.path.exists(out):
                failures.append(f"failing rank: exit {r.returncode}, output exists {os.path.exists(out)}, "
                                f"stderr {r.stderr.decode()[-400:]}")
        except subprocess.TimeoutExpired:
            failures.append("failing rank: the job hung")
        # An existing output is refused without --force, and left untouched.
        keep = os.path.join(tmp, "keep.h5")
        open(keep, "wb").write(b"precious")
        r = run([sower, "run", manifest, "-o", keep])
        if r.returncode != 2 or b"--force" not in r.stderr or open(keep, "rb").read() != b"precious":
            failures.append(f"existing output: exit {r.returncode} {r.stderr!r}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_run_mpi: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
