#!/usr/bin/env python3
"""Reference data for sower's DDIM/DDPM schedulers (src/model/scheduler.c), made with the real diffusers.

Rerun (Debian 12, the reference environment: diffusers 0.31.0, Debian torch 1.13.1 (reports
1.13.0a0), numpy 1.24.2):
    /opt/refenv/bin/python validate/make_scheduler_reference.py tests/data/scheduler_reference.json
Then: ./build/tests/test_scheduler tests/data/scheduler_reference.json

Every case feeds a scheduler_config.json text to `DDIMScheduler.from_config`,
`DDPMScheduler.from_config` (or DDIMParallelScheduler's) (so keys of the other class are dropped, as in a pipeline that swaps
schedulers), calls set_timesteps(N) and records:
  - the timesteps list;
  - sha256 of the float32 little-endian bytes of alphas_cumprod;
  - for steps first, middle and last: sha256 of the float32 bytes of prev_sample for the input set
    `input` (model_output, sample, noise: torch.randn((1, 4, 4, 4)) from fixed seeds, stored as lists
    of floats so the C test needs no RNG): sets 0, 1, 2 for the three steps, and each step again
    with set 3, randn with hand-placed edge values (signed zeros, clip bounds, huge, subnormal);
    `noise` says whether the step drew noise;
  - a chain: every step of the run, starting from inputs[0].sample, step i using
    inputs[i % 3].model_output and inputs[i % 3].noise, each output fed to the next step; sha256 of
    the final sample.
The scheduler draws its noise through `randn_tensor`, which this script replaces by a function that
hands out the stored noise and counts the draws (so the noise flags are what diffusers does).

torch 1.13 computes torch.linspace (linear / scaled_linear betas) with a vectorised kernel whose
bits depend on the CPU capability torch dispatches to: AVX2 (every x86-64 with AVX2, the default
here) or DEFAULT (ATEN_CPU_CAPABILITY=default; non-x86 builds). The whole case list is run twice in
child processes, once per capability; the second run's digests are stored under "cpu_scalar".
The "rejected" list holds runs where diffusers itself misbehaves (timesteps outside 0..T-1, or
more timesteps than N); sower refuses them with SOWER_EINPUT.
"alphas_cumprod_cases" hold alphas_cumprod digests alone for random beta ranges and train lengths.
"timestep_sweeps" cover set_timesteps(N) for every N in 1..T for a few (T, spacing, steps_offset).
The inputs are drawn once, by the AVX2 child, and handed to the second child.
"""
import hashlib
import json
import os
import subprocess
import sys

INPUT_SEEDS = [(100, 200, 300), (101, 201, 301), (102, 202, 302)]  # (model_output, sample, noise)
INPUT_SHAPE = (1, 4, 4, 4)

CIFAR10 = ('{"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.0", "beta_end": 0.02, '
           '"beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": true, '
           '"num_train_timesteps": 1000, "trained_betas": null, "variance_type": "fixed_large"}')
SD15 = ('{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012, '
        '"beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, '
        '"set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, '
        '"trained_betas": null, "clip_sample": false}')
DDIM_SAVED = ('{"_class_name": "DDIMScheduler", "_diffusers_version": "0.31.0", "beta_end": 0.012, '
              '"beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, '
              '"clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995, '
              '"num_train_timesteps": 1000, "prediction_type": "epsilon", "rescale_betas_zero_snr": false, '
              '"sample_max_value": 1.0, "set_alpha_to_one": false, "steps_offset": 1, '
              '"thresholding": false, "timestep_spacing": "leading", "trained_betas": null}')

SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]
SPACINGS = ["leading", "trailing", "linspace"]
PREDICTIONS = ["epsilon", "v_prediction", "sample"]
CLIPS = [None, 1.0, 2.5]  # None: clip_sample false


