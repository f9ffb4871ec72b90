#!/usr/bin/env python3
"""sower sample on Stable Diffusion folders against diffusers' StableDiffusionPipeline
(reference: validate/make_sd_reference.py, tests/data/sd/render_reference.json).

usage: test_sd_sample.py SOWER tests/data/sd MONO_V_MODEL

1. Every case (tiny SD 1.x / 2.x pipelines with F32 / F16 / BF16 weights; DDIM, PNDM (PLMS, and its
   Runge-Kutta warm-up from a DDIM config), Euler and DPM-Solver++ 2M (interpolated and Karras sigmas) and
   Euler ancestral, ... and DPM++ SDE (each seed's Brownian tree: diffusers' noise_sampler_seed=[the seeds]),
   each from the folder's PNDM or DDIM config; epsilon and v-prediction; guidance 1, 5, 7.5;
   negative prompts; eta 0 and 0.5; clip_skip; seeds 0, 2^32+7, 2^64-1): `sower sample --scheduler S
   [--karras]` equals output_type="latent" within 5 x max(torch's batch yardstick, torch's
   float32-vs-float64 yardstick).
2. Bit for bit: --batch 1, 2, 3 and --threads 1, 2 give identical bytes (DDIM; and PNDM, DPM-Solver++ and
   Euler ancestral, whose history and per-step draws are per row).
3. Bad input exits 2 with the file, key or option named, and writes nothing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from testing import check, failures  # noqa: E402  (the tests' shared helpers)


def sample(sower, folder, case, seeds, out, extra=()):
    argv = [sower, "sample", folder, "--prompt", case["prompt"], "--guidance", str(case["guidance"]),
            "--eta", str(case["eta"]), "--clip-skip", str(case["clip_skip"]), "--steps", str(case["steps"]),
            "--seeds", ",".join(seeds), "--force", "-o", out, *extra]
    if case["scheduler"]:  # None: the folder's own
        argv += ["--scheduler", case["scheduler"]]
    if case.get("karras"):
        argv.append("--karras")
    if case.get("guidance_rescale"):
        argv += ["--guidance-rescale", str(case["guidance_rescale"])]
    if case["negative_prompt"] is not None:
        argv += ["--negative-prompt", case["negative_prompt"]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def group_key(c):
    return (c["pipeline"], c["prompt"], c["negative_prompt"], c["guidance"], c["eta"], c["clip_skip"],
            c["scheduler"], c.get("karras", False), json.dumps(c.get("scheduler_config_edits"), sort_keys=True),
            c.get("guidance_rescale", 0))


def folder_of(data, tmp, case):
    """The case's pipeline folder; with scheduler_config_edits, a copy whose scheduler_config.json has them."""
    folder = os.path.join(data, case["pipeline"])
    edits = case.get("scheduler_config_edits")
    if not edits:
        return folder
    copy = os.path.join(tmp, "edited-" + case["pipeline"] + "-" + "-".join(sorted(edits)))
    if not os.path.isdir(copy):
        shutil.copytree(folder, copy)
        path = os.path.join(copy, "scheduler", "scheduler_config.json")
        config = json.load(open(path))
        config.update(edits)
        json.dump(config, open(path, "w"), indent=2)
    return copy


