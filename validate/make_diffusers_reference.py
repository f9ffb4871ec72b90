#!/usr/bin/env python3
"""Reference outputs of diffusers' UNet2DModel + DDIM/DDPM pipelines, for sower's C re-implementation.

Rerun (from the repository root; about 3 minutes on 2 cores; rewrites tests/data/diffusers/):
    /opt/refenv/bin/python validate/make_diffusers_reference.py
(/opt/refenv: diffusers 0.31.0, Debian's torch 1.13.1 (CPU; __version__ says 1.13.0a0), numpy 1.24.2, safetensors 0.8.0;
nothing is downloaded.)
Options: --out DIR writes elsewhere (used to check that two runs are byte-identical:
    /opt/refenv/bin/python validate/make_diffusers_reference.py --out /tmp/ref2
    diff -r tests/data/diffusers /tmp/ref2 && echo identical)

What it writes under tests/data/diffusers/:
  models/cifar/         google/ddpm-cifar10-32 in the hub's FLAT layout: config.json, scheduler_config.json,
                        model_index.json only (hub reconstructions, see docs/reference/diffusers-pipelines.md
                        1.2). Its weights (143 MB) are NOT written: they are made by formula_tensor() below,
                        which sower regenerates with its bit-exact torch generator; reference.json records
                        the SHA-256 of all weights concatenated and cifar_weights_manifest.json one SHA-256
                        per tensor.
  models/mh_pipeline/   multi-head (head dim 8) model, PIPELINE layout (model_index.json, unet/, scheduler/)
                        as DDIMPipeline.save_pretrained writes it. Its weights would be a 6.5 MB safetensors
                        (1,624,323 parameters), too big to commit, so by default they are the FORMULA weights
                        too and unet/diffusion_pytorch_model.safetensors is left out (manifest:
                        mh_pipeline_weights_manifest.json). --mh-weights file keeps diffusers' random init
                        after manual_seed(1) and commits the 6.5 MB file instead.
  models/mono_v/        1-channel v-prediction model, pipeline layout, random init after manual_seed(2).
  models/legacy_flat/   FLAT layout whose safetensors uses the LEGACY attention names
                        (query/key/value/proj_attn); checked to load in UNet2DModel.from_pretrained to the
                        very same weights; random init after manual_seed(3).
  cases/*.npy           float32 reference outputs (numpy.save).
  reference.json        versions, models, and the cases with their yardsticks (see below).

Cases:
  forward: x = torch.randn((1,C,H,W), generator=torch.Generator("cpu").manual_seed(input_seed)),
           t = 0-d int64 tensor (what the pipelines pass); output unet(x, t).sample (1,C,H,W).
           torch_batch_yardstick   = max|out(batch of 4: x + noise of pad seeds)[0] - out(batch 1)[0]|
           torch_threads_yardstick = max|out with torch.set_num_threads(1) - out with 2 threads|
  render:  the RAW last scheduler.step().prev_sample of DDIMPipeline / DDPMPipeline (before the
           (x/2+0.5).clamp post-processing); every seed rendered ALONE (batch 1, its own generator);
           (len(seeds),C,H,W). torch_batch_yardstick = max|batch-1 results - the same seeds rendered as one
           batch of >= 4 (padded with pad seeds), each with its own generator|.
           The hand-written loop is checked bit for bit against the real DDIMPipeline/DDPMPipeline
           (output_type="np") for every seed alone and for the padded batch; the script stops otherwise.
  trace:   one render case also stores the sample after every step and the model output of every step.

All references use torch.set_num_threads(2) (the threads yardstick excepted). The noise comes from torch's
default CPU randn kernel of this machine (AVX2: sower's RNG_KERNEL_TORCH_CPU); reference.json records it.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch

import diffusers
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "diffusers"
THREADS = 2
PAD_SEED_BASE = 1000          # pad / other-batch-member seeds are 1000, 1001, ...
RERUN = "/opt/refenv/bin/python validate/make_diffusers_reference.py"

# ---------------------------------------------------------------------------------------------
# google/ddpm-cifar10-32, hub files as reconstructed in docs/reference/diffusers-pipelines.md 1.2.
CIFAR_CONFIG = {
    "_class_name": "UNet2DModel",
    "_diffusers_version": "0.0.4",
    "act_fn": "silu",
    "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}
CIFAR_SCHEDULER = {
    "_class_name": "DDPMScheduler", "_diffusers_version": "0.1.0", "beta_end": 0.02,
    "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True,
    "num_train_timesteps": 1000, "trained_betas": None, "variance_type": "fixed_large",
}
CIFAR_INDEX = {
    "_class_name": "DDPMPipeline", "_diffusers_version": "0.1.0",
    "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"],
}
# Byte sizes of the hub files (docs/reference/diffusers-pipelines.md 1.2): a check on the reconstruction.
CIFAR_HUB_SIZES = {"config.json": 699, "scheduler_config.json": 256, "model_index.json": 180}

MH_CONFIG = dict(
    sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=8, norm_num_groups=8, norm_eps=1e-5, downsample_padding=1,
    flip_sin_to_cos=True, freq_shift=0,
)
MONO_CONFIG = dict(
    sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=3,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None, norm_num_groups=4, downsample_padding=1,
)
LEGACY_CONFIG = dict(
    sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 32), layers_per_block=1,
    down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
    attention_head_dim=None, norm_num_groups=8, downsample_padding=0,
)
# Current diffusers attention parameter names -> the legacy AttentionBlock names.
LEGACY_RENAME = [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."),
                 (".to_out.0.", ".proj_attn.")]


def forward_case(name, model, t, input_seed):
    return {"name": name, "model": model, "kind": "forward", "timestep": t, "input_seed": input_seed}


def render_case(name, model, scheduler, steps, eta, seeds, trace=False):
    c = {"name": name, "model": model, "kind": "render", "scheduler": scheduler, "steps": steps,
         "eta": eta, "seeds": seeds}
    if trace:
        c["trace"] = True
    return c


CASES = [
    forward_case("cifar_forward_t500_s0", "cifar", 500, 0),
    forward_case("cifar_forward_t0_s1", "cifar", 0, 1),
    forward_case("cifar_forward_t999_s2", "cifar", 999, 2),
    render_case("cifar_ddim2_eta0", "cifar", "ddim", 2, 0.0, [0, 1, 2, 3]),
    render_case("cifar_ddim10_eta0", "cifar", "ddim", 10, 0.0, [0, 1]),
    render_case("cifar_ddpm10", "cifar", "ddpm", 10, None, [0, 1]),
    render_case("cifar_ddim50_eta0_trace", "cifar", "ddim", 50, 0.0, [0], trace=True),
    forward_case("mh_pipeline_forward_t981_s5", "mh_pipeline", 981, 5),
    render_case("mh_pipeline_ddim10_eta0.5", "mh_pipeline", "ddim", 10, 0.5, [0, 1, 2]),
    render_case("mh_pipeline_ddpm10", "mh_pipeline", "ddpm", 10, None, [4]),
    forward_case("mono_v_forward_t10_s6", "mono_v", 10, 6),
    render_case("mono_v_ddim10_eta0", "mono_v", "ddim", 10, 0.0, [7, 4294967303]),
    render_case("mono_v_ddpm10", "mono_v", "ddpm", 10, None, [8]),
    forward_case("legacy_flat_forward_t250_s9", "legacy_flat", 250, 9),
    render_case("legacy_flat_ddim2_eta0", "legacy_flat", "ddim", 2, 0.0, [0, 1]),
    render_case("legacy_flat_ddpm10", "legacy_flat", "ddpm", 10, None, [10, 11]),
    render_case("legacy_flat_ddim10_eta1", "legacy_flat", "ddim", 10, 1.0, [12]),   # extra: eta 1 + clip
]


# ---------------------------------------------------------------------------------------------
# Weight formula (usable for any model).
def formula_seed(name):
    """uint64 seed of a parameter: the first 8 bytes of sha256(name), little-endian."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def formula_exponent(shape):
    """e of a >= 2-D weight: round(0.5 * log2(fan_in)), fan_in = numel // shape[0].
    Python's round() rounds halves to EVEN: fan_in 2**(2k+1) gives k+0.5 -> the even neighbour
    (8 -> 2, 128 -> 4, 512 -> 4, 2048 -> 6); C's round() would give 5 for 512."""
    numel = math.prod(shape)
    fan_in = numel // shape[0]
    return round(0.5 * math.log2(fan_in))


