#!/usr/bin/env python3
"""Trains the small model the default job renders (models/digits): a DDPM on the handwritten digits that
scikit-learn ships (sklearn.datasets.load_digits: 1797 images of 8x8 pixels, 17 grey levels, from the UCI
"Optical Recognition of Handwritten Digits" set), upscaled to 16x16.

Rerun (from the repository root, the reference environment: Debian 12's torch 1.13.1 and python3-sklearn,
diffusers 0.31.0; nothing is downloaded; about 20 minutes on 2 cores):
    /opt/refenv/bin/python validate/train_digits_model.py [--steps 5000] [--out models/digits]
The result is deterministic on one machine (torch.manual_seed(0), one thread pool), not bit-identical
across CPUs (torch's training kernels differ); the committed folder is the one sower's tests know.

Model: diffusers UNet2DModel, 16x16x1, block_out_channels (24, 48, 48), one resnet per block, attention at
8x8 (AttnDownBlock2D / AttnUpBlock2D, heads of 8 channels), GroupNorm of 8 groups: 0.6M parameters, stored
F16 (about 1 MB). Scheduler: DDPMScheduler, 1000 linear betas, epsilon prediction. Training: the epsilon
objective, AdamW (lr 2e-3, cosine to 0, weight decay 0), batch 64, random shifts of +-1 pixel, the
exponential moving average of the weights (decay 0.999) is what is saved. Saved with
DDPMPipeline.save_pretrained: model_index.json, unet/, scheduler/.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def digits_16():
    """(1797, 1, 16, 16) float32 in [-1, 1]."""
    x = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def shifted(x, gen):
    """Each image moved by -1, 0 or +1 pixel in each direction (background -1 fills in)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2,), generator=gen).tolist()
    return padded[:, :, dy:dy + 16, dx:dx + 16]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "digits"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(1)
    data = digits_16()
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(24, 48, 48), norm_num_groups=8, attention_head_dim=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    ema = UNet2DModel.from_config(unet.config)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3, weight_decay=0.0)
    lr = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    params = sum(p.numel() for p in unet.parameters())
    print(f"{params} parameters, {len(data)} images, {args.steps} steps", flush=True)
    start, running = time.time(), 0.0
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(data), (64,), generator=gen)
        x0 = shifted(data[idx], gen)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (64,), generator=gen)
        loss = F.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.mul_(0.999).add_(p, alpha=0.001)
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 250 == 0:
            print(f"step {step}: loss {running:.4f}, {time.time() - start:.0f} s", flush=True)
    pipe = DDPMPipeline(unet=ema.to(torch.float16), scheduler=sched)
    pipe.save_pretrained(args.out, safe_serialization=True)
    with open(os.path.join(args.out, "TRAINING.json"), "w") as f:
        json.dump({"script": "validate/train_digits_model.py", "steps": args.steps, "final_loss": running,
                   "parameters": params, "data": "sklearn.datasets.load_digits (1797 x 8x8), bilinear to 16x16",
                   "torch": torch.__version__, "seconds": round(time.time() - start)}, f, indent=1)
        f.write("\n")
    print(f"saved {args.out}", flush=True)


if __name__ == "__main__":
    main()