def grid_cases():
    """DDIM and DDPM over every schedule x spacing x prediction; the other options rotate with j."""
    cases = []
    for cls in ("DDIMScheduler", "DDPMScheduler"):
        j = 0
        for sched in SCHEDULES:
            for spacing in SPACINGS:
                for pred in PREDICTIONS:
                    cfg = {"beta_schedule": sched, "timestep_spacing": spacing, "prediction_type": pred,
                           "steps_offset": j % 2}
                    clip = CLIPS[(j // 2) % 3]
                    cfg["clip_sample"] = clip is not None
                    if clip is not None:
                        cfg["clip_sample_range"] = clip
                    if sched == "scaled_linear":
                        cfg.update(beta_start=0.00085, beta_end=0.012)
                    n = [10, 50, 2, 1, 7][j % 5]
                    eta = None
                    if cls == "DDIMScheduler":
                        cfg["set_alpha_to_one"] = (j // 3) % 2 == 0
                        eta = [0.0, 0.3, 1.0][(j + j // 9) % 3]
                    else:
                        cfg["variance_type"] = ["fixed_small", "fixed_large"][(j // 3) % 2]
                    name = f"grid_{cls[:4].lower()}_{sched}_{spacing}_{pred}_n{n}"
                    cases.append((name, cls, json.dumps(cfg), n, eta))
                    j += 1
    return cases


def named_cases():
    c = []
    # bare constructors, as the slow tests use them
    for n in (1, 2, 10, 50, 1000):
        c.append((f"ddim_default_n{n}", "DDIMScheduler", "{}", n, 0.0))
    for n in (1, 2, 10, 50, 1000):
        c.append((f"ddpm_default_n{n}", "DDPMScheduler", "{}", n, None))
    # google/ddpm-cifar10-32: its DDPM config as DDPM, and carried over into DDIM
    for n in (2, 50, 1000):
        c.append((f"cifar10_ddpm_n{n}", "DDPMScheduler", CIFAR10, n, None))
    for n, eta in ((2, 0.0), (50, 0.0), (50, 1.0), (10, 0.3)):
        c.append((f"cifar10_into_ddim_n{n}_eta{eta}", "DDIMScheduler", CIFAR10, n, eta))
    # SD v1.5's PNDM config into DDIM and DDPM; a saved DDIM config into DDPM (set_alpha_to_one dropped)
    for n, eta in ((50, 0.0), (50, 0.3), (999, 0.0)):
        c.append((f"sd15_into_ddim_n{n}_eta{eta}", "DDIMScheduler", SD15, n, eta))
    c.append(("sd15_into_ddpm_n50", "DDPMScheduler", SD15, 50, None))
    c.append(("ddim_saved_into_ddpm_n20", "DDPMScheduler", DDIM_SAVED, 20, None))
    c.append(("ddim_saved_n20_eta1", "DDIMScheduler", DDIM_SAVED, 20, 1.0))
    # a DDPM config carrying variance_type into DDIM; a DDIM config carrying set_alpha_to_one into DDPM
    c.append(("ddpm_cfg_into_ddim_small", "DDIMScheduler",
              '{"_class_name": "DDPMScheduler", "variance_type": "fixed_small", "clip_sample": false}', 25, 0.3))
    c.append(("ddim_cfg_into_ddpm", "DDPMScheduler",
              '{"_class_name": "DDIMScheduler", "set_alpha_to_one": false, "steps_offset": 1}', 25, None))
    # from_config details: _use_default_values, duplicate keys (last wins), unknown keys, nulls
    c.append(("use_default_values", "DDIMScheduler",
              '{"beta_schedule": "scaled_linear", "steps_offset": 1, "_use_default_values": ["beta_schedule"]}',
              10, 0.0))
    c.append(("duplicate_key_last_wins", "DDPMScheduler",
              '{"steps_offset": 0, "variance_type": "fixed_small", "steps_offset": 1}', 10, None))
    c.append(("unknown_keys_dropped", "DDIMScheduler",
              '{"foo": 1, "skip_prk_steps": true, "_class_name": "NoSuchScheduler", "trained_betas": null,'
              ' "thresholding": false, "rescale_betas_zero_snr": false, "sample_max_value": 3.0}', 10, 1.0))
    # other train lengths and odd step counts
    for cls, eta in (("DDIMScheduler", 0.3), ("DDPMScheduler", None)):
        tag = cls[:4].lower()
        c.append((f"{tag}_T1", cls, '{"num_train_timesteps": 1}', 1, eta))
        c.append((f"{tag}_T7_trailing_n3", cls, '{"num_train_timesteps": 7, "timestep_spacing": "trailing"}', 3, eta))
        c.append((f"{tag}_T500_linspace_n7", cls, '{"num_train_timesteps": 500, "timestep_spacing": "linspace"}',
                  7, eta))
        c.append((f"{tag}_T1024_scaled_n33", cls,
                  '{"num_train_timesteps": 1024, "beta_schedule": "scaled_linear", "beta_start": 0.00085,'
                  ' "beta_end": 0.012}', 33, eta))
        c.append((f"{tag}_T4000_cos_trailing_n40", cls,
                  '{"num_train_timesteps": 4000, "beta_schedule": "squaredcos_cap_v2",'
                  ' "timestep_spacing": "trailing"}', 40, eta))
        c.append((f"{tag}_T1000_linspace_n999", cls, '{"timestep_spacing": "linspace"}', 999, eta))
        c.append((f"{tag}_T1000_trailing_n3", cls, '{"timestep_spacing": "trailing", "clip_sample": false}', 3, eta))
        c.append((f"{tag}_beta_range", cls, '{"beta_start": 0.001, "beta_end": 0.05, "clip_sample_range": 0.5}',
                  13, eta))
    c.append(("ddim_trailing_n1000_v", "DDIMScheduler",
              '{"timestep_spacing": "trailing", "prediction_type": "v_prediction", "set_alpha_to_one": false}',
              1000, 1.0))
    c.append(("ddpm_fixed_small_n1000_cos", "DDPMScheduler",
              '{"beta_schedule": "squaredcos_cap_v2", "variance_type": "fixed_small"}', 1000, None))
    # DDIMParallelScheduler, added through the scheduler registry (src/model/schedulers/ddim_parallel.c)
    c.append(("ddim_parallel_default_n50", "DDIMParallelScheduler", "{}", 50, 0.0))
    c.append(("ddim_parallel_sd15_n50_eta0.3", "DDIMParallelScheduler", SD15, 50, 0.3))
    c.append(("ddim_parallel_v_trailing_n10_eta1", "DDIMParallelScheduler",
              '{"timestep_spacing": "trailing", "prediction_type": "v_prediction", "set_alpha_to_one": false}',
              10, 1.0))
    # zero terminal SNR (rescale_betas_zero_snr, Lin et al. 2023): v-prediction with trailing spacing visits the
    # train step whose alphas_cumprod is 0; leading spacing, or a sample-predicting model, may use any prediction
    zsnr = '{"rescale_betas_zero_snr": true, "beta_schedule": "scaled_linear", "beta_start": 0.00085, ' \
           '"beta_end": 0.012, "clip_sample": false, "set_alpha_to_one": false, '
    for n, eta in ((1, 0.0), (10, 0.0), (10, 1.0), (50, 0.3)):
        c.append((f"zsnr_ddim_trailing_v_n{n}_eta{eta}", "DDIMScheduler",
                  zsnr + '"timestep_spacing": "trailing", "prediction_type": "v_prediction"}', n, eta))
    for n in (2, 25):
        c.append((f"zsnr_ddpm_trailing_v_n{n}", "DDPMScheduler",
                  zsnr + '"timestep_spacing": "trailing", "prediction_type": "v_prediction"}', n, None))
    c.append(("zsnr_ddim_leading_eps_n50", "DDIMScheduler", zsnr + '"steps_offset": 1}', 50, 0.0))
    c.append(("zsnr_ddim_linspace_sample_n7", "DDIMScheduler",
              zsnr + '"timestep_spacing": "linspace", "prediction_type": "sample"}', 7, 1.0))
    c.append(("zsnr_ddpm_linear_cos_v_n10", "DDPMScheduler",
              '{"rescale_betas_zero_snr": true, "beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing", '
              '"prediction_type": "v_prediction"}', 10, None))
    c.append(("zsnr_ddim_parallel_trailing_v_n10_eta1", "DDIMParallelScheduler",
              zsnr + '"timestep_spacing": "trailing", "prediction_type": "v_prediction"}', 10, 1.0))
    return c


REJECTED = [
    # diffusers makes 62 timesteps for N=61 (np.arange with a float step), the last one -1
    ("trailing_n61_extra_timestep", "DDIMScheduler", '{"timestep_spacing": "trailing"}', 61),
    ("trailing_n61_extra_timestep_ddpm", "DDPMScheduler", '{"timestep_spacing": "trailing"}', 61),
    # leading + steps_offset 1 with N = T: the first timestep is 1000, beyond alphas_cumprod
    ("leading_offset_past_end", "DDIMScheduler", '{"steps_offset": 1}', 1000),
    ("too_many_steps", "DDPMScheduler", "{}", 1001),
    # zero terminal SNR with an epsilon prediction at train step 999: x0 = (x - eps) / 0, every value NaN
    ("zsnr_epsilon_trailing_ddim", "DDIMScheduler", '{"rescale_betas_zero_snr": true, "timestep_spacing": "trailing"}', 10),
    ("zsnr_epsilon_linspace_ddpm", "DDPMScheduler", '{"rescale_betas_zero_snr": true, "timestep_spacing": "linspace"}', 4),
]


def sha(t):
    return hashlib.sha256(t.detach().numpy().astype("<f4").tobytes()).hexdigest()


def run_case(torch, diffusers, inputs, name, cls_name, text, n, eta):
    import diffusers.schedulers.scheduling_ddim as ddim_mod
    import diffusers.schedulers.scheduling_ddim_parallel as ddim_parallel_mod
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod
    cls = getattr(diffusers, cls_name)
    s = cls.from_config(json.loads(text))
    s.set_timesteps(n)
    ts = [int(t) for t in s.timesteps]
    assert len(ts) == n, (name, ts)
    draws = []

    def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
        draws.append(1)
        return noise_now[0].reshape(shape).clone()

    ddim_mod.randn_tensor = fake_randn
    ddim_parallel_mod.randn_tensor = fake_randn
    ddpm_mod.randn_tensor = fake_randn
    noise_now = [None]

    def step(i, mo, x, noise):
        noise_now[0] = noise
        del draws[:]
        t = s.timesteps[i]
        if cls_name in ("DDIMScheduler", "DDIMParallelScheduler"):
            out = s.step(mo, t, x, eta=eta).prev_sample
        else:
            out = s.step(mo, t, x).prev_sample
        return out, len(draws)

    steps = []
    for k, i in enumerate(sorted({0, n // 2, n - 1})):
        for j in (k, 3):
            out, drew = step(i, inputs[j]["model_output"], inputs[j]["sample"], inputs[j]["noise"])
            steps.append({"index": i, "t": ts[i], "input": j, "noise": drew, "prev_sample_sha256": sha(out)})
    x = inputs[0]["sample"]
    draws_total = 0
    for i in range(n):
        x, drew = step(i, inputs[i % 3]["model_output"], x, inputs[i % 3]["noise"])
        draws_total += drew
    case = {
        "name": name,
        "class": cls_name,
        "config": text,
        "num_inference_steps": n,
        "timesteps": ts,
        "alphas_cumprod_sha256": sha(s.alphas_cumprod),
        "alphas_cumprod_first_last": [float(s.alphas_cumprod[0]), float(s.alphas_cumprod[-1])],
        "steps": steps,
        "chain": {"noise_draws": draws_total, "final_sha256": sha(x)},
    }
    if eta is not None:
        case["eta"] = eta
    return case


SWEEPS = [(1000, "leading", 0), (1000, "leading", 1), (1000, "trailing", 0), (1000, "linspace", 0),
          (999, "trailing", 0), (999, "linspace", 0), (1024, "trailing", 0), (1024, "leading", 3),
          (50, "trailing", 0), (50, "linspace", 0)]


def timestep_sweeps(diffusers):
    """set_timesteps(N) for every N in 1..T: sha256 of the int64 timesteps of the valid N, concatenated,
    and the N for which diffusers makes something sower refuses (wrong count, or t outside 0..T-1)."""
    sweeps = []
    for T, spacing, offset in SWEEPS:
        s = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
        h = hashlib.sha256()
        invalid = []
        for n in range(1, T + 1):
            s.set_timesteps(n)
            ts = s.timesteps.numpy()
            if len(ts) != n or ts.min() < 0 or ts.max() > T - 1:
                invalid.append(n)
            else:
                h.update(ts.astype("<i8").tobytes())
        sweeps.append({"num_train_timesteps": T, "timestep_spacing": spacing, "steps_offset": offset,
                       "sha256": h.hexdigest(), "invalid_n": invalid})
    return sweeps


def alphas_cumprod_configs():
    """Configs for alphas_cumprod alone: random beta ranges and train lengths, so that every part of
    torch's linspace (the 16-value blocks, the scalar tail, both halves) is exercised."""
    import random
    r = random.Random(20240601)
    out = []
    for k in range(48):
        T = [r.randint(2, 64), r.randint(65, 4100)][k % 2]
        b0 = round(r.uniform(1e-5, 0.01), 6)
        b1 = round(r.uniform(0.005, 0.05), 6)
        sched = ["linear", "scaled_linear", "squaredcos_cap_v2"][k % 3 if k % 8 else 0]
        out.append(json.dumps({"num_train_timesteps": T, "beta_start": b0, "beta_end": b1, "beta_schedule": sched}))
    # large betas: 1 - beta keeps every bit of beta, so a 1-ulp change anywhere in linspace shows
    for k in range(24):
        T = r.randint(17, 150)
        b0 = round(r.uniform(0.2, 0.6), 6)
        b1 = round(r.uniform(0.2, 0.6), 6)
        sched = ["linear", "scaled_linear"][k % 2]
        out.append(json.dumps({"num_train_timesteps": T, "beta_start": b0, "beta_end": b1, "beta_schedule": sched}))
    # beyond torch's GRAIN_SIZE (32768) linspace is split across threads; this script runs one thread
    out.append(json.dumps({"num_train_timesteps": 40000, "beta_schedule": "linear"}))
    out.append(json.dumps({"num_train_timesteps": 100000, "beta_start": 0.00085, "beta_end": 0.012,
                           "beta_schedule": "scaled_linear"}))
    # rescale_betas_zero_snr over each schedule and a few lengths (two train steps at least)
    for k, T in enumerate((2, 3, 17, 1000, 4100)):
        sched = ["linear", "scaled_linear", "squaredcos_cap_v2"][k % 3]
        out.append(json.dumps({"num_train_timesteps": T, "beta_schedule": sched, "rescale_betas_zero_snr": True}))
    return out


def edge_input(torch):
    """Input set 3: signed zeros in every (model_output, sample) pairing, values on and past the clip
    ranges, huge and subnormal values; the rest randn from seeds 103/203/303."""
    g = [torch.Generator("cpu").manual_seed(seed) for seed in (103, 203, 303)]
    mo, x, z = (torch.randn(INPUT_SHAPE, generator=gi).flatten() for gi in g)
    zeros = [-0.0, 0.0]
    pairs = [(m, v) for m in zeros for v in (-0.0, 0.0, -1.5, 1.5)] + [(-1.5, -0.0), (1.5, 0.0)]
    special = [1.0, -1.0, 2.5, -2.5, 1.0000001, -2.5000002, 1e30, -1e30, 1e-40, -1e-40, 3e-39, 0.5]
    for k, (m, v) in enumerate(pairs):
        mo[k], x[k] = m, v
    for k, v in enumerate(special):
        mo[len(pairs) + k] = v
        x[len(pairs) + len(special) + k] = v
    z[:4] = torch.tensor([-0.0, 0.0, 1e-40, -1e30])
    return {"seeds": [103, 203, 303], "shape": list(INPUT_SHAPE), "edited": True,
            "model_output": mo.reshape(INPUT_SHAPE), "sample": x.reshape(INPUT_SHAPE), "noise": z.reshape(INPUT_SHAPE)}


def make_inputs(torch):
    inputs = []
    for seeds in INPUT_SEEDS:
        d = {"seeds": list(seeds), "shape": list(INPUT_SHAPE)}
        for key, seed in zip(("model_output", "sample", "noise"), seeds):
            d[key] = torch.randn(INPUT_SHAPE, generator=torch.Generator("cpu").manual_seed(seed))
        inputs.append(d)
    inputs.append(edge_input(torch))
    return inputs


def child(given_inputs):
    import diffusers
    import numpy
    import torch
    torch.set_num_threads(1)
    if given_inputs is None:
        inputs = make_inputs(torch)
    else:  # the first child's draws: torch.randn's bits also depend on the capability
        inputs = [{**d,
                   **{k: torch.tensor(d[k], dtype=torch.float32).reshape(d["shape"])
                      for k in ("model_output", "sample", "noise")}} for d in given_inputs]
    cases = [run_case(torch, diffusers, inputs, *c) for c in named_cases() + grid_cases()]
    ac_cases = [{"config": text, "alphas_cumprod_sha256": sha(diffusers.DDPMScheduler.from_config(
        json.loads(text)).alphas_cumprod)} for text in alphas_cumprod_configs()]
    rejected = []
    for name, cls_name, text, n in REJECTED:
        s = getattr(diffusers, cls_name).from_config(json.loads(text))
        try:
            s.set_timesteps(n)
            what = [int(t) for t in s.timesteps]
        except ValueError as e:
            what = str(e)
        rejected.append({"name": name, "class": cls_name, "config": text, "num_inference_steps": n,
                         "diffusers": what})
    json.dump({
        "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__, "numpy": numpy.__version__},
        "cpu_capability": torch.backends.cpu.get_cpu_capability()
        if hasattr(torch.backends, "cpu") and hasattr(torch.backends.cpu, "get_cpu_capability")
        else os.environ.get("ATEN_CPU_CAPABILITY", "(torch default)"),
        "inputs": [{**{k: v for k, v in d.items() if not isinstance(v, torch.Tensor)},
                    **{k: [float(v) for v in d[k].flatten()] for k in ("model_output", "sample", "noise")}}
                   for d in inputs],
        "cases": cases,
        "alphas_cumprod_cases": ac_cases,
        "rejected": rejected,
        "timestep_sweeps": timestep_sweeps(diffusers) if given_inputs is None else None,
    }, sys.stdout)


def run_child(capability, inputs):
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True, capture_output=True,
                         text=True, input=json.dumps(inputs)).stdout
    return json.loads(out)


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--child":
        return child(json.load(sys.stdin))
    if len(sys.argv) != 2:
        sys.exit("usage: make_scheduler_reference.py OUT.json")
    avx2 = run_child("avx2", None)  # torch's AVX2 dispatch on any x86 (an AVX-512 CPU would pick its own)
    scalar = run_child("default", avx2["inputs"])
    assert avx2["inputs"] == scalar["inputs"]
    for c, d in zip(avx2["cases"], scalar["cases"]):
        assert c["name"] == d["name"] and c["timesteps"] == d["timesteps"]
        c["cpu_scalar"] = {"alphas_cumprod_sha256": d["alphas_cumprod_sha256"],
                           "steps_sha256": [st["prev_sample_sha256"] for st in d["steps"]],
                           "chain_final_sha256": d["chain"]["final_sha256"]}
    for c, d in zip(avx2["alphas_cumprod_cases"], scalar["alphas_cumprod_cases"]):
        assert c["config"] == d["config"]
        c["cpu_scalar_alphas_cumprod_sha256"] = d["alphas_cumprod_sha256"]
    doc = {
        "format": "sower-scheduler-reference",
        "version": 1,
        "made_by": "validate/make_scheduler_reference.py",
        "versions": avx2["versions"],
        "note": ("sha256 over float32 little-endian bytes. Top-level digests: torch's AVX2 dispatch "
                 "(linspace kernel torch-cpu); cpu_scalar: ATEN_CPU_CAPABILITY=default (torch-cpu-scalar). "
                 "chain: all steps from inputs[0].sample, step i with inputs[i % 3] model_output and noise."),
        "inputs": avx2["inputs"],
        "cases": avx2["cases"],
        "alphas_cumprod_cases": avx2["alphas_cumprod_cases"],
        "rejected": avx2["rejected"],
        "timestep_sweeps": avx2["timestep_sweeps"],
    }
    with open(sys.argv[1], "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    same = sum(c["alphas_cumprod_sha256"] == c["cpu_scalar"]["alphas_cumprod_sha256"] for c in doc["cases"])
    print(f"wrote {len(doc['cases'])} cases ({same} with the same alphas_cumprod under both capabilities) and "
          f"{len(doc['rejected'])} rejected runs, diffusers {doc['versions']['diffusers']}, "
          f"torch {doc['versions']['torch']}, to {sys.argv[1]}")


if __name__ == "__main__":
    main()
