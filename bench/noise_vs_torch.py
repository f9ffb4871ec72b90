#!/usr/bin/python3
"""Noise throughput: sower's generator next to torch.randn, same machine, same run.

usage: /usr/bin/python3 bench/noise_vs_torch.py BUILD_DIR [SECONDS_PER_CASE]
Each case seeds a fresh generator per call (as a renderer seeds one per sample), single thread.
torch comes from Debian's python3-torch or a venv; this is a benchmark, never a test.
"""
import subprocess
import sys
import time

import torch

build = sys.argv[1]
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
torch.set_num_threads(1)

CASES = [  # name as bench_noise prints it, shape, dtype
    ("f32_1x3x32x32 torch-cpu", (1, 3, 32, 32), torch.float32),
    ("f32_1x4x64x64 torch-cpu", (1, 4, 64, 64), torch.float32),
    ("f32_1x4x128x128 torch-cpu", (1, 4, 128, 128), torch.float32),
    ("f64_1x4x64x64", (1, 4, 64, 64), torch.float64),
    ("f32_8", (8,), torch.float32),
]


def torch_rate(shape, dtype):
    numel = 1
    for d in shape:
        numel *= d
    g = torch.Generator("cpu")
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(16):
            g.manual_seed(calls)
            torch.randn(shape, dtype=dtype, generator=g)
            calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * numel / elapsed


ours = {}
out = subprocess.run([f"{build}/bench/bench_noise", str(seconds)], capture_output=True, text=True, check=True).stdout
for line in out.splitlines():
    parts = line.rsplit(None, 2)
    ours[parts[0].strip()] = float(parts[2])

print(f"torch {torch.__version__}, 1 thread; values per second (higher is better)")
print(f"{'case':34} {'sower':>12} {'torch':>12} {'sower/torch':>12}")
for name, shape, dtype in CASES:
    t = torch_rate(shape, dtype)
    s = ours[name]
    print(f"{name:34} {s:12.4g} {t:12.4g} {s / t:12.2f}")
for name, rate in ours.items():
    if name not in {c[0] for c in CASES}:
        print(f"{name:34} {rate:12.4g} {'-':>12} {'-':>12}")
