#!/usr/bin/python3
"""`sower sample` and `sower info` from the command line: traces, output format, bad options.

usage: test_cli_sample.py SOWER_BINARY MODEL_DIR (a small committed model: tests/data/diffusers/models/mono_v)
Standard library only (reads .npy headers and bytes itself).
"""
import json
import os
import subprocess
import sys
import tempfile

failures = []


def npy(path):
    raw = open(path, "rb").read()
    assert raw[:6] == b"\x93NUMPY", path
    hlen = raw[8] | (raw[9] << 8)
    header = raw[10:10 + hlen].decode()
    shape = tuple(int(d) for d in header.split("'shape': (")[1].split(")")[0].split(",") if d.strip())
    if "'descr': '<f4'" not in header or (10 + hlen) % 64:
        failures.append(f"{path}: header {header!r} is not float32 or not 64-byte aligned")
    return shape, raw[10 + hlen:]


def run(argv, env=None):
    return subprocess.run(argv, capture_output=True, env=env)


def needed_libraries(path):
    """The DT_NEEDED entries of an ELF file (readelf, binutils)."""
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    return [line.split("[")[1].split("]")[0] for line in out.splitlines() if "(NEEDED)" in line]


def check_cuda_plugin(sower, model, tmp):
    """A build with the CUDA backend keeps it in the plug-in libsower_cuda.so: sower itself needs no
    CUDA library (CPU ranks never map them), and where the plug-in cannot be had, backend cuda fails
    with exit 2 and the loader's reason while the CPU backend is untouched."""
    info = run([sower, "info", model]).stdout.decode()
    if "this build has no CUDA backend" in info:
        return
    cuda_libs = [n for n in needed_libraries(sower) if n.startswith(("libcuda", "libcublas", "libnccl"))]
    if cuda_libs:
        failures.append(f"sower links {cuda_libs} itself: they belong to the CUDA plug-in")
    if "CUDA devices:" not in info or "was not found" in info:
        failures.append(f"sower info does not find the build's CUDA plug-in: {info!r}")
    env = dict(os.environ, SOWER_CUDA_PLUGIN=os.path.join(tmp, "missing.so"))
    target = os.path.join(tmp, "plugin.npy")
    r = run([sower, "sample", model, "--seeds", "0", "--steps", "1", "--backend", "cuda", "-o", target], env=env)
    if r.returncode != 2 or b"missing.so: no such file" not in r.stderr or os.path.exists(target):
        failures.append(f"backend cuda without its plug-in: exit {r.returncode}, {r.stderr!r}")
    r = run([sower, "sample", model, "--seeds", "0", "--steps", "1", "-o", target], env=env)
    if r.returncode != 0:
        failures.append(f"backend cpu with no CUDA plug-in: exit {r.returncode}, {r.stderr!r}")
    os.remove(target)
    os.remove(target + ".json")
    # A file that is not a plug-in (junk; another library): exit 2 with the loader's reason.
    junk = os.path.join(tmp, "junk.so")
    open(junk, "wb").write(b"not an ELF file")
    for plugin, text in ((junk, b"cannot be loaded"),
                         ("/lib/x86_64-linux-gnu/libz.so.1", b"from another build of sower")):
        if not os.path.exists(plugin):
            continue
        env = dict(os.environ, SOWER_CUDA_PLUGIN=plugin)
        r = run([sower, "sample", model, "--seeds", "0", "--steps", "1", "--backend", "cuda", "-o", target], env=env)
        if r.returncode != 2 or text not in r.stderr or os.path.exists(target):
            failures.append(f"backend cuda with plug-in {plugin}: exit {r.returncode}, {r.stderr!r}")


def check_no_replace(sower, model, tmp):
    """sample never replaces an earlier output (or its record) unless --force; refused before rendering."""
    out = os.path.join(tmp, "mine.npy")
    base = [sower, "sample", model, "--seeds", "0-1", "--steps", "2", "-o", out]
    r = run(base)
    if r.returncode != 0 or not os.path.exists(out + ".json"):
        failures.append(f"first sample: {r.returncode} {r.stderr!r}")
        return
    before = open(out, "rb").read(), open(out + ".json", "rb").read()
    r = run(base[:4] + ["2-3"] + base[5:])
    if r.returncode != 2 or b"exists" not in r.stderr or b"--force" not in r.stderr or \
            (open(out, "rb").read(), open(out + ".json", "rb").read()) != before:
        failures.append(f"a second sample to the same -o: {r.returncode} {r.stderr!r}, or the files changed")
    os.remove(out)  # the record alone is still an earlier run's: refused too
    r = run(base)
    if r.returncode != 2 or b"mine.npy.json' exists" not in r.stderr or os.path.exists(out):
        failures.append(f"-o beside a record: {r.returncode} {r.stderr!r}")
    r = run(base[:4] + ["2-3"] + base[5:] + ["--force"])
    if r.returncode != 0 or json.load(open(out + ".json"))["seeds"] != "2,3":
        failures.append(f"--force: {r.returncode} {r.stderr!r}")


