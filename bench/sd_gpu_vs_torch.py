#!/usr/bin/env python3
"""Stable Diffusion 1.5's UNet on one GPU: sower's CUDA backend vs diffusers/PyTorch, same run, same weights.

usage: PYTHON_WITH_TORCH_AND_DIFFUSERS bench/sd_gpu_vs_torch.py BENCH_UNET MODEL_DIR [--seconds 2]
                                                                [--images 1,4,16] [--steps 50]
                                                                [--sower-precisions fp32,tf32,bf16,fp16]
  BENCH_UNET  sower's bench/bench_unet from a Release build with SOWER_CUDA on
  MODEL_DIR   a pipeline folder holding unet/ (config.json, diffusion_pytorch_model.safetensors) of the SD
              1.5 architecture (sample_size 64: 512x512 images), model_index.json and scheduler/, as
              src/gpu/device/check.sh makes it: bench/sd15_unet_config.json (SD 1.5's UNet config) with
              formula weights from tests/make_formula_checkpoint, beside tests/data/sd/std-sd1's index and
              scheduler folder

What is timed: the denoising loop's cost, which is the UNet's: one classifier-free-guided step of N
images is one forward pass at batch 2N (uncond and cond rows) over 64x64x4 latents and 77 text tokens
(random embeddings, already on the device). images/s = N / (steps x seconds per forward). The text
encoder (once per prompt), the scheduler's element-wise step and the VAE decode are left out on both
sides. sower: fp32 (fmaf, no TF32), and tf32, bf16 and fp16 (tensor cores, opt-in), its own deterministic kernels,
activations already on the device, each forward waited for. diffusers: UNet2DConditionModel from the
same folder in fp32 (TF32 off, deterministic) and fp16, with torch.use_deterministic_algorithms(True) +
cuDNN deterministic (no benchmark autotuning), and fp16 with torch's defaults (not deterministic);
torch.cuda.synchronize after each forward. Peak memory: torch.cuda.max_memory_allocated for torch;
for sower the largest nvidia-smi memory.used seen while it ran, less the idle figure (so it includes
its CUDA context, about 0.5 GB, which torch's figure does not). Timing only, never asserts.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

TORCH = r"""
import json, os, sys, time
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
import torch
from diffusers import UNet2DConditionModel
folder, seconds, images = sys.argv[1], float(sys.argv[2]), [int(n) for n in sys.argv[3].split(",")]
out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
import diffusers
out["diffusers"] = diffusers.__version__
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
for mode in ("fp32-det", "fp16-det", "fp16"):
    det = mode.endswith("-det")
    torch.use_deterministic_algorithms(det)
    torch.backends.cudnn.deterministic = det
    torch.backends.cudnn.benchmark = False
    dtype = torch.float16 if mode.startswith("fp16") else torch.float32
    m = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype).to("cuda").eval()
    for n in images:
        b = 2 * n
        x = torch.randn(b, 4, 64, 64, device="cuda", dtype=dtype)
        c = torch.randn(b, 77, m.config.cross_attention_dim, device="cuda", dtype=dtype)
        t = torch.full((b,), 500, device="cuda")
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            m(x, t, encoder_hidden_states=c); torch.cuda.synchronize()
            k, s = 0, time.perf_counter()
            while True:
                m(x, t, encoder_hidden_states=c); k += 1
                torch.cuda.synchronize()
                if time.perf_counter() - s > seconds: break
        out[f"{mode} {n}"] = {"s_per_forward": (time.perf_counter() - s) / k,
                              "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    del m
    torch.cuda.empty_cache()
print(json.dumps(out))
"""


def gpu_memory_used_mib():
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                           capture_output=True, text=True, timeout=10)
        return float(r.stdout.split()[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def sower_forward(bench_unet, folder, batch, seconds, precision):
    """Seconds per forward at this batch, and the peak GPU memory seen (GiB, None if unknown)."""
    idle = gpu_memory_used_mib()
    peak = [idle]
    done = threading.Event()

    def sample():
        while not done.is_set():
            used = gpu_memory_used_mib()
            if used is not None and peak[0] is not None:
                peak[0] = max(peak[0], used)
            time.sleep(0.2)

    watcher = threading.Thread(target=sample)
    watcher.start()
    argv = [bench_unet, folder, "1", str(batch), str(seconds), "--backend", "cuda", "--precision", precision]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    done.set()
    watcher.join()
    m = re.search(r"([0-9.]+) ms/forward", r.stdout)
    if r.returncode != 0 or not m:
        print(f"sower batch {batch} {precision}: failed: {r.stdout}{r.stderr}", file=sys.stderr)
        return None, None
    gib = (peak[0] - idle) / 1024 if idle is not None and peak[0] is not None else None
    return float(m.group(1)) / 1e3, gib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench_unet")
    ap.add_argument("model_dir")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--images", default="1,4,16")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--sower-precisions", default="fp32,tf32,bf16,fp16")
    a = ap.parse_args()
    images = [int(n) for n in a.images.split(",")]
    rows = {}
    for n in images:
        for precision in a.sower_precisions.split(","):
            rows[(f"sower {precision}", n)] = sower_forward(a.bench_unet, a.model_dir, 2 * n, a.seconds, precision)
    r = subprocess.run([sys.executable, "-c", TORCH, a.model_dir, str(a.seconds), a.images], capture_output=True,
                       text=True, timeout=900)
    torch = {}
    if r.returncode == 0:
        torch = json.loads(r.stdout.strip().splitlines()[-1])
        for mode, label in (("fp32-det", "diffusers fp32 deterministic"), ("fp16-det", "diffusers fp16 deterministic"),
                            ("fp16", "diffusers fp16 (torch defaults)")):
            for n in images:
                e = torch.get(f"{mode} {n}")
                rows[(label, n)] = (e["s_per_forward"], e["peak_gib"]) if e else (None, None)
    else:
        print(f"torch side failed: {r.stderr[-2000:]}", file=sys.stderr)
    print(f"SD 1.5 UNet, 512x512 (64x64 latents), CFG (batch 2N per step), {a.steps} steps; "
          f"{torch.get('device', '?')}, torch {torch.get('torch', '?')}, diffusers {torch.get('diffusers', '?')}")
    print("| images N | " + " | ".join(f"{label}" for label in dict.fromkeys(k[0] for k in rows)) + " |")
    print("| --- |" + " --- |" * len(dict.fromkeys(k[0] for k in rows)))
    for n in images:
        cells = []
        for label in dict.fromkeys(k[0] for k in rows):
            s, gib = rows.get((label, n), (None, None))
            cells.append("failed" if s is None else
                         f"{n / (a.steps * s):.3f} img/s ({1e3 * s:.0f} ms/fwd, {gib:.1f} GiB)" if gib is not None else
                         f"{n / (a.steps * s):.3f} img/s ({1e3 * s:.0f} ms/fwd)")
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