def formula_tensor(name, shape):
    """The formula weight of parameter NAME with shape SHAPE (float32, exact scalings by powers of 2)."""
    shape = tuple(int(s) for s in shape)
    g = torch.Generator("cpu").manual_seed(formula_seed(name))
    r = torch.randn(shape, dtype=torch.float32, generator=g)
    if len(shape) >= 2:                     # conv / linear weight
        return r * (2.0 ** -formula_exponent(shape))
    if name.endswith(".bias"):
        return r * (2.0 ** -4)
    assert name.endswith(".weight"), name
    return 1.0 + r * (2.0 ** -3)            # 1-D .weight of a norm


def formula_state_dict(model):
    return {name: formula_tensor(name, t.shape) for name, t in model.state_dict().items()}


def load_formula_weights(model):
    sd = formula_state_dict(model)
    model.load_state_dict(sd, strict=True)
    return sd


def tensor_bytes(t):
    a = t.detach().cpu().contiguous().numpy()
    assert a.dtype == np.float32
    return a.astype("<f4", copy=False).tobytes()


def weights_sha256(state_dict):
    """sha256 of all tensors (float32 LE) concatenated in sorted order of their names."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(tensor_bytes(state_dict[name]))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
def dump_json(obj, path):
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    Path(path).write_text(text)
    return text


def save_npy(out, rel, array):
    a = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    np.save(out / rel, a, allow_pickle=False)
    return rel


def noise_sha256(t):
    return hashlib.sha256(tensor_bytes(t)).hexdigest()


def max_abs(t):
    return float(t.abs().max())


def max_diff(a, b):
    return float((a - b).abs().max())


def post(x):
    """The pipelines' output_type="np" post-processing."""
    return (x / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()


def gens(seeds):
    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def pad_seeds(seeds, n=4):
    extra = []
    k = PAD_SEED_BASE
    while len(seeds) + len(extra) < n:
        if k not in seeds:
            extra.append(k)
        k += 1
    return extra


def check_loading_info(info, what):
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"{what}: unclean load {bad}")