def main():
    sower, model = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npy")
        r = run([sower, "sample", model, "--seeds", "3,1-2", "--steps", "5", "--trace", tmp, "-o", out])
        if r.returncode != 0:
            failures.append(f"sample with --trace failed: {r.stderr.decode()}")
        else:
            shape, data = npy(out)
            if shape != (3, 1, 8, 8):
                failures.append(f"output shape {shape}, expected (3, 1, 8, 8)")
            row = len(data) // 3
            for i, seed in enumerate([3, 1, 2]):
                s_shape, samples = npy(os.path.join(tmp, f"seed_{seed}_samples.npy"))
                o_shape, outputs = npy(os.path.join(tmp, f"seed_{seed}_model_outputs.npy"))
                if s_shape != (5, 1, 8, 8) or o_shape != (5, 1, 8, 8):
                    failures.append(f"seed {seed}: trace shapes {s_shape} {o_shape}, expected (5, 1, 8, 8)")
                if samples[-row:] != data[i * row:(i + 1) * row]:
                    failures.append(f"seed {seed}: the last traced sample is not the output row {i}")
            # Seeds in a different order give the same per-seed rows.
            out2 = os.path.join(tmp, "out2.npy")
            run([sower, "sample", model, "--seeds", "1-3", "--steps", "5", "-o", out2])
            _, data2 = npy(out2)
            if data2[0:row] != data[row:2 * row] or data2[2 * row:] != data[0:row]:
                failures.append("rows do not follow the order of --seeds")
            # Traces are never replaced without --force (refused before rendering), nor written twice.
            trace = os.path.join(tmp, "seed_2_samples.npy")
            before = open(trace, "rb").read()
            out3 = os.path.join(tmp, "out3.npy")
            r = run([sower, "sample", model, "--seeds", "2", "--steps", "3", "--trace", tmp, "-o", out3])
            if r.returncode != 2 or b"seed_2_samples.npy' exists" not in r.stderr or os.path.exists(out3) \
                    or open(trace, "rb").read() != before:
                failures.append(f"--trace over earlier traces: {r.returncode} {r.stderr[-300:]!r}")
            r = run([sower, "sample", model, "--seeds", "2", "--steps", "3", "--trace", tmp, "-o", out3, "--force"])
            if r.returncode != 0 or npy(trace)[0] != (3, 1, 8, 8):
                failures.append(f"--trace --force: {r.returncode} {r.stderr[-300:]!r}")
            r = run([sower, "sample", model, "--seeds", "5,5", "--trace", tmp, "-o", os.path.join(tmp, "o4.npy")])
            if r.returncode != 2 or b"seed 5 is listed twice" not in r.stderr:
                failures.append(f"--trace with a seed twice: {r.returncode} {r.stderr[-300:]!r}")
        r = run([sower, "info", model])
        if r.returncode != 0 or b"parameters:" not in r.stdout or b"weights sha256:" not in r.stdout:
            failures.append(f"sower info: {r.returncode} {r.stdout!r}")

        bad = [
            (["--seeds", "x"], "--seeds"), (["--seeds", "5-2"], "ends before it starts"),
            (["--seeds", "1,"], "trailing comma"), (["--seeds", "0-99999999999"], "more than"),
            (["--seeds", "0", "--steps", "0"], "--steps"), (["--seeds", "0", "--steps", "1001"], "--steps"),
            (["--seeds", "0", "--eta", "2"], "--eta"), (["--seeds", "0", "--eta", "0.5", "--scheduler", "ddpm"], "ddim"),
            (["--seeds", "0", "--karras"], "--karras applies to the euler, dpm++2m, dpm++2m-sde, unipc, heun, lms, dpm2, dpm2-a, dpm++2s, dpm++2s-sde, deis and dpm++sde schedulers (the scheduler is ddim)"),
            (["--seeds", "0", "--batch", "0"], "--batch"), (["--seeds", "0", "--threads", "x"], "--threads"),
            (["--seeds", "0", "--scheduler", "kdpm2"], "--scheduler"), (["--seeds", "0", "--generator", "cuda"], "--generator"),
            (["--seeds", "0", "--trace", "/nonexistent"], "--trace"), (["--seeds", "0", "--bogus"], "unknown option"),
            (["--seeds", "0", "--backend", "gpu"], "--backend: expected cpu or cuda"),
            (["--seeds", "0", "--backend", "cuda", "--precision", "fp8"], "--precision: expected fp32, tf32, bf16 or fp16"),
            (["--seeds", "0", "--precision", "bf16"], "--precision bf16 needs --backend cuda"),
            (["--seeds", "0", "--precision", "tf32"], "--precision tf32 needs --backend cuda"),
            (["--seeds", "0", "--generator", "torch-cuda"], "--generator torch-cuda needs --backend cuda"),
            ([], "--seeds is required"),
        ]
        for args, text in bad:
            target = os.path.join(tmp, "bad.npy")
            argv = [sower, "sample", model] + args + (["-o", target] if args else [])
            r = run(argv)
            err = r.stderr.decode()
            if r.returncode != 2 or text not in err:
                failures.append(f"{args}: exit {r.returncode}, message {err.strip()!r} (expected 2 and {text!r})")
            if os.path.exists(target):
                failures.append(f"{args}: wrote an output")
        check_cuda_plugin(sower, model, tmp)
        r = run([sower, "sample", "--seeds", "0", "-o", os.path.join(tmp, "x.npy")])
        if r.returncode != 2 or b"MODEL_DIR is required" not in r.stderr:
            failures.append(f"missing MODEL_DIR: {r.returncode} {r.stderr!r}")
        r = run([sower, "sample", model, "--seeds", "0", "--steps", "1"])
        if r.returncode != 2 or b"-o OUT.npy" not in r.stderr:
            failures.append(f"missing -o: {r.returncode} {r.stderr!r}")
        png = os.path.join(tmp, "img.png")  # sample writes .npy: a .png name is refused, not filled with .npy bytes
        r = run([sower, "sample", model, "--seeds", "0", "--steps", "1", "-o", png])
        if r.returncode != 2 or b"name it OUT.npy" not in r.stderr or os.path.exists(png):
            failures.append(f"-o img.png: {r.returncode} {r.stderr!r}")
        check_no_replace(sower, model, tmp)
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_cli_sample: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
