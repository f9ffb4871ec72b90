#!/usr/bin/env python3
"""torch 1.13's float32 log, exp and expm1 on the CPU, and numpy's float32 log and exp, for sower's
src/model/schedulers/torch_math.c (what diffusers' torch.log / torch.exp / torch.expm1 give DPM-Solver's, UniPC's and
KDPM2's scalars, np.log its sigma tables and DEIS's coefficients, np.log and np.exp DPM++ SDE's midpoints of an
exponential or beta schedule).

Rerun (from the repository root, the reference environment of validate/make_scheduler_reference.py; seconds):
    /opt/refenv/bin/python validate/make_torch_math_reference.py tests/data/torch_math_reference.json
Then: ./build/tests/test_torch_math tests/data/torch_math_reference.json

torch picks its kernels per process (ATEN_CPU_CAPABILITY), so the script runs itself twice: "avx2" (Sleef's
vectorised functions, what any x86-64 with AVX2 runs; AVX-512 gives the same bits) and "default" (the C library's,
what torch runs without AVX2). Each function is applied to one tensor of all the inputs (the vector path) and to
the first 256 inputs one 0-d tensor at a time (the path diffusers' step scalars take); both must agree. Values are
float32 bit patterns in hex, so NaNs, infinities and -0 survive JSON.
"""
import json
import os
import subprocess
import sys


def inputs():
    import numpy as np
    rng = np.random.default_rng(20261206)
    special = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-40, -1e-40, 1.17549435e-38, 3.4e38, 1.0, -1.0,
               88.72283172607421875, 88.7229, -16.635532333438687426013570, -16.64, 100.0, 100.5, -104.0, -104.5,
               0.5, 2.0, 1e-8, -1e-8, 0.693147, -0.693147]
    parts = [special, rng.uniform(-20, 20, 200), rng.uniform(-104, 89, 100), np.exp(rng.uniform(-87, 88, 200)),
             rng.uniform(-1e-3, 1e-3, 50), -np.exp(rng.uniform(-30, 5, 25))]
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(np.float32)
    return x


def hexes(a):
    import numpy as np
    return ["%08x" % v for v in np.asarray(a, dtype=np.float32).view(np.uint32)]


def child():
    import numpy as np
    import torch
    torch.set_num_threads(1)
    x = inputs()
    out = {}
    for name in ("log", "exp", "expm1"):
        op = getattr(torch, name)
        vec = op(torch.from_numpy(x)).numpy()
        zero_d = np.array([float(op(torch.tensor(float(v)))) for v in x[:256]], dtype=np.float32)
        same = (vec[:256].view(np.uint32) == zero_d.view(np.uint32)) | (np.isnan(vec[:256]) & np.isnan(zero_d))
        if not same.all():
            sys.exit(f"{name}: torch's 0-d and vector paths differ at {np.flatnonzero(~same)[:5]}")
        out[name] = hexes(vec)
    json.dump({"torch": torch.__version__, "inputs": hexes(x), "outputs": out}, sys.stdout)


def numpy_log():
    """np.log of a float32 array (its AVX2/AVX-512 loop where the CPU has one): the positive inputs and specials."""
    import numpy as np
    from numpy.core._multiarray_umath import __cpu_features__ as features
    x = inputs()
    with np.errstate(over="ignore"):
        exp = np.exp(x)
    return {"numpy": np.__version__, "simd": "AVX512F" if features.get("AVX512F") else "AVX2" if features.get("AVX2") else
            "none", "log": hexes(np.log(np.abs(x))), "exp": hexes(exp)}


def run_child(capability):
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    done = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--child":
        return child()
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    avx2, default = run_child("avx2"), run_child("default")
    assert avx2["inputs"] == default["inputs"]
    doc = {"format": "sower-torch-math-reference", "version": 1, "made_by": "validate/make_torch_math_reference.py",
           "torch": avx2["torch"], "inputs": avx2["inputs"],
           "outputs": {"avx2": avx2["outputs"], "default": default["outputs"]}, "numpy_log_of_abs": numpy_log()}
    with open(sys.argv[1], "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(doc['inputs'])} inputs x 3 functions x 2 kernels to {sys.argv[1]}")


if __name__ == "__main__":
    main()
