#!/usr/bin/python3
"""`sower run` with backend cuda on 2 ranks, each with an emulated GPU (sower_emulated: the real
program with tests/cuda_emu in place of CUDA, NCCL emulated over MPI), on machines without GPUs:

  - one GPU per rank: rank 0 alone reads the weights and "NCCL" broadcasts its device copy; the
    other rank's rows (rendered from the weights it received) and the cross-rank verification
    must equal a single-process render bit for bit;
  - one GPU shared by both ranks: each reads its own copy, with the same bits;
  - pipeline.precision tf32 over the broadcast: the tf32 identity, a single-process tf32 render's bits;
  - rank 1 failing to join the NCCL communicator: the job ends with its message, no hang, no output;
  - generator torch-cuda (torch.Generator("cuda"), made on the GPU) with DDPM, which draws every step:
    a seed's bits are the same at batch 4 and 3 and over 2 ranks with verification, unlike torch-cpu's;
  - with SD_MODEL_DIR, a Stable Diffusion job (prompt, guidance, pipeline.decode) with one GPU per rank:
    the conditional UNet's weights over the broadcast, the VAE decoding on each rank's GPU; latents equal a
    single-process render's, verification passes, every row has its image;
  - and a bf16 SD job with SOWER_GEMM16=1 and SOWER_ATTENTION16=1 on both ranks: a single-process render's
    rows, the identity naming the attention, `sower verify` refusing (exit 2) without those settings.

usage: test_run_emulated_gpu.py SOWER_EMULATED MPIEXEC MODEL_DIR [SD_MODEL_DIR]
       (MODEL_DIR: tests/data/diffusers/models/mono_v; SD_MODEL_DIR: tests/data/sd/tiny-sd1)
Reads the files with python3-h5py (Debian).
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

SEEDS = list(range(8))
failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message, file=sys.stderr)


def run(argv, env=None):
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=e, timeout=600)


def main():
    sower, mpiexec, model = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = os.path.join(tmp, "ref.npy")
        r = run([sower, "sample", model, "--seeds", f"0-{len(SEEDS) - 1}", "--steps", "2", "--batch", "8",
                 "--backend", "cuda", "-o", ref_path])
        if r.returncode != 0:
            print(f"single-process render: exit {r.returncode}: {r.stderr}", file=sys.stderr)
            sys.exit(1)
        ref = np.load(ref_path)
        job = os.path.join(tmp, "job.yaml")
        for label, gpus, reason in [("one GPU per rank", "per-process",
                                     "rank 0 reads the weight file, NCCL broadcasts it to 2 GPUs"),
                                    ("a shared GPU", "shared", "each rank reads the weight file")]:
            out = os.path.join(tmp, f"{gpus}.h5")
            with open(job, "w") as f:
                f.write(f"sower: 1\nname: emulated\nmodel: {os.path.abspath(model)}\npipeline:\n  steps: 2\n"
                        f"  batch: 3\n  backend: cuda\nseeds:\n  ranges:\n    - {{start: 0, count: {len(SEEDS)}}}\n"
                        f"output:\n  path: {out}\nverify:\n  count: 4\n")
            r = run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job], {"SOWER_EMU_GPUS": gpus})
            if r.returncode != 0:
                fail(f"{label}: exit {r.returncode}: {r.stderr[-1500:]}")
                continue
            if reason not in r.stderr:
                fail(f"{label}: the log does not say '{reason}': {r.stderr.strip()}")
            with h5py.File(out, "r") as h:
                identity = text_attr(h, "backend_identity")
                if not identity.startswith("cuda: host emulation"):
                    fail(f"{label}: backend_identity is '{identity}'")
                latents = h["latents"][()]
                if not h["verify"]["match"][()].all():
                    fail(f"{label}: a verification row mismatched")
                if (h["verify/renderer_rank"][()] == h["verify/verifier_rank"][()]).any():
                    fail(f"{label}: a row was verified by the rank that rendered it")
            differing = [s for s in SEEDS if latents[s].tobytes() != ref[s].tobytes()]
            if differing:
                fail(f"{label}: rows {differing} differ from the single-process render")
            print(f"test_run_emulated_gpu: {label}: {reason}; {len(SEEDS) - len(differing)} of {len(SEEDS)} rows "
                  f"equal a single-process render; verification passed")
            v = run([sower, "verify", out])
            if v.returncode != 0:
                fail(f"{label}: sower verify: exit {v.returncode}: {v.stdout}{v.stderr}")

        # pipeline.precision tf32 through the broadcast path: its identity on the file, a
        # single-process tf32 render's bits, verification passing.
        out = os.path.join(tmp, "tf32.h5")
        tf32_ref = os.path.join(tmp, "tf32.npy")
        r = run([sower, "sample", model, "--seeds", "0-3", "--steps", "1", "--backend", "cuda", "--precision", "tf32",
                 "-o", tf32_ref])
        with open(job, "w") as f:
            f.write(f"sower: 1\nname: emulated\nmodel: {os.path.abspath(model)}\npipeline:\n  steps: 1\n"
                    f"  batch: 3\n  backend: cuda\n  precision: tf32\nseeds:\n  list: [0, 1, 2, 3]\noutput:\n"
                    f"  path: {out}\nverify:\n  count: 2\n")
        rr = run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job], {"SOWER_EMU_GPUS": "per-process"})
        if r.returncode != 0 or rr.returncode != 0:
            fail(f"tf32: sample exit {r.returncode}, run exit {rr.returncode}: {r.stderr[-800:]}{rr.stderr[-800:]}")
        else:
            with h5py.File(out, "r") as h:
                identity = text_attr(h, "backend_identity")
                same = h["latents"][()].tobytes() == np.load(tf32_ref).tobytes()
                verified = bool(h["verify"]["match"][()].all())
            if "kernels sower tf32" not in identity or not same or not verified:
                fail(f"tf32: identity '{identity}', rows equal a single-process tf32 render: {same}, "
                     f"verification passed: {verified}")
            else:
                print("test_run_emulated_gpu: precision tf32 over the broadcast: identity says tf32, rows equal a "
                      "single-process tf32 render, verification passed")

        # A rank whose NCCL set-up fails: the job ends (no rank left waiting in a collective), with
        # that rank's message once and no output.
        out = os.path.join(tmp, "nccl-fails.h5")
        with open(job, "w") as f:
            f.write(f"sower: 1\nname: emulated\nmodel: {os.path.abspath(model)}\npipeline:\n  steps: 2\n"
                    f"  backend: cuda\nseeds:\n  list: [0, 1]\noutput:\n  path: {out}\n")
        r = run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job],
                {"SOWER_EMU_GPUS": "per-process", "SOWER_EMU_NCCL_FAIL_RANK": "1"})
        messages = r.stderr.count("ncclCommInitRank")
        if r.returncode in (0, 2) or messages != 1 or os.path.exists(out) or os.path.exists(out + ".partial"):
            fail(f"failing NCCL set-up on rank 1: exit {r.returncode}, {messages} messages naming "
                 f"ncclCommInitRank, output {'left' if os.path.exists(out) else 'absent'}: {r.stderr.strip()}")
        else:
            print(f"test_run_emulated_gpu: NCCL set-up failing on rank 1: exit {r.returncode}, one message, no output")
        torch_cuda_generator(sower, mpiexec, model, tmp, job)
        if len(sys.argv) > 4:
            stable_diffusion(sower, mpiexec, sys.argv[4], tmp, job)
            sixteen_bit_routes(sower, mpiexec, sys.argv[4], tmp, job)
            host_steps(sower, mpiexec, sys.argv[4], tmp, job)
    print(f"test_run_emulated_gpu: {len(failures)} failures")
    sys.exit(1 if failures else 0)


def torch_cuda_generator(sower, mpiexec, model, tmp, job):
    renders = {}
    for generator, batch in (("torch-cuda", 4), ("torch-cuda", 3), ("torch-cpu", 4)):
        path = os.path.join(tmp, f"{generator}-{batch}.npy")
        r = run([sower, "sample", model, "--seeds", "0-3", "--steps", "2", "--scheduler", "ddpm", "--batch", str(batch),
                 "--backend", "cuda", "--generator", generator, "-o", path])
        if r.returncode != 0:
            fail(f"generator {generator}, batch {batch}: exit {r.returncode}: {r.stderr[-800:]}")
            return
        renders[(generator, batch)] = np.load(path)
    cuda4, cuda3, cpu4 = renders[("torch-cuda", 4)], renders[("torch-cuda", 3)], renders[("torch-cpu", 4)]
    out = os.path.join(tmp, "torch-cuda.h5")
    with open(job, "w") as f:
        f.write(f"sower: 1\nname: emulated-torch-cuda\nmodel: {os.path.abspath(model)}\npipeline:\n  scheduler: ddpm\n"
                f"  steps: 2\n  batch: 3\n  backend: cuda\ngenerator: torch-cuda\nseeds:\n  ranges:\n"
                f"    - {{start: 0, count: 4}}\noutput:\n  path: {out}\nverify:\n  count: 2\n")
    r = run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job], {"SOWER_EMU_GPUS": "per-process"})
    if r.returncode != 0:
        fail(f"generator torch-cuda over 2 ranks: exit {r.returncode}: {r.stderr[-1500:]}")
        return
    with h5py.File(out, "r") as h:
        generator = text_attr(h, "generator")
        same = h["latents"][()].tobytes() == cuda4.tobytes()
        verified = bool(h["verify"]["match"][()].all())
    problems = []
    if cuda4.tobytes() != cuda3.tobytes():
        problems.append("batch 3 differs from batch 4")
    if any(cuda4[s].tobytes() == cpu4[s].tobytes() for s in range(4)):
        problems.append("a row equals torch-cpu's")
    if not (same and verified and generator == "torch-cuda"):
        problems.append(f"2 ranks: rows equal the single-process render: {same}, verification passed: {verified}, "
                        f"generator attribute '{generator}'")
    if problems:
        fail("generator torch-cuda: " + "; ".join(problems))
    else:
        print("test_run_emulated_gpu: generator torch-cuda (DDPM): batch 4 = batch 3 bit for bit, unlike torch-cpu's "
              "rows; over 2 ranks the same rows, verification passed, generator attribute torch-cuda")


def sd_renders(sower, mpiexec, model, tmp, job, name, pipeline, sample_options, env, seeds=4, scheduler="ddim"):
    """A `seeds`-seed SD render (`scheduler`, 2 steps, guidance 7.5, 64x64 pixels: 8x8 latents, a quarter of
    tiny-sd1's own size for CI time; the GPU ops at its own size: gpu_ops_emulated) twice: `sower sample` in one
    process, and a 2-rank `sower run` with one GPU per rank (weights broadcast) and verification; `pipeline`: the
    manifest's further pipeline lines, `sample_options` the same for the CLI, `env` both runs' settings. Returns
    (single-process latents, the job's output path, its stderr), or None after recording why it failed."""
    prompt = "a lighthouse at dawn"
    ref_path, out = os.path.join(tmp, f"{name}.npy"), os.path.join(tmp, f"{name}.h5")
    r = run([sower, "sample", model, "--prompt", prompt, "--guidance", "7.5", "--scheduler", scheduler, "--seeds",
             f"0-{seeds - 1}", "--steps", "2", "--height", "64", "--width", "64", "--backend", "cuda", "-o", ref_path]
            + sample_options, env)
    if r.returncode != 0:
        fail(f"{name}: single-process render: exit {r.returncode}: {r.stderr[-800:]}")
        return None
    with open(job, "w") as f:
        f.write(f"sower: 1\nname: emulated-{name}\nmodel: {os.path.abspath(model)}\npipeline:\n  scheduler: {scheduler}\n"
                f"  steps: 2\n  guidance: 7.5\n  height: 64\n  width: 64\n  backend: cuda\n{pipeline}prompts:\n"
                f"  - \"{prompt}\"\n"
                f"seeds:\n  list: [{', '.join(map(str, range(seeds)))}]\noutput:\n  path: {out}\nverify:\n  count: 2\n")
    r = run([mpiexec, "-np", "2", "--oversubscribe", sower, "run", job], dict(env, SOWER_EMU_GPUS="per-process"))
    if r.returncode != 0:
        fail(f"{name}: 2 ranks, one GPU each: exit {r.returncode}: {r.stderr[-1500:]}")
        return None
    return np.load(ref_path), out, r.stderr


def text_attr(h, name):
    value = h.attrs[name]
    return value.decode() if isinstance(value, bytes) else value


def rows_and_verification(out, ref):
    """Whether the job's /latents equal the single-process render's bytes, and its verification passed."""
    with h5py.File(out, "r") as h:
        return h["latents"][()].tobytes() == ref.tobytes(), bool(h["verify"]["match"][()].all())


def stable_diffusion(sower, mpiexec, model, tmp, job):
    rendered = sd_renders(sower, mpiexec, model, tmp, job, "sd", "  batch: 2\n  decode: true\n", [], {})
    if not rendered:
        return
    ref, out, log = rendered
    same, verified = rows_and_verification(out, ref)
    with h5py.File(out, "r") as h:
        images = h["images"].shape
    broadcast = "NCCL broadcasts it to 2 GPUs" in log
    if not (same and verified and broadcast and images[0] == len(ref)):
        fail(f"SD, one GPU per rank: rows equal a single-process render: {same}, verification passed: {verified}, "
             f"weights broadcast: {broadcast}, images {images}: {log.strip()[-800:]}")
    else:
        print(f"test_run_emulated_gpu: Stable Diffusion with decode, one GPU per rank: weights broadcast, latents "
              f"equal a single-process render, verification passed, images {images}")


def sixteen_bit_routes(sower, mpiexec, model, tmp, job):
    """bf16 with SOWER_GEMM16=1 and SOWER_ATTENTION16=1 on both ranks (the broadcast weights' 16-bit copies,
    attention on tensor cores): rows equal a single-process render under the same settings, the identity
    names the attention, and `sower verify` re-renders only under the same settings (else exit 2)."""
    routes = {"SOWER_GEMM16": "1", "SOWER_ATTENTION16": "1"}
    rendered = sd_renders(sower, mpiexec, model, tmp, job, "sd16", "  batch: 2\n  precision: bf16\n",
                          ["--precision", "bf16"], routes, seeds=3)  # 3 seeds: a batch of 2 and one of 1; CI time
    if not rendered:
        return
    ref, out, _ = rendered
    same, verified = rows_and_verification(out, ref)
    with h5py.File(out, "r") as h:
        identity = text_attr(h, "backend_identity")
    same_settings = run([sower, "verify", out], routes)
    other_settings = run([sower, "verify", out])
    if not (same and verified and "attention on tensor cores" in identity and same_settings.returncode == 0
            and other_settings.returncode == 2):
        fail(f"bf16 routes: rows equal a single-process render: {same}, verification passed: {verified}, identity "
             f"'{identity}', verify with the same settings: exit {same_settings.returncode}, without: exit "
             f"{other_settings.returncode}: {other_settings.stdout[-500:]}{other_settings.stderr[-500:]}")
    else:
        print("test_run_emulated_gpu: bf16 with gemm16 and attention16 over 2 ranks: rows equal a single-process "
              "render, verification passed, the identity names the attention; sower verify re-renders under the "
              "same settings and refuses (exit 2) without them")


def host_steps(sower, mpiexec, model, tmp, job):
    """The schedulers stepped on the host, on the GPU: DPM-Solver++ 2M SDE (each seed's draws) with guidance_rescale
    (the guided prediction rescaled on the host); KDPM2 ancestral (two UNet calls per step, the second's input scaled
    at its midpoint sigma, noise at the second calls only); DPM++ SDE (each seed's Brownian tree, its nodes drawn by
    fresh generators, on both ranks and in the cross-rank verification). 2 ranks' rows equal a single-process render,
    finite, verified."""
    cases = (("sd-sde", "dpm++2m-sde", "  guidance_rescale: 0.7\n  karras: true\n", ["--guidance-rescale", "0.7", "--karras"],
              "dpm++2m-sde karras with guidance_rescale 0.7"),
             ("sd-dpm2a", "dpm2-a", "", [], "dpm2-a"),
             ("sd-dpm-sde", "dpm++sde", "  karras: true\n", ["--karras"], "dpm++sde karras"))
    for name, scheduler, pipeline, options, label in cases:
        rendered = sd_renders(sower, mpiexec, model, tmp, job, name, pipeline, options, {}, seeds=3, scheduler=scheduler)
        if not rendered:
            continue
        ref, out, _ = rendered
        same, verified = rows_and_verification(out, ref)
        finite = bool(np.isfinite(ref).all())
        if not (same and verified and finite):
            fail(f"{label} on GPUs: rows equal a single-process render: {same}, verification passed: {verified}, "
                 f"finite: {finite}")
        else:
            print(f"test_run_emulated_gpu: {label} over 2 ranks: rows equal a single-process render, verification passed")


if __name__ == "__main__":
    main()
