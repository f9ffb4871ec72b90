#!/usr/bin/python3
"""`pipeline.decode: true`: `sower run` of a Stable Diffusion job also writes each row's image,
/images uint8 (N, 3, H, W) as diffusers' postprocess makes it and /image_digest (N, 32).

1. 1 rank batch 3, 2 ranks batch 1, 3 ranks batch 2: /latents, /images, /image_digest identical;
   /image_digest is each image's sha256; every image == `sower sample --decode` post-processed,
   (x / 2 + 0.5).clamp(0, 1) * 255 rounded, bit for bit.
2. `--slice K/2` twice then `--stitch 2` == the 1-rank file, images included.
3. kill -9 mid-run, one kept image altered in the .partial, then --resume: the altered row is named and
   rendered again, and the file == the uninterrupted run's.
4. `sower verify --all` re-decodes and passes; an altered image in a finished file fails it (exit 1).
5. `sower export --imagefolder` takes the run's images: each PNG's pixels == /images.
6. Refused, exit 2: decode in a UNet2DModel job, decode on the cuda backend without a device, and --resume of a decoding
   job's partial by the same job without decode (its job key differs).

usage: test_run_decode.py SOWER MPIEXEC SD_DIR UNET2D_DIR
"""
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from pngread import read_png  # noqa: E402
from testing import check, finish  # noqa: E402

JOB = """sower: 1
name: decode-test
model: {model}
pipeline: {{scheduler: euler-a, steps: {steps}, batch: 3, guidance: 7.5, decode: true{extra}}}
prompts:
  - {{prompt: "a red bicycle leaning on a wall", negative_prompt: "blurry"}}
  - "a bowl of lemons"
seeds:
  list: [0, 4294967303, 5]
output: {{path: out.h5}}
verify: {{count: 2}}
"""
DATASETS = ("latents", "seeds", "digest", "done", "images", "image_digest")


def write_job(path, model, steps=4, extra=""):
    open(path, "w").write(JOB.format(model=model, steps=steps, extra=extra))
    return path


def launch(argv, ranks, mpiexec):
    return [mpiexec, "-np", str(ranks), "--oversubscribe"] + argv if ranks > 1 else argv


def run(sower, mpiexec, argv, ranks=1):
    return subprocess.run(launch([sower] + argv, ranks, mpiexec), capture_output=True, text=True, timeout=900)


def contents(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in DATASETS}


def same(a, b):
    return [k for k in DATASETS if not np.array_equal(a[k], b[k])]


