#!/usr/bin/python3
"""The CUDA backend end to end: bitwise run to run and across batch sizes, close to the CPU
reference, the opt-in tensor-core arithmetics tf32, fp16 and bf16 (bitwise across batches, close to
fp32), and a 2-rank
`sower run` on one GPU whose verification passes. With --prompt among the extra arguments (a Stable
Diffusion folder): the run's manifest gets that prompt, and the VAE decoder (--decode) is checked too.

usage: test_gpu_sample.py SOWER_BINARY MPIEXEC MODEL_DIR STEPS [EXTRA sower sample ARGS...]
Exit 77 (skipped) when this sower has no CUDA backend or no device is visible, so CI without a
GPU reports SKIPPED, never a vacuous pass. Standard library + python3-h5py only.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import h5py

from test_sample_invariance import npy_rows  # beside this file

SEEDS = list(range(32))
# GPU vs CPU: both are float32 with different reduction orders (BLIS microkernel vs one thread per
# element), so they differ by rounding, amplified over the steps; this bounds that, relative to
# the samples' scale, far below what a wrong kernel gives (O(1)).
RELATIVE_TOLERANCE = 2e-3
# --precision tf32 vs fp32 on the GPU: every matrix product's inputs lose 13 mantissa bits
# (relative 2^-11 each), about 1e-3 of a forward pass, amplified over the steps.
TF32_RELATIVE_TOLERANCE = 3e-2
# --precision bf16: 3 significand bits fewer than tf32 (relative 2^-8 per input), 8x the error; a
# wrong kernel still gives O(1).
BF16_RELATIVE_TOLERANCE = 0.25

failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message, file=sys.stderr)


def floats(row):
    return struct.unpack(f"<{len(row) // 4}f", row)


def sample(sower, model, steps, extra, out, batch, backend, seeds=SEEDS):
    argv = [sower, "sample", model, "--seeds", ",".join(map(str, seeds)), "--steps", steps, "--batch",
            str(batch), "--backend", backend, "-o", out] + extra
    return subprocess.run(argv, capture_output=True, text=True, timeout=1200)


def main():
    sower, mpiexec, model, steps, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
    with tempfile.TemporaryDirectory() as tmp:
        probe = sample(sower, model, "1", extra, os.path.join(tmp, "probe.npy"), 1, "cuda", [0])
        if probe.returncode == 2 and ("no CUDA device" in probe.stderr or "without the CUDA backend" in probe.stderr):
            print("test_gpu_sample: no CUDA backend or device here: skipped\n" + probe.stderr.strip())
            sys.exit(77)
        if probe.returncode != 0:
            print(probe.stderr, file=sys.stderr)
            sys.exit(1)
        print("test_gpu_sample: " + probe.stderr.strip().splitlines()[-1].strip())

        # 1. Bitwise: batch 1, 7, 32, and batch 7 again (run to run); seeds in another order.
        reference = None
        for label, batch, seeds in [("b1", 1, SEEDS), ("b7", 7, SEEDS), ("b32", 32, SEEDS), ("b7again", 7, SEEDS),
                                    ("b7shuffled", 7, SEEDS[::-1])]:
            out = os.path.join(tmp, label + ".npy")
            r = sample(sower, model, steps, extra, out, batch, "cuda", seeds)
            if r.returncode != 0:
                fail(f"{label}: exit {r.returncode}: {r.stderr}")
                continue
            rows = dict(zip(seeds, npy_rows(out, len(seeds))))
            if reference is None:
                reference = rows
                continue
            differing = [s for s in SEEDS if rows[s] != reference[s]]
            if differing:
                fail(f"cuda {label}: seeds {differing} differ from batch 1")
        if reference is None:
            sys.exit(1)
        print(f"test_gpu_sample: batches 1, 7, 32, a repeat and a reversed order: bitwise equal ({len(failures)} failures)")

        # 2. Close to the CPU reference.
        cpu_out = os.path.join(tmp, "cpu.npy")
        r = sample(sower, model, steps, extra, cpu_out, 8, "cpu")
        if r.returncode != 0:
            fail(f"cpu: exit {r.returncode}: {r.stderr}")
        else:
            worst, scale = 0.0, 0.0
            for s, row in zip(SEEDS, npy_rows(cpu_out, len(SEEDS))):
                a, b = floats(row), floats(reference[s])
                worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
                scale = max(scale, max(abs(x) for x in a))
            print(f"test_gpu_sample: GPU vs CPU over {len(SEEDS)} seeds: max |diff| {worst:.3g}, max |x| {scale:.3g}")
            if not worst <= RELATIVE_TOLERANCE * max(1.0, scale):
                fail(f"GPU vs CPU: max |diff| {worst:.3g} > {RELATIVE_TOLERANCE} x {max(1.0, scale):.3g}")

        # 3. The opt-in tensor-core arithmetics: each its own identity, bitwise across batches 1 and 32,
        #    close to fp32 (tf32, fp16: 10-bit significands; bf16: 7), and not fp32's bits.
        for precision, tolerance in (("tf32", TF32_RELATIVE_TOLERANCE), ("fp16", TF32_RELATIVE_TOLERANCE),
                                     ("bf16", BF16_RELATIVE_TOLERANCE)):
            rows = {}
            for batch in (1, 32):
                out = os.path.join(tmp, f"{precision}_b{batch}.npy")
                r = sample(sower, model, steps, extra + ["--precision", precision], out, batch, "cuda")
                if r.returncode != 0:
                    fail(f"{precision} batch {batch}: exit {r.returncode}: {r.stderr}")
                    continue
                if f"kernels sower {precision}" not in r.stderr:
                    fail(f"{precision} batch {batch}: the backend identity does not say {precision}: {r.stderr.strip()}")
                rows[batch] = dict(zip(SEEDS, npy_rows(out, len(SEEDS))))
            if len(rows) < 2:
                continue
            differing = [s for s in SEEDS if rows[1][s] != rows[32][s]]
            if differing:
                fail(f"{precision}: seeds {differing} differ between batch 1 and batch 32")
            worst, scale = 0.0, 0.0
            for s in SEEDS:
                a, b = floats(reference[s]), floats(rows[1][s])
                worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
                scale = max(scale, max(abs(x) for x in a))
            print(f"test_gpu_sample: {precision} vs fp32 over {len(SEEDS)} seeds: max |diff| {worst:.3g}, "
                  f"max |x| {scale:.3g}; batch 1 vs 32 bitwise: {'yes' if not differing else 'NO'}")
            if not worst <= tolerance * max(1.0, scale):
                fail(f"{precision} vs fp32: max |diff| {worst:.3g} > {tolerance} x {max(1.0, scale):.3g}")
            if all(rows[1][s] == reference[s] for s in SEEDS):
                fail(f"{precision} gave exactly the fp32 bits: the tensor-core path did not run")

        # 4. Two ranks on one GPU: verification (a re-render on the other rank) passes, the file
        #    records the GPU, and its rows are the samples' bits.
        extra_yaml = ""
        if "--scheduler" in extra:
            extra_yaml += f"  scheduler: {extra[extra.index('--scheduler') + 1]}\n"
        if "--eta" in extra:
            extra_yaml += f"  eta: {extra[extra.index('--eta') + 1]}\n"
        if "scheduler:" not in extra_yaml:
            if "--prompt" in extra:  # sample would take the folder's scheduler, a manifest ddim: name one
                print("test_gpu_sample: a Stable Diffusion folder needs --scheduler among the arguments", file=sys.stderr)
                sys.exit(2)
            extra_yaml += "  scheduler: ddim\n"
        prompts_yaml = ""
        if "--prompt" in extra:  # Stable Diffusion: one prompt, so row i is seed i
            if "--guidance" in extra:
                extra_yaml += f"  guidance: {extra[extra.index('--guidance') + 1]}\n"
            prompts_yaml = f"prompts:\n  - {json.dumps(extra[extra.index('--prompt') + 1])}\n"
        job = os.path.join(tmp, "job.yaml")
        out = os.path.join(tmp, "out.h5")
        with open(job, "w") as f:
            f.write(f"sower: 1\nname: gpu\nmodel: {os.path.abspath(model)}\npipeline:\n{extra_yaml}"
                    f"  steps: {steps}\n  batch: 5\n  backend: cuda\n{prompts_yaml}seeds:\n  ranges:\n"
                    f"    - {{start: 0, count: {len(SEEDS)}}}\noutput:\n  path: {out}\nverify:\n  count: 8\n")
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        r = subprocess.run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job], capture_output=True, text=True,
                           env=env, timeout=1200)
        if r.returncode != 0:
            fail(f"2-rank run: exit {r.returncode}: {r.stderr}")
        else:
            print("test_gpu_sample: " + r.stdout.strip().splitlines()[-1])
            with h5py.File(out, "r") as h:
                identity = h.attrs["backend_identity"]
                identity = identity.decode() if isinstance(identity, bytes) else identity
                if not identity.startswith("cuda: "):
                    fail(f"backend_identity is '{identity}'")
                if not bool(h["verify"]["match"][()].all()):
                    fail("2-rank run: a verification row mismatched")
                latents = h["latents"][()]
                for s in SEEDS:
                    if latents[s].tobytes() != reference[s]:
                        fail(f"2-rank run: row {s} differs from `sower sample --backend cuda`")
                        break
            v = subprocess.run([sower, "verify", out], capture_output=True, text=True, timeout=1200)
            if v.returncode != 0:
                fail(f"sower verify: exit {v.returncode}: {v.stdout}{v.stderr}")
        # 5. Stable Diffusion: the VAE decoder on the GPU too (sample --decode): bitwise across batches,
        #    close to the CPU's images.
        if "--prompt" in extra:
            images = {}
            for label, batch, backend in [("cuda_b1", 1, "cuda"), ("cuda_b3", 3, "cuda"), ("cpu", 3, "cpu")]:
                out = os.path.join(tmp, f"decode_{label}.npy")
                r = sample(sower, model, steps, extra + ["--decode"], out, batch, backend, SEEDS[:6])
                if r.returncode != 0:
                    fail(f"--decode {label}: exit {r.returncode}: {r.stderr}")
                    continue
                images[label] = npy_rows(out, 6)
            if len(images) == 3:
                if images["cuda_b1"] != images["cuda_b3"]:
                    fail("--decode on cuda: batch 1 and batch 3 differ")
                worst, scale = 0.0, 0.0
                for a, b in zip(images["cpu"], images["cuda_b3"]):
                    a, b = floats(a), floats(b)
                    worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
                    scale = max(scale, max(abs(x) for x in a))
                print(f"test_gpu_sample: --decode on cuda, batch 1 vs 3 bitwise: "
                      f"{'yes' if images['cuda_b1'] == images['cuda_b3'] else 'NO'}; vs the CPU's images: "
                      f"max |diff| {worst:.3g}, max |x| {scale:.3g}")
                if not worst <= RELATIVE_TOLERANCE * max(1.0, scale):
                    fail(f"--decode GPU vs CPU: max |diff| {worst:.3g} > {RELATIVE_TOLERANCE} x {max(1.0, scale):.3g}")
    print(f"test_gpu_sample: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
