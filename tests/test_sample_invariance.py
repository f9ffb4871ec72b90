#!/usr/bin/python3
"""A seed's bytes do not depend on batch size, thread count, the other seeds in its batch, the run, or
whether the packed weights were kept from earlier forwards (SOWER_WEIGHT_CACHE_MB: 0 keeps none, 1 MiB
keeps a few layers' and packs the rest each call).

usage: test_sample_invariance.py SOWER_BINARY MODEL_DIR STEPS [EXTRA sower sample ARGS...]
Renders seeds 0-7 (and a permutation) with --batch 1, 2, 3, 8 and --threads 1, 2 and checks every
seed's sample bytes are identical across all runs (standard library only: compares raw .npy bytes).
"""
import os
import subprocess
import sys
import tempfile


def npy_rows(path, n):
    raw = open(path, "rb").read()
    hlen = raw[8] | (raw[9] << 8)
    data = raw[10 + hlen:]
    size = len(data) // n
    return [data[i * size:(i + 1) * size] for i in range(n)]


def main():
    sower, model, steps, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    seeds = list(range(8))
    runs = [(b, t, seeds, {}) for b in (1, 2, 3, 8) for t in (1, 2)]
    runs += [(3, 2, [5, 0, 7, 2, 6, 1, 4, 3], {}), (1, 1, seeds, {})]  # other batch company; a repeat run
    runs += [(2, 2, seeds, {"SOWER_WEIGHT_CACHE_MB": "0"}), (1, 2, seeds, {"SOWER_WEIGHT_CACHE_MB": "1"})]
    reference, failures = None, 0
    with tempfile.TemporaryDirectory() as tmp:
        for batch, threads, order, env in runs:
            out = os.path.join(tmp, f"b{batch}_t{threads}.npy")
            argv = [sower, "sample", model, "--seeds", ",".join(map(str, order)), "--steps", steps,
                    "--batch", str(batch), "--threads", str(threads), "--force", "-o", out] + extra
            r = subprocess.run(argv, capture_output=True, env=dict(os.environ, **env))
            if r.returncode != 0:
                print(f"FAIL: {' '.join(argv[1:])}: exit {r.returncode}: {r.stderr.decode()}", file=sys.stderr)
                failures += 1
                continue
            rows = dict(zip(order, npy_rows(out, len(order))))
            if reference is None:
                reference = rows
                continue
            differing = [s for s in seeds if rows[s] != reference[s]]
            if differing:
                failures += 1
                print(f"FAIL: batch {batch} threads {threads} order {order} {env}: seeds {differing} differ",
                      file=sys.stderr)
    print(f"test_sample_invariance: {len(runs)} runs of 8 seeds, {failures} failures")
    sys.exit(1 if failures or reference is None else 0)


if __name__ == "__main__":
    main()
