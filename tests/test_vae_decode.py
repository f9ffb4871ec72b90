#!/usr/bin/python3
"""`sower sample --decode`: images end to end as StableDiffusionPipeline gives them (reference:
validate/make_vae_reference.py), bit for bit the same at every --batch and --threads; bad VAE folders and
options exit 2 naming the file and key, writing nothing.

usage: test_vae_decode.py SOWER SD_DATA_DIR (tests/data/sd) UNET2D_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from testing import check, finish



def sample(sower, model, out, *extra):
    return subprocess.run([sower, "sample", model, "-o", out, *extra], capture_output=True, text=True, timeout=600)


def main():
    sower, data, unet2d = sys.argv[1], sys.argv[2], sys.argv[3]
    ref = json.load(open(os.path.join(data, "vae_reference.json")))["pipeline"]
    sd = os.path.join(data, "tiny-sd1")
    base = ["--prompt", ref["prompt"], "--negative-prompt", ref["negative_prompt"], "--guidance",
            str(ref["guidance"]), "--steps", str(ref["steps"]), "--seeds", ",".join(str(s) for s in ref["seeds"]),
            "--decode"]
    with tempfile.TemporaryDirectory() as tmp:
        # 1. end to end: the pipeline's images (output_type="pt": (x / 2 + 0.5).clamp(0, 1))
        out = os.path.join(tmp, "images.npy")
        r = sample(sower, sd, out, *base, "--batch", "2", "--threads", "2")
        if check(r.returncode == 0, f"sample --decode: exit {r.returncode}: {r.stderr[-600:]}"):
            images = np.load(out)
            want = np.load(os.path.join(data, "vae_pipeline_images_tiny-sd1.npy"))
            check(images.shape == tuple(ref["shape"]) and images.dtype == np.float32, f"shape {images.shape}")
            got = np.clip(images / 2 + 0.5, 0, 1)
            diff, tol = float(np.abs(got - want).max()), 5 * ref["pipeline_batch_yardstick"]
            print(f"sample --decode vs StableDiffusionPipeline(output_type='pt'), {ref['scheduler']}: "
                  f"max|diff| {diff:.3g}, tolerance {tol:.3g}")
            check(diff <= tol, f"end to end: max|diff| {diff:.3g} > {tol:.3g}")
            # 2. the same bits at another batch and thread count
            one = os.path.join(tmp, "one.npy")
            r = sample(sower, sd, one, *base, "--batch", "1", "--threads", "1")
            check(r.returncode == 0 and np.array_equal(np.load(one), images),
                  f"--batch 1 --threads 1 differs from --batch 2 --threads 2: {r.stderr[-300:]}")
            print("--batch 1 --threads 1 == --batch 2 --threads 2, bit for bit")

        # 3. bad input: exit 2, the file and key named, nothing written
        def bad(name, model, texts, *extra):
            out = os.path.join(tmp, "bad.npy")
            r = sample(sower, model, out, *(extra or base))
            missing = [t for t in texts if t not in r.stderr]
            check(r.returncode == 2 and not missing, f"{name}: exit {r.returncode}, missing {missing}: {r.stderr[-400:]}")
            check(not os.path.exists(out), f"{name}: wrote an output")
            check("Sanitizer" not in r.stderr and "runtime error" not in r.stderr, f"{name}: {r.stderr[-400:]}")

        def broken(name, edit):
            d = os.path.join(tmp, name)
            shutil.copytree(sd, d)
            edit(os.path.join(d, "vae"))
            return d

        def edit_config(fn):
            def apply(vae):
                path = os.path.join(vae, "config.json")
                cfg = json.load(open(path))
                fn(cfg)
                json.dump(cfg, open(path, "w"))
            return apply

        bad("no VAE weights", broken("noweights", lambda v: os.unlink(os.path.join(v, "diffusion_pytorch_model.safetensors"))),
            ["vae/diffusion_pytorch_model.safetensors", "no such file"])
        bad("no vae/", broken("novae", lambda v: shutil.rmtree(v)), ["vae/config.json"])
        bad("another VAE class", broken("class", edit_config(lambda c: c.update(_class_name="AutoencoderTiny"))),
            ["vae/config.json", "_class_name", "AutoencoderTiny"])
        bad("another up block", broken("upblock", edit_config(lambda c: c["up_block_types"].__setitem__(1, "AttnUpDecoderBlock2D"))),
            ["vae/config.json", "up_block_types", "AttnUpDecoderBlock2D"])
        bad("groups that do not divide", broken("groups", edit_config(lambda c: c.update(norm_num_groups=3))),
            ["vae/config.json", "norm_num_groups"])
        bad("weights of another shape", broken("shape", edit_config(lambda c: c.update(layers_per_block=2))),
            ["vae/diffusion_pytorch_model.safetensors", "missing tensor 'decoder.up_blocks.0.resnets.2"])
        bad("--decode of a UNet2DModel folder", unet2d, ["--decode needs a StableDiffusionPipeline"],
            "--seeds", "0", "--decode")
        print("7 bad VAE inputs: exit 2, named, nothing written")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