def main():
    sower, mpiexec, sd, unet2d = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3]), os.path.abspath(sys.argv[4])
    with tempfile.TemporaryDirectory() as tmp:
        job = write_job(os.path.join(tmp, "job.yaml"), sd)
        files = {}
        for ranks, batch in ((1, 3), (2, 1), (3, 2)):
            out = os.path.join(tmp, f"r{ranks}.h5")
            r = run(sower, mpiexec, ["run", job, "-o", out, "--batch", str(batch)], ranks)
            if check(r.returncode == 0, f"{ranks} ranks: {r.stderr[-800:]}"):
                files[ranks] = contents(out)
        if check(len(files) == 3, "not every run finished"):
            for ranks in (2, 3):
                check(not same(files[1], files[ranks]), f"{ranks} ranks differ from 1 in {same(files[1], files[ranks])}")
            f = files[1]
            check(f["images"].shape == (6, 3, 128, 128) and f["images"].dtype == np.uint8, f"/images {f['images'].shape}")
            check(all(hashlib.sha256(f["images"][i].tobytes()).digest() == f["image_digest"][i].tobytes()
                      for i in range(6)), "/image_digest is not each image's sha256")
            npy = os.path.join(tmp, "sample.npy")
            r = run(sower, mpiexec, ["sample", sd, "--prompt", "a red bicycle leaning on a wall", "--negative-prompt",
                                     "blurry", "--guidance", "7.5", "--scheduler", "euler-a", "--steps", "4",
                                     "--seeds", "0,4294967303,5", "--decode", "-o", npy])
            if check(r.returncode == 0, f"sample --decode: {r.stderr[-500:]}"):
                x = np.load(npy)
                want = np.rint(np.clip(x / np.float32(2) + np.float32(0.5), 0, 1) * np.float32(255)).astype(np.uint8)
                check(np.array_equal(want, f["images"][0:3]), "the images differ from sample --decode post-processed")
            print("1/2/3 ranks x batch 3/1/2: identical latents, images, digests; images == sample --decode "
                  "post-processed, bit for bit")

        # 2. two slices, then the stitch
        for k in (0, 1):
            r = run(sower, mpiexec, ["run", job, "-o", os.path.join(tmp, "st.h5"), "--slice", f"{k}/2"], 1 + k)
            check(r.returncode == 0, f"slice {k}: {r.stderr[-500:]}")
        r = run(sower, mpiexec, ["run", job, "-o", os.path.join(tmp, "st.h5"), "--stitch", "2"])
        if check(r.returncode == 0, f"stitch: {r.stderr[-500:]}") and 1 in files:
            check(not same(files[1], contents(os.path.join(tmp, "st.h5"))), "the stitched file differs")
            print("--slice 0/2, 1/2 then --stitch 2: == the 1-rank file, images included")

        # 3. kill -9, an altered image in the partial, --resume
        slow = write_job(os.path.join(tmp, "slow.yaml"), sd, steps=30)
        ref, killed = os.path.join(tmp, "ref.h5"), os.path.join(tmp, "killed.h5")
        r = run(sower, mpiexec, ["run", slow, "-o", ref, "--batch", "1"], 2)
        check(r.returncode == 0, f"uninterrupted: {r.stderr[-500:]}")
        p = subprocess.Popen(launch([sower, "run", slow, "-o", killed, "--batch", "1"], 2, mpiexec),
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
                             env=dict(os.environ, SOWER_PROGRESS_SECONDS="0"))
        deadline = time.time() + 300
        while time.time() < deadline:
            line = p.stderr.readline()
            if not line or (line.startswith(b"[sower]") and not line.startswith(b"[sower] 0/")):
                break
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        subprocess.run(["pkill", "-9", "-f", killed], capture_output=True)
        time.sleep(0.5)
        altered = None
        if check(os.path.exists(killed + ".partial"), "after kill -9: no .partial"):
            with h5py.File(killed + ".partial", "r+") as f:
                kept = np.flatnonzero(f["done"][...] == 1)
                if len(kept):
                    altered = int(kept[0])
                    img = f["images"][altered]
                    img[1, 2, 3] ^= 0x40
                    f["images"][altered] = img
        r = run(sower, mpiexec, ["run", slow, "-o", killed, "--batch", "1", "--resume"], 2)
        if check(r.returncode == 0, f"--resume: {r.stderr[-800:]}"):
            check(altered is None or f"(row {altered})" in r.stderr, f"the altered row {altered} is not named: "
                                                                      f"{r.stderr[-500:]}")
            check(not same(contents(ref), contents(killed)), f"resumed != uninterrupted: {same(contents(ref), contents(killed))}")
            print(f"kill -9, row {altered}'s image altered in the partial, --resume: the row named and rendered "
                  f"again; == the uninterrupted run")

        # 4. verify
        r = run(sower, mpiexec, ["verify", ref, "--all"])
        check(r.returncode == 0 and "0 differ" in r.stdout, f"verify --all: {r.returncode} {r.stdout} {r.stderr[-300:]}")
        with h5py.File(ref, "r+") as f:
            img = f["images"][4]
            img[0, 0, 0] ^= 1
            f["images"][4] = img
        r = run(sower, mpiexec, ["verify", ref])
        check(r.returncode == 1 and "digests: 1 mismatching" in r.stdout, f"verify of an altered image: "
                                                                         f"{r.returncode} {r.stdout}")
        print("verify --all re-decodes: 0 differ; an altered image fails it (exit 1)")

        # 5. export takes the run's images
        folder = os.path.join(tmp, "images")
        r = run(sower, mpiexec, ["export", os.path.join(tmp, "r1.h5"), "--imagefolder", folder])
        if check(r.returncode == 0, f"export: {r.stderr[-500:]}") and 1 in files:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
            pixels = [read_png(os.path.join(folder, n))[0] for n in names]
            check(len(names) == 6 and all(np.array_equal(p, files[1]["images"][i].transpose(1, 2, 0))
                                          for i, p in enumerate(pixels)), "the PNGs' pixels are not /images")
            print("export --imagefolder: every PNG's pixels == /images")

        # 6. refusals
        bad = write_job(os.path.join(tmp, "bad.yaml"), unet2d)
        text = open(bad).read().replace(", guidance: 7.5", "")
        text = text[:text.index("prompts:")] + text[text.index("seeds:"):]
        open(bad, "w").write(text)
        r = run(sower, mpiexec, ["run", bad, "-o", os.path.join(tmp, "bad.h5")])
        check(r.returncode == 2 and "decode apply to Stable Diffusion" in r.stderr, f"decode, UNet2DModel: "
                                                                                   f"{r.returncode} {r.stderr[-300:]}")
        cuda = write_job(os.path.join(tmp, "cuda.yaml"), sd, extra=", backend: cuda")
        r = run(sower, mpiexec, ["run", cuda, "-o", os.path.join(tmp, "cuda.h5")])
        # (decoding on the cuda backend is allowed: where a GPU is visible, the run simply succeeds)
        check(r.returncode == 0 or (r.returncode == 2 and ("no CUDA device" in r.stderr
                                                           or "without the CUDA backend" in r.stderr)),
              f"decode, cuda without a device: {r.returncode} {r.stderr[-300:]}")
        partial = os.path.join(tmp, "half.h5")
        p = subprocess.Popen([sower, "run", slow, "-o", partial, "--batch", "1"], stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, env=dict(os.environ, SOWER_PROGRESS_SECONDS="0"))
        while True:
            line = p.stderr.readline()
            if not line or (line.startswith(b"[sower]") and not line.startswith(b"[sower] 0/")):
                break
        p.kill()
        p.wait()
        plain = os.path.join(tmp, "plain.yaml")
        open(plain, "w").write(open(slow).read().replace(", decode: true", ""))
        r = run(sower, mpiexec, ["run", plain, "-o", partial, "--resume"])
        check(r.returncode == 2 and "decode: uint8" in r.stderr, f"--resume without decode: {r.returncode} "
                                                                 f"{r.stderr[-400:]}")
        print("refused, exit 2: decode with a UNet2DModel, decode on cuda without a device, --resume of a decoding job's partial "
              "without decode")
    sys.exit(finish())


if __name__ == "__main__":
    main()
