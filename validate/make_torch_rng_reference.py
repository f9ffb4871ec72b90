#!/usr/bin/env python3
"""Reference vectors for sower's torch-compatible CPU generator, made with real torch.

Rerun (Debian 12; writes tests/data/torch_rng_reference.json):
    apt-get install -y python3-torch          # torch 1.13.1, as the committed file was made
    /usr/bin/python3 validate/make_torch_rng_reference.py tests/data/torch_rng_reference.json

For each vector: a seed, a sequence of torch.randn calls on ONE generator
(torch.Generator("cpu").manual_seed(seed)), optionally a get_state/set_state hand-over to a second
generator after some calls, and the SHA-256 of the little-endian bytes of all outputs concatenated
and of the final get_state() image. The generator `torch-cpu` is torch's default dispatch on an
x86-64 machine with AVX2 (the AVX2 kernel); `torch-cpu-scalar` is the same calls under
ATEN_CPU_CAPABILITY=default (the non-AVX2 kernel), run in a child process because torch reads that
variable once at start-up.

Seeds are written as decimal strings: JSON numbers cannot hold every uint64. A negative seed is
written as given to torch (two's complement applies).
"""
import hashlib
import json
import os
import subprocess
import sys

SEEDS = [0, 1, 42, 2**32 + 5, 2**63 - 1, 2**64 - 1]
SHAPES = [[1], [7], [15], [16], [17], [31], [1, 3, 32, 32], [1, 4, 64, 64]]
DTYPES = ["float32", "float64"]

# Call sequences on one generator: (seed, [(shape, dtype), ...], set_state_after or None).
SEQUENCES = [
    (0, [([1], "float32"), ([1], "float32")], None),          # cached double spare
    (1, [([5], "float32"), ([1], "float64")], None),          # spare crosses dtypes
    (42, [([3], "float32"), ([20], "float32"), ([1], "float32"), ([17], "float32")], None),
    (0, [([16], "float32"), ([16], "float32")], None),        # equals randn(32)
    (0, [([17], "float32"), ([33], "float32")], None),        # fresh tail draws
    (3, [([2], "float64")], None),                            # log vs log1p tell-tale seeds
    (17, [([2], "float64")], None),
    (87, [([2], "float64")], None),
    (9, [([0], "float32"), ([5], "float32"), ([0], "float64"), ([16], "float64")], None),
    (123, [([7], "float64"), ([100], "float32"), ([3], "float32")], None),
    (7, [([3], "float32"), ([1], "float32"), ([16], "float32")], 1),   # set_state after call 1
    (2**32 + 5, [([1, 4, 64, 64], "float32"), ([1, 4, 64, 64], "float32")], None),
    (-5, [([31], "float32"), ([1], "float32")], None),        # negative seed: two's complement
    (0, [([1, 4, 128, 128], "float32")], None),
    (5, [([625], "float32"), ([700], "float64"), ([9], "float32")], 2),  # crosses MT twists
]
RESTORE_SEED = 12345  # seed of the second generator that receives the state image


def run_vector(torch, seed, calls, set_state_after):
    dtype_of = {"float32": torch.float32, "float64": torch.float64}
    g = torch.Generator("cpu").manual_seed(seed)
    out = bytearray()
    values = []
    for i, (shape, dtype) in enumerate(calls):
        if set_state_after is not None and i == set_state_after:
            image = g.get_state()
            g = torch.Generator("cpu").manual_seed(RESTORE_SEED)
            g.set_state(image)
        t = torch.randn(shape, dtype=dtype_of[dtype], generator=g)
        out += t.numpy().astype("<" + ("f4" if dtype == "float32" else "f8")).tobytes()
        values += [float(v) for v in t.flatten()[:4]]
    state = bytes(g.get_state().numpy().tobytes())
    return {
        "seed": str(seed),
        "calls": [{"shape": s, "dtype": d} for s, d in calls],
        "set_state_after": set_state_after,
        "restore_seed": str(RESTORE_SEED) if set_state_after is not None else None,
        "output_bytes": len(out),
        "output_sha256": hashlib.sha256(out).hexdigest(),
        "state_sha256": hashlib.sha256(state).hexdigest(),
        "first_values": values[:4],
    }


def shape_name(shape):
    return "x".join(str(d) for d in shape)


def all_vectors(torch, generator):
    vectors = []
    for seed in SEEDS:
        for shape in SHAPES:
            for dtype in DTYPES:
                v = run_vector(torch, seed, [(shape, dtype)], None)
                v["name"] = f"{generator}_s{seed}_{'f32' if dtype == 'float32' else 'f64'}_{shape_name(shape)}"
                vectors.append(v)
    for k, (seed, calls, after) in enumerate(SEQUENCES):
        v = run_vector(torch, seed, calls, after)
        v["name"] = f"{generator}_seq{k}_s{seed}_" + "_".join(
            ("f32_" if d == "float32" else "f64_") + shape_name(s) for s, d in calls)
        vectors.append(v)
    for v in vectors:
        v["generator"] = generator
    return vectors


def child(generator):
    import torch
    json.dump({"torch_version": torch.__version__, "vectors": all_vectors(torch, generator)}, sys.stdout)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    if len(sys.argv) != 2:
        sys.exit("usage: make_torch_rng_reference.py OUT.json")
    results = {}
    for generator, capability in (("torch-cpu", None), ("torch-cpu-scalar", "default")):
        env = dict(os.environ)
        env.pop("ATEN_CPU_CAPABILITY", None)
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        text = subprocess.run([sys.executable, __file__, "--child", generator], env=env, check=True,
                              capture_output=True, text=True).stdout
        results[generator] = json.loads(text)
    versions = {r["torch_version"] for r in results.values()}
    doc = {
        "format": "sower-torch-rng-reference",
        "version": 1,
        "made_by": "validate/make_torch_rng_reference.py",
        "torch_version": versions.pop(),
        "radius_formula": "log(1-u) (torch < 2.0)",
        "note": "sha256 over the little-endian bytes of all calls' outputs concatenated, and of get_state()",
        "vectors": results["torch-cpu"]["vectors"] + results["torch-cpu-scalar"]["vectors"],
    }
    with open(sys.argv[1], "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(doc['vectors'])} vectors from torch {doc['torch_version']} to {sys.argv[1]}")


if __name__ == "__main__":
    main()
