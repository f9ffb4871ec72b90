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


def build(name, out):
    tok_name, seed, dtype, overrides = PIPELINES[name]
    folder = os.path.join(out, name)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "tests", "data", "tokenizer", tok_name))
    tokenizer.save_pretrained(os.path.join(folder, "tokenizer"))
    config = CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, **overrides)
    torch.manual_seed(seed)
    model = CLIPTextModel(config).eval()
    model.to(dtype).save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    # The float32 model sower computes: the stored values, widened.
    model = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), torch_dtype=torch.float32).eval()
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"]}
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    return tokenizer, model


def build_unet(name, out):
    from diffusers import UNet2DConditionModel

    _, seed, dtype, _ = PIPELINES[name]
    torch.manual_seed(100 + seed)
    unet = UNet2DConditionModel(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=2,
                                norm_num_groups=4, in_channels=4, out_channels=4, **UNETS[name]).eval()
    with torch.no_grad():  # norms start at weight 1, bias 0: perturb every 1-D parameter so a mix-up shows
        for p in unet.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape) * 0.05)
    folder = os.path.join(out, name, "unet")
    unet.to(dtype).save_pretrained(folder, safe_serialization=True)
    from diffusers import UNet2DConditionModel as U

    return U.from_pretrained(folder, torch_dtype=torch.float32).eval(), U.from_pretrained(folder, torch_dtype=torch.float64).eval()


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
    cases, unet_ref = [], []
    for name in PIPELINES:
        arrays = []
        tokenizer, model = build(name, args.out)
        model64 = CLIPTextModel.from_pretrained(os.path.join(args.out, name, "text_encoder"),
                                                torch_dtype=torch.float64).eval()
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
        unet, unet64 = build_unet(name, args.out)
        unet_ref += unet_cases(name, unet, unet64, arrays, args.out)
    with open(os.path.join(args.out, "text_reference.json"), "w") as f:
        json.dump({"generated_by": "validate/make_sd_reference.py", "torch": torch.__version__,
                   "transformers": transformers.__version__, "diffusers": diffusers.__version__,
                   "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(args.out, "unet_reference.json"), "w") as f:
        json.dump({"generated_by": "validate/make_sd_reference.py", "torch": torch.__version__,
                   "diffusers": diffusers.__version__, "cases": unet_ref}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
