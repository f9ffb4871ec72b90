#!/usr/bin/env python3
"""sower's VAE decode against diffusers at full Stable Diffusion size: SD 1.5's AutoencoderKL (84M parameters,
the random-weight SD 1.5 pipeline bench/sd_vs_torch.py makes), 64x64 latents -> 512x512 images. (The test
suite's references are small: tests/data/sd, vae_diffusers_reference.)

sower: `sample --steps 1` gives two seeds' latents, `sample --decode` the same seeds' images (the same
latents: a seed's bits do not depend on the run), decoded one image at a time. diffusers:
vae.decode(latents / scaling_factor).sample on sower's latents, float32, the two in one batch; the yardstick
is torch's own drift: the batch against each image alone, and float32 against float64. Passes when
max|sower - torch| <= 5 x the yardstick (the rule of the tests). Prints the figures.

usage: PYTHON_WITH_DIFFUSERS validate/check_vae_full_size.py BUILD_DIR WORK_DIR [--threads 2]
  (WORK_DIR/sd15-random is made as bench/sd_vs_torch.py makes it when absent; a few minutes on 2 cores)
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
from sd_vs_torch import MAKE, ROOT  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("work")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    folder = os.path.join(args.work, "sd15-random")
    if not os.path.exists(os.path.join(folder, "model_index.json")):
        subprocess.run([sys.executable, "-c", MAKE, folder, os.path.join(ROOT, "tests", "data", "tokenizer", "sd1")],
                       check=True)
    sower = os.path.join(args.build, "sower")
    with tempfile.TemporaryDirectory() as tmp:
        base = [sower, "sample", folder, "--prompt", "a photograph of an astronaut riding a horse", "--guidance", "1",
                "--scheduler", "ddim", "--steps", "1", "--seeds", "0,4294967303", "--threads", str(args.threads)]
        subprocess.run(base + ["-o", os.path.join(tmp, "latents.npy")], check=True)
        subprocess.run(base + ["--decode", "-o", os.path.join(tmp, "images.npy")], check=True)
        latents, images = np.load(os.path.join(tmp, "latents.npy")), np.load(os.path.join(tmp, "images.npy"))
    from diffusers import AutoencoderKL
    torch.set_num_threads(args.threads)
    vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"), torch_dtype=torch.float32).eval()
    z = torch.from_numpy(latents) / vae.config.scaling_factor
    with torch.no_grad():
        batch = vae.decode(z).sample
        alone = torch.cat([vae.decode(z[i:i + 1]).sample for i in range(len(z))])
        vae64 = vae.double()
        exact = vae64.decode(z.double()).sample
    diff = float((torch.from_numpy(images) - batch).abs().max())
    batch_drift = float((batch - alone).abs().max())
    fp64_drift = float((batch.double() - exact).abs().max())
    yardstick = max(batch_drift, fp64_drift)
    print(f"SD 1.5 VAE, {latents.shape[2]}x{latents.shape[3]} latents -> {images.shape[2]}x{images.shape[3]} images, "
          f"2 seeds: max|sower - diffusers| {diff:.3g}; torch's own drift: batch {batch_drift:.3g}, fp64 {fp64_drift:.3g}; "
          f"{diff / (5 * yardstick):.2f} of the tolerance (5 x {yardstick:.3g}); sower vs fp64 "
          f"{float((torch.from_numpy(images).double() - exact).abs().max()):.3g}")
    sys.exit(0 if diff <= 5 * yardstick else 1)


if __name__ == "__main__":
    main()
