#!/usr/bin/env python3
"""Tiny Stable Diffusion pipelines and reference outputs of their text encoders, for sower's C
re-implementation (src/text/clip_text_model.c), made with the real transformers.

Rerun (from the repository root, the reference environment: Debian 12's torch 1.13.1, transformers 4.46.3,
diffusers 0.31.0; nothing is downloaded; about 20 s):
    /opt/refenv/bin/python validate/make_sd_reference.py
Options: --out DIR writes elsewhere (to check that two runs are byte-identical:
    /opt/refenv/bin/python validate/make_sd_reference.py --out /tmp/sd2 && diff -r tests/data/sd /tmp/sd2)

What it writes under tests/data/sd/:
  tiny-sd1/, tiny-sd2/, tiny-sd1-bf16/   pipeline folders as StableDiffusionPipeline.save_pretrained lays them
      out, so far with what the text side needs: model_index.json, tokenizer/ (CLIPTokenizer.save_pretrained
      of tests/data/tokenizer/sd1 or sd2: the real CLIP merges cut to 3000, vocabulary 3514) and text_encoder/
      (CLIPTextModel.save_pretrained, safetensors). Random initialisation after torch.manual_seed:
        tiny-sd1       SD 1.x shape: quick_gelu, pads with <|endoftext|>, weights F32, 3 layers, 4 heads of 8
        tiny-sd2       SD 2.x shape: erf gelu, pads with "!", weights stored F16, 2 layers, 3 heads of 16
        tiny-sd1-bf16  tiny-sd1's architecture, other weights, stored BF16
      A model stored F16/BF16 is computed in float32 from the stored values (what sower does): the reference
      is the float32 model loaded from the stored half-precision weights.
  render_reference.json, render_latents_PIPELINE.npy   end to end: StableDiffusionPipeline with
      DDIMScheduler (or PNDM, Euler, Euler ancestral, Heun, LMS, KDPM2 and its ancestral form, DPM-Solver++ 2M and
      2S and their SDE forms, DPM++ SDE (DPMSolverSDEScheduler, noise_sampler_seed=[the seeds]; needs torchsde),
      DEIS, UniPC, Karras sigmas for Euler, Heun, LMS, KDPM2, DPM, DPM++ SDE, DEIS and UniPC, exponential and beta
      sigmas for Euler, Heun, KDPM2 ancestral and DPM++ SDE)
      .from_config(the folder's scheduler config), 10 steps, one CPU generator per seed, output_type="latent"
      (prompts, negative prompts, guidance 1 / 5 / 7.5, eta 0 / 0.5, clip_skip, seeds 0, 2^32+7, 2^64-1);
      yardsticks: each seed alone vs in one batch with two more, and (eta 0) the same render in float64 from the
      same float32 noise (Euler ancestral's per-step draws too). The yardsticks, and so the files, depend on
      the CPU kernels torch dispatches to (AVX2 or AVX-512): rerun on one machine to compare two runs.
  unet_reference.json, unet_{x,context,out}_PIPELINE.npy   UNet2DConditionModel forward cases.
  text_reference.json   for each case: pipeline, prompt, clip_skip, ids, and the yardsticks below.
  text_embeddings_PIPELINE.npy   float32 (cases of that pipeline, 77, hidden), row `row` of each case:
      clip_skip None: text_encoder(ids)[0]; clip_skip k: final_layer_norm(hidden_states[-(k+1)]), exactly
      as diffusers 0.31 StableDiffusionPipeline.encode_prompt computes prompt_embeds (checked below against
      encode_prompt itself for every case).
Yardsticks (per case): torch_batch_yardstick = max|this prompt encoded alone - encoded in one batch with every
other prompt of the pipeline|; torch_fp64_yardstick = max|float32 result - the same model in float64|. sower's
test allows 5 x max(both) (tests/test_clip_text_encoder.py).
"""
import argparse
import json
import os
import shutil
import sys

sys.modules["ftfy"] = None  # a default install has no ftfy

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

import diffusers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PIPELINES = {
    # name: (tokenizer folder, seed, stored dtype, CLIPTextConfig overrides)
    "tiny-sd1": ("sd1", 11, torch.float32, dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3,
                                                 num_attention_heads=4, hidden_act="quick_gelu")),
    "tiny-sd2": ("sd2", 12, torch.float16, dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                                 num_attention_heads=3, hidden_act="gelu")),
    "tiny-sd1-bf16": ("sd1", 13, torch.bfloat16, dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3,
                                                       num_attention_heads=4, hidden_act="quick_gelu")),
}