def cpu_capability():
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


# ---------------------------------------------------------------------------------------------
# Models
def write_formula_weights(out, tmp, name, layout, info):
    """Formula weights for the JSON-only folder models/<name>: a per-tensor manifest is committed, the
    full folder (JSONs + weights file) goes to a temporary directory for diffusers to load."""
    d = out / "models" / name
    cfg_dir = d / "unet" if layout == "pipeline" else d
    unet = UNet2DModel.from_config(UNet2DModel.load_config(str(cfg_dir))).eval()
    sd = load_formula_weights(unet)
    manifest = []
    for pname in sorted(sd):
        shape = list(sd[pname].shape)
        rule = ("weight_nd" if len(shape) >= 2 else "bias" if pname.endswith(".bias") else "norm_weight")
        entry = {"name": pname, "shape": shape, "seed": str(formula_seed(pname)), "rule": rule,
                 "sha256": hashlib.sha256(tensor_bytes(sd[pname])).hexdigest()}
        if rule == "weight_nd":
            entry["exponent"] = formula_exponent(shape)
        manifest.append(entry)
    manifest_rel = f"{name}_weights_manifest.json"
    dump_json({"about": f"formula weights of models/{name}, one entry per tensor in sorted name order; "
               "sha256 of the float32 little-endian bytes; seed as a decimal string (uint64)",
               "tensors": manifest}, out / manifest_rel)
    full = tmp / name
    shutil.copytree(d, full)
    wrel = ("unet/" if layout == "pipeline" else "") + "diffusion_pytorch_model.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(full / wrel),
                                metadata={"format": "pt"})
    sub = {"subfolder": "unet"} if layout == "pipeline" else {}
    loaded, linfo = UNet2DModel.from_pretrained(str(full), output_loading_info=True, **sub)
    check_loading_info(linfo, name)
    assert weights_sha256(loaded.state_dict()) == weights_sha256(sd)
    info.update({
        "weights": "formula",
        "weights_sha256": weights_sha256(sd),
        "weights_manifest": manifest_rel,
        "weights_file_not_committed": wrel,
        "num_parameters": sum(t.numel() for t in sd.values()), "num_tensors": len(sd),
    })
    return info, full


