#!/usr/bin/env python3
"""Stable Diffusion at image sizes whose latents do not halve evenly at each UNet downsampling (SD 1.5 at
512x600: latents 64x75), which diffusers renders by upsampling each odd level back to its skip connection's
size (reference: validate/make_odd_size_reference.py, tests/data/sd/render_odd_reference.json).

usage: test_sd_odd_size.py SOWER tests/data/sd MPIEXEC

1. `sower sample --height H --width W` equals StableDiffusionPipeline(height=H, width=W,
   output_type="latent") within 5 x max(torch's batch yardstick, its float32-vs-float64 yardstick):
   tiny SD 1.x at 120x104 (latents 15x13, DDIM), tiny SD 2.x at 56x72 (latents 7x9, DPM-Solver++ 2M).
2. Bit for bit: --batch 1 --threads 1 == --batch 3 --threads 2; `--decode` gives (N, 3, H, W) images.
3. `sower check` accepts a manifest at that size, and `sower run` on 2 ranks writes sample's rows.
4. A UNet whose downsamplings have no padding (downsample_padding 0) cannot take a level of 1 row or column,
   where diffusers' convolution raises: sample, check and run refuse it (exit 2), naming the level and the
   key, and write nothing (they rendered it, exit 0).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

from testing import check, finish  # noqa: E402  (the tests' shared helpers)


def sample(sower, folder, case, seeds, out, *extra):
    argv = [sower, "sample", folder, "--prompt", case["prompt"], "--guidance", str(case["guidance"]),
            "--steps", str(case["steps"]), "--scheduler", case["scheduler"], "--height", str(case["height"]),
            "--width", str(case["width"]), "--seeds", ",".join(seeds), "--force", "-o", out, *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


JOB = """sower: 1
name: odd-size
model: {model}
pipeline: {{scheduler: {scheduler}, steps: {steps}, batch: 2, guidance: {guidance}, height: {height}, width: {width}}}
prompts: ["{prompt}"]
seeds: {{list: [{seeds}]}}
output: {{path: out.h5}}
"""


def main():
    sower, data, mpiexec = sys.argv[1], sys.argv[2], sys.argv[3]
    ref = json.load(open(os.path.join(data, "render_odd_reference.json"), encoding="utf-8"))
    groups = {}
    for c in ref["cases"]:
        groups.setdefault(c["pipeline"], []).append(c)
    with tempfile.TemporaryDirectory() as tmp:
        # 1. Against diffusers.
        for name, cases in groups.items():
            folder, first = os.path.join(data, name), cases[0]
            out = os.path.join(tmp, f"{name}.npy")
            r = sample(sower, folder, first, [c["seed"] for c in cases], out)
            if not check(r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr}"):
                continue
            got, want = np.load(out), np.load(os.path.join(data, f"render_odd_latents_{name}.npy"))
            check(got.shape == want.shape, f"{name}: shape {got.shape}, diffusers {want.shape}")
            for c in cases:
                diff = float(np.abs(got[c["row"]].astype(np.float64) - want[c["row"]]).max())
                tol = 5 * max(c["torch_batch_yardstick"], c["torch_fp64_yardstick"])
                print(f"{name} {c['height']}x{c['width']} (latents {want.shape[2]}x{want.shape[3]}) {c['scheduler']} "
                      f"seed {c['seed']}: max|sower - diffusers| {diff:.3g}, tolerance {tol:.3g}")
                check(diff <= tol, f"{name} seed {c['seed']}: max|diff| {diff:.3g} > {tol:.3g}")

        # 2. Batch and threads, bit for bit; decoded images at the size asked for.
        first = groups["tiny-sd1"][0]
        folder = os.path.join(data, "tiny-sd1")
        seeds = ["0", "7", "9"]
        runs = []
        for extra in (["--batch", "1", "--threads", "1"], ["--batch", "3", "--threads", "2"]):
            path = os.path.join(tmp, "b" + "-".join(extra) + ".npy")
            r = sample(sower, folder, first, seeds, path, *extra)
            if check(r.returncode == 0, f"{extra}: exit {r.returncode}: {r.stderr}"):
                runs.append(open(path, "rb").read())
        check(len(runs) == 2 and runs[0] == runs[1], "the bytes depend on --batch/--threads at an odd size")
        print("batch 1 x threads 1 == batch 3 x threads 2, bit for bit (3 seeds, latents 15x13)")
        images = os.path.join(tmp, "images.npy")
        r = sample(sower, folder, first, ["0"], images, "--decode")
        if check(r.returncode == 0, f"--decode: exit {r.returncode}: {r.stderr}"):
            shape = np.load(images).shape
            check(shape == (1, 3, first["height"], first["width"]), f"--decode: images of shape {shape}")
            print(f"--decode: images {shape}")

        # 3. A job at that size: check accepts it, run's rows are sample's.
        job = os.path.join(tmp, "job.yaml")
        open(job, "w", encoding="utf-8").write(JOB.format(
            model=folder, scheduler=first["scheduler"], steps=first["steps"], guidance=first["guidance"],
            height=first["height"], width=first["width"], prompt=first["prompt"], seeds=", ".join(seeds)))
        r = subprocess.run([sower, "check", job], capture_output=True, text=True, timeout=600)
        check(r.returncode == 0, f"check of a {first['height']}x{first['width']} job: exit {r.returncode}: {r.stderr}")
        h5 = os.path.join(tmp, "out.h5")
        r = subprocess.run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job, "-o", h5],
                           capture_output=True, text=True, timeout=600)
        if check(r.returncode == 0, f"run: exit {r.returncode}: {r.stderr[-2000:]}") and runs:
            with h5py.File(h5, "r") as f:
                rows = f["latents"][...]
            check(rows.tobytes() == runs[0][-rows.nbytes:] and rows.shape == (3, 4, 15, 13),
                  f"run's rows {rows.shape} are not sample's")
            print("check accepts the job; a 2-rank run writes sample's rows, bit for bit")

        # 4. downsample_padding 0 and a level of 1 row: refused everywhere, nothing written.
        unpadded = os.path.join(tmp, "unpadded")
        shutil.copytree(folder, unpadded)
        config = os.path.join(unpadded, "unet", "config.json")
        json.dump(dict(json.load(open(config)), downsample_padding=0), open(config, "w"))
        small = dict(first, height=8, width=40)
        out = os.path.join(tmp, "small.npy")
        r = sample(sower, unpadded, small, ["0"], out)
        check(r.returncode == 2 and "latents of 1x5 are too small for this UNet: 1x5 at level 0" in r.stderr
              and "downsample_padding 0" in r.stderr and not os.path.exists(out),
              f"sample of 1x5 latents without padding: exit {r.returncode}: {r.stderr}")
        open(job, "w", encoding="utf-8").write(JOB.format(
            model=unpadded, scheduler="ddim", steps=2, guidance=7.5, height=8, width=40, prompt="a cat", seeds="0"))
        for argv in ([sower, "check", job], [sower, "run", job, "-o", h5 + "-small"]):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            check(r.returncode == 2 and "job.yaml:4:" in r.stderr and "downsample_padding 0" in r.stderr
                  and not os.path.exists(h5 + "-small"), f"{argv[1]} of 1x5 latents without padding: exit "
                  f"{r.returncode}: {r.stderr}")
        r = sample(sower, unpadded, dict(first, height=16, width=40), ["0"], out)  # 2x5: 1x2 at the last level
        check(r.returncode == 0, f"sample of 2x5 latents without padding: exit {r.returncode}: {r.stderr}")
        print("downsample_padding 0: a level of 1 row refused by sample, check and run (exit 2); 2 rows render")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