# UNet2DConditionModel of each pipeline (cross_attention_dim = its text encoder's width): SD 1.x's shape
# (conv projections, one head count) and SD 2.x's (linear projections, heads per block, upcast_attention),
# small enough to commit: down CrossAttn + plain, up plain + CrossAttn, mid cross-attention.
UNETS = {
    "tiny-sd1": dict(block_out_channels=[8, 16], attention_head_dim=2, use_linear_projection=False,
                     cross_attention_dim=32, sample_size=16),
    "tiny-sd2": dict(block_out_channels=[16, 32], attention_head_dim=[2, 4], use_linear_projection=True,
                     upcast_attention=True, cross_attention_dim=48, sample_size=8),
    "tiny-sd1-bf16": dict(block_out_channels=[8, 16], attention_head_dim=2, use_linear_projection=False,
                          cross_attention_dim=32, sample_size=16),
}
UNET_TIMESTEPS = [999, 500, 1]

PROMPTS = [
    "",
    "a photograph of an astronaut riding a horse",
    "hello !!! world!!",
    "l'été à Paris, naïve café, crème brûlée",
    "日本語のテキスト、東京タワー 🐱🚀",
    " ".join(["a long prompt that runs past the seventy seven token limit of the clip text encoder"] * 8),
]
CLIP_SKIPS = [None, 1, 2]  # 1 and 2 on the first SKIP_PROMPTS prompts only (size)
SKIP_PROMPTS = 2


# SD 1.5's scheduler/scheduler_config.json as the hub has it (PNDM, with clip_sample that PNDM ignores but a
# DDIM made from its config keeps); tiny-sd1-bf16 keeps what PNDMScheduler.save_pretrained writes (no
# clip_sample: DDIM then clips, its default); tiny-sd2 has SD 2.1's DDIM v-prediction config.
SD15_SCHEDULER = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
                  "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
                  "clip_sample": False}
