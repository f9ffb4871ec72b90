#!/usr/bin/env python3
"""SD 1.5's heaviest GPU operations one at a time: sower's CUDA backend (bench_gpu_ops, every route it has
for the precision) beside PyTorch on the same GPU (conv2d through cuDNN, deterministic and default;
scaled_dot_product_attention), per call and in TFLOP/s. Issue 20: which kernel family keeps sower's
bf16/fp16 forward from diffusers'. Timing only.

usage: python3 bench/gpu_ops_vs_torch.py BUILD/bench/bench_gpu_ops [--precisions bf16,fp16] [--seconds 0.5]
       [--only NAME_PART]
Needs torch with CUDA (the device machine's image has it); the shapes are bench_gpu_ops.c's table.
"""
import argparse
import json
import subprocess
import sys

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_case(name):
    """bench_gpu_ops.c's case names -> shapes: 'conv 3x3 320>320@64', 'cross-attn 320/8@64 x77'."""
    words = name.split()
    if words[0] in ("conv", "proj", "ff"):
        cin, rest = words[2].split(">")
        cout, hw = rest.split("@")
        return {"conv": True, "k": int(words[1][0]), "cin": int(cin), "cout": int(cout), "hw": int(hw)}
    channels, rest = words[1].split("/")
    heads, hw = rest.split("@")
    nk = int(words[2][1:]) if len(words) > 2 else 0
    return {"conv": False, "channels": int(channels), "heads": int(heads), "hw": int(hw), "nk": nk}


def time_call(fn, seconds):
    """Best milliseconds per call: groups of calls between CUDA events, for about `seconds`."""
    fn()
    torch.cuda.synchronize()
    best, spent, reps = float("inf"), 0.0, 1
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    while spent < seconds * 1e3 or best == float("inf"):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end)
        spent += ms
        best = min(best, ms / reps)
        reps = reps * 2 if ms < 50 else reps
    return best


def torch_times(case, batch, precision, seconds):
    """{label: ms} of torch's ways to run the case."""
    dtype, dev = DTYPES[precision], "cuda"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    g = torch.Generator(device=dev).manual_seed(0)
    out = {}
    if case["conv"]:
        x = torch.randn(batch, case["cin"], case["hw"], case["hw"], device=dev, dtype=dtype, generator=g)
        w = torch.randn(case["cout"], case["cin"], case["k"], case["k"], device=dev, dtype=dtype, generator=g) * 0.05
        b = torch.randn(case["cout"], device=dev, dtype=dtype, generator=g)
        for label, det in (("cudnn det", True), ("cudnn", False)):
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det, not det
            out[label] = time_call(lambda: F.conv2d(x, w, b, padding=case["k"] // 2), seconds)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, False
    else:
        n, dh = case["hw"] ** 2, case["channels"] // case["heads"]
        nk = case["nk"] or n
        q = torch.randn(batch, case["heads"], n, dh, device=dev, dtype=dtype, generator=g)
        k = torch.randn(batch, case["heads"], nk, dh, device=dev, dtype=dtype, generator=g)
        v = torch.randn(batch, case["heads"], nk, dh, device=dev, dtype=dtype, generator=g)
        out["sdpa"] = time_call(lambda: F.scaled_dot_product_attention(q, k, v), seconds)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench_gpu_ops")
    ap.add_argument("--precisions", default="bf16,fp16")
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    for precision in args.precisions.split(","):
        cmd = [args.bench_gpu_ops, precision, str(args.seconds)] + ([args.only] if args.only else [])
        run = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(run.stderr)
        rows = {}
        for line in run.stdout.splitlines():
            r = json.loads(line)
            rows.setdefault((r["op"], r["batch"]), {"tflop": r["tflop"]})[r["route"]] = r["ms"]
        if run.returncode != 0 or not rows:
            print(f"{precision}: bench_gpu_ops failed (rc {run.returncode})")
            continue
        print(f"\n{precision}: ms per call (TFLOP/s)")
        print("| op | batch | sower routes | torch | sower speed-up (best of each) |")
        print("| --- | --- | --- | --- | --- |")
        for (op, batch), r in rows.items():
            tf = r.pop("tflop")
            theirs = torch_times(parse_case(op), batch, precision, args.seconds)
            fmt = lambda d: ", ".join(f"{k} {ms:.3f} ({tf / ms * 1e3:.0f})" for k, ms in d.items())
            ratio = min(theirs.values()) / min(r.values())
            print(f"| {op} | {batch} | {fmt(r)} | {fmt(theirs)} | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
