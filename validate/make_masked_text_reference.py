#!/usr/bin/env python3
"""Reference for a text encoder whose config says use_attention_mask: true (some fine-tunes ship one): diffusers'
StableDiffusionPipeline.encode_prompt then passes the tokenizer's attention_mask to CLIPTextModel, so padding
positions attend to the prompt's tokens only, and their embeddings (which the UNet cross-attends to) change.

usage: /opt/refenv/bin/python validate/make_masked_text_reference.py [--out tests/data/sd]
  (torch 1.13.1, transformers 4.46.3, diffusers 0.31; about 10 s)
Reads tests/data/sd/tiny-sd1's tokenizer and text encoder, with use_attention_mask set to true, and writes
  text_masked_reference.json               per case: prompt, clip_skip, row, the fp32-vs-fp64 yardstick, and
                                           how far the masked embeddings are from the unmasked ones (the gap a
                                           sower that ignored the key would show)
  text_masked_embeddings_tiny-sd1.npy      (cases, 77, hidden) float32: encode_prompt's prompt_embeds
"""
import argparse
import copy
import json
import os

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTextModel, CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["a cat", "", "a photograph of an astronaut riding a horse on the moon, highly detailed",
           " ".join(["tokens"] * 90)]  # the last is truncated: every position real, the mask all ones
CLIP_SKIPS = [None, 1]


def encode(tokenizer, model, prompt, clip_skip):
    pipe = StableDiffusionPipeline.__new__(StableDiffusionPipeline)  # the text side alone
    pipe.tokenizer, pipe.text_encoder, pipe.unet = tokenizer, model, None
    pipe._lora_scale = None
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompt, "cpu", 1, False, clip_skip=clip_skip)
    return embeds[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "sd"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = os.path.join(ROOT, "tests", "data", "sd", "tiny-sd1")
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    plain = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
    masked = copy.deepcopy(plain)
    masked.config.use_attention_mask = True
    masked64 = copy.deepcopy(masked).double()
    cases, rows = [], []
    for clip_skip in CLIP_SKIPS:
        for prompt in PROMPTS:
            want = encode(tokenizer, masked, prompt, clip_skip)
            torch.set_default_dtype(torch.float64)  # torch 1.13 builds the fp64 causal mask in the default dtype
            wide = encode(tokenizer, masked64, prompt, clip_skip)
            torch.set_default_dtype(torch.float32)
            unmasked = encode(tokenizer, plain, prompt, clip_skip)
            cases.append({"prompt": prompt, "clip_skip": clip_skip or 0, "row": len(rows),
                          "torch_fp64_yardstick": float((want.double() - wide).abs().max()),
                          "unmasked_gap": float((want - unmasked).abs().max())})
            rows.append(want.numpy())
    np.save(os.path.join(args.out, "text_masked_embeddings_tiny-sd1.npy"), np.stack(rows).astype(np.float32))
    with open(os.path.join(args.out, "text_masked_reference.json"), "w") as f:
        json.dump({"pipeline": "tiny-sd1", "config": {"use_attention_mask": True},
                   "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
                                "transformers": __import__("transformers").__version__},
                   "cases": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(f"clip_skip {c['clip_skip']} {c['prompt'][:30]!r}: yardstick {c['torch_fp64_yardstick']:.3g}, "
              f"unmasked gap {c['unmasked_gap']:.3g}")


if __name__ == "__main__":
    main()