SD21_SCHEDULER = {"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
                  "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False,
                  "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None}


def build(name, out):
    """The whole pipeline, written by StableDiffusionPipeline.save_pretrained; returns it reloaded in float32
    (the stored values widened: what sower computes) and its text encoder and UNet in float64."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tok_name, seed, dtype, overrides = PIPELINES[name]
    folder = os.path.join(out, name)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "tests", "data", "tokenizer", tok_name))
    config = CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, **overrides)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(config).eval()
    torch.manual_seed(100 + seed)
    unet = UNet2DConditionModel(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=2,
                                norm_num_groups=4, in_channels=4, out_channels=4, **UNETS[name]).eval()
    with torch.no_grad():  # norms start at weight 1, bias 0: perturb every 1-D parameter so a mix-up shows
        for p in unet.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape) * 0.05)
    torch.manual_seed(200 + seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        latent_channels=4, norm_num_groups=4, sample_size=32).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae.to(dtype), text_encoder=text_encoder.to(dtype), tokenizer=tokenizer,
                                   unet=unet.to(dtype), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    own = {"tiny-sd1": SD15_SCHEDULER, "tiny-sd2": SD21_SCHEDULER}.get(name)
    if own:
        with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
            json.dump(own, f, indent=2)
            f.write("\n")
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    text64 = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), torch_dtype=torch.float64).eval()
    unet64 = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"), torch_dtype=torch.float64).eval()
    return pipe, text64, unet64


def unet_cases(name, unet, unet64, embeddings, out):
    """Forward cases: x = randn((1, 4, S, S), generator(seed)), t a 0-d int64 tensor (what the pipeline passes),
    the text embeddings of one reference prompt; unet(x, t, encoder_hidden_states=e).sample."""
    size = UNETS[name]["sample_size"]
    xs, es, ys, cases = [], [], [], []
    for i, t in enumerate(UNET_TIMESTEPS):
        x = torch.randn((1, 4, size, size), generator=torch.Generator("cpu").manual_seed(1000 + i))
        e = torch.from_numpy(embeddings[i % len(embeddings)][None])
        with torch.no_grad():
            y = unet(x, torch.tensor(t), encoder_hidden_states=e).sample
            torch.set_default_dtype(torch.float64)
            y64 = unet64(x.double(), torch.tensor(t), encoder_hidden_states=e.double()).sample
            torch.set_default_dtype(torch.float32)
        xs.append(x[0].numpy()), es.append(e[0].numpy()), ys.append(y[0].numpy())
        cases.append({"pipeline": name, "row": i, "timestep": t,
                      "torch_fp64_yardstick": float((y.double() - y64).abs().max())})
    # The batch yardstick: all cases in one batch (each its own t), against each alone.
    with torch.no_grad():
        yb = unet(torch.from_numpy(np.stack(xs)), torch.tensor(UNET_TIMESTEPS),
                  encoder_hidden_states=torch.from_numpy(np.stack(es))).sample
    for i, c in enumerate(cases):
        c["torch_batch_yardstick"] = float((yb[i] - torch.from_numpy(ys[i])).abs().max())
    for what, arrays in (("x", xs), ("context", es), ("out", ys)):
        np.save(os.path.join(out, f"unet_{what}_{name}.npy"), np.stack(arrays).astype(np.float32))
    return cases


RENDER_STEPS = 10
SEEDS = [0, 4294967303, 18446744073709551615]
ZSNR = {"scheduler_config": {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}}
RENDERS = [  # (pipelines, prompt, negative prompt, guidance, eta, clip_skip, seeds[, scheduler, karras[, options:
    #          "scheduler_config": edits to the folder's scheduler_config.json, "guidance_rescale": the pipeline's]])
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, SEEDS),
    (None, "a photograph of an astronaut riding a horse", "blurry, low quality", 7.5, 0.0, None, [5]),
    (["tiny-sd1"], "l'été à Paris 🐱", None, 1.0, 0.0, None, [3]),
    (["tiny-sd1"], "a red cube on a blue sphere", None, 5.0, 0.5, None, [11, 12]),
    (["tiny-sd1"], "a red cube on a blue sphere", "", 7.5, 0.0, 1, [4]),
    # the other schedulers, swapped in from the folder's own config as users do (tiny-sd1's is SD 1.5's
    # PNDM file: skip_prk_steps, steps_offset 1, no timestep_spacing, so Euler/DPM get linspace; tiny-sd2's
    # a DDIM file written by diffusers 0.31 with v_prediction: PNDM runs its Runge-Kutta warm-up)
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, SEEDS[:2], "pndm", False),
    (None, "a photograph of an astronaut riding a horse", "blurry", 7.5, 0.0, None, [SEEDS[2]], "euler", False),
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [21], "euler", True),
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[2]], "euler-a", False),
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [SEEDS[1]], "dpm++2m", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [22], "dpm++2m", True),
    (["tiny-sd1"], "a red cube on a blue sphere", None, 1.0, 0.0, None, [23], "dpm++2m", False),
    (["tiny-sd1"], "a red cube on a blue sphere", None, 1.0, 0.0, None, [24], "euler-a", False),
    # DPM-Solver++ 2M SDE: from_config(config, algorithm_type="sde-dpmsolver++"), a draw every step
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[1]], "dpm++2m-sde", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [25], "dpm++2m-sde", True),
    # zero terminal SNR: tiny-sd2's v-prediction scheduler file with these keys added (the test writes the same
    # file into a copy of the folder), trailing spacing so the first step is the train step without signal
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, 26], "ddim", False, ZSNR),
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [27], "euler", False, ZSNR),
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [28], "euler-a", False, ZSNR),
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [29], "dpm++2m-sde", True, ZSNR),
    # guidance_rescale (rescale_noise_cfg): with zero terminal SNR as the paper pairs them, and alone
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", "blurry", 7.5, 0.0, None, [0, 30], "ddim", False,
     dict(ZSNR, guidance_rescale=0.7)),
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [31], "dpm++2m-sde", True,
     dict(ZSNR, guidance_rescale=0.7)),
    (["tiny-sd1"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, 32], "ddim", False,
     {"guidance_rescale": 0.5}),
    (["tiny-sd1"], "a red cube on a blue sphere", "", 5.0, 0.0, None, [33], "euler-a", False, {"guidance_rescale": 1.0}),
    # UniPC (predictor-corrector), from the folder's config and with Karras sigmas
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[2]], "unipc", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [34], "unipc", True),
    # Heun (two UNet calls per step but the last)
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[1]], "heun", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [35], "heun", True),
    # LMS (linear multistep; needs scipy)
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[2]], "lms", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [36], "lms", True),
    # KDPM2 and its ancestral form (two UNet calls per step but the last; dpm2-a draws at each second call)
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[1]], "dpm2", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [37], "dpm2", True),
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[2]], "dpm2-a", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [38], "dpm2-a", True),
    # DPM-Solver++ singlestep (2S) and its SDE form (a draw every step)
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[1]], "dpm++2s", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [39], "dpm++2s", True),
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[2]], "dpm++2s-sde", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [40], "dpm++2s-sde", True),
    # DEIS (log-rho multistep)
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[1]], "deis", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [41], "deis", True),
    # the third order (solver_order 3 in the folder's scheduler config): DPM-Solver++ multistep and singlestep, DEIS,
    # UniPC
    (["tiny-sd1"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, 42], "dpm++2m", False,
     {"scheduler_config": {"solver_order": 3}}),
    (["tiny-sd1"], "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [43], "dpm++2m", True,
     {"scheduler_config": {"solver_order": 3}}),
    (["tiny-sd1"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, 44], "dpm++2s", False,
     {"scheduler_config": {"solver_order": 3}}),
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, 45], "deis", False,
     {"scheduler_config": {"solver_order": 3}}),
    (["tiny-sd1"], "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [0, 46], "unipc", False,
     {"scheduler_config": {"solver_order": 3}}),
    # DPMSolverSDEScheduler (DPM++ SDE): two UNet calls per step but the last, the noise each sample's Brownian tree's
    # (noise_sampler_seed=[seed of each image], as sower gives each sample its own tree)
    (None, "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, SEEDS[1]], "dpm++sde", False),
    (None, "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [47], "dpm++sde", True),
    (["tiny-sd2"], "a red cube on a blue sphere", None, 5.0, 0.0, None, [SEEDS[2]], "dpm++sde", False),
    # the exponential and beta sigma schedules (use_exponential_sigmas / use_beta_sigmas in the folder's scheduler
    # config), in classes whose set_timesteps runs them in 0.31
    (["tiny-sd1"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, 48], "euler", False,
     {"scheduler_config": {"use_exponential_sigmas": True}}),
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", "", 7.5, 0.0, None, [49], "heun", False,
     {"scheduler_config": {"use_exponential_sigmas": True}}),
    (["tiny-sd1"], "a red cube on a blue sphere", None, 5.0, 0.0, None, [50], "dpm2-a", False,
     {"scheduler_config": {"use_beta_sigmas": True}}),
    (["tiny-sd2"], "a photograph of an astronaut riding a horse", None, 7.5, 0.0, None, [0, 51], "dpm++sde", False,
     {"scheduler_config": {"use_beta_sigmas": True}}),
]


def scheduler_class(name):
    import diffusers

    return {"ddim": diffusers.DDIMScheduler, "pndm": diffusers.PNDMScheduler,
            "euler": diffusers.EulerDiscreteScheduler, "euler-a": diffusers.EulerAncestralDiscreteScheduler,
            "dpm++2m": diffusers.DPMSolverMultistepScheduler,
            "dpm++2m-sde": diffusers.DPMSolverMultistepScheduler, "unipc": diffusers.UniPCMultistepScheduler,
            "heun": diffusers.HeunDiscreteScheduler, "lms": diffusers.LMSDiscreteScheduler,
            "dpm2": diffusers.KDPM2DiscreteScheduler, "dpm2-a": diffusers.KDPM2AncestralDiscreteScheduler,
            "dpm++2s": diffusers.DPMSolverSinglestepScheduler,
            "dpm++2s-sde": diffusers.DPMSolverSinglestepScheduler, "deis": diffusers.DEISMultistepScheduler,
            "dpm++sde": diffusers.DPMSolverSDEScheduler}[name]


SCHEDULER_KWARGS = {"dpm++2m-sde": {"algorithm_type": "sde-dpmsolver++"},
                    "dpm++2s-sde": {"algorithm_type": "sde-dpmsolver++"}}  # what the name sets over the config


def render(pipe, prompt, negative, guidance, eta, clip_skip, seeds, latents=None, scheduler="ddim", karras=False,
           options=None):
    """StableDiffusionPipeline with `scheduler` made from the folder's own scheduler config (from_config, plus
    use_karras_sigmas=True if karras), one CPU generator per seed, output_type="latent": what
    sower sample --scheduler NAME [--karras] must give."""
    if not hasattr(pipe, "_folder_scheduler_config"):  # swap from the folder's file, never from a swap
        pipe._folder_scheduler_config = pipe.scheduler.config
    extra = dict(SCHEDULER_KWARGS.get(scheduler, {}), **({"use_karras_sigmas": True} if karras else {}))
    if scheduler == "dpm++sde":  # one Brownian tree per image, each of its seed: what sower renders
        extra["noise_sampler_seed"] = list(seeds)
    config = pipe._folder_scheduler_config
    edits = (options or {}).get("scheduler_config")
    if edits:  # the file as the test edits it: its own keys (not those the folder's class defaulted) plus these
        defaulted = set(config.get("_use_default_values", [])) | {"_use_default_values"}
        config = dict({k: v for k, v in config.items() if k not in defaulted}, **edits)
    pipe.scheduler = scheduler_class(scheduler).from_config(config, **extra)
    n = len(seeds)
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    if latents is not None:  # given latents: leave each generator where drawing them would have
        for g in generators:
            torch.randn((1, *latents.shape[1:]), generator=g, dtype=torch.float32)
    out = pipe([prompt] * n, negative_prompt=None if negative is None else [negative] * n,
               guidance_scale=guidance, num_inference_steps=RENDER_STEPS, eta=eta, clip_skip=clip_skip,
               guidance_rescale=(options or {}).get("guidance_rescale", 0.0),
               generator=generators, output_type="latent", latents=latents)
    return out.images


def render64(pipe64, unet_size, prompt, negative, guidance, clip_skip, seed, scheduler, karras, options):
    """The same render in float64 from the same float32 noise (the initial noise, and Euler ancestral's,
    KDPM2 ancestral's and the DPM-Solver++ SDEs' draws, DPM++ SDE's Brownian tree: float32 draws widened, not float64
    draws): torch's own float32
    error over the whole loop."""
    import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm
    import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a
    import diffusers.schedulers.scheduling_dpmsolver_singlestep as dpm_single
    import diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete as kdpm2_a
    import diffusers.schedulers.scheduling_dpmsolver_sde as dpm_sde
    from diffusers.utils.torch_utils import randn_tensor

    def float32_draws(shape, generator=None, device=None, dtype=None, layout=None):
        return randn_tensor(shape, generator=generator, device=device, dtype=torch.float32).to(dtype)

    noise = torch.randn((1, 4, unet_size, unet_size), generator=torch.Generator("cpu").manual_seed(seed))
    torch.set_default_dtype(torch.float64)
    euler_a.randn_tensor = dpm.randn_tensor = kdpm2_a.randn_tensor = dpm_single.randn_tensor = float32_draws
    solve = torch.linalg.solve  # UniPC's corrector under a float64 default: a float64 R against its float32 b

    def solve_as_b(A, B, *args, **kwargs):
        return solve(A.to(B.dtype), B, *args, **kwargs)

    torch.linalg.solve = solve_as_b
    tree_init, tree_call = dpm_sde.BatchedBrownianTree.__init__, dpm_sde.BatchedBrownianTree.__call__

    def tree_init32(self, x, t0, t1, seed=None, **kwargs):  # DPM++ SDE's tree: its float32 increments, widened
        tree_init(self, x.float(), t0, t1, seed, **kwargs)

    dpm_sde.BatchedBrownianTree.__init__ = tree_init32
    dpm_sde.BatchedBrownianTree.__call__ = lambda self, t0, t1: tree_call(self, t0, t1).double()
    try:
        return render(pipe64, prompt, negative, guidance, 0.0, clip_skip, [seed], latents=noise.double(),
                      scheduler=scheduler, karras=karras, options=options)[0]
    finally:
        torch.set_default_dtype(torch.float32)
        euler_a.randn_tensor = dpm.randn_tensor = kdpm2_a.randn_tensor = dpm_single.randn_tensor = randn_tensor
        torch.linalg.solve = solve
        dpm_sde.BatchedBrownianTree.__init__, dpm_sde.BatchedBrownianTree.__call__ = tree_init, tree_call


def render_cases(name, pipe, out):
    from diffusers import StableDiffusionPipeline

    pipe64 = StableDiffusionPipeline.from_pretrained(os.path.join(out, name), torch_dtype=torch.float64,
                                                     safety_checker=None, requires_safety_checker=False)
    pipe64.set_progress_bar_config(disable=True)
    size = UNETS[name]["sample_size"]
    cases, arrays = [], []
    pads = [101, 102]  # the batch yardstick: each seed alone, then in one batch with these
    for only, prompt, negative, guidance, eta, clip_skip, seeds, *how in RENDERS:
        if only and name not in only:
            continue
        scheduler, karras, options = (list(how) + [None])[:3] if how else ("ddim", False, None)
        kw = {"scheduler": scheduler, "karras": karras, "options": options}
        alone = [render(pipe, prompt, negative, guidance, eta, clip_skip, [s], **kw)[0] for s in seeds]
        batch = render(pipe, prompt, negative, guidance, eta, clip_skip, seeds + pads, **kw)
        for s, a, b in zip(seeds, alone, batch):
            fp64 = 0.0
            if eta == 0:  # (DDIM's eta noise is drawn inside its step: no float64 twin here)
                fp64 = float((a.double() - render64(pipe64, size, prompt, negative, guidance, clip_skip, s,
                                                    scheduler, karras, options)).abs().max())
            case = {"pipeline": name, "row": len(arrays), "prompt": prompt, "negative_prompt": negative,
                    "guidance": guidance, "eta": eta, "clip_skip": clip_skip or 0, "seed": str(s),
                    "steps": RENDER_STEPS, "scheduler": scheduler,
                    "torch_batch_yardstick": float((a - b).abs().max()), "torch_fp64_yardstick": fp64}
            if karras:
                case["karras"] = True
            if options and options.get("scheduler_config"):
                case["scheduler_config_edits"] = options["scheduler_config"]
            if options and options.get("guidance_rescale"):
                case["guidance_rescale"] = options["guidance_rescale"]
            cases.append(case)
            arrays.append(a.numpy())
    np.save(os.path.join(out, f"render_latents_{name}.npy"), np.stack(arrays).astype(np.float32))
    return cases


def ids_of(tokenizer, prompts):
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def embed(model, ids, clip_skip):
    """What StableDiffusionPipeline.encode_prompt computes (diffusers 0.31)."""
    with torch.no_grad():
        if clip_skip is None:
            return model(ids)[0]
        hidden = model(ids, output_hidden_states=True)[-1][-(clip_skip + 1)]
        return model.text_model.final_layer_norm(hidden)


def encode_prompt_check(tokenizer, model, prompt, clip_skip, want):
    """The same through diffusers' own encode_prompt (a pipeline with only the text side)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.__new__(StableDiffusionPipeline)
    pipe.tokenizer, pipe.text_encoder, pipe.unet = tokenizer, model, None
    pipe._lora_scale = None
    got, _ = pipe.encode_prompt(prompt, "cpu", 1, False, clip_skip=clip_skip)
    assert torch.equal(got, want), f"encode_prompt differs for {prompt!r} clip_skip {clip_skip}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "sd"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)
    cases, unet_ref, render_ref = [], [], []
    for name in PIPELINES:
        arrays = []
        pipe, model64, unet64 = build(name, args.out)
        tokenizer, model = pipe.tokenizer, pipe.text_encoder
        all_ids = ids_of(tokenizer, PROMPTS)
        for clip_skip in CLIP_SKIPS:
            batch = embed(model, all_ids, clip_skip)
            for i, prompt in enumerate(PROMPTS):
                if clip_skip and i >= SKIP_PROMPTS:
                    continue
                ids = all_ids[i:i + 1]
                alone = embed(model, ids, clip_skip)
                encode_prompt_check(tokenizer, model, prompt, clip_skip, alone)
                torch.set_default_dtype(torch.float64)  # torch 1.13 builds the fp64 causal mask in the default dtype
                wide = embed(model64, ids, clip_skip)
                torch.set_default_dtype(torch.float32)
                cases.append({
                    "pipeline": name, "row": len(arrays), "prompt": prompt, "clip_skip": clip_skip or 0,
                    "ids": ids[0].tolist(), "hidden": int(alone.shape[-1]),
                    "torch_batch_yardstick": float((alone[0] - batch[i]).abs().max()),
                    "torch_fp64_yardstick": float((alone[0].double() - wide[0]).abs().max()),
                })
                arrays.append(alone[0].numpy())
        np.save(os.path.join(args.out, f"text_embeddings_{name}.npy"), np.stack(arrays).astype(np.float32))
        unet_ref += unet_cases(name, pipe.unet, unet64, arrays, args.out)
        render_ref += render_cases(name, pipe, args.out)
    with open(os.path.join(args.out, "text_reference.json"), "w") as f:
        json.dump({"generated_by": "validate/make_sd_reference.py", "torch": torch.__version__,
                   "transformers": transformers.__version__, "diffusers": diffusers.__version__,
                   "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(args.out, "render_reference.json"), "w") as f:
        json.dump({"generated_by": "validate/make_sd_reference.py", "torch": torch.__version__,
                   "diffusers": diffusers.__version__, "cases": render_ref}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(args.out, "unet_reference.json"), "w") as f:
        json.dump({"generated_by": "validate/make_sd_reference.py", "torch": torch.__version__,
                   "diffusers": diffusers.__version__, "cases": unet_ref}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