def folder_files(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def make_cifar(out, tmp):
    d = out / "models" / "cifar"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for fname, obj in (("config.json", CIFAR_CONFIG), ("scheduler_config.json", CIFAR_SCHEDULER),
                       ("model_index.json", CIFAR_INDEX)):
        text = dump_json(obj, d / fname)
        assert len(text.encode()) == CIFAR_HUB_SIZES[fname], (fname, len(text.encode()))
    info = {"layout": "flat", "path": "models/cifar", "files": folder_files(d),
            "note": "weights file not committed (143 MB): regenerate with the formula"}
    info, full = write_formula_weights(out, tmp, "cifar", "flat", info)
    assert info["num_parameters"] == 35746307, info["num_parameters"]
    return info, full


def pipeline_layout_model(out, tmp, name, config, seed, scheduler, weights):
    d = out / "models" / name
    if d.exists():
        shutil.rmtree(d)
    torch.manual_seed(seed)
    unet = UNet2DModel(**config).eval()
    DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(d), safe_serialization=True)
    wrel = "unet/diffusion_pytorch_model.safetensors"
    info = {"layout": "pipeline", "path": f"models/{name}"}
    if weights == "formula":
        (d / wrel).unlink()
        info["files"] = folder_files(d)
        info["note"] = ("weights file not committed (6.5 MB): regenerate with the formula; "
                        "rerun with --mh-weights file for diffusers' random init in a committed file")
        return write_formula_weights(out, tmp, name, "pipeline", info)
    stale = out / f"{name}_weights_manifest.json"
    if stale.exists():
        stale.unlink()
    loaded, linfo = UNet2DModel.from_pretrained(str(d), subfolder="unet", output_loading_info=True)
    check_loading_info(linfo, name)
    sd = unet.state_dict()
    assert weights_sha256(loaded.state_dict()) == weights_sha256(sd)
    info.update({
        "files": folder_files(d),
        "weights": "file", "weights_file": wrel,
        "weights_file_bytes": (d / wrel).stat().st_size,
        "init": f"diffusers' random init of UNet2DModel(**config) after torch.manual_seed({seed})",
        "weights_sha256": weights_sha256(sd),
        "num_parameters": sum(t.numel() for t in sd.values()), "num_tensors": len(sd),
    })
    return info, d


def make_mh(out, tmp, weights):
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          set_alpha_to_one=False, steps_offset=1, clip_sample=False)
    return pipeline_layout_model(out, tmp, "mh_pipeline", MH_CONFIG, 1, sched, weights)


def make_mono(out):
    sched = DDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing",
                          beta_schedule="squaredcos_cap_v2", clip_sample=False, set_alpha_to_one=False)
    assert sched.config.rescale_betas_zero_snr is False
    info, d = pipeline_layout_model(out, None, "mono_v", MONO_CONFIG, 2, sched, "file")
    reloaded = DDIMScheduler.from_pretrained(str(out / "models" / "mono_v"), subfolder="scheduler")
    assert reloaded.config.rescale_betas_zero_snr is False
    assert DDPMScheduler.from_config(reloaded.config).config.rescale_betas_zero_snr is False
    info["rescale_betas_zero_snr"] = False
    return info, d


