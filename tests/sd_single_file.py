#!/usr/bin/python3
"""A diffusers Stable Diffusion folder as one single-file checkpoint in the original LDM layout (what
AUTOMATIC1111 and ComfyUI load, and diffusers' from_single_file reads): the inverse of the names
diffusers' loaders/single_file_utils.py maps, written with numpy and the safetensors format by hand
(no torch), every tensor's bytes kept as stored. validate/check_single_file.py shows that diffusers
loads the result into the folder's exact weights; tests/test_convert.py converts it back with
`sower convert`.

usage: sd_single_file.py MODEL_DIR OUT.safetensors [--extras]
  --extras: also write what real checkpoints carry and a pipeline does not use (the LDM training
            schedule's buffers, an EMA counter, OpenCLIP's logit_scale and one resblock past the text
            encoder's layers, as SD 2.x checkpoints hold 24 of which 23 run)
"""
import json
import os
import re
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read_safetensors(path):
    """name -> (dtype string, shape, raw bytes)."""
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    return {k: (v["dtype"], v["shape"], data[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}


def write_safetensors(path, tensors):
    header, at, blobs = {}, 0, []
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + len(raw)]}
        at += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
          ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."), ("conv_shortcut.", "skip_connection.")]


def rename_start(rest, rules):
    for old, new in rules:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def unet_name(name, per, up_attention):
    top = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
           "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
    for old, new in top.items():
        if name.startswith(old):
            return new + name[len(old):]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        b, kind, l, rest = int(m[1]), m[2], int(m[3]), m[4]
        i = 1 + b * per + l
        return f"input_blocks.{i}.0.{rename_start(rest, RESNET)}" if kind == "resnets" else f"input_blocks.{i}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name)
    if m:
        return f"input_blocks.{1 + int(m[1]) * per + per - 1}.0.op.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        if m[1] == "attentions":
            return f"middle_block.1.{m[3]}"
        return f"middle_block.{2 * int(m[2])}.{rename_start(m[3], RESNET)}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        b, kind, l, rest = int(m[1]), m[2], int(m[3]), m[4]
        i = b * per + l
        return f"output_blocks.{i}.0.{rename_start(rest, RESNET)}" if kind == "resnets" else f"output_blocks.{i}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", name)
    if m:
        b = int(m[1])
        return f"output_blocks.{b * per + per - 1}.{2 if up_attention[b] else 1}.conv.{m[2]}"
    raise SystemExit(f"unet: no LDM name for {name}")


VAE_ATTENTION = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."),
                 ("query.", "q."), ("key.", "k."), ("value.", "v."), ("proj_attn.", "proj_out.")]


