#!/usr/bin/env python3
"""sower vs PyTorch layer by layer: the 3x3 convolutions of ddpm-cifar10-32 (batch 1 and 8) and Stable
Diffusion 1.5's layers at 512x512 (64x64 latents, 320-1280 channels, attention over 4096 tokens, batch 2 =
one image with classifier-free guidance), same machine, same run.

usage: PYTHON_WITH_DIFFUSERS bench/layers_vs_torch.py BUILD_DIR [--threads 2] [--rounds 2] [--seconds 1]
                                                      [--kernels auto,skx] [--only NAME_PART]
  BUILD_DIR  a Release build of sower (bench/bench_layers, bench/bench_sgemm)

The layers and their shapes are bench/bench_layers.c's (its names are parsed here, so both sides run the
same list). In every round sower runs once per kernel family (SOWER_KERNELS), then torch; each figure is
the best call of the best round. torch: torch.set_num_threads(THREADS), no_grad, nn.Conv2d (oneDNN),
diffusers' Attention (its default processor: torch 1.13 has no SDPA, so AttnProcessor, every head's
score matrix at once) and FeedForward(activation_fn="geglu"), nn.LayerNorm; sower: op_conv2d (the route
the UNet takes: Winograd or packed direct), the transformer's sub-layers as src/model/unet.c runs them.
"% peak" counts the direct computation's FLOP (Winograd does fewer multiplies, so it can pass 100%)
against bench_sgemm's peak for the family. Timing only, never asserts.
"""
import argparse
import json
import os
import re
import subprocess
import sys

TORCH_LAYERS = r"""
import json, re, sys, time, torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
torch.set_num_threads(int(sys.argv[1]))
seconds = float(sys.argv[2])
torch.manual_seed(0)

def build(name, batch):
    _, kind, shape = name.split(" ", 2)  # "sd conv 320>640@32", "sd self-attn 320@64"
    nums = [int(x) for x in re.findall(r"\d+", shape)]
    if kind == "conv":
        cin, cout, hw = nums
        m = torch.nn.Conv2d(cin, cout, 3, padding=1)
        return m, (torch.randn(batch, cin, hw, hw),)
    c, hw = nums
    x = torch.randn(batch, hw * hw, c)
    if kind == "self-attn":
        return Attention(c, heads=8, dim_head=c // 8), (x,)
    if kind == "cross-attn":
        return Attention(c, cross_attention_dim=768, heads=8, dim_head=c // 8), (x, torch.randn(batch, 77, 768))
    if kind == "geglu-ff":
        return FeedForward(c, activation_fn="geglu"), (x,)
    if kind == "layer-norm":
        return torch.nn.LayerNorm(c), (x,)
    raise SystemExit(f"unknown layer {name}")

out = []
with torch.no_grad():
    for name, batch in json.loads(sys.stdin.read()):
        m, args = build(name, batch)
        m.eval()
        m(*args)
        best, start = 1e30, time.perf_counter()
        while True:
            t0 = time.perf_counter(); m(*args); t = time.perf_counter() - t0
            best = min(best, t)
            if time.perf_counter() - start > seconds: break
        out.append([name, batch, best * 1e3])
        print(f"torch {name} b{batch}: {best * 1e3:.2f} ms", file=sys.stderr, flush=True)
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--kernels", default="auto", help="comma-separated SOWER_KERNELS values to compare")
    ap.add_argument("--only", default="", help="only layers whose name contains this")
    a = ap.parse_args()
    families = a.kernels.split(",")
    best, layers, identity = {}, [], {}

    def keep(key, value, lower_is_better=True):
        if key not in best or (value < best[key] if lower_is_better else value > best[key]):
            best[key] = value

    for rnd in range(a.rounds):
        for fam in families:
            env = dict(os.environ, SOWER_KERNELS=fam)
            r = subprocess.run([f"{a.build}/bench/bench_layers", str(a.threads), str(a.seconds)] +
                               ([a.only] if a.only else []), capture_output=True, text=True, check=True, env=env)
            identity[fam] = r.stderr.strip().split(", ", 1)[-1]
            for line in r.stdout.splitlines():
                row = json.loads(line)
                key = (row["layer"], row["batch"])
                if key not in [(n, b) for n, b, _ in layers]:
                    layers.append((row["layer"], row["batch"], row["gflop"]))
                keep(("sower", fam) + key, row["ms"])
            out = subprocess.run([f"{a.build}/bench/bench_sgemm", str(a.threads), "1.5"], capture_output=True,
                                 text=True, check=True, env=env).stdout
            keep(("sgemm", fam), float(re.search(r"peak threads \d+: ([\d.]+)", out).group(1)), lower_is_better=False)
        r = subprocess.run([sys.executable, "-c", TORCH_LAYERS, str(a.threads), str(a.seconds)], check=True,
                           input=json.dumps([[n, b] for n, b, _ in layers]), capture_output=True, text=True)
        for name, batch, ms in json.loads(r.stdout):
            keep(("torch", name, batch), ms)
        print(f"round {rnd + 1}/{a.rounds} done", file=sys.stderr, flush=True)

    print(f"{a.threads} threads, best of {a.rounds} rounds (sower and torch alternating), "
          f"torch {subprocess.run([sys.executable, '-c', 'import torch; print(torch.__version__)'], capture_output=True, text=True).stdout.strip()}")
    for fam in families:
        peak = best[("sgemm", fam)]
        print(f"\nSOWER_KERNELS={fam}: {identity[fam]}; SGEMM peak ({a.threads} threads): {peak:.1f} GFLOP/s\n")
        print("| layer | batch | sower ms | torch ms | speed-up | sower % of SGEMM peak |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, batch, gflop in layers:
            s, t = best[("sower", fam, name, batch)], best[("torch", name, batch)]
            pct = f"{100 * gflop / (s / 1e3) / peak:.0f}%" if gflop else ""
            print(f"| {name} | {batch} | {s:.2f} | {t:.2f} | {t / s:.2f}x | {pct} |")


if __name__ == "__main__":
    main()
