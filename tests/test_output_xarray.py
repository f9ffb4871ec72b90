#!/usr/bin/python3
"""The output describes itself to standard tools: named dimensions (HDF5 dimension scales as netCDF-4
writes them) sample, channel, y, x (and digest_byte), /seeds the coordinate of the samples, and
attributes saying what /latents and /seeds hold; numbers stored as numbers and structured settings
(pipeline, configs, /run hosts and timings) as JSON text. Checked with h5py always, and with xarray's h5netcdf
engine (Debian's python3-xarray, python3-h5netcdf) where installed: no warnings.

usage: test_output_xarray.py SOWER_BINARY MODEL_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import warnings

import h5py
import numpy as np

from testing import check, failures  # noqa: E402  (the tests' shared helpers)
JOB = """sower: 1
name: xarray
model: {model}
pipeline: {{scheduler: ddim, steps: 3}}
seeds:
  ranges: [{{start: 7, count: 5}}]
output: {{path: out.h5}}
verify: {{count: 1}}
"""


def main():
    sower, model = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        open(job, "w").write(JOB.format(model=model))
        r = subprocess.run([sower, "run", job], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: run: {r.stderr[-600:]}", file=sys.stderr)
            sys.exit(1)
        out = os.path.join(tmp, "out.h5")
        with h5py.File(out, "r") as f:
            want = {"latents": ["sample", "channel", "y", "x"], "seeds": ["sample"], "digest": ["sample", "digest_byte"],
                    "done": ["sample"]}
            for name, dims in want.items():
                got = []
                for d in f[name].dims:
                    scales = list(d.values())
                    got.append(os.path.basename(scales[0].name) if len(scales) == 1 else None)
                check(got == dims, f"/{name}: dimension scales {got}, expected {dims}")
            check(f["latents"].attrs.get("coordinates") in ("seeds", b"seeds"), "/latents has no coordinates='seeds'")
            check("denoised sample" in str(f["latents"].attrs.get("meaning")), "/latents does not say what it holds")
            shape = f["latents"].shape
            # Numbers are numbers, structured settings JSON text (json.loads, no parsing of our own).
            pipeline = json.loads(f.attrs["pipeline"])
            check(pipeline == {"scheduler": "ddim", "steps": 3, "eta": 0, "karras": False},
                  f"pipeline attribute: {pipeline}")
            run = f["run"].attrs
            check(all(isinstance(run[k], np.integer) for k in ("world_size", "batch")) and run["world_size"] == 1,
                  f"/run world_size, batch: {run.get('world_size')!r}, {run.get('batch')!r}")
            hosts, timings = json.loads(run["hosts"]), json.loads(run["timings"])
            check(isinstance(hosts, list) and len(hosts) == 1 and all(isinstance(h, str) for h in hosts),
                  f"/run hosts: {hosts}")
            check(all(isinstance(timings.get(k), (int, float)) for k in
                      ("render_phase_s", "rank0_rendering_s", "rank0_writing_s", "rank0_waiting_s", "verify_s")),
                  f"/run timings: {timings}")
            for name in ("model_config", "scheduler_config"):
                check(isinstance(json.loads(f.attrs[name]), dict), f"{name} is not a JSON object")
        print(f"h5py: dimension scales sample, channel, y, x, digest_byte attached; latents {shape}; pipeline, "
              f"model and scheduler configs, /run hosts and timings JSON, world_size and batch integers")
        try:
            import xarray
        except ImportError:
            xarray = None
            print("xarray is not installed: the h5py checks stand")
        if xarray is not None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = xarray.open_dataset(out, engine="h5netcdf")
                ds.load()
            check(not caught, f"xarray warned: {[str(w.message) for w in caught]}")
            check(ds["latents"].dims == ("sample", "channel", "y", "x"), f"xarray dims of latents: {ds['latents'].dims}")
            check("seeds" in ds.coords and list(ds["seeds"].values) == [7, 8, 9, 10, 11],
                  f"xarray: seeds is not the sample coordinate: {list(ds.coords)}")
            print(f"xarray (h5netcdf): latents {dict(ds.sizes)}, coordinate seeds, no warnings")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_output_xarray: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