def vae_name(name, n_up):
    """(LDM name, whether a linear weight becomes a 1x1 convolution)."""
    for same in ("quant_conv.", "post_quant_conv."):
        if name.startswith(same):
            return name, False
    coder, rest = name.split(".", 1)
    ends = {"conv_in.": "conv_in.", "conv_out.": "conv_out.", "conv_norm_out.": "norm_out."}
    for old, new in ends.items():
        if rest.startswith(old):
            return f"{coder}.{new}{rest[len(old):]}", False
    shortcut = [("conv_shortcut.", "nin_shortcut.")]
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"{coder}.mid.block_{int(m[1]) + 1}.{rename_start(m[2], shortcut)}", False
    m = re.match(r"mid_block\.attentions\.0\.(.*)", rest)
    if m:
        ldm = rename_start(m[1], VAE_ATTENTION)
        return f"{coder}.mid.attn_1.{ldm}", not ldm.startswith("norm.") and ldm.endswith(".weight")
    m = re.match(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
    if m:
        i = int(m[2]) if m[1] == "down" else n_up - 1 - int(m[2])
        return f"{coder}.{m[1]}.{i}.block.{m[3]}.{rename_start(m[4], shortcut)}", False
    m = re.match(r"(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.conv\.(.*)", rest)
    if m:
        i = int(m[2]) if m[1] == "down" else n_up - 1 - int(m[2])
        return f"{coder}.{m[1]}.{i}.{m[1]}sample.conv.{m[4]}", False
    raise SystemExit(f"vae: no LDM name for {name}")


OPEN_CLIP_LAYER = [("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
                   ("mlp.fc2.", "mlp.c_proj."), ("self_attn.out_proj.", "attn.out_proj.")]


def open_clip_tensors(text):
    """transformers' CLIPTextModel names -> OpenCLIP's (SD 2.x), q/k/v fused into in_proj."""
    out, fused = {}, {}
    for name, (dtype, shape, raw) in text.items():
        if name.endswith("position_ids"):
            continue
        if name == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = (dtype, shape, raw)
        elif name == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = (dtype, shape, raw)
        elif name.startswith("text_model.final_layer_norm."):
            out["ln_final." + name.rsplit(".", 1)[1]] = (dtype, shape, raw)
        else:
            m = re.match(r"text_model\.encoder\.layers\.(\d+)\.(.*)", name)
            if not m:
                raise SystemExit(f"text encoder: no OpenCLIP name for {name}")
            q = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", m[2])
            if q:
                fused.setdefault((m[1], q[2]), {})[q[1]] = (dtype, shape, raw)
            else:
                out[f"transformer.resblocks.{m[1]}.{rename_start(m[2], OPEN_CLIP_LAYER)}"] = (dtype, shape, raw)
    for (layer, kind), parts in fused.items():
        dtype, shape, _ = parts["q"]
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = (
            dtype, [3 * shape[0]] + shape[1:], parts["q"][2] + parts["k"][2] + parts["v"][2])
    return out


def main():
    folder, out = sys.argv[1], sys.argv[2]
    extras = "--extras" in sys.argv[3:]
    cfg = lambda sub: json.load(open(os.path.join(folder, sub, "config.json")))  # noqa: E731
    unet_cfg, vae_cfg, text_cfg = cfg("unet"), cfg("vae"), cfg("text_encoder")
    per = unet_cfg["layers_per_block"] + 1
    up_attention = [t.startswith("CrossAttn") for t in unet_cfg["up_block_types"]]
    ckpt = {}
    for name, t in read_safetensors(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors")).items():
        ckpt["model.diffusion_model." + unet_name(name, per, up_attention)] = t
    n_up = len(vae_cfg["up_block_types"])
    for name, (dtype, shape, raw) in read_safetensors(os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors")).items():
        ldm, conv = vae_name(name, n_up)
        ckpt["first_stage_model." + ldm] = (dtype, shape + [1, 1] if conv and len(shape) == 2 else shape, raw)
    text = read_safetensors(os.path.join(folder, "text_encoder", "model.safetensors"))
    open_clip = text_cfg.get("hidden_act") == "gelu"  # SD 2.x: OpenCLIP ViT-H; SD 1.x: CLIP ViT-L (quick_gelu)
    f32 = lambda *shape: ("F32", list(shape), np.linspace(0.1, 0.9, int(np.prod(shape)), dtype=np.float32).tobytes())  # noqa: E731
    if open_clip:
        for name, t in open_clip_tensors(text).items():
            ckpt["cond_stage_model.model." + name] = t
        # OpenCLIP's image-text projection (width, width): in every SD 2.x checkpoint, unused by the pipeline
        # (and what diffusers reads the width from to split in_proj)
        width = text_cfg["hidden_size"]
        ckpt["cond_stage_model.model.text_projection"] = f32(width, width)
    else:
        for name, t in text.items():
            ckpt["cond_stage_model.transformer." + name] = t
    if extras:
        ckpt["betas"], ckpt["alphas_cumprod"], ckpt["model_ema.num_updates"] = f32(1000), f32(1000), f32()
        if open_clip:
            ckpt["cond_stage_model.model.logit_scale"] = f32()
            last = text_cfg["num_hidden_layers"] - 1
            for name in [k for k in ckpt if k.startswith(f"cond_stage_model.model.transformer.resblocks.{last}.")]:
                ckpt[name.replace(f"resblocks.{last}.", f"resblocks.{last + 1}.")] = ckpt[name]
    write_safetensors(out, ckpt)
    print(f"{folder} -> {out}: {len(ckpt)} tensors ({'OpenCLIP' if open_clip else 'CLIP'} text encoder)")


if __name__ == "__main__":
    main()
