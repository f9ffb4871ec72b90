#!/usr/bin/env python3
"""sower's CUDA backend vs diffusers/PyTorch on one GPU, ddpm-cifar10-32 architecture, same run.

usage: PYTHON_WITH_TORCH_AND_DIFFUSERS bench/gpu_vs_torch.py BUILD_DIR MODEL_DIR [--seconds 5] [--rounds 2]
  BUILD_DIR  a Release build of sower with SOWER_CUDA on (bench/bench_unet)
  MODEL_DIR  a flat ddpm-cifar10-32-architecture folder, e.g. BUILD_DIR/tests/models/cifar
Reports throughput in samples x denoising steps per second (one UNet forward per sample and step)
at batch 1, 64 and 256, alternating sower and torch in every round, best round of each; twice:
fp32 (no TF32 on either side), then TF32 (sower --tf32; torch with allow_tf32 for matmul and cuDNN).
sower: forward passes on samples already on the device, each waited for (its pipeline keeps the
samples on the GPU between steps); its own deterministic kernels (src/gpu/cuda_kernels.h).
torch: the same weights through diffusers' UNet2DModel on the device, with the deterministic
settings diffusers' reproducibility guide gives (use_deterministic_algorithms, cuDNN deterministic,
no benchmark autotuning), timed with torch.cuda.synchronize; input already on the device.
Timing only, never asserts.
"""
import argparse
import json
import os
import re
import subprocess
import sys

TORCH = r"""
import json, os, sys, time
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
import torch
from diffusers import UNet2DModel
torch.use_deterministic_algorithms(True)
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
tf32 = sys.argv[3] == "tf32"
torch.backends.cuda.matmul.allow_tf32 = tf32
torch.backends.cudnn.allow_tf32 = tf32
m = UNet2DModel.from_pretrained(sys.argv[1]).to("cuda").eval()
out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
with torch.no_grad():
    for b in (1, 64, 256):
        x = torch.randn(b, 3, 32, 32, device="cuda"); t = torch.full((b,), 500, device="cuda")
        m(x, t); torch.cuda.synchronize()
        n, s = 0, time.perf_counter()
        while True:
            m(x, t); n += 1
            torch.cuda.synchronize()
            if time.perf_counter() - s > float(sys.argv[2]): break
        out[str(b)] = b * n / (time.perf_counter() - s)
print(json.dumps(out))
"""


def sower_rate(build, model, batch, seconds, precision):
    r = subprocess.run([os.path.join(build, "bench", "bench_unet"), model, "1", str(batch), str(seconds), "--backend",
                        "cuda"] + (["--tf32"] if precision == "tf32" else []), capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    ms = float(re.search(r"([0-9.]+) ms/forward", r.stdout).group(1))
    identity = re.search(r"reps, (.*)\); fastest", r.stdout).group(1)
    return batch / (ms / 1e3), identity


def compare(a, precision):
    best_sower, best_torch, identity, torch_info = {}, {}, "", {}
    for _ in range(a.rounds):
        for b in (1, 64, 256):
            rate, identity = sower_rate(a.build, a.model, b, a.seconds, precision)
            if rate is None:
                print(f"sower {precision} batch {b}: failed: {identity}", file=sys.stderr)
                continue
            best_sower[b] = max(best_sower.get(b, 0.0), rate)
            print(f"  {precision} batch {b}: sower {rate:.1f} samples*steps/s", flush=True)
        r = subprocess.run([sys.executable, "-c", TORCH, a.model, str(a.seconds), precision], capture_output=True,
                           text=True)
        if r.returncode != 0:
            print("torch: failed: " + r.stderr.strip()[-2000:], file=sys.stderr)
            continue
        got = json.loads(r.stdout)
        torch_info = {k: got[k] for k in ("device", "torch")}
        for b in (1, 64, 256):
            best_torch[b] = max(best_torch.get(b, 0.0), got[str(b)])
        print(f"  {precision}: torch " + ", ".join(f"batch {b} {got[str(b)]:.1f}" for b in (1, 64, 256)), flush=True)
    print(f"\n{precision}")
    print(f"sower: {identity}")
    print(f"torch: {torch_info.get('torch', '?')} on {torch_info.get('device', '?')}, {precision}, deterministic")
    print("| batch | sower samples*steps/s | torch samples*steps/s | sower / torch |")
    print("| --- | --- | --- | --- |")
    for b in (1, 64, 256):
        s, t = best_sower.get(b), best_torch.get(b)
        ratio = f"{s / t:.2f}x" if s and t else "-"
        print(f"| {b} | {s and f'{s:.1f}' or '-'} | {t and f'{t:.1f}' or '-'} | {ratio} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("model")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    for precision in ("fp32", "tf32"):
        compare(a, precision)


if __name__ == "__main__":
    main()
