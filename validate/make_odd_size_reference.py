#!/usr/bin/env python3
"""Stable Diffusion at latent sizes that do not halve evenly at every UNet downsampling, from diffusers:
UNet2DConditionModel then upsamples each such level back to its skip connection's size
(`forward_upsample_size`, F.interpolate(size=...), mode "nearest"), so SD 1.5 renders 512x600 (latents
64x75) although 75 is odd. sower must do the same (src/model/upsample_index.h).

Rerun (from the repository root, the reference environment: Debian 12's torch 1.13.1, transformers 4.46.3,
diffusers 0.31.0; nothing is downloaded; a few seconds):
    /opt/refenv/bin/python validate/make_odd_size_reference.py [--out DIR]

What it writes under tests/data/sd/ (it reads tiny-sd1/ and tiny-sd2/, which make_sd_reference.py made):
  tiny-unet4/unet/   a UNet2DConditionModel of four levels (three downsamplings, cross-attention at the
      first and third, tiny-sd1's text width), random weights after torch.manual_seed(14), stored F32:
      13x11 latents go 13x11 -> 7x6 -> 4x3 -> 2x2 and back up to 4x3, 7x6, 13x11.
  unet_odd_reference.json, unet_odd_{x,context,out}_NAME.npy   forward cases (read by
      tests/test_unet_cond_reference.c with the prefix unet_odd): tiny-sd1 at 15x13, tiny-sd2 at 7x9,
      tiny-unet4 at 13x11; x = randn(generator(seed)), text embeddings randn / 2, t 999, 500, 1.
  render_odd_reference.json, render_odd_latents_PIPELINE.npy   StableDiffusionPipeline(height, width),
      10 steps, output_type="latent": tiny-sd1 at 120x104 (latents 15x13) with DDIM, guidance 7.5;
      tiny-sd2 at 56x72 (latents 7x9) with DPM-Solver++ 2M, guidance 5 (read by tests/test_sd_odd_size.py).
Yardsticks as make_sd_reference.py's: torch_batch_yardstick = max|alone - in one batch with others|,
torch_fp64_yardstick = max|float32 - the same in float64 from the same float32 inputs|; the tests allow
5 x max(both).
"""
import argparse
import json
import os
import sys

sys.modules["ftfy"] = None  # a default install has no ftfy

import numpy as np  # noqa: E402
import torch  # noqa: E402

import diffusers  # noqa: E402
from diffusers import StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402

from make_sd_reference import scheduler_class  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "sd")

UNET4 = dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=[4, 8, 8, 8], layers_per_block=1,
             down_block_types=["CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
             up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"],
             norm_num_groups=4, cross_attention_dim=32, attention_head_dim=2)
UNET_CASES = {"tiny-sd1": (15, 13), "tiny-sd2": (7, 9), "tiny-unet4": (13, 11)}  # latent height, width
TIMESTEPS = [999, 500, 1]
RENDERS = [  # pipeline, height, width, scheduler, guidance, seeds
    ("tiny-sd1", 120, 104, "ddim", 7.5, [0, 7]),
    ("tiny-sd2", 56, 72, "dpm++2m", 5.0, [3]),
]
PROMPT = "a photograph of an astronaut riding a horse"
STEPS = 10


def load_unet(folder, dtype):
    return UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"), torch_dtype=dtype).eval()


