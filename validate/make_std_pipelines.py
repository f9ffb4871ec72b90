#!/usr/bin/env python3
"""Two tiny Stable Diffusion pipelines whose every hyper-parameter that a checkpoint's tensors do not show
is the one of their family, as the LDM configs (v1-inference.yaml, v2-inference-v.yaml) and the hub's
SD 1.5 / SD 2.1 folders set it: 32 norm groups; SD 1.x 8 heads in every UNet block, SD 2.x heads of 64
channels and linear projections, upcast_attention; text encoder heads of 64 channels, quick_gelu (SD 1.x)
or gelu (SD 2.x); SD 1.5's PNDM or SD 2.1's DDIM v-prediction scheduler; sample sizes 64/512 (SD 1.x) and
96/768 (SD 2.x). Everything the tensors do show (widths, depths, levels, vocabulary) is small. So `sower
convert CHECKPOINT --tokenizer DIR` (the configs inferred from the tensors, src/model/ldm_config.c) must
give back exactly these folders' configs from their single-file checkpoints (tests/test_convert.py), as
diffusers' from_single_file gives SD 1.5's / SD 2.1's from full-size ones.

Rerun (from the repository root, the reference environment: Debian 12's torch 1.13.1, transformers 4.46.3,
diffusers 0.31.0; nothing is downloaded; a few seconds):
    /opt/refenv/bin/python validate/make_std_pipelines.py [--out DIR] [--sower build/sower]
It builds each pipeline (StableDiffusionPipeline.save_pretrained, weights stored F16, 3-4 MB: too big to
commit) under a temporary folder, writes it as one LDM checkpoint (tests/sd_single_file.py --extras), and
commits what the test needs to remake such a checkpoint with other random weights: tests/data/sd/std-sdN/
holds the pipeline's model_index.json, configs and tokenizer (no weights) and ldm_tensors.json, the
checkpoint's tensor names, dtypes and shapes.
--sower BUILD/sower also checks sower against diffusers: `sower convert CKPT --tokenizer DIR` (configs
inferred) must write the pipeline's own configs, and diffusers' from_single_file(CKPT, config=sower's
folder) must load every weight and config the saved pipeline has.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.modules["ftfy"] = None  # a default install has no ftfy

import torch  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# SD 1.5's and SD 2.1's scheduler configs, as the hub's folders hold them
from make_sd_reference import SD15_SCHEDULER, SD21_SCHEDULER  # noqa: E402

PIPELINES = {
    # name: tokenizer, seed, text encoder, UNet, VAE sample_size, scheduler
    "std-sd1": ("sd1", 31, dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=1,
                                hidden_act="quick_gelu"),
                dict(block_out_channels=(32, 64), attention_head_dim=8, use_linear_projection=False,
                     cross_attention_dim=64, sample_size=64),
                512, SD15_SCHEDULER),
    "std-sd2": ("sd2", 32, dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
                                hidden_act="gelu"),
                dict(block_out_channels=(64, 64), attention_head_dim=[1, 1], use_linear_projection=True,
                     upcast_attention=True, cross_attention_dim=64, sample_size=96),
                768, SD21_SCHEDULER),
}


def build(name, out):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tok_name, seed, text, unet_kw, vae_size, scheduler_config = PIPELINES[name]
    folder = os.path.join(out, name)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "tests", "data", "tokenizer", tok_name))
    config = CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **text)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(config).eval()
    torch.manual_seed(100 + seed)
    unet = UNet2DConditionModel(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                                norm_num_groups=32, in_channels=4, out_channels=4, **unet_kw).eval()
    with torch.no_grad():  # norms start at weight 1, bias 0: perturb every 1-D parameter so a mix-up shows
        for p in unet.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape) * 0.05)
    torch.manual_seed(200 + seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 32), layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=32, sample_size=vae_size).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
    dtype = torch.float16
    pipe = StableDiffusionPipeline(vae=vae.to(dtype), text_encoder=text_encoder.to(dtype), tokenizer=tokenizer,
                                   unet=unet.to(dtype), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(scheduler_config, f, indent=2)
        f.write("\n")
    index_path = os.path.join(folder, "model_index.json")
    index = json.load(open(index_path))
    index["scheduler"] = ["diffusers", scheduler_config["_class_name"]]
    with open(index_path, "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    return folder


def commit(folder, ckpt, out):
    """The configs, tokenizer and the checkpoint's tensor list into out/NAME (no weights)."""
    target = os.path.join(out, os.path.basename(folder))
    if os.path.exists(target):
        shutil.rmtree(target)
    for sub in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                "scheduler/scheduler_config.json"):
        os.makedirs(os.path.dirname(os.path.join(target, sub)), exist_ok=True)
        shutil.copy(os.path.join(folder, sub), os.path.join(target, sub))
    shutil.copytree(os.path.join(folder, "tokenizer"), os.path.join(target, "tokenizer"))
    data = open(ckpt, "rb").read()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    tensors = {k: [v["dtype"], v["shape"]] for k, v in sorted(header.items()) if k != "__metadata__"}
    with open(os.path.join(target, "ldm_tensors.json"), "w") as f:
        json.dump(tensors, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"{target}: configs, tokenizer, ldm_tensors.json ({len(tensors)} tensors)")


