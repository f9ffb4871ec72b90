#!/usr/bin/env python3
"""Reference decodes of AutoencoderKL (the VAE of Stable Diffusion pipelines) for sower's C decoder
(src/model/vae.c), made with the real diffusers.

Rerun (from the repository root, the reference environment: Debian 12's torch 1.13.1, diffusers 0.31.0;
nothing is downloaded; a few seconds):
    /opt/refenv/bin/python validate/make_vae_reference.py
Options: --out DIR writes elsewhere (two runs on one machine are byte-identical:
    /opt/refenv/bin/python validate/make_vae_reference.py --out /tmp/vae && diff -r tests/data/sd /tmp/vae)

What it reads: the vae/ of tests/data/sd/tiny-sd1 (F32), tiny-sd1-bf16 (BF16), tiny-sd2 (F16), made by
validate/make_sd_reference.py: block_out_channels [8, 8, 8, 8], one resnet per down block.
What it writes under tests/data/sd/:
  vae-sd-shape/vae/   an AutoencoderKL with Stable Diffusion's decoder structure at small width:
      block_out_channels [8, 16, 32, 32] (so the up blocks' first resnets have 1x1 shortcuts, as SD's
      512 -> 256 -> 128 do), layers_per_block 2, norm_num_groups 4, random initialisation after
      torch.manual_seed(21), every tensor perturbed so that no norm is the identity; stored F16 with the
      pre-0.17 attention names (query, key, value, proj_attn) that SD 1.5-era vae files carry.
  vae_latents_NAME.npy   float32 (2, 4, 8, 12): torch.randn after torch.manual_seed(5), the latents decoded.
  vae_images_NAME.npy    float32 (2, 3, 64, 96): vae.decode(latents / vae.config.scaling_factor).sample
      of the two latents in one batch, exactly what StableDiffusionPipeline computes before postprocessing.
  vae_pipeline_images_tiny-sd1.npy   float32 (2, 3, 128, 128): end to end, StableDiffusionPipeline (the folder's
      own scheduler) for PIPELINE_CASE's prompt, seeds 0 and 2^32+7 (a CPU generator each), output_type="pt":
      the decoded images after the pipeline's (x / 2 + 0.5).clamp(0, 1); yardstick: each seed alone vs both in
      one call (pipeline_batch_yardstick).
  vae_reference.json     per case: yardsticks torch_batch_yardstick = max|decoded alone - decoded in the
      batch|, torch_fp64_yardstick = max|float32 decode - the same model in float64|. sower's test
      (tests/test_vae_reference.c) allows 5 x max(both). Both depend on the CPU kernels torch dispatches to.
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import AutoencoderKL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SD = os.path.join(ROOT, "tests", "data", "sd")
FOLDERS = ["tiny-sd1", "tiny-sd1-bf16", "tiny-sd2"]


def make_sd_shape_vae(out_dir):
    """A small VAE with SD's decoder structure, saved F16 with legacy attention names."""
    torch.manual_seed(21)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4, layers_per_block=2,
                        block_out_channels=[8, 16, 32, 32], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, sample_size=64)
    with torch.no_grad():
        for p in vae.parameters():  # norms start at (1, 0): make every weight matter
            p.add_(0.05 * torch.randn_like(p))
    folder = os.path.join(out_dir, "vae-sd-shape", "vae")
    shutil.rmtree(os.path.dirname(folder), ignore_errors=True)
    vae.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
    legacy = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for name, t in load_file(path).items():
        for new, old in legacy.items():
            if ".attentions." in name and f".{new}." in name:
                name = name.replace(f".{new}.", f".{old}.")
        renamed[name] = t
    save_file(renamed, path, metadata={"format": "pt"})
    return folder


def decode(vae, z, dtype=torch.float32):
    with torch.no_grad():
        return vae.to(dtype).decode(z.to(dtype) / vae.config.scaling_factor).sample


PIPELINE_CASE = {"prompt": "a photograph of an astronaut riding a horse", "negative_prompt": "blurry",
                 "guidance": 7.5, "steps": 5, "seeds": [0, 2**32 + 7]}


def pipeline_images(out):
    """End to end through StableDiffusionPipeline: latents and decode together."""
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(SD, "tiny-sd1"), safety_checker=None,
                                                   requires_safety_checker=False).to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    c = PIPELINE_CASE

    def run(seeds):
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        return pipe([c["prompt"]] * len(seeds), negative_prompt=[c["negative_prompt"]] * len(seeds),
                    guidance_scale=c["guidance"], num_inference_steps=c["steps"], generator=gens,
                    output_type="pt").images
    both = run(c["seeds"])
    alone = torch.cat([run([s]) for s in c["seeds"]])
    np.save(os.path.join(out, "vae_pipeline_images_tiny-sd1.npy"), both.numpy().astype(np.float32))
    return dict(c, scheduler=type(pipe.scheduler).__name__, shape=list(both.shape),
                pipeline_batch_yardstick=float((both - alone).abs().max()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=SD)
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    folders = {name: os.path.join(SD, name, "vae") for name in FOLDERS}
    folders["vae-sd-shape"] = make_sd_shape_vae(out)
    cases = []
    for name, folder in folders.items():
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).eval()
        torch.manual_seed(5)
        z = torch.randn(2, vae.config.latent_channels, 8, 12)
        images = decode(vae, z)
        alone = torch.cat([decode(vae, z[i:i + 1]) for i in range(2)])
        fp64 = decode(vae, z.double(), torch.float64)
        vae.to(torch.float32)
        np.save(os.path.join(out, f"vae_latents_{name}.npy"), z.numpy())
        np.save(os.path.join(out, f"vae_images_{name}.npy"), images.numpy())
        for row in range(2):
            cases.append({
                "vae": name,
                "row": row,
                "torch_batch_yardstick": float((alone[row] - images[row]).abs().max()),
                "torch_fp64_yardstick": float((fp64[row] - images[row].double()).abs().max()),
                "image_abs_max": float(images[row].abs().max()),
            })
        print(f"{name}: images {tuple(images.shape)}, |x| <= {float(images.abs().max()):.3f}, "
              f"yardsticks {cases[-1]['torch_batch_yardstick']:.3g} / {cases[-1]['torch_fp64_yardstick']:.3g}")
    pipeline = pipeline_images(out)
    print(f"pipeline: {pipeline}")
    with open(os.path.join(out, "vae_reference.json"), "w") as f:
        json.dump({"generated_by": "validate/make_vae_reference.py", "torch": torch.__version__,
                   "diffusers": diffusers.__version__, "latent_shape": [2, 4, 8, 12], "cases": cases,
                   "pipeline": pipeline}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
