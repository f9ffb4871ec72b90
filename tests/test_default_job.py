#!/usr/bin/python3
"""The default job (jobs/quick.yaml, README command 1) renders the trained digits model (models/digits,
validate/train_digits_model.py) into an output that verifies, and draws digits, not noise: every sample is
dark background with bright strokes, as the training images are (they are 0..16 grey levels upscaled from
8x8: the training images have 17%..43% of their pixels brighter than mid-grey, 31% on average, and
their outermost pixels average -0.70). Then its contact sheet exports.

usage: test_default_job.py SOWER REPO_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

from testing import check, finish



def main():
    sower, repo = sys.argv[1], os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "quick.h5")
        r = subprocess.run([sower, "run", os.path.join(repo, "jobs", "quick.yaml"), "-o", out], capture_output=True,
                           text=True, timeout=600)
        if not check(r.returncode == 0 and "0 mismatches" in r.stdout, f"sower run jobs/quick.yaml: {r.stdout} {r.stderr[-800:]}"):
            return finish()
        with h5py.File(out, "r") as f:
            x = f["latents"][...]
        check(x.shape == (32, 1, 16, 16), f"shape {x.shape}")
        ink = (x > 0).mean(axis=(1, 2, 3))          # pixels brighter than mid-grey, per sample
        border = np.concatenate([x[:, 0, 0, :], x[:, 0, -1, :], x[:, 0, :, 0], x[:, 0, :, -1]], axis=1)
        print(f"32 samples: ink fraction {ink.min():.2f}..{ink.max():.2f} (mean {ink.mean():.2f}), "
              f"border mean {border.mean():.2f}")
        check(((ink > 0.1) & (ink < 0.5)).all() and 0.2 < ink.mean() < 0.4,
              f"a sample is not strokes on a background as the training digits are: ink {ink.round(2)}")
        check(border.mean() < -0.6, f"the borders are not background as the training digits' are: mean {border.mean():.2f}")
        png = os.path.join(tmp, "quick.png")
        r = subprocess.run([sower, "export", out, "--png", png, "--columns", "8"], capture_output=True, text=True,
                           timeout=60)
        check(r.returncode == 0 and os.path.getsize(png) > 0, f"export --png: {r.stderr[-300:]}")
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()



if __name__ == "__main__":
    sys.exit(main())