def check_with_sower(sower, folder, ckpt, tmp):
    """sower's inferred configs == the pipeline's; diffusers loads the checkpoint through them as the folder."""
    from diffusers import StableDiffusionPipeline
    converted = os.path.join(tmp, os.path.basename(folder) + "-inferred")
    subprocess.run([sower, "convert", ckpt, "--tokenizer", os.path.join(folder, "tokenizer"), "-o", converted],
                   check=True)
    bad = 0
    for sub in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                "scheduler/scheduler_config.json"):
        ours, theirs = json.load(open(os.path.join(converted, sub))), json.load(open(os.path.join(folder, sub)))
        differ = {k: (v, theirs.get(k, "<absent>")) for k, v in ours.items() if theirs.get(k, "<absent>") != v}
        if differ:
            print(f"FAIL {sub}: {differ}")
            bad += 1
    a = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    b = StableDiffusionPipeline.from_single_file(ckpt, config=converted, safety_checker=None,
                                                 requires_safety_checker=False, torch_dtype=torch.float16)
    for part in ("unet", "vae", "text_encoder"):
        ma, mb = getattr(a, part), getattr(b, part)
        sa, sb = ma.state_dict(), mb.state_dict()
        same = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        def settings(m):  # diffusers' FrozenDict, or transformers' PretrainedConfig; bookkeeping keys left out
            d = m.config.to_dict() if hasattr(m.config, "to_dict") else dict(m.config)
            return {k: v for k, v in d.items() if not k.startswith("_") and k not in ("torch_dtype", "transformers_version")}
        config = settings(ma) == settings(mb)
        if not config:
            print({k: (v, settings(mb).get(k)) for k, v in settings(ma).items() if settings(mb).get(k) != v})
        print(f"{os.path.basename(folder)} {part}: {len(sa)} tensors {'identical' if same else 'DIFFER'}, "
              f"config {'identical' if config else 'DIFFERS'}")
        bad += (not same) + (not config)
    sa, sb = ({k: v for k, v in dict(x.scheduler.config).items() if not k.startswith("_")} for x in (a, b))
    same = type(a.scheduler) is type(b.scheduler) and sa == sb
    if not same:
        print({k: (v, sb.get(k)) for k, v in sa.items() if sb.get(k) != v})
    print(f"{os.path.basename(folder)} scheduler: {type(b.scheduler).__name__} config {'identical' if same else 'DIFFERS'}")
    return bad + (not same)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "sd"))
    ap.add_argument("--sower", help="check `sower convert --tokenizer` (this binary) against diffusers")
    args = ap.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in PIPELINES:
            folder = build(name, tmp)
            ckpt = os.path.join(tmp, name + ".safetensors")
            subprocess.run([sys.executable, os.path.join(ROOT, "tests", "sd_single_file.py"), folder, ckpt, "--extras"],
                           check=True)
            commit(folder, ckpt, args.out)
            if args.sower:
                bad += check_with_sower(os.path.abspath(args.sower), folder, ckpt, tmp)
    if args.sower:
        print("all checks passed" if not bad else f"{bad} checks failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
