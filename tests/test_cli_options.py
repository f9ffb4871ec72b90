#!/usr/bin/python3
"""Every command parses its options with one parser (src/cli/cli.c, cli_parse): both spellings,
`--name VALUE` and `--name=VALUE`, give the same result; flags refuse a value; a missing value, an
unknown option or a stray argument exits 2 naming it. And one seed syntax everywhere: a negative
seed or a range means the same to `noise`, `sample` and a manifest's seeds.list.

usage: test_cli_options.py SOWER MPIEXEC MODEL_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sower, mpiexec, model = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
failures = 0


def run(*args, cwd=None):
    return subprocess.run([sower, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def expect_usage_error(args, names):
    r = run(*args)
    check(r.returncode == 2 and names in r.stderr, f"{' '.join(args)}: exit {r.returncode}, {r.stderr.strip()!r}")


with tempfile.TemporaryDirectory() as tmp:
    # noise: --seed=-1 equals --seed -1 and --seed 18446744073709551615
    outs = []
    for path, spelling in ((tmp + "/a.bin", ["--seed=-1", "--shape=2,3", "--output=" + tmp + "/a.bin"]),
                           (tmp + "/b.bin", ["--seed", "-1", "--shape", "2,3", "-o", tmp + "/b.bin"]),
                           (tmp + "/c.bin", ["--seed", "18446744073709551615", "--shape", "2,3", "-o=" + tmp + "/c.bin"])):
        r = run("noise", "--quiet", *spelling)
        check(r.returncode == 0, f"noise {spelling}: {r.stderr}")
        outs.append(open(path, "rb").read() if r.returncode == 0 else b"")
    check(outs[0] == outs[1] == outs[2] and len(outs[0]) == 24, "noise: the spellings of seed -1 differ")

    # sample: --opt=value == --opt value; a negative seed renders as noise's 2^64-1 does
    a, b = tmp + "/a.npy", tmp + "/b.npy"
    r1 = run("sample", model, "--seeds=-1,0-2", "--steps=2", "--batch=2", "--threads=1", "--scheduler=ddim", "-o", a)
    r2 = run("sample", model, "--seeds", "18446744073709551615,0,1,2", "--steps", "2", "--batch", "3", "-o", b)
    check(r1.returncode == 0 and r2.returncode == 0, f"sample: {r1.stderr} {r2.stderr}")
    if r1.returncode == 0 and r2.returncode == 0:
        check(np.array_equal(np.load(a), np.load(b)), "sample: --seeds=-1,0-2 differs from 2^64-1,0,1,2")

    # run: --batch=4 and --output=PATH (exit 2 before this parser), a manifest list with -1 and "0-2"
    job = tmp + "/job.yaml"
    with open(job, "w") as f:
        f.write(f"sower: 1\nname: options\nmodel: {model}\npipeline: {{steps: 2}}\n"
                f"seeds: {{list: [-1, \"0-2\"]}}\noutput: {{path: unused.h5}}\nverify: {{count: 2}}\n")
    out = tmp + "/run.h5"
    r = run("run", job, "--batch=4", "--output=" + out, cwd=tmp)
    check(r.returncode == 0, f"run --batch=4 --output=: exit {r.returncode}: {r.stderr}")
    if r.returncode == 0:
        with h5py.File(out, "r") as f:
            check(list(f["seeds"][()]) == [2**64 - 1, 0, 1, 2], f"run: seeds {list(f['seeds'][()])}")
            check(np.array_equal(f["latents"][()], np.load(a)), "run: rows differ from sample's for the same seeds")
        # verify --sample=2, export --png=... --columns=2
        r = run("verify", out, "--sample=2")
        check(r.returncode == 0, f"verify --sample=2: exit {r.returncode}: {r.stderr}")
        r = run("export", out, "--png=" + tmp + "/sheet.png", "--columns=2")
        check(r.returncode == 0 and os.path.getsize(tmp + "/sheet.png") > 0, f"export --png=: {r.stderr}")
        # verify takes --sample N or --all, not both (the later would silently win)
        r = run("verify", out, "--all", "--sample=1")
        check(r.returncode == 2 and "one of --sample N and --all" in r.stderr, f"verify --all --sample: {r.returncode}")
        # run's environment settings: a malformed one exits 2 naming it, before any work
        for name, bad in (("SOWER_FAULT_FAIL_RANK", "abc"), ("SOWER_FAULT_FAIL_RANK", ""),
                          ("SOWER_PROGRESS_SECONDS", "-1"), ("SOWER_PROGRESS_SECONDS", "nan"),
                          ("SOWER_SILENCE_SECONDS", "soon"), ("SOWER_FAULT_INJECT", "garbage")):
            r = subprocess.run([sower, "run", job, "--output=" + tmp + "/env.h5"], capture_output=True, text=True,
                               cwd=tmp, timeout=600, env=dict(os.environ, **{name: bad}))
            check(r.returncode == 2 and f"{name}={bad}:" in r.stderr and not os.path.exists(tmp + "/env.h5"),
                  f"{name}={bad!r}: exit {r.returncode} {r.stderr[-300:]!r}")
    # submit --time: a Slurm time limit, as the manifest's slurm.time
    for bad in ("1-", "1:2:3:4", "-5"):
        r = run("submit", job, "--dry-run", "--time", bad, cwd=tmp)
        check(r.returncode == 2 and "expected a Slurm time limit" in r.stderr, f"submit --time {bad}: {r.returncode}")
    # submit --dry-run --tasks=2 parses (it may then fail for want of Slurm, but not on the options)
    r = run("submit", job, "--dry-run", "--tasks=2", "--time=00:10:00", "--sbatch-arg=--qos=long", cwd=tmp)
    check(r.returncode == 0 or "option" not in r.stderr, f"submit --tasks=2: {r.stderr}")

# tokenize: a pipeline folder's tokenizer/ or the folder itself, --prompt=P as --prompt P
import json  # noqa: E402
tok = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tokenizer")
with tempfile.TemporaryDirectory() as pipe:
    os.symlink(os.path.join(tok, "sd1"), os.path.join(pipe, "tokenizer"))
    r1, r2 = run("tokenize", pipe, "--prompt=a photo of a cat"), run("tokenize", os.path.join(tok, "sd1"), "--prompt", "a photo of a cat")
    check(r1.returncode == 0 and r1.stdout == r2.stdout and len(json.loads(r1.stdout or "{}").get("input_ids", [])) == 77,
          f"tokenize: {r1.stderr} {r2.stderr}")
expect_usage_error(["tokenize", os.path.join(tok, "sd1"), "--prompt", "caf\udcc3"], "invalid UTF-8")
# the truncation warning quotes the dropped words as valid UTF-8 even where the cut falls inside a character
# (here after the first of the 4 byte tokens of U+1F9FF): its stray bytes are U+FFFD, as diffusers' decode shows them
r = subprocess.run([sower, "tokenize", os.path.join(tok, "sd1"), "--prompt", "cat " * 74 + "\U0001F9FF\U0001FAE0 end"],
                   capture_output=True, timeout=600)
shown = r.stderr.decode("utf-8", "replace")
check(r.returncode == 0 and r.stderr.decode("utf-8", "strict") is not None and "\ufffd\ufffd\U0001FAE0 end" in shown,
      f"tokenize: the truncation warning {r.stderr[-120:]!r}")

# the scheduler registry (src/model/scheduler_registry.c) and the schema's pipeline.scheduler enum list
# the same names; every registered scheduler renders through `sample`
schema = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schema",
                                     "sower-job.schema.json")))
enum = schema["properties"]["pipeline"]["properties"]["scheduler"]["enum"]
r = run("sample", model, "--seeds", "0", "--scheduler", "no-such", "-o", "x.npy")
registered = r.stderr.split("expected one of ")[-1].split(", found")[0].split(", ")
check(r.returncode == 2 and registered == enum, f"registry {registered} != schema enum {enum}")
with tempfile.TemporaryDirectory() as tmp:
    # --steps 4: PNDM without skip_prk_steps (this folder's config) warms up with 4 timesteps
    for name in registered:
        r = run("sample", model, "--seeds", "0-1", "--steps", "4", "--scheduler", name, "--force", "-o", tmp + "/s.npy")
        if name == "dpm2-a":  # this cosine schedule falls 8000-fold in its first step: diffusers' midpoint is NaN
            check(r.returncode == 2 and "every sample would be NaN" in r.stderr and "dpm2-a's UNet call 0" in r.stderr,
                  f"sample --scheduler {name}: exit {r.returncode}: {r.stderr}")
            continue
        check(r.returncode == 0, f"sample --scheduler {name}: {r.stderr}")
    # ... and every one is a manifest's pipeline.scheduler (the manifest reader listed only the first 15: deis, the
    # 16th, was refused there), named in full when the name is wrong
    for name in registered + ["no-such"]:
        job = os.path.join(tmp, "sched.yaml")
        open(job, "w").write(f"sower: 1\nname: t\nmodel: {model}\npipeline: {{scheduler: {name}, steps: 4}}\n"
                             f"seeds: {{list: [1]}}\noutput: {{path: {tmp}/o.h5}}\n")
        r = run("check", job)
        if name == "no-such":
            check(r.returncode == 2 and "expected one of " + ", ".join(registered) + ", found 'no-such'" in r.stderr,
                  f"check of pipeline.scheduler no-such: {r.returncode} {r.stderr!r}")
        elif name == "dpm2-a":  # read, then refused for this schedule as sample refuses it
            check(r.returncode == 2 and "every sample would be NaN" in r.stderr,
                  f"check of pipeline.scheduler {name}: {r.returncode} {r.stderr!r}")
        else:
            check(r.returncode == 0 and f"scheduler: {name}" in r.stdout,
                  f"check of pipeline.scheduler {name}: {r.returncode} {r.stderr!r}")

# the usage errors: exit 2, naming what is wrong
expect_usage_error(["run", "x.yaml", "--force=1"], "--force takes no value")
expect_usage_error(["sample", model, "--seeds", "0", "-o", "x.npy", "--batch"], "--batch expects a value")
expect_usage_error(["verify", "x.h5", "--frobnicate"], "--frobnicate")
expect_usage_error(["info", model, "extra"], "extra")
# numbers as the manifest reads them: no blank on either side, no hex, inf or nan spelling
for option, bad in (("--steps", " 5"), ("--steps", "5 "), ("--eta", " 0.5"), ("--eta", "0x1p-2"), ("--eta", "nan"),
                    ("--eta", "inf"), ("--eta", "1e999")):
    expect_usage_error(["sample", model, "--seeds", "0", "-o", "x.npy", option, bad], option)
with tempfile.TemporaryDirectory() as tmp:  # an underflow is the nearest double (0 here), as in a manifest
    r = run("sample", model, "--seeds", "0", "--steps", "2", "--scheduler", "ddim", "--eta", "1e-320", "-o", tmp + "/u.npy")
    check(r.returncode == 0, f"--eta 1e-320: exit {r.returncode}: {r.stderr[-300:]}")
expect_usage_error(["check", "a.yaml", "b.yaml"], "b.yaml")
expect_usage_error(["noise", "--seed", "0", "--shape", "2", "-o", "x", "stray"], "stray")
# a long path is named whole, however deep the message is wrapped (messages were cut at 1 KiB)
with tempfile.TemporaryDirectory() as tmp:
    deep = tmp + "/" + "/".join(["d" * 200] * 15)
    job = tmp + "/deep.yaml"
    with open(job, "w") as f:
        f.write(f"sower: 1\nname: deep\nmodel: {deep}\npipeline: {{steps: 2}}\nseeds: {{list: [1]}}\n"
                f"output: {{path: o.h5}}\n")
    for args in (["check", job], ["sample", deep, "--seeds", "0", "-o", tmp + "/o.npy"]):
        r = run(*args)
        check(r.returncode == 2 and deep in r.stderr and "[...]" not in r.stderr,
              f"{args[0]} naming a {len(deep)}-byte path: exit {r.returncode}, the path not whole in {r.stderr[-300:]!r}")
# after '--' an option is an operand: named as the extra argument it is, not as an unknown option
expect_usage_error(["run", "x.yaml", "--", "--force"], "unexpected argument '--force': it takes one JOB.yaml, and after")
expect_usage_error(["sample", model, "--seeds", "0", "-o", "x.npy", "--", "-x"], "unexpected argument '-x': it takes one MODEL_DIR")
expect_usage_error(["sample", model, "--seeds=5-3", "-o", "x.npy"], "5-3")
expect_usage_error(["sample", model, "--seeds=-9223372036854775809", "-o", "x.npy"], "-9223372036854775809")
# SOWER_KERNELS (the BLIS kernel family): an unknown name exits 2 naming it, before anything runs
r = subprocess.run([sower, "info", model], capture_output=True, text=True, timeout=600,
                   env=dict(os.environ, SOWER_KERNELS="avx9000"))
check(r.returncode == 2 and "SOWER_KERNELS=avx9000" in r.stderr, f"SOWER_KERNELS=avx9000: {r.returncode} {r.stderr!r}")
r = subprocess.run([sower, "info", model], capture_output=True, text=True, timeout=600,
                   env=dict(os.environ, SOWER_KERNELS="blis"))
check(r.returncode == 0 and "CPU kernels:" in r.stdout, f"SOWER_KERNELS=blis: {r.returncode} {r.stderr!r}")
r = subprocess.run([sower, "info", model], capture_output=True, text=True, timeout=600,
                   env=dict(os.environ, SOWER_WEIGHT_CACHE_MB="64"))
check(r.returncode == 0 and "kept up to 64 MiB" in r.stdout, f"SOWER_WEIGHT_CACHE_MB=64: {r.returncode} {r.stdout!r}")
# SOWER_WEIGHT_CACHE_MB (packed weights kept between forwards): a malformed budget exits 2 naming it
for bad in ("lots", "-5", "12MB"):
    r = subprocess.run([sower, "info", model], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, SOWER_WEIGHT_CACHE_MB=bad))
    check(r.returncode == 2 and f"SOWER_WEIGHT_CACHE_MB={bad}" in r.stderr, f"SOWER_WEIGHT_CACHE_MB={bad}: {r.returncode} {r.stderr!r}")
# check (and so submit) takes output.path as run does: a working file's name or an input of the job is refused
# (check passed them, exit 0), and a Stable Diffusion setting found wanting is located at its own line (the
# message gave pipeline.guidance's line for height and clip_skip).
sd = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sd", "tiny-sd1")
with tempfile.TemporaryDirectory() as tmp:
    def manifest(name, output, extra=""):
        path = os.path.join(tmp, name)
        open(path, "w").write(f"sower: 1\nname: t\nmodel: {sd}\npipeline:\n  steps: 2\n  guidance: 7.5\n{extra}"
                              f"prompts: [\"a cat\"]\nseeds:\n  list: [1]\noutput:\n  path: {output}\n")
        return path
    for output, text in (("x.h5.partial", "kept for a run's working files"), ("x.h5.lock", "kept for a run's working files"),
                         ("self.yaml", "an input of the job")):
        job = manifest("self.yaml", os.path.join(tmp, output))
        r = run("check", job)
        check(r.returncode == 2 and text in r.stderr, f"check of output.path {output}: exit {r.returncode} {r.stderr!r}")
    for key, extra, line in (("height", "  height: 100\n  width: 64\n", 7), ("clip_skip", "  clip_skip: 60\n", 7)):
        r = run("check", manifest("at.yaml", os.path.join(tmp, "o.h5"), extra))
        check(r.returncode == 2 and f"at.yaml:{line}:" in r.stderr and key.split("_")[0] in r.stderr,
              f"check of pipeline.{key} wanting: exit {r.returncode}, expected at.yaml:{line}: {r.stderr!r}")
    # backend cuda passes check wherever it runs (a login node has no GPU); a build without the CUDA backend,
    # whose run would refuse it on every node, says so (it said nothing).
    built = "this build has no CUDA backend" not in run("info", sd).stdout
    r = run("check", manifest("cuda.yaml", os.path.join(tmp, "o.h5"), "  backend: cuda\n"))
    warned = "cuda.yaml: pipeline.backend cuda: this sower was built without the CUDA backend" in r.stderr
    check(r.returncode == 0 and warned != built, f"check of backend cuda (built: {built}): {r.returncode} {r.stderr!r}")
    r = run("check", manifest("good.yaml", os.path.join(tmp, "o.h5")))
    check(r.returncode == 0 and "  precision: fp32\n" in r.stdout and "  decode: false\n" in r.stdout
          and "  karras: false\n" in r.stdout, f"check of a good job: every default printed: {r.returncode} {r.stdout!r}")
# More threads than CPUs are cut to the CPUs, said on stderr, the bits unchanged (4 threads on 2 CPUs took minutes
# for what 1 thread did in half a second: the threads spin at every barrier for the descheduled ones).
with tempfile.TemporaryDirectory() as tmp:
    cpus = len(os.sched_getaffinity(0))
    outs = [os.path.join(tmp, f"{t}.npy") for t in (1, cpus + 62)]
    rs = [run("sample", model, "--seeds", "0,1", "--steps", "2", "--threads", str(t), "-o", o) for t, o in zip((1, cpus + 62), outs)]
    check(all(r.returncode == 0 for r in rs) and f"--threads {cpus + 62} is more than the {cpus} CPU" in rs[1].stderr
          and open(outs[0], "rb").read() == open(outs[1], "rb").read(), f"sample --threads {cpus + 62}: {rs[1].stderr!r}")
    job = os.path.join(tmp, "many.yaml")
    open(job, "w").write(f"sower: 1\nname: many\nmodel: {model}\npipeline:\n  steps: 2\n  threads: 512\n"
                         f"seeds:\n  list: [1, 2]\noutput:\n  path: {tmp}/many.h5\n")
    r = subprocess.run([mpiexec, "-n", "1", sower, "run", job], capture_output=True, text=True, timeout=600)
    check(r.returncode == 0 and "pipeline.threads 512 is more than the " in r.stderr,
          f"run with pipeline.threads 512: exit {r.returncode} {r.stderr[-300:]!r}")
    r = run("verify", f"{tmp}/many.h5", "--threads", "300")
    check(r.returncode == 0 and f"--threads 300 is more than the {cpus} CPU" in r.stderr,
          f"verify --threads 300: exit {r.returncode} {r.stderr[-300:]!r}")

# sample --height/--width whose latents do not halve evenly: rendered as diffusers does (test_sd_odd_size.py has the
# numbers; sower refused them until 2026-12-06), the latents at the size asked for.
with tempfile.TemporaryDirectory() as tmp:
    r = run("sample", sd, "--prompt", "x", "--seeds", "0", "--steps", "2", "--height", "136", "--width", "128",
            "-o", os.path.join(tmp, "x.npy"))
    check(r.returncode == 0 and np.load(os.path.join(tmp, "x.npy")).shape == (1, 4, 17, 16),
          f"sample --height 136: exit {r.returncode} {r.stderr!r}")
# Config values diffusers reads as the ones sower runs (they were refused, exit 2): the UNet's
# mid_block_only_cross_attention (only UNetMidBlock2DSimpleCrossAttn reads it), layers_per_block and
# cross_attention_dim as lists of one value per block, and the VAE's act_fn "swish".
with tempfile.TemporaryDirectory() as tmp:
    edited = os.path.join(tmp, "sd")
    shutil.copytree(sd, edited)
    unet_cfg = json.load(open(os.path.join(sd, "unet", "config.json")))
    n_blocks = len(unet_cfg["block_out_channels"])
    for rel, key, value in (("unet/config.json", "mid_block_only_cross_attention", True), ("vae/config.json", "act_fn", "swish"),
                            ("unet/config.json", "layers_per_block", [unet_cfg["layers_per_block"]] * n_blocks),
                            ("unet/config.json", "cross_attention_dim", [unet_cfg["cross_attention_dim"]] * n_blocks)):
        cfg = json.load(open(os.path.join(edited, rel)))
        cfg[key] = value
        json.dump(cfg, open(os.path.join(edited, rel), "w"))
    outs = []
    for d in (sd, edited):
        outs.append(os.path.join(tmp, f"{len(outs)}.npy"))
        r = run("sample", d, "--prompt", "a cat", "--seeds", "0", "--steps", "1", "--decode", "-o", outs[-1])
        check(r.returncode == 0, f"sample of {d}: exit {r.returncode} {r.stderr[-300:]!r}")
    check(all(os.path.exists(o) for o in outs) and open(outs[0], "rb").read() == open(outs[1], "rb").read(),
          "mid_block_only_cross_attention / per-block lists / VAE act_fn swish: other bits than the plain folder's")
    cfg = json.load(open(os.path.join(edited, "unet", "config.json")))
    cfg["layers_per_block"] = [1] + [2] * (n_blocks - 1)
    json.dump(cfg, open(os.path.join(edited, "unet", "config.json"), "w"))
    r = run("info", edited)
    check(r.returncode == 2 and "a different value per block is not supported" in r.stderr,
          f"layers_per_block differing per block: exit {r.returncode} {r.stderr!r}")
# A UNet2DModel job that run refuses is refused by check (and so submit) too, and run refuses it before any
# output exists: an odd sample size (check passed it and run left OUT.h5.partial behind, failing in its first
# forward), a null sample_size, more steps than the training timesteps.
with tempfile.TemporaryDirectory() as tmp:
    def folder(name, unet=None, scheduler=None):
        d = os.path.join(tmp, name)
        shutil.copytree(model, d)
        for rel, changes in (("unet/config.json", unet), ("scheduler/scheduler_config.json", scheduler)):
            if changes:
                cfg = json.load(open(os.path.join(d, rel)))
                cfg.update(changes)
                json.dump(cfg, open(os.path.join(d, rel), "w"))
        return d
    for name, d, steps, text in (("odd", folder("odd", {"sample_size": 7}), 2, "sample size 7x7 is not divisible by 2"),
                                 ("nosize", folder("nosize", {"sample_size": None}), 2, "key 'sample_size' is null"),
                                 ("steps", folder("steps", None, {"num_train_timesteps": 10}), 11, "11"),
                                 # a visited step without noise: DDIM's variance 0/0, every row NaN (exit 0 before)
                                 ("nonoise", folder("nonoise", None, {"beta_schedule": "linear", "beta_start": 0,
                                                                      "timestep_spacing": "leading"}), 2,
                                  "has no noise")):
        job = os.path.join(tmp, name + ".yaml")
        out = os.path.join(tmp, name + ".h5")
        open(job, "w").write(f"sower: 1\nname: {name}\nmodel: {d}\npipeline:\n  steps: {steps}\nseeds:\n  list: [1]\n"
                             f"output:\n  path: {out}\n")
        r = run("check", job)
        check(r.returncode == 2 and text in r.stderr and f"{name}.yaml:" in r.stderr,
              f"check of a {name} model: exit {r.returncode} {r.stderr!r}")
        r = subprocess.run([mpiexec, "-n", "1", sower, "run", job], capture_output=True, text=True, timeout=600)
        check(r.returncode == 2 and text in r.stderr and not os.path.exists(out + ".partial") and not os.path.exists(out),
              f"run of a {name} model: exit {r.returncode}, partial left: {os.path.exists(out + '.partial')} {r.stderr[-300:]!r}")
for command in ("noise", "sample", "info", "check", "run", "verify", "export", "submit", "tokenize"):
    r = run(command, "--help")
    check(r.returncode == 0 and "usage" in r.stdout, f"{command} --help: exit {r.returncode}")

print("test_cli_options:", "FAILED" if failures else "ok", f"({failures} failures)")
sys.exit(1 if failures else 0)
