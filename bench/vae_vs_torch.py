#!/usr/bin/env python3
"""sower vs diffusers/PyTorch: Stable Diffusion 1.5's VAE decode (AutoencoderKL, 84M parameters), same
machine, same run.

usage: PYTHON_WITH_DIFFUSERS bench/vae_vs_torch.py BUILD_DIR WORK_DIR [--threads 2] [--batches 1,2] [--size 64]
  BUILD_DIR  a Release build of sower (bench/bench_vae)
  WORK_DIR   where bench/sd_vs_torch.py makes (or made) its random-weight SD 1.5 pipeline (fp16 files)

For each batch B, sower and torch alternate, each in its own process, decoding B latents (SIZE x SIZE:
64 gives 512x512 images) as StableDiffusionPipeline does: vae.decode(latents / scaling_factor).sample,
float32 (torch: torch.set_num_threads(THREADS), no_grad, the whole batch in one call, its default
attention; sower: bench_vae, one image at a time). Reported: decode seconds per image (loading excluded)
and the peak RSS of the whole process (os.wait4). Timing only, never asserts.
"""
import argparse
import json
import os
import subprocess
import sys

from sd_vs_torch import MAKE, ROOT, cpu_model, run_with_rss

TORCH = r"""
import json, sys, time, torch
from diffusers import AutoencoderKL
torch.set_num_threads(int(sys.argv[2]))
b, size = int(sys.argv[3]), int(sys.argv[4])
vae = AutoencoderKL.from_pretrained(sys.argv[1] + "/vae", torch_dtype=torch.float32).eval()
z = torch.randn(b, vae.config.latent_channels, size, size, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    s = time.perf_counter()
    vae.decode(z / vae.config.scaling_factor).sample
    decode = time.perf_counter() - s
print(json.dumps({"per_image": decode / b}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("work")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,2")
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    folder = os.path.join(args.work, "sd15-random")
    if not os.path.exists(os.path.join(folder, "model_index.json")):
        print(f"making {folder} (random SD 1.5 weights, fp16 files) ...", flush=True)
        subprocess.run([sys.executable, "-c", MAKE, folder, os.path.join(ROOT, "tests", "data", "tokenizer", "sd1")],
                       check=True)
    px = args.size * 8
    print(f"CPU: {cpu_model()}; {args.threads} threads; SD 1.5 VAE decode, {args.size}x{args.size} latents -> {px}x{px}")
    for b in [int(x) for x in args.batches.split(",")]:
        out = os.path.join(args.work, "bench_vae.json")
        sower = ["sh", "-c", f'exec "$0" "$@" >{out}', os.path.join(args.build, "bench", "bench_vae"), folder,
                 str(args.size), str(args.size), str(b), str(args.threads)]
        rc, _, rss = run_with_rss(sower)
        if rc != 0:
            sys.exit(f"bench_vae failed ({rc})")
        s = json.load(open(out))
        torch_json = os.path.join(args.work, "torch_vae.json")
        torch_argv = ["sh", "-c", f'exec "$0" "$@" >{torch_json} 2>/dev/null', sys.executable, "-c", TORCH, folder,
                      str(args.threads), str(b), str(args.size)]
        rc, _, t_rss = run_with_rss(torch_argv)
        if rc != 0:
            sys.exit(f"torch failed ({rc})")
        t = json.load(open(torch_json))
        print(f"batch {b}: per image sower {s['per_image']:.2f} s, torch {t['per_image']:.2f} s "
              f"({t['per_image'] / s['per_image']:.2f}x); peak RSS sower {rss:.0f} MB, torch {t_rss:.0f} MB "
              f"({rss / t_rss:.2f})", flush=True)


if __name__ == "__main__":
    main()
