#!/usr/bin/env python3
"""sower vs diffusers/PyTorch on the full Stable Diffusion 1.5 architecture, same machine, same run.

usage: PYTHON_WITH_DIFFUSERS bench/sd_vs_torch.py BUILD_DIR WORK_DIR [--threads 2] [--steps 3] [--batches 1,2]
  BUILD_DIR  a Release build of sower
  WORK_DIR   where the random-weight pipeline is made once (about 2.2 GB: fp16 safetensors, as real SD
             checkpoints are mostly stored; both sides compute in float32)

The pipeline: StableDiffusionPipeline.save_pretrained of SD 1.5's architecture with random weights
(torch.manual_seed(0)): UNet2DConditionModel (860M parameters, its config's defaults with
cross_attention_dim 768), CLIPTextModel ViT-L/14 (123M), AutoencoderKL (84M, unused: latents out), PNDM's
config. The tokenizer is tests/data/tokenizer/sd1 (the real CLIP merges cut to 3000: tokenization is
negligible either way; the text encoder keeps the full 49408-token embedding).

For each batch B (images), sower and torch alternate, each in its own process:
  sower sample DIR --prompt P --seeds 0..B-1 --batch B --steps S --scheduler ddim (guidance 7.5)
  StableDiffusionPipeline([P]*B, generator=[B CPU generators], num_inference_steps=S, guidance 7.5,
                          output_type="latent") after DDIMScheduler.from_config
Reported: seconds per denoising step (the UNet runs on 2B samples: classifier-free guidance), the text
side (encode_prompt of prompt and negative prompt, loading excluded), and the
peak RSS of the whole process (os.wait4). torch runs with torch.set_num_threads(THREADS), no_grad
(the pipeline's own), oneDNN convolutions, its default attention (torch 1.13: AttnProcessor, every
head's score matrix at once). Timing only, never asserts.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed"

MAKE = r"""
import sys, torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
torch.manual_seed(0)
tok = CLIPTokenizer.from_pretrained(sys.argv[2])
text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"))
unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                    up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=2, sample_size=512)
sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=False,
                      skip_prk_steps=True, steps_offset=1)
pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
pipe.to(torch.float16).save_pretrained(sys.argv[1], safe_serialization=True)
"""

TORCH = r"""
import json, sys, time, torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
torch.set_num_threads(int(sys.argv[2]))
b, steps, prompt = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], torch_dtype=torch.float32, safety_checker=None,
                                               requires_safety_checker=False)
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
with torch.no_grad():
    s = time.perf_counter()
    pipe.encode_prompt([prompt] * b, "cpu", 1, True)
    text = time.perf_counter() - s
gens = [torch.Generator("cpu").manual_seed(i) for i in range(b)]
s = time.perf_counter()
pipe([prompt] * b, generator=gens, num_inference_steps=steps, guidance_scale=7.5, output_type="latent")
total = time.perf_counter() - s
print(json.dumps({"text": text, "per_step": (total - text) / steps}))
"""


def run_with_rss(argv):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 0)
        os.execvp(argv[0], argv)
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024.0


def cpu_model():
    """lscpu's model name: the machine a figure holds on."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("work")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batches", default="1,2")
    args = ap.parse_args()
    folder = os.path.join(args.work, "sd15-random")
    if not os.path.exists(os.path.join(folder, "model_index.json")):
        print(f"making {folder} (random SD 1.5 weights, fp16 files) ...", flush=True)
        subprocess.run([sys.executable, "-c", MAKE, folder, os.path.join(ROOT, "tests", "data", "tokenizer", "sd1")],
                       check=True)
    print(f"CPU: {cpu_model()}; {args.threads} threads; {args.steps} DDIM steps, guidance 7.5, 512x512 (64x64 latents)")
    results = []
    for b in [int(x) for x in args.batches.split(",")]:
        out_npy = os.path.join(args.work, "sower.npy")
        log = os.path.join(args.work, "sower.log")
        sower = ["sh", "-c", f'exec "$0" "$@" 2>{log}', os.path.join(args.build, "sower"), "sample", folder,
                 "--prompt", PROMPT, "--seeds", f"0-{b - 1}", "--batch", str(b), "--steps", str(args.steps),
                 "--threads", str(args.threads), "--force", "-o", out_npy]
        torch_json = os.path.join(args.work, "torch.json")
        torch_argv = ["sh", "-c", f'exec "$0" "$@" >{torch_json} 2>/dev/null', sys.executable, "-c", TORCH, folder,
                      str(args.threads), str(b), str(args.steps), PROMPT]
        rc, wall, rss = run_with_rss(sower)
        line = [l for l in open(log).read().splitlines() if "timings:" in l]
        if rc != 0 or not line:
            sys.exit(f"sower failed ({rc}): {open(log).read()[-2000:]}")
        # "  timings: text side T s, render R s (P s per step)"
        words = line[0].replace("(", "").split()
        s_text, s_step = float(words[3]), float(words[8])
        rc, t_wall, t_rss = run_with_rss(torch_argv)
        if rc != 0:
            sys.exit(f"torch failed ({rc})")
        t = json.load(open(torch_json))
        results.append((b, s_step, t["per_step"], s_text, t["text"], rss, t_rss, wall, t_wall))
        print(f"batch {b}: per step sower {s_step:.2f} s, torch {t['per_step']:.2f} s ({t['per_step'] / s_step:.2f}x); "
              f"text side sower {s_text:.2f} s, torch {t['text']:.2f} s; "
              f"peak RSS sower {rss:.0f} MB, torch {t_rss:.0f} MB ({rss / t_rss:.2f}); "
              f"process wall sower {wall:.0f} s, torch {t_wall:.0f} s", flush=True)


if __name__ == "__main__":
    main()
