#!/usr/bin/env python3
"""sower vs diffusers/PyTorch on the ddpm-cifar10-32 architecture, same machine, same run.

usage: PYTHON_WITH_DIFFUSERS bench/unet_vs_torch.py BUILD_DIR MODEL_DIR [--threads 2] [--rounds 3]
                                                    [--kernels auto,haswell] [--torch-isa native,avx2] [--no-render]
  BUILD_DIR  a Release build of sower (bench/bench_unet, bench/bench_sgemm, sower)
  MODEL_DIR  a flat ddpm-cifar10-32-architecture folder, e.g. the test suite's
             BUILD_DIR/tests/models/cifar (weights made by tests/make_formula_checkpoint)
Runs, alternating sower and torch in every round (this machine's speed drifts), and reports the
best round of each: UNet forward ms per sample at batch 1, 8, 32; a 50-step DDIM render of 8 seeds
(wall time and peak RSS of the whole process); this machine's SGEMM peak through sower's BLIS path;
sower's per-operation profile at batch 8. --kernels auto,blis,haswell runs sower's part once per BLIS
kernel family in every round (SOWER_KERNELS: auto is sower's choice, blis BLIS's own detection), side by
side with the same torch. --torch-isa native,avx2 runs torch once per instruction set in every round:
avx2 caps oneDNN's convolutions (DNNL_MAX_CPU_ISA=AVX2), the BLAS torch links (Debian's libblas alternative,
BLIS here: BLIS_ARCH_TYPE=haswell; OpenBLAS: OPENBLAS_CORETYPE=Haswell) and ATen's kernels
(ATEN_CPU_CAPABILITY=avx2), so that `--kernels haswell --torch-isa avx2` compares both as an AVX2-only CPU
(a Zen 2/3 or pre-Skylake-SP node) would run them, on an AVX-512 machine. One forward is 12.44 GFLOP as a direct convolution counts
it; "% peak" is that count over sower's time against the SGEMM peak, so it passes 100% where the
Winograd route (src/cpu/winograd.h) does fewer multiplies. Timing only, never asserts.
PyTorch runs with torch.set_num_threads(THREADS), no_grad, oneDNN (mkldnn) convolutions.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

GFLOP_PER_FORWARD = 12.44

TORCH_FORWARD = r"""
import json, sys, time, torch, safetensors.torch
from diffusers import UNet2DModel
torch.set_num_threads(int(sys.argv[2]))
m = UNet2DModel.from_pretrained(sys.argv[1]).eval()
out = {}
with torch.no_grad():
    for b in (1, 8, 32):
        x = torch.randn(b, 3, 32, 32); t = torch.tensor(500)
        m(x, t)
        n, s = 0, time.perf_counter()
        while True:
            m(x, t); n += 1
            if time.perf_counter() - s > float(sys.argv[3]): break
        out[b] = (time.perf_counter() - s) / n / b * 1e3