def main():
    sower, data, mono_v = sys.argv[1], sys.argv[2], sys.argv[3]
    ref = json.load(open(os.path.join(data, "render_reference.json"), encoding="utf-8"))
    groups = {}
    for c in ref["cases"]:
        groups.setdefault(group_key(c), []).append(c)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "latents.npy")
        # 1. Against diffusers, each group's seeds in one run (one batch).
        worst, worst_abs = 0.0, 0.0
        per_scheduler = {}  # the worst fraction of its tolerance, per scheduler
        for key, cases in groups.items():
            folder = folder_of(data, tmp, cases[0])
            what = (f"{key[0]} {key[6]}{' karras' if key[7] else ''} {key[1][:30]!r} negative {key[2]!r} "
                    f"guidance {key[3]} eta {key[4]} clip_skip {key[5]}"
                    f"{' scheduler config + ' + key[8] if cases[0].get('scheduler_config_edits') else ''}")
            r = sample(sower, folder, cases[0], [c["seed"] for c in cases], out)
            if not check(r.returncode == 0, f"{what}: exit {r.returncode}: {r.stderr}"):
                continue
            got = np.load(out)
            want = np.load(os.path.join(data, f"render_latents_{key[0]}.npy"))
            for i, c in enumerate(cases):
                diff = float(np.abs(got[i].astype(np.float64) - want[c["row"]]).max())
                tol = 5 * max(c["torch_batch_yardstick"], c["torch_fp64_yardstick"])
                worst, worst_abs = max(worst, diff / tol), max(worst_abs, diff)
                edits = c.get("scheduler_config_edits") or {}
                name = (key[6] + (" karras" if key[7] else "") + (" zero-SNR" if edits.get("rescale_betas_zero_snr") else "")
                        + (" exponential" if edits.get("use_exponential_sigmas") else "")
                        + (" beta" if edits.get("use_beta_sigmas") else "")
                        + (f" order {edits['solver_order']}" if "solver_order" in edits else "")
                        + (f" rescale {key[9]}" if key[9] else ""))
                per_scheduler[name] = max(per_scheduler.get(name, 0.0), diff / tol)
                check(diff <= tol, f"{what} seed {c['seed']}: max|sower - diffusers| {diff:.3g} > {tol:.3g}")
        print(f"{len(ref['cases'])} renders against StableDiffusionPipeline: max|diff| up to {worst_abs:.3g}, "
              f"at worst {worst:.2f} of its tolerance")
        print("  worst per scheduler: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_scheduler.items())))

        # 2. Batch and threads, bit for bit (guidance on: each row's pair of passes shares the batch).
        key, cases = next(iter(groups.items()))
        folder = os.path.join(data, key[0])
        seeds = [c["seed"] for c in cases] + ["7"]
        runs = {}
        for extra in (["--batch", "1", "--threads", "1"], ["--batch", "2", "--threads", "2"],
                      ["--batch", "3", "--threads", "2"], ["--batch", "4", "--threads", "1"]):
            path = os.path.join(tmp, "b" + "-".join(extra) + ".npy")
            r = sample(sower, folder, cases[0], seeds, path, extra)
            if check(r.returncode == 0, f"{extra}: exit {r.returncode}: {r.stderr}"):
                runs[" ".join(extra)] = open(path, "rb").read()
        check(len(set(runs.values())) == 1, f"the bytes depend on --batch/--threads: {list(runs)}")
        print(f"batch 1/2/3/4 x threads 1/2: identical bytes ({len(seeds)} seeds)")
        # The schedulers that keep a history per value (pndm, dpm++2m, unipc, heun, lms, dpm2, dpm++2s, deis) or draw noise
        # (euler-a), or both (dpm++2m-sde, dpm2-a, dpm++2s-sde; dpm++sde from each sample's Brownian tree).
        for name in ("pndm", "dpm++2m", "euler-a", "dpm++2m-sde", "unipc", "heun", "lms", "dpm2", "dpm2-a", "dpm++2s",
                     "dpm++2s-sde", "deis", "dpm++sde"):
            key, group = next((k, g) for k, g in groups.items() if k[6] == name)
            seeds = [c["seed"] for c in group] + ["7", "8"]
            runs = []
            for extra in (["--batch", "1", "--threads", "1"], ["--batch", "3", "--threads", "2"]):
                path = os.path.join(tmp, name + "-".join(extra) + ".npy")
                r = sample(sower, os.path.join(data, key[0]), group[0], seeds, path, extra)
                if check(r.returncode == 0, f"{name} {extra}: exit {r.returncode}: {r.stderr}"):
                    runs.append(open(path, "rb").read())
            check(len(runs) == 2 and runs[0] == runs[1], f"{name}: the bytes depend on --batch/--threads")
        print("pndm, dpm++2m, euler-a, dpm++2m-sde, unipc, heun, lms, dpm2, dpm2-a, dpm++2s, dpm++2s-sde, deis, dpm++sde: "
              "batch 1 x threads 1 == batch 3 x threads 2, bit for bit")

        # 3. Bad input.
        base = dict(cases[0])

        bad_kinds = []

        def bad(name, folder, texts, extra=(), case=None, prompt=True):
            bad_kinds.append(name)
            target = os.path.join(tmp, "bad.npy")
            c = dict(case or base)
            if not prompt:
                argv = [sower, "sample", folder, "--seeds", "0", "-o", target, *extra]
                r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            else:
                r = sample(sower, folder, c, ["0"], target, extra)
            missing = [t for t in texts if t not in r.stderr]
            check(r.returncode == 2 and not missing,
                  f"{name}: exit {r.returncode} (expected 2), missing {missing}: {r.stderr.strip()[-600:]}")
            check(not os.path.exists(target), f"{name}: wrote an output")

        def copy_with(name, edit):
            path = os.path.join(tmp, name)
            shutil.copytree(folder, path)
            edit(path)
            return path

        def edit_json(rel, **changes):
            def edit(path):
                p = os.path.join(path, rel)
                d = json.load(open(p))
                d.update(changes)
                json.dump(d, open(p, "w"))
            return edit

        bad("no --prompt", folder, ["StableDiffusionPipeline", "--prompt is required"], prompt=False)
        bad("--prompt on a UNet2DModel", mono_v, ["--prompt", "apply to Stable Diffusion"])
        bad("height not a multiple of 8", folder, ["multiples of 8"], ["--height", "100", "--width", "128"])
        bad("height without width", folder, ["go together"], ["--height", "128"])
        bad("clip skip past the layers", folder, ["--clip-skip 9"], ["--clip-skip", "9"])
        bad("SDXL pipeline", copy_with("xl", edit_json("model_index.json", _class_name="StableDiffusionXLPipeline")),
            ["model_index.json", "StableDiffusionXLPipeline", "StableDiffusionPipeline"])
        bad("inpainting pipeline",
            copy_with("inpaint", edit_json("model_index.json", _class_name="StableDiffusionInpaintPipeline")),
            ["model_index.json", "StableDiffusionInpaintPipeline"])
        bad("unet not conditional", copy_with("u2d", edit_json("unet/config.json", _class_name="UNet2DModel")),
            ["unet/config.json", "UNet2DModel", "UNet2DConditionModel"])
        bad("SDXL's added conditioning",
            copy_with("addemb", edit_json("unet/config.json", addition_embed_type="text_time")),
            ["unet/config.json", "addition_embed_type", "text_time"])
        bad("cross_attention_dim mismatch",
            copy_with("xdim", edit_json("unet/config.json", cross_attention_dim=40)),
            ["diffusion_pytorch_model.safetensors", "attn2.to_k.weight", "has shape"])
        bad("no text encoder", copy_with("notext", lambda p: shutil.rmtree(os.path.join(p, "text_encoder"))),
            ["no text encoder"])
        def fifo(rel):  # a named pipe in place of a file: a plain open() would wait for a writer forever
            def edit(path):
                os.remove(os.path.join(path, rel))
                os.mkfifo(os.path.join(path, rel))
            return edit

        bad("tokenizer merges a FIFO", copy_with("fifo-merges", fifo("tokenizer/merges.txt")),
            ["tokenizer/merges.txt", "not a regular file"])
        bad("VAE config a FIFO", copy_with("fifo-vae", fifo("vae/config.json")),
            ["vae/config.json", "not a regular file"])
        bad("text encoder config a FIFO", copy_with("fifo-text", fifo("text_encoder/config.json")),
            ["text_encoder/config.json", "not a regular file"])
        bad("empty vocabulary", copy_with("novocab", lambda p: open(os.path.join(p, "tokenizer", "vocab.json"), "w").write("{}")),
            ["tokenizer/vocab.json", "no tokens"])
        bad("index names another text encoder",
            copy_with("t5", edit_json("model_index.json", text_encoder=["transformers", "T5EncoderModel"])),
            ["model_index.json", "key 'text_encoder'", "T5EncoderModel", "CLIPTextModel"])
        bad("--guidance-rescale without guidance", folder, ["--guidance-rescale 0.7 needs --guidance above 1"],
            ["--guidance-rescale", "0.7"], case=dict(base, guidance=1.0))
        bad("--guidance-rescale past 1", folder, ["--guidance-rescale"], ["--guidance-rescale", "1.5"])
        bad("--karras with ddim", folder, ["--karras", "euler, dpm++2m, dpm++2m-sde, unipc, heun, lms, dpm2, dpm2-a, dpm++2s, dpm++2s-sde, deis and "
                                                   "dpm++sde"], ["--karras"])
        bad("DPM-Solver of order 4",
            copy_with("dpm4", edit_json("scheduler/scheduler_config.json", solver_order=4)),
            ["scheduler_config.json", "solver_order", "1..3"], case=dict(base, scheduler="dpm++2m"))
        # an exponential-sigma config: not beside --karras (from_config raises), not into a class whose 0.31
        # set_timesteps fails on it
        exp_cfg = copy_with("exp-cfg", edit_json("scheduler/scheduler_config.json", use_exponential_sigmas=True))
        bad("exponential config with --karras", exp_cfg,
            ["scheduler_config.json", "use_exponential_sigmas", "one sigma schedule"], ["--karras"],
            case=dict(base, scheduler="euler"))
        bad("--sigmas beta over an exponential config", exp_cfg,
            ["scheduler_config.json", "use_exponential_sigmas", "one sigma schedule"], ["--sigmas", "beta"],
            case=dict(base, scheduler="euler"))
        bad("--sigmas beta with dpm++2m", folder, ["--sigmas beta applies to the euler, heun, lms, dpm2, dpm2-a and "
                                                   "dpm++sde schedulers"], ["--sigmas", "beta"], case=dict(base, scheduler="dpm++2m"))
        bad("--karras with --sigmas beta", folder, ["--karras and --sigmas ask for two sigma schedules"],
            ["--karras", "--sigmas", "beta"], case=dict(base, scheduler="euler"))
        bad("--sigmas of no such name", folder, ["--sigmas: expected karras, exponential or beta"], ["--sigmas", "cosine"])
        # --sigmas exponential is from_config(config, use_exponential_sigmas=True): the bytes of the folder whose config
        # says so (the render reference's exponential cases edit the config)
        a, b = os.path.join(tmp, "sigmas-option.npy"), os.path.join(tmp, "sigmas-config.npy")
        r1 = sample(sower, folder, dict(base, scheduler="euler"), ["0", "1"], a, ["--sigmas", "exponential"])
        r2 = sample(sower, exp_cfg, dict(base, scheduler="euler"), ["0", "1"], b)
        check(r1.returncode == 0 and r2.returncode == 0 and open(a, "rb").read()[-4096:] == open(b, "rb").read()[-4096:]
              and np.array_equal(np.load(a), np.load(b)),
              f"--sigmas exponential vs the config's key: {r1.stderr[-300:]} {r2.stderr[-300:]}")
        bad("exponential config into dpm++2m", exp_cfg,
            ["scheduler_config.json", "use_exponential_sigmas", "expected false", "DPMSolverMultistepScheduler"],
            case=dict(base, scheduler="dpm++2m"))
        # zero terminal SNR with tiny-sd1's epsilon prediction: DDIM/DDPM's first trailing step divides by
        # sqrt(alphas_cumprod) = 0 (diffusers renders NaN); DPM's floor of 2**-24 runs, dpm++2m names its SDE twin
        zsnr = copy_with("zsnr-eps", edit_json("scheduler/scheduler_config.json", rescale_betas_zero_snr=True,
                                               timestep_spacing="trailing"))
        for name in ("ddim", "ddpm"):
            bad(f"zero SNR, epsilon, {name}", zsnr, ["train step 999", "no signal", "v_prediction"],
                case=dict(base, scheduler=name))
        r = sample(sower, zsnr, dict(base, scheduler="dpm++2m"), ["0"], os.path.join(tmp, "zsnr-dpm.npy"))
        check(r.returncode == 0 and np.isfinite(np.load(os.path.join(tmp, "zsnr-dpm.npy"))).all(),
              f"zero SNR, epsilon, dpm++2m: exit {r.returncode}: {r.stderr[-400:]}")
        sde_cfg = copy_with("sde-cfg", edit_json("scheduler/scheduler_config.json", algorithm_type="sde-dpmsolver++"))
        for name in ("dpm++2m", "dpm++2s"):
            bad(f"{name} with an SDE config", sde_cfg, ["scheduler_config.json", "algorithm_type", name + "-sde"],
                case=dict(base, scheduler=name))
        # a folder whose own scheduler is DPMSolverSinglestepScheduler with sde-dpmsolver++ runs dpm++2s-sde by default
        def own_singlestep_sde(path):
            edit_json("scheduler/scheduler_config.json", _class_name="DPMSolverSinglestepScheduler",
                      algorithm_type="sde-dpmsolver++")(path)
            edit_json("model_index.json", scheduler=["diffusers", "DPMSolverSinglestepScheduler"])(path)
        def own_runs_as(folder, name):
            """sample without --scheduler runs the folder's own as `name`: the same bytes as naming it."""
            a, b = os.path.join(tmp, f"own-{name}-default.npy"), os.path.join(tmp, f"own-{name}-named.npy")
            r1 = subprocess.run([sower, "sample", folder, "--prompt", "a cat", "--seeds", "0,1", "--steps", "4", "-o", a],
                                capture_output=True, text=True, timeout=600)
            r2 = sample(sower, folder, dict(base, prompt="a cat", scheduler=name, steps=4), ["0", "1"], b)
            check(r1.returncode == 0 and f"{name} 4 steps" in r1.stderr and r2.returncode == 0 and
                  open(a, "rb").read() == open(b, "rb").read(), f"own {name}: {r1.stderr[-300:]} {r2.stderr[-300:]}")

        own_runs_as(copy_with("singlestep-sde-own", own_singlestep_sde), "dpm++2s-sde")
        # a folder whose own scheduler is DPMSolverSDEScheduler (its noise_sampler_seed every sample's tree) runs dpm++sde
        def own_dpm_sde(seed):
            def edit(path):
                edit_json("scheduler/scheduler_config.json", _class_name="DPMSolverSDEScheduler",
                          noise_sampler_seed=seed)(path)
                edit_json("model_index.json", scheduler=["diffusers", "DPMSolverSDEScheduler"])(path)
            return edit
        own_runs_as(copy_with("dpm-sde-own", own_dpm_sde(5)), "dpm++sde")
        bad("a negative noise_sampler_seed", copy_with("dpm-sde-negative", own_dpm_sde(-3)),
            ["scheduler_config.json", "noise_sampler_seed", "0..2^53"], case=dict(base, scheduler="dpm++sde"))
        # a folder whose own scheduler is UniPC: runs it by default; with values diffusers takes but sower does not
        # run (order 4), the folder still serves a named scheduler, and its own is refused, saying why
        def own_unipc(**values):
            def edit(path):
                edit_json("scheduler/scheduler_config.json", _class_name="UniPCMultistepScheduler", **values)(path)
                edit_json("model_index.json", scheduler=["diffusers", "UniPCMultistepScheduler"])(path)
            return edit
        own_runs_as(copy_with("unipc-own", own_unipc()), "unipc")
        order4 = copy_with("unipc-order4", own_unipc(solver_order=4))
        bad("own UniPC of order 4, run as the default", order4,
            ["solver_order", "1..3", "the folder's own UniPCMultistepScheduler", "--scheduler"], prompt=True,
            case=dict(base, scheduler=None))
        r = sample(sower, order4, dict(base, scheduler="ddim", steps=2), ["0"], os.path.join(tmp, "order4-ddim.npy"))
        i = subprocess.run([sower, "info", order4], capture_output=True, text=True, timeout=600)
        check(r.returncode == 0 and i.returncode == 0 and "not run as configured" in i.stdout,
              f"own UniPC of order 4, --scheduler ddim / info: {r.returncode} {i.returncode} {r.stderr[-300:]} {i.stdout[-400:]}")
        # guidance_rescale reaches the sample's record and its export
        gr = os.path.join(tmp, "gr.npy")
        r = sample(sower, folder, dict(base, steps=2), ["0"], gr, ["--guidance-rescale", "0.7"])
        if check(r.returncode == 0, f"--guidance-rescale 0.7: {r.stderr[-300:]}"):
            record = json.load(open(gr + ".json"))
            check(record["pipeline"].get("guidance_rescale") == 0.7, f"record pipeline {record['pipeline']}")
            e = subprocess.run([sower, "export", gr, "--imagefolder", os.path.join(tmp, "gr-images")],
                               capture_output=True, text=True, timeout=600)
            lines = [json.loads(l) for l in open(os.path.join(tmp, "gr-images", "metadata.jsonl"))] if e.returncode == 0 else []
            check(len(lines) == 1 and lines[0].get("guidance_rescale") == 0.7, f"export: {e.stderr[-300:]} {lines}")
        sd2 = os.path.join(tmp, "eas")  # a DDIM folder (DDIM takes "sample"; the folder loads)
        shutil.copytree(os.path.join(data, "tiny-sd2"), sd2)
        edit_json("scheduler/scheduler_config.json", prediction_type="sample")(sd2)
        edit_json("model_index.json", scheduler=["diffusers", "DDIMScheduler"])(sd2)
        bad("Euler ancestral predicting samples", sd2,
            ["scheduler_config.json", "prediction_type", "EulerAncestralDiscreteScheduler"],
            case=dict(base, scheduler="euler-a"))
        target = os.path.join(tmp, "utf8.npy")
        r = subprocess.run([os.fsencode(sower), b"sample", os.fsencode(folder), b"--prompt", b"caf\xe9", b"--seeds",
                            b"0", b"-o", os.fsencode(target)], capture_output=True, timeout=600)
        check(r.returncode == 2 and b"invalid UTF-8" in r.stderr and not os.path.exists(target),
              f"invalid UTF-8 prompt: exit {r.returncode}: {r.stderr[-300:]}")
        print(f"{len(bad_kinds)} kinds of bad input: exit 2, named, nothing written")

        # 4. The folder's own scheduler is the class model_index.json names, configured from
        # scheduler_config.json, as DiffusionPipeline.from_pretrained builds it: tiny-sd2's index says
        # PNDMScheduler, its scheduler_config.json (SD 2.1's) DDIMScheduler; diffusers runs PNDM there.
        own, named = os.path.join(tmp, "own.npy"), os.path.join(tmp, "named.npy")
        common = ["--prompt", "a cat", "--steps", "4", "--seeds", "3", "--force"]
        r1 = subprocess.run([sower, "sample", os.path.join(data, "tiny-sd2"), *common, "-o", own],
                            capture_output=True, text=True, timeout=600)
        r2 = subprocess.run([sower, "sample", os.path.join(data, "tiny-sd2"), *common, "--scheduler", "pndm",
                             "-o", named], capture_output=True, text=True, timeout=600)
        check(r1.returncode == 0 and r2.returncode == 0 and open(own, "rb").read() == open(named, "rb").read(),
              f"tiny-sd2 without --scheduler is not its model_index.json's PNDM: {r1.stderr[-300:]} {r2.stderr[-300:]}")
        print("tiny-sd2 without --scheduler runs model_index.json's PNDMScheduler, bit for bit")

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