def make_legacy(out):
    d = out / "models" / "legacy_flat"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    torch.manual_seed(3)
    unet = UNet2DModel(**LEGACY_CONFIG).eval()
    sched = DDPMScheduler(variance_type="fixed_small", clip_sample=True)
    unet.save_config(str(d))
    sched.save_config(str(d))
    dump_json({"_class_name": "DDPMPipeline", "_diffusers_version": diffusers.__version__,
               "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]},
              d / "model_index.json")
    sd = unet.state_dict()
    legacy = {}
    renamed = []
    for k, v in sd.items():
        nk = k
        if ".attentions." in k:
            for new, old in LEGACY_RENAME:
                nk = nk.replace(new, old)
        if nk != k:
            renamed.append([nk, k])
        legacy[nk] = v.detach().clone().contiguous()
    assert renamed and not any(x in k for k in legacy for x in (".to_q.", ".to_k.", ".to_v.", ".to_out."))
    safetensors.torch.save_file(legacy, str(d / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    # diffusers must load the legacy names to the same weights.
    loaded, info = UNet2DModel.from_pretrained(str(d), output_loading_info=True)
    check_loading_info(info, "legacy_flat")
    lsd = loaded.state_dict()
    assert sorted(lsd) == sorted(sd)
    for k in sd:
        assert torch.equal(lsd[k], sd[k]), k
    files = sorted(p.name for p in d.iterdir())
    wfile = d / "diffusion_pytorch_model.safetensors"
    return {
        "layout": "flat", "path": "models/legacy_flat", "files": files,
        "weights": "file", "weights_file": "diffusion_pytorch_model.safetensors",
        "weights_file_bytes": wfile.stat().st_size,
        "init": "diffusers' random init of UNet2DModel(**config) after torch.manual_seed(3)",
        "legacy_attention_names": True,
        "legacy_renames": sorted(renamed),
        "legacy_loads_in_diffusers": True,
        "weights_sha256": weights_sha256(sd),
        "num_parameters": sum(t.numel() for t in sd.values()), "num_tensors": len(sd),
    }, d


# ---------------------------------------------------------------------------------------------
# Loading the way the pipelines do, and the hand-written loops.
class Model:
    def __init__(self, name, folder, layout):
        self.name, self.folder, self.layout = name, str(folder), layout
        sub = {"subfolder": "unet"} if layout == "pipeline" else {}
        self.unet, info = UNet2DModel.from_pretrained(self.folder, output_loading_info=True, **sub)
        check_loading_info(info, name)
        self.unet.eval()
        if layout == "pipeline":
            self.folder_scheduler = DDIMScheduler.from_pretrained(self.folder, subfolder="scheduler")
        else:
            self.folder_scheduler = DDPMScheduler.from_pretrained(self.folder)

    def shape(self, batch):
        c = self.unet.config
        return (batch, c.in_channels, c.sample_size, c.sample_size)

    def scheduler(self, kind):
        cls = DDIMScheduler if kind == "ddim" else DDPMScheduler
        return cls.from_config(self.folder_scheduler.config)

    def pipeline(self, kind):
        """The real pipeline, loaded from the folder as a user would."""
        if kind == "ddim":
            pipe = DDIMPipeline.from_pretrained(self.folder)
        elif self.layout == "flat":
            pipe = DDPMPipeline.from_pretrained(self.folder)
            assert type(pipe.scheduler) is DDPMScheduler
        else:   # the folder holds a DDIMScheduler: DDPMPipeline does not convert, so convert here
            unet = UNet2DModel.from_pretrained(self.folder, subfolder="unet")
            pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(
                DDIMScheduler.from_pretrained(self.folder, subfolder="scheduler").config))
        pipe.set_progress_bar_config(disable=True)
        return pipe


@torch.no_grad()
def render(model, kind, steps, eta, seeds, trace=False):
    """The DDIMPipeline / DDPMPipeline loop, returning the raw final sample (and the trace)."""
    generator = gens(seeds)
    sched = model.scheduler(kind)
    x = randn_tensor(model.shape(len(seeds)), generator=generator, device=torch.device("cpu"),
                     dtype=model.unet.dtype)
    noise = x.clone()
    sched.set_timesteps(steps)
    samples, outputs = [], []
    for t in sched.timesteps:
        eps = model.unet(x, t).sample
        if kind == "ddim":
            x = sched.step(eps, t, x, eta=eta, generator=generator).prev_sample
        else:
            x = sched.step(eps, t, x, generator=generator).prev_sample
        if trace:
            samples.append(x.clone())
            outputs.append(eps.clone())
    return x, noise, sched, samples, outputs


@torch.no_grad()
def run_pipeline(pipe, kind, steps, eta, generator, batch):
    if kind == "ddim":
        r = pipe(batch_size=batch, generator=generator, num_inference_steps=steps, eta=eta, output_type="np")
    else:
        r = pipe(batch_size=batch, generator=generator, num_inference_steps=steps, output_type="np")
    return r.images


def scheduler_record(sched):
    cfg = {k: v for k, v in dict(sched.config).items() if not k.startswith("_")}
    cfg = json.loads(json.dumps(cfg))
    return {"class": type(sched).__name__, "config": cfg,
            "timesteps": [int(t) for t in sched.timesteps]}


@torch.no_grad()
def do_forward(case, model, out):
    unet = model.unet
    shape = model.shape(1)
    x = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(case["input_seed"]))
    t = torch.tensor(case["timestep"], dtype=torch.int64)
    y = unet(x, t).sample
    others = [PAD_SEED_BASE + i for i in range(3)]
    xb = torch.cat([x] + [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in others])
    yb = unet(xb, t).sample
    torch.set_num_threads(1)
    y1 = unet(x, t).sample
    torch.set_num_threads(THREADS)
    rel = save_npy(out, f"cases/{case['name']}.npy", y.numpy())
    case.update({
        "output": rel, "shape": list(y.shape),
        "input": "torch.randn((1,C,H,W), generator=torch.Generator('cpu').manual_seed(input_seed))",
        "input_sha256": noise_sha256(x),
        "timestep_dtype": "int64 0-d tensor",
        "batch_other_seeds": others,
        "torch_batch_yardstick": max_diff(yb[0], y[0]),
        "torch_threads_yardstick": max_diff(y1, y),
        "max_abs": max_abs(y),
    })


def do_render(case, model, out, pipes, proofs):
    kind, steps, eta, seeds = case["scheduler"], case["steps"], case["eta"], case["seeds"]
    trace = case.get("trace", False)
    if (model.name, kind) not in pipes:
        pipes[(model.name, kind)] = model.pipeline(kind)
    pipe = pipes[(model.name, kind)]
    singles, noises = [], []
    for s in seeds:
        x, noise, sched, samples, outputs = render(model, kind, steps, eta, [s], trace=trace)
        singles.append(x)
        noises.append(noise)
        # Proof: the real pipeline, this seed alone, a single generator.
        img = run_pipeline(pipe, kind, steps, eta, torch.Generator("cpu").manual_seed(s), 1)
        if not (img.dtype == np.float32 and np.array_equal(img, post(x))):
            raise SystemExit(f"{case['name']} seed {s}: pipeline differs from the loop "
                             f"(max {np.abs(img - post(x)).max()})")
        if trace:
            assert len(seeds) == 1
            case["trace_samples"] = save_npy(out, f"cases/{case['name']}_samples.npy",
                                             torch.cat(samples).numpy())
            case["trace_model_outputs"] = save_npy(out, f"cases/{case['name']}_model_outputs.npy",
                                                   torch.cat(outputs).numpy())
            case["trace_shape"] = [len(samples)] + list(x.shape[1:])
            assert torch.equal(samples[-1], x)
    ref = torch.cat(singles)
    # Batched: the same seeds plus pad seeds, one generator each, one batch.
    pads = pad_seeds(seeds)
    bseeds = seeds + pads
    xb, bnoise, _, bsamples, boutputs = render(model, kind, steps, eta, bseeds, trace=trace)
    img = run_pipeline(pipe, kind, steps, eta, gens(bseeds), len(bseeds))
    if not np.array_equal(img, post(xb)):
        raise SystemExit(f"{case['name']}: batched pipeline differs from the loop")
    proofs.append({"case": case["name"], "pipeline": type(pipe).__name__,
                   "scheduler": type(pipe.scheduler).__name__,
                   "checks": [f"seed {s} alone, batch_size=1, single generator" for s in seeds]
                   + [f"batch_size={len(bseeds)}, generator list seeds {bseeds}"],
                   "bit_exact": True})
    rel = save_npy(out, f"cases/{case['name']}.npy", ref.numpy())
    case.update({
        "output": rel, "shape": list(ref.shape),
        "output_is": "raw final prev_sample (before (x/2+0.5).clamp(0,1))",
        "initial_noise_sha256": [noise_sha256(n) for n in noises],
        "batch_pad_seeds": pads,
        "torch_batch_yardstick": max_diff(xb[:len(seeds)], ref),
        "max_abs": max_abs(ref),
        "pipeline_bit_exact": True,
        "effective_scheduler": scheduler_record(sched),
    })
    if trace:
        case["trace_batch_divergence_per_step"] = [max_diff(bs[0], ss[0]) for bs, ss in zip(bsamples, samples)]
        case.update(one_step_yardstick(model, kind, steps, eta, noises[0], samples, outputs, bnoise[1:]))
    if eta is None:
        del case["eta"]


@torch.no_grad()
def one_step_yardstick(model, kind, steps, eta, noise, samples, outputs, pad_noise):
    """Teacher forcing: each step fed the REFERENCE sample before it, inside a batch of 4 (pad noise),
    against the reference model output and sample of that step. Only for deterministic steps."""
    assert kind == "ddim" and eta == 0.0
    sched = model.scheduler(kind)
    sched.set_timesteps(steps)
    prev, d_eps, d_x = noise, 0.0, 0.0
    for k, t in enumerate(sched.timesteps):
        inp = torch.cat([prev, pad_noise])
        eps = model.unet(inp, t).sample
        nxt = sched.step(eps, t, inp, eta=eta).prev_sample
        d_eps = max(d_eps, max_diff(eps[0], outputs[k][0]))
        d_x = max(d_x, max_diff(nxt[0], samples[k][0]))
        prev = samples[k]
    return {"trace_one_step_batch_yardstick": {"model_output": d_eps, "sample": d_x},
            "trace_note": "the full rollout is chaotic with formula weights (batch-4 vs batch-1 differences "
                          "roughly double every step, see trace_batch_divergence_per_step): compare step by "
                          "step, feeding trace_samples[k-1] (the initial noise for k=0) as the input of step k"}


# ---------------------------------------------------------------------------------------------
def scalar_kernel_cifar_sha():
    """The cifar weights' sha256 under ATEN_CPU_CAPABILITY=default (torch's non-AVX2 randn kernel)."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    r = subprocess.run([sys.executable, __file__, "--print-cifar-weights-sha"], env=env,
                       capture_output=True, text=True, check=True)
    cap, sha = r.stdout.split()
    return cap, sha


def print_cifar_weights_sha():
    torch.set_num_threads(THREADS)
    unet = UNet2DModel.from_config(dict(CIFAR_CONFIG))
    print(cpu_capability().replace(" ", "_"), weights_sha256(formula_state_dict(unet)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--mh-weights", choices=["formula", "file"], default="formula",
                    help="mh_pipeline weights: the formula (default; no weights file is written) or "
                    "diffusers' random init after manual_seed(1) committed as a 6.5 MB safetensors")
    ap.add_argument("--print-cifar-weights-sha", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.print_cifar_weights_sha:
        print_cifar_weights_sha()
        return
    default_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    out = Path(args.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    if (out / "cases").exists():
        shutil.rmtree(out / "cases")
    (out / "cases").mkdir()

    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        made = {"cifar": make_cifar(out, tmp), "mh_pipeline": make_mh(out, tmp, args.mh_weights),
                "mono_v": make_mono(out), "legacy_flat": make_legacy(out)}
        models_info = {name: info for name, (info, _) in made.items()}
        cap_scalar, sha_scalar = scalar_kernel_cifar_sha()
        assert cap_scalar not in ("AVX2", "AVX512"), cap_scalar
        models_info["cifar"]["weights_sha256_scalar_kernel"] = sha_scalar
        layouts = {"cifar": "flat", "mh_pipeline": "pipeline", "mono_v": "pipeline", "legacy_flat": "flat"}
        models = {name: Model(name, folder, layouts[name]) for name, (_, folder) in made.items()}
        for name, m in models.items():
            assert weights_sha256(m.unet.state_dict()) == models_info[name]["weights_sha256"], name
        heads = {}
        for name, m in models.items():
            heads[name] = {n: mod.heads for n, mod in m.unet.named_modules()
                           if type(mod).__name__ == "Attention"}
            models_info[name]["attention_heads"] = heads[name]
        procs = sorted({type(mod.processor).__name__ for m in models.values()
                        for mod in m.unet.modules() if type(mod).__name__ == "Attention"})

        cases, proofs, pipes = [], [], {}
        for spec in CASES:
            case = dict(spec)
            case["seeds"] = list(spec["seeds"]) if "seeds" in spec else None
            if case["seeds"] is None:
                del case["seeds"]
            model = models[case["model"]]
            if case["kind"] == "forward":
                do_forward(case, model, out)
            else:
                do_render(case, model, out, pipes, proofs)
            cases.append(case)
            print(f"{case['name']:32s} max|ref| {case['max_abs']:.6g}  batch yardstick "
                  f"{case['torch_batch_yardstick']:.3g}"
                  + (f"  threads yardstick {case['torch_threads_yardstick']:.3g}"
                     if "torch_threads_yardstick" in case else ""), flush=True)

    ref = {
        "about": "diffusers reference outputs for sower; see validate/make_diffusers_reference.py",
        "made_by": RERUN,
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "safetensors_version": safetensors.__version__,
        "torch_threads": THREADS,
        "torch_default_threads_on_maker": default_threads,
        "cpu_capability": cpu_capability(),
        "rng_kernel": "torch-cpu" if cpu_capability() in ("AVX2", "AVX512") else "torch-cpu-scalar",
        "attention_processor": procs,
        "formula": {
            "seed": "int.from_bytes(sha256(NAME).digest()[:8], 'little')",
            "draw": "torch.randn(S, float32, generator=torch.Generator('cpu').manual_seed(seed))",
            "weight_nd": "len(S) >= 2: r * 2**-round(0.5*log2(numel // S[0]))",
            "round": "Python round(): halves go to EVEN (fan_in 512 -> 0.5*9 = 4.5 -> 4; 128 -> 4; 2048 -> 6; 8 -> 2)",
            "bias": "NAME ends with '.bias': r * 2**-4",
            "norm_weight": "otherwise: 1 + r * 2**-3",
            "weights_sha256": "float32 little-endian bytes of all tensors concatenated, sorted by name",
        },
        "seed_note": "torch seeds MT19937 with the low 32 bits: 4294967303 = 2**32 + 7 gives seed 7's noise",
        "models": models_info,
        "cases": cases,
        "pipeline_proofs": proofs,
    }
    dump_json(ref, out / "reference.json")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total} bytes)")


if __name__ == "__main__":
    main()