print(json.dumps(out))
"""

TORCH_RENDER = r"""
import sys, time, torch, safetensors.torch
from diffusers import DDIMPipeline
torch.set_num_threads(int(sys.argv[2]))
pipe = DDIMPipeline.from_pretrained(sys.argv[1])
gens = [torch.Generator("cpu").manual_seed(s) for s in range(8)]
s = time.perf_counter()
pipe(batch_size=8, generator=gens, num_inference_steps=50, eta=0.0, output_type="np")
print(time.perf_counter() - s)
"""


# What caps torch at an instruction set: oneDNN (convolutions), the BLAS it links (linear layers), ATen.
TORCH_ISA_ENV = {
    "native": {},
    "avx2": {"DNNL_MAX_CPU_ISA": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "BLIS_ARCH_TYPE": "haswell",
             "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2"},
}


def child_rss_mb():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def run_measured(argv, env=None):
    """Runs argv in a fresh process; returns (stdout, wall seconds, peak RSS MiB of that process)."""
    wrapper = ("import resource,subprocess,sys,time;s=time.perf_counter();"
               "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
               "w=time.perf_counter()-s;sys.stderr.write(r.stderr);"
               "print(r.stdout,end='');print('@@%f %f'%(w,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024))")
    r = subprocess.run([sys.executable, "-c", wrapper] + argv, capture_output=True, text=True, check=True, env=env)
    body, _, tail = r.stdout.rpartition("@@")
    wall, rss = map(float, tail.split())
    return body, wall, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--kernels", default="auto", help="comma-separated SOWER_KERNELS values to compare")
    ap.add_argument("--torch-isa", default="native", help="comma-separated: native, avx2 (torch capped at AVX2)")
    ap.add_argument("--no-render", action="store_true", help="forwards only: no 50-step renders (a quicker run)")
    a = ap.parse_args()
    families = a.kernels.split(",")
    isas = a.torch_isa.split(",")
    for isa in isas:
        if isa not in TORCH_ISA_ENV:
            ap.error(f"--torch-isa {isa}: expected one of {', '.join(TORCH_ISA_ENV)}")
    env_note = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS") if k in os.environ}
    best = {}

    def keep(key, value, lower_is_better=True):
        if key not in best or (value < best[key] if lower_is_better else value > best[key]):
            best[key] = value

    identity = {}
    for rnd in range(a.rounds):
        for fam in families:
            env = dict(os.environ, SOWER_KERNELS=fam)
            for b in (1, 8, 32):
                out = subprocess.run([f"{a.build}/bench/bench_unet", a.model, str(a.threads), str(b), str(a.seconds)],
                                     capture_output=True, text=True, check=True, env=env).stdout
                keep(("sower", fam, b), float(re.search(r"([\d.]+) ms/sample", out).group(1)))
            if not a.no_render:
                _, wall, rss = run_measured(["env", f"SOWER_KERNELS={fam}", f"{a.build}/sower", "sample", a.model,
                                             "--seeds", "0-7", "--steps", "50", "--batch", "8", "--threads",
                                             str(a.threads), "--force", "-o", "/tmp/sower_bench.npy"])
                keep(("sower_render", fam), wall)
                keep(("sower_rss", fam), rss)
            out = subprocess.run([f"{a.build}/bench/bench_sgemm", str(a.threads), "1.5"], capture_output=True, text=True,
                                 check=True, env=env).stdout
            keep(("sgemm", fam), float(re.search(r"peak threads \d+: ([\d.]+)", out).group(1)), lower_is_better=False)
            info = subprocess.run([f"{a.build}/sower", "info", a.model], capture_output=True, text=True, env=env).stdout
            identity[fam] = (re.search(r"CPU kernels:\s+(BLIS \S+ \S+)", info) or re.search("(.*)", "?")).group(1)
        for isa in isas:
            env = dict(os.environ, **TORCH_ISA_ENV[isa])
            body, _, _ = run_measured([sys.executable, "-c", TORCH_FORWARD, a.model, str(a.threads), str(a.seconds)],
                                      env)
            for b, ms in json.loads(body).items():
                keep(("torch", isa, int(b)), ms)
            if not a.no_render:
                body, wall, rss = run_measured([sys.executable, "-c", TORCH_RENDER, a.model, str(a.threads)], env)
                keep(("torch_render", isa), float(body.strip().splitlines()[-1]))
                keep(("torch_render_wall", isa), wall)
                keep(("torch_rss", isa), rss)
        print(f"round {rnd + 1}/{a.rounds} done", file=sys.stderr, flush=True)

    print(f"threads {a.threads}, best of {a.rounds} rounds (sower and torch alternating); {env_note or ''}")
    for fam in families:
        peak = best[("sgemm", fam)]
        print(f"\nSOWER_KERNELS={fam}: {identity[fam]}; SGEMM peak ({a.threads} threads): {peak:.1f} GFLOP/s")
        for isa in isas:
            print(f"{'UNet forward':24} {'sower ms/sample':>16} {'torch ' + isa + ' ms':>16} {'speed-up':>9} "
                  f"{'% peak (direct FLOP)':>21}")
            for b in (1, 8, 32):
                s, t = best[("sower", fam, b)], best[("torch", isa, b)]
                pct = 100 * GFLOP_PER_FORWARD / (s / 1e3) / peak
                print(f"{'batch ' + str(b):24} {s:16.1f} {t:16.1f} {t / s:8.2f}x {pct:20.0f}%")
            if a.no_render:
                continue
            render, torch_wall = best[("sower_render", fam)], best[("torch_render_wall", isa)]
            print(f"{'DDIM 50 steps, 8 seeds':24} {render:15.1f}s {torch_wall:15.1f}s {torch_wall / render:8.2f}x   "
                  f"(process wall time; torch loop alone {best[('torch_render', isa)]:.1f}s)")
            rss, torch_rss = best[("sower_rss", fam)], best[("torch_rss", isa)]
            print(f"{'peak RSS (render)':24} {rss:13.0f}MiB {torch_rss:13.0f}MiB {rss / torch_rss:8.2f}x")
    prof = subprocess.run([f"{a.build}/bench/bench_unet", a.model, str(a.threads), "8", str(a.seconds), "--profile"],
                          capture_output=True, text=True, check=True, env=dict(os.environ, SOWER_KERNELS=families[0])).stdout
    print(f"sower per-operation profile, batch 8, SOWER_KERNELS={families[0]}:")
    print("\n".join(prof.splitlines()[1:]))


if __name__ == "__main__":
    main()
