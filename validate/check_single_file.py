#!/usr/bin/env python3
"""Checks tests/sd_single_file.py (a diffusers folder -> one LDM-layout checkpoint, the file
tests/test_convert.py feeds to `sower convert`) against diffusers itself: diffusers'
StableDiffusionPipeline.from_single_file(FILE, config=FOLDER) must load exactly the folder's weights,
tensor for tensor, bit for bit, for the UNet, the VAE and the text encoder. So the names the test's
checkpoint carries are the names diffusers' single-file loader maps, and `sower convert` reading
them back (its render == the folder's, bit for bit) maps them as diffusers does.

Needs torch and diffusers (the reference environment, e.g. Debian's python3-torch 1.13 with
diffusers 0.31, transformers 4.46 from PyPI in a venv); no network.

usage: check_single_file.py [FOLDER ...]   (default: the tiny SD 1.x, SD 1.x BF16 and SD 2.x test pipelines)
       check_single_file.py --make-sd15-shape DIR
           writes a random-weight pipeline with SD 1.5's block structure (four levels, two resnets each,
           cross-attention in the first three down and last three up blocks, a 4-level VAE with 2+1
           resnets) at small widths, to check (then `sower convert` it and compare renders)
"""
import os
import subprocess
import sys
import tempfile

import torch
from diffusers import StableDiffusionPipeline

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..", "tests")


def make_sd15_shape(out):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    torch.manual_seed(0)
    tiny = os.path.join(TESTS, "data", "sd", "tiny-sd1")
    unet = UNet2DConditionModel(sample_size=8, layers_per_block=2, block_out_channels=(16, 16, 32, 32),
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                                cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 16, 16, 16), layers_per_block=2, latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    for m in (unet, vae):
        with torch.no_grad():
            for p in m.parameters():
                p.normal_(0, 0.05)
    StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=CLIPTextModel.from_pretrained(tiny, subfolder="text_encoder"),
                            tokenizer=CLIPTokenizer.from_pretrained(tiny, subfolder="tokenizer"),
                            scheduler=PNDMScheduler.from_pretrained(tiny, subfolder="scheduler"), safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(out)


def main():
    if sys.argv[1:2] == ["--make-sd15-shape"]:
        make_sd15_shape(sys.argv[2])
        return
    folders = sys.argv[1:] or [os.path.join(TESTS, "data", "sd", m) for m in ("tiny-sd1", "tiny-sd1-bf16", "tiny-sd2")]
    bad = 0
    for folder in folders:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = os.path.join(tmp, "model.safetensors")
            subprocess.run([sys.executable, os.path.join(TESTS, "sd_single_file.py"), folder, ckpt], check=True)
            ref = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
            dtype = next(ref.unet.parameters()).dtype
            got = StableDiffusionPipeline.from_single_file(ckpt, config=folder, local_files_only=True,
                                                           torch_dtype=dtype, safety_checker=None)
            for part in ("unet", "vae", "text_encoder"):
                a, b = getattr(ref, part).state_dict(), getattr(got, part).state_dict()
                a = {k: v for k, v in a.items() if not k.endswith("position_ids")}
                b = {k: v for k, v in b.items() if not k.endswith("position_ids")}
                missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
                differ = [k for k in set(a) & set(b) if a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
                ok = not missing and not extra and not differ
                bad += not ok
                print(f"{os.path.basename(folder)} {part}: {len(a)} tensors, {'identical' if ok else 'DIFFER'}"
                      f"{'' if ok else f' missing {missing[:3]} extra {extra[:3]} differ {differ[:3]}'}")
    print("all identical" if not bad else f"{bad} parts differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