def unet_cases(name, folder, out):
    unet, unet64 = load_unet(folder, torch.float32), load_unet(folder, torch.float64)
    h, w = UNET_CASES[name]
    dim = unet.config.cross_attention_dim
    xs, es, ys, cases = [], [], [], []
    for i, t in enumerate(TIMESTEPS):
        g = torch.Generator("cpu").manual_seed(2000 + i)
        x = torch.randn((1, 4, h, w), generator=g)
        e = torch.randn((1, 77, dim), generator=g) / 2
        with torch.no_grad():
            y = unet(x, torch.tensor(t), encoder_hidden_states=e).sample
            torch.set_default_dtype(torch.float64)
            y64 = unet64(x.double(), torch.tensor(t), encoder_hidden_states=e.double()).sample
            torch.set_default_dtype(torch.float32)
        assert y.shape == x.shape, (name, y.shape)
        xs.append(x[0].numpy()), es.append(e[0].numpy()), ys.append(y[0].numpy())
        cases.append({"pipeline": name, "row": i, "timestep": t, "latent_height": h, "latent_width": w,
                      "torch_fp64_yardstick": float((y.double() - y64).abs().max())})
    with torch.no_grad():
        yb = unet(torch.from_numpy(np.stack(xs)), torch.tensor(TIMESTEPS),
                  encoder_hidden_states=torch.from_numpy(np.stack(es))).sample
    for i, c in enumerate(cases):
        c["torch_batch_yardstick"] = float((yb[i] - torch.from_numpy(ys[i])).abs().max())
    for what, arrays in (("x", xs), ("context", es), ("out", ys)):
        np.save(os.path.join(out, f"unet_odd_{what}_{name}.npy"), np.stack(arrays).astype(np.float32))
    return cases


def render(pipe, height, width, scheduler, guidance, seeds, latents=None):
    if not hasattr(pipe, "_folder_scheduler_config"):
        pipe._folder_scheduler_config = pipe.scheduler.config
    pipe.scheduler = scheduler_class(scheduler).from_config(pipe._folder_scheduler_config)
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    return pipe([PROMPT] * len(seeds), height=height, width=width, guidance_scale=guidance,
                num_inference_steps=STEPS, generator=generators, output_type="latent", latents=latents).images


def render_cases(name, height, width, scheduler, guidance, seeds, out):
    folder = os.path.join(DATA, name)
    kw = dict(safety_checker=None, requires_safety_checker=False)
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, **kw)
    pipe64 = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float64, **kw)
    for p in (pipe, pipe64):
        p.set_progress_bar_config(disable=True)
    f = pipe.vae_scale_factor
    alone = [render(pipe, height, width, scheduler, guidance, [s])[0] for s in seeds]
    batch = render(pipe, height, width, scheduler, guidance, seeds + [101, 102])
    cases = []
    for s, a, b in zip(seeds, alone, batch):
        assert a.shape == (4, height // f, width // f), a.shape
        noise = torch.randn((1, 4, height // f, width // f), generator=torch.Generator("cpu").manual_seed(s))
        torch.set_default_dtype(torch.float64)
        try:
            wide = render(pipe64, height, width, scheduler, guidance, [s], latents=noise.double())[0]
        finally:
            torch.set_default_dtype(torch.float32)
        cases.append({"pipeline": name, "row": len(cases), "prompt": PROMPT, "height": height, "width": width,
                      "scheduler": scheduler, "guidance": guidance, "steps": STEPS, "seed": str(s),
                      "torch_batch_yardstick": float((a - b).abs().max()),
                      "torch_fp64_yardstick": float((a.double() - wide).abs().max())})
    np.save(os.path.join(out, f"render_odd_latents_{name}.npy"), np.stack([a.numpy() for a in alone]))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DATA)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(14)
    unet4 = os.path.join(args.out, "tiny-unet4")
    UNet2DConditionModel(**UNET4).save_pretrained(os.path.join(unet4, "unet"))
    unet_ref = []
    for name in UNET_CASES:
        unet_ref += unet_cases(name, unet4 if name == "tiny-unet4" else os.path.join(DATA, name), args.out)
    render_ref = []
    for r in RENDERS:
        render_ref += render_cases(*r, args.out)
    for what, cases in (("unet_odd", unet_ref), ("render_odd", render_ref)):
        with open(os.path.join(args.out, f"{what}_reference.json"), "w") as f:
            json.dump({"generated_by": "validate/make_odd_size_reference.py", "torch": torch.__version__,
                       "diffusers": diffusers.__version__, "cases": cases}, f, indent=1)
            f.write("\n")
    print(f"{len(unet_ref)} UNet cases, {len(render_ref)} renders -> {args.out}")


if __name__ == "__main__":
    main()
