#!/usr/bin/env python3
"""Reference vectors for sower's torch-cuda generator (torch.Generator("cuda")), made with real torch on a GPU.

Rerun on a machine with an NVIDIA GPU and a CUDA build of torch (the device check does it:
src/gpu/device/check.sh; the committed tests/data/torch_cuda_rng_reference.json names the GPU and torch):
    python3 validate/make_torch_cuda_reference.py OUT.json

For each case: a seed, a sequence of torch.randn calls (float32, on the GPU) on ONE generator
(torch.Generator("cuda").manual_seed(seed)), and per call the SHA-256 of the output's little-endian
bytes, the bits of its first 8 values, and the generator's Philox offset after the call (get_state():
seed then offset, two uint64). The sizes cover one value per thread (SD's 1x4x64x64 latents, the
cifar model's 1x3x32x32), every lane of curand_normal4 and more than one pass of torch's grid-stride
loop (more values than 256 x SMs x 8 threads: there the layout follows the SM count, recorded here so
a GPU with another count skips those cases). Seeds and offsets are decimal strings (uint64).
"""
import hashlib
import json
import struct
import sys

import torch

SEEDS = [0, 1, 42, 2**32 + 5, 2**63 - 1, 2**64 - 1]
# Call sequences (numel of each randn): latents then per-step noise, odd sizes, a capped grid's lanes.
SEQUENCES = [
    [4 * 64 * 64, 4 * 64 * 64, 4 * 64 * 64],
    [3 * 32 * 32, 3 * 32 * 32],
    [1, 5, 7, 16, 17],
    [4 * 128 * 128],
    [1_000_000, 3],
    [3_000_001, 16],
]


def main():
    out_path = sys.argv[1]
    prop = torch.cuda.get_device_properties(0)
    cases = []
    for seed in SEEDS:
        for calls in SEQUENCES:
            g = torch.Generator("cuda").manual_seed(seed)
            sums, heads, offsets = [], [], []
            for n in calls:
                x = torch.randn(n, generator=g, device="cuda", dtype=torch.float32).cpu().numpy()
                data = x.astype("<f4").tobytes()
                sums.append(hashlib.sha256(data).hexdigest())
                heads.append(list(struct.unpack(f"<{min(8, n)}I", data[:4 * min(8, n)])))
                state = g.get_state().numpy().tobytes()
                offsets.append(str(struct.unpack("<QQ", state[:16])[1]))
            cases.append({"seed": str(seed), "calls": calls, "sha256": sums, "head_bits": heads,
                          "offset_after": offsets})
    ref = {
        "format": "sower-torch-cuda-rng-reference", "version": 1,
        "made_by": "validate/make_torch_cuda_reference.py",
        "torch": torch.__version__, "cuda": torch.version.cuda, "device": prop.name,
        "sms": prop.multi_processor_count,
        "max_threads_per_sm": getattr(prop, "max_threads_per_multi_processor", 2048),
        "cases": cases,
    }
    with open(out_path, "w") as f:
        json.dump(ref, f, indent=1)
    print(f"{out_path}: {len(cases)} cases, torch {torch.__version__} on {prop.name} ({prop.multi_processor_count} SMs)")


if __name__ == "__main__":
    main()
