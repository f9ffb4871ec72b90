#!/usr/bin/env python3
"""torchsde 0.2.6's Brownian tree as diffusers 0.31's DPMSolverSDEScheduler builds it (BatchedBrownianTree:
BrownianInterval with halfway_tree=True, tol=1e-6, pool_size=24), for sower's src/model/schedulers/brownian.c and
src/rng/seed_sequence.c (numpy's SeedSequence, which seeds each tree node's torch generator).

Rerun (from the repository root, the reference environment of validate/make_scheduler_reference.py plus torchsde:
/opt/refenv/bin/pip install torchsde==0.2.6; seconds):
    ATEN_CPU_CAPABILITY=avx2 /opt/refenv/bin/python validate/make_brownian_reference.py tests/data/brownian_reference.json
Then: ./build/tests/test_brownian tests/data/brownian_reference.json

Each case is one tree: its entropy, its range [t0, t1] (float32 sigmas, as the scheduler passes them) and the sample
shape's element count, then queries tree(ta, tb) in order: the ones DPMSolverSDEScheduler makes over a real sigma
schedule (recorded from its step), and others (out of range, so clamped; equal ends, so zeros; any order). For each
query: ta and tb (float.hex), "refused" where torchsde raises RecursionError, else the increment's sha256 (float32 little-endian) and its first values (float.hex).
Also SeedSequence(entropy, spawn_key, pool_size).generate_state(4) for a few inputs.
"""
import hashlib
import json
import os
import sys


def sd_queries(torch, diffusers, config, n):
    """The (ta, tb) DPMSolverSDEScheduler's noise sampler asks its tree for over n steps, and its range."""
    import diffusers.schedulers.scheduling_dpmsolver_sde as sde
    asked = []
    s = diffusers.DPMSolverSDEScheduler.from_config(config)
    s.set_timesteps(n)
    orig = sde.BatchedBrownianTree.__call__

    def record(self, t0, t1):
        asked.append(tuple(sorted((float(t0), float(t1)))))
        return orig(self, t0, t1)
    sde.BatchedBrownianTree.__call__ = record
    x = torch.zeros(1, 4, 2, 2)
    for t in s.timesteps:
        x = s.step(torch.zeros_like(x), t, x).prev_sample
    sde.BatchedBrownianTree.__call__ = orig
    lo, hi = s.sigmas[s.sigmas > 0].min(), s.sigmas.max()
    return float(lo), float(hi), asked


def run_case(torch, entropy, t0, t1, numel, queries):
    from diffusers.schedulers.scheduling_dpmsolver_sde import BatchedBrownianTree
    x = torch.zeros(numel)
    tree = BatchedBrownianTree(x, torch.tensor(t0, dtype=torch.float32), torch.tensor(t1, dtype=torch.float32),
                               seed=entropy).trees[0]
    out = []
    for ta, tb in queries:
        try:
            w = tree(ta, tb)
        except RecursionError:  # torchsde's split never reaches this query's end: sower refuses it
            out.append({"ta": float(ta).hex(), "tb": float(tb).hex(), "refused": True})
            continue
        b = w.numpy().astype("<f4").tobytes()
        out.append({"ta": float(ta).hex(), "tb": float(tb).hex(), "sha256": hashlib.sha256(b).hexdigest(),
                    "first": [float(v).hex() for v in w.flatten()[:4]]})
    return {"entropy": str(entropy), "t0": float(t0).hex(), "t1": float(t1).hex(), "numel": numel, "queries": out}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    import warnings
    import diffusers
    import numpy as np
    import torch
    import torchsde
    warnings.simplefilter("ignore")  # torchsde warns on the clamped queries
    torch.set_num_threads(1)
    sd = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}
    karras = dict(sd, use_karras_sigmas=True)
    cases = []
    lo, hi, asked = sd_queries(torch, diffusers, sd, 6)
    for entropy, numel in ((0, 64), (1, 105), (42, 6), (2**32 + 5, 64), (2**63 - 1, 17), (2**64 - 1, 16)):
        cases.append(run_case(torch, entropy, lo, hi, numel, asked))
    lo, hi, asked = sd_queries(torch, diffusers, karras, 9)
    cases.append(run_case(torch, 1234, lo, hi, 64, asked))
    lo, hi, asked = sd_queries(torch, diffusers, {"beta_schedule": "linear", "num_train_timesteps": 1000,
                                                  "timestep_spacing": "trailing", "prediction_type": "v_prediction"}, 3)
    cases.append(run_case(torch, 7, lo, hi, 48, asked))
    # any order, clamped ends, equal ends, one end on the range's
    f32 = lambda v: float(np.float32(v))
    lo, hi = f32(0.0291675), f32(14.614642)
    odd = [(f32(3.5), f32(7.25)), (f32(0.01), f32(0.5)), (f32(5.0), f32(20.0)), (f32(2.0), f32(2.0)),
           (lo, hi), (f32(1e-3), f32(1e-3)), (f32(9.1), f32(9.100001)),
           # ends one float32 apart that round to one 6-decimal value: zeros, or a split without end
           (float.fromhex("0x1.f9687cp+0"), float.fromhex("0x1.f9687ep+0")),
           (float.fromhex("0x1.dc44c6p+1"), float.fromhex("0x1.dc44c8p+1")),
           (f32(0.5), f32(3.5)), (f32(14.0), f32(14.614642))]
    cases.append(run_case(torch, 99, lo, hi, 64, odd))
    cases.append(run_case(torch, 99, f32(0.5), f32(0.75), 64, [(f32(0.6), f32(0.7)), (f32(0.5), f32(0.7))]))
    seeds = []
    for entropy, spawn, pool in ((0, (), 4), (12345678901234, (), 24), (12345678901234, (5, 3), 24),
                                 (2**64 - 1, (2**40 + 3, 41), 24), (7, (0, 0), 24)):
        state = np.random.SeedSequence(entropy, spawn_key=spawn, pool_size=pool).generate_state(4)
        seeds.append({"entropy": str(entropy), "spawn_key": [str(k) for k in spawn], "pool_size": pool,
                      "state": [int(v) for v in state]})
    doc = {"format": "sower-brownian-reference", "version": 1, "made_by": "validate/make_brownian_reference.py",
           "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__, "numpy": np.__version__,
                        "torchsde": torchsde.__version__},
           "cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "(torch default)"),
           "trees": cases, "seed_sequences": seeds}
    with open(sys.argv[1], "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} trees, {sum(len(c['queries']) for c in cases)} queries to {sys.argv[1]}")


if __name__ == "__main__":
    main()
