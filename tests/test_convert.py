#!/usr/bin/python3
"""`sower convert CHECKPOINT.safetensors (--config DIR | --tokenizer DIR) -o OUT`: a single-file Stable Diffusion checkpoint
(the LDM layout AUTOMATIC1111 and ComfyUI load) into a diffusers folder.

Round trip: each test pipeline (SD 1.x F32, SD 1.x BF16, SD 2.x with its OpenCLIP text encoder) is written
as one checkpoint by sd_single_file.py (whose names diffusers' own from_single_file loads into the
folder's exact weights: validate/check_single_file.py), with the extras real checkpoints carry (training
buffers, an EMA counter, logit_scale, one resblock past SD 2.x's used layers); `sower convert` makes a
folder again. Checked: every tensor of the three weight files is the original's, name, dtype, shape and
bytes (the VAE attention's legacy names aside, which diffusers renames too); configs and tokenizer byte
for byte; `sower sample --decode` from the converted folder == from the original, bit for bit.

Bad input, each exit 2 naming what and nothing left behind: OUT exists; a tensor under two names; a tensor of another
architecture; an SD 2.x checkpoint given an SD 1.x config; a config that does not fit the tensors; a
truncated checkpoint; no VAE in the checkpoint; a foreign OUT.partial (an interrupted convert's marked
one is made again); -o "", "DIR/.", "DIR/..", "/", a working file's name (OUT.partial, OUT.lock); OUT.lock
held by another convert ("DIR/" is the folder DIR). A full disk (a tmpfs, where one can be mounted): exit 3 naming the path, no OUT
and no .partial.

Configs inferred from the tensors (`sower convert CHECKPOINT --tokenizer DIR`): std-sd1 and std-sd2 are
tiny pipelines whose unseen hyper-parameters are their family's (validate/make_std_pipelines.py, which also
checks with diffusers that from_single_file(CHECKPOINT, config=sower's inferred folder) loads the pipeline's
own weights and configs). From their committed tensor lists a checkpoint with random weights is made;
the inferred configs must be the pipeline's key for key, and renders through them the same, bit for bit,
as through `--config` the pipeline's folder; --dry-run shows them and writes nothing. Refused (exit 2): another family's tokenizer, a checkpoint
without the UNet's conv_in (named), both or neither of --config/--tokenizer.

usage: test_convert.py SOWER SD_DATA_DIR (holding tiny-sd1, tiny-sd1-bf16, tiny-sd2, std-sd1, std-sd2)
"""
import json
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from sd_single_file import read_safetensors, write_safetensors
from testing import check, finish

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
           "text_encoder/model.safetensors")
LEGACY = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def normalised(tensors):
    out = {}
    for name, t in tensors.items():
        if name.endswith("position_ids"):
            continue
        for old, new in LEGACY.items():
            name = name.replace(old, new)
        out[name] = t
    return out


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def refused(r, code, texts, what, leftovers=()):
    missing = [t for t in texts if t not in r.stderr]
    left = [p for p in leftovers if os.path.exists(p)]
    check(r.returncode == code and not missing and not left and "Sanitizer" not in r.stderr,
          f"{what}: exit {r.returncode} (expected {code}), missing {missing}, left {left}: {r.stderr[-600:]}")


CONFIGS = ("model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "vae/config.json",
           "text_encoder/config.json")


def random_checkpoint(tensor_list, path, seed, drop=()):
    """A checkpoint of the listed names, dtypes and shapes (F16/F32), values N(0, 0.05) from seed."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, (dtype, shape) in json.load(open(tensor_list)).items():
        if name not in drop:
            values = (rng.standard_normal(shape) * 0.05).astype(np.float16 if dtype == "F16" else np.float32)
            tensors[name] = (dtype, shape, values.tobytes())
    write_safetensors(path, tensors)


def check_inferred(sower, data, tmp):
    for name, steps in (("std-sd1", "4"), ("std-sd2", "3")):
        folder, ckpt = os.path.join(data, name), os.path.join(tmp, name + ".safetensors")
        tensor_list = os.path.join(folder, "ldm_tensors.json")
        if name == "std-sd2":  # ComfyUI saves a v-prediction checkpoint with an empty 'v_pred' tensor: not a weight
            tensors = json.load(open(tensor_list))
            tensors["v_pred"] = ["F32", [0]]
            tensor_list = os.path.join(tmp, "std-sd2-v_pred.json")
            json.dump(tensors, open(tensor_list, "w"))
        random_checkpoint(tensor_list, ckpt, seed=len(name) + ord(name[-1]))
        inferred, given = os.path.join(tmp, name + "-inferred"), os.path.join(tmp, name + "-given")
        r = run([sower, "convert", ckpt, "--tokenizer", os.path.join(folder, "tokenizer"), "-o", inferred])
        if not check(r.returncode == 0 and "configs inferred from the tensors" in r.stdout, f"{name}: convert "
                     f"--tokenizer: {r.stderr[-800:]}"):
            continue
        for c in CONFIGS:
            ours, theirs = json.load(open(os.path.join(inferred, c))), json.load(open(os.path.join(folder, c)))
            differ = {k: (v, theirs.get(k, "<absent>")) for k, v in ours.items() if theirs.get(k, "<absent>") != v}
            check(not differ, f"{name} {c}: inferred values differ from the pipeline's: {differ}")
        check(all(filecmp.cmp(os.path.join(folder, "tokenizer", f), os.path.join(inferred, "tokenizer", f), shallow=False)
                  for f in os.listdir(os.path.join(folder, "tokenizer"))), f"{name}: tokenizer files differ")
        r = run([sower, "convert", ckpt, "--config", folder, "-o", given])
        before = sorted(os.listdir(tmp))
        r = run([sower, "convert", ckpt, "--tokenizer", os.path.join(folder, "tokenizer"), "--dry-run"])
        shown = r.stdout.split("== unet/config.json\n", 1)[-1].split("== ", 1)[0]
        check(r.returncode == 0 and json.loads(shown) == json.load(open(os.path.join(inferred, "unet/config.json"))) and
              sorted(os.listdir(tmp)) == before, f"{name}: --dry-run: {r.returncode} {r.stdout[:300]} {r.stderr[-300:]}")
        renders = []
        for model in (inferred, given):
            npy = os.path.join(tmp, f"{name}-{len(renders)}.npy")
            r = run([sower, "sample", model, "--prompt", "a red cube on a table", "--steps", steps, "--seeds", "0,7",
                     "--height", "64", "--width", "64", "--decode", "-o", npy])
            if check(r.returncode == 0, f"{name}: sample {model}: {r.stderr[-600:]}"):
                renders.append(np.load(npy))
        check(len(renders) == 2 and np.array_equal(renders[0], renders[1]) and np.isfinite(renders[0]).all(),
              f"{name}: images through the inferred configs differ from those through the pipeline's")
        print(f"{name}: configs inferred from a random checkpoint's tensors == the pipeline's, key for key; "
              "sample --decode through them == through --config, bit for bit")
    std1, std2 = os.path.join(data, "std-sd1"), os.path.join(data, "std-sd2")
    out = os.path.join(tmp, "bad-inferred")
    r = run([sower, "convert", os.path.join(tmp, "std-sd2.safetensors"), "--tokenizer", os.path.join(std1, "tokenizer"),
             "-o", out])
    refused(r, 2, ["SD 2.x checkpoint", "pads with <|endoftext|>"], "SD 2.x checkpoint, SD 1.x tokenizer", [out])
    r = run([sower, "convert", os.path.join(tmp, "std-sd1.safetensors"), "--tokenizer", os.path.join(std2, "tokenizer"),
             "-o", out])
    refused(r, 2, ["SD 1.x checkpoint", "pads with another token"], "SD 1.x checkpoint, SD 2.x tokenizer", [out])
    no_conv_in = os.path.join(tmp, "no-conv-in.safetensors")
    random_checkpoint(os.path.join(std1, "ldm_tensors.json"), no_conv_in, 1,
                      drop=("model.diffusion_model.input_blocks.0.0.weight",))
    r = run([sower, "convert", no_conv_in, "--tokenizer", os.path.join(std1, "tokenizer"), "-o", out])
    refused(r, 2, ["no tensor 'model.diffusion_model.input_blocks.0.0.weight'", "give --config"],
            "no conv_in to infer from", [out])
    r = run([sower, "convert", no_conv_in, "--tokenizer", os.path.join(std1, "tokenizer"), "--config", std1, "-o", out])
    refused(r, 2, ["usage: sower convert"], "both --config and --tokenizer", [out])
    # An inpainting UNet (conv_in of 9 channels: latents, mask, masked image) is refused, not written as a folder
    # sample refuses ("in_channels 9 != out_channels 4"; convert exited 0 before).
    inpaint_list = os.path.join(tmp, "inpaint.json")
    tensors = json.load(open(os.path.join(std1, "ldm_tensors.json")))
    dtype, shape = tensors["model.diffusion_model.input_blocks.0.0.weight"]
    tensors["model.diffusion_model.input_blocks.0.0.weight"] = [dtype, [shape[0], 9] + shape[2:]]
    json.dump(tensors, open(inpaint_list, "w"))
    inpaint = os.path.join(tmp, "inpaint.safetensors")
    random_checkpoint(inpaint_list, inpaint, 2)
    r = run([sower, "convert", inpaint, "--tokenizer", os.path.join(std1, "tokenizer"), "-o", out])
    refused(r, 2, ["conv_in takes 9 channels", "inpainting"], "an inpainting UNet", [out])
    print("inferred configs refused (exit 2, nothing written): another family's tokenizer both ways, no conv_in, "
          "--config with --tokenizer, an inpainting UNet")


def main():
    sower, data = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        check_inferred(sower, data, tmp)
        for name in ("tiny-sd1", "tiny-sd1-bf16", "tiny-sd2"):
            folder, ckpt, out = os.path.join(data, name), os.path.join(tmp, name + ".safetensors"), os.path.join(tmp, name)
            subprocess.run([sys.executable, os.path.join(HERE, "sd_single_file.py"), folder, ckpt, "--extras"],
                           check=True, capture_output=True)
            r = run([sower, "convert", ckpt, "--config", folder, "-o", out])
            if not check(r.returncode == 0, f"{name}: convert: {r.stderr[-800:]}"):
                continue
            for w in WEIGHTS:
                a, b = normalised(read_safetensors(os.path.join(folder, w))), read_safetensors(os.path.join(out, w))
                same = set(a) == set(b) and all(a[k] == b[k] for k in a)
                check(same, f"{name} {w}: tensors differ: only in the original {sorted(set(a) - set(b))[:3]}, only "
                            f"converted {sorted(set(b) - set(a))[:3]}, differing {[k for k in set(a) & set(b) if a[k] != b[k]][:3]}")
            configs = ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "vae/config.json",
                       "text_encoder/config.json"] + ["tokenizer/" + f for f in os.listdir(os.path.join(folder, "tokenizer"))]
            check(all(filecmp.cmp(os.path.join(folder, c), os.path.join(out, c), shallow=False) for c in configs),
                  f"{name}: configs or tokenizer files differ")
            renders = []
            for model in (folder, out):
                npy = os.path.join(tmp, f"{name}-{len(renders)}.npy")
                r = run([sower, "sample", model, "--prompt", "a red cube on a table", "--negative-prompt", "blurry",
                         "--guidance", "7.5", "--scheduler", "euler-a", "--steps", "4", "--seeds", "0,4294967303",
                         "--decode", "-o", npy])
                if check(r.returncode == 0, f"{name}: sample {model}: {r.stderr[-600:]}"):
                    renders.append(np.load(npy))
            check(len(renders) == 2 and np.array_equal(renders[0], renders[1]),
                  f"{name}: the converted folder's images differ from the original's")
            print(f"{name}: converted; every tensor, config and tokenizer file the original's; sample --decode "
                  f"identical, bit for bit")

        # Bad input: exit 2 naming it, nothing written.
        sd1, sd2 = os.path.join(data, "tiny-sd1"), os.path.join(data, "tiny-sd2")
        ckpt1, ckpt2 = os.path.join(tmp, "tiny-sd1.safetensors"), os.path.join(tmp, "tiny-sd2.safetensors")
        out = os.path.join(tmp, "bad")
        partial = out + ".partial"
        r = run([sower, "convert", ckpt1, "--config", sd1, "-o", os.path.join(tmp, "tiny-sd1")])
        refused(r, 2, ["exists: not replacing it"], "OUT exists")
        tensors = read_safetensors(ckpt1)
        other = dict(tensors)
        other["model.diffusion_model.label_emb.0.0.weight"] = ("F32", [2], np.zeros(2, np.float32).tobytes())
        write_safetensors(os.path.join(tmp, "other.safetensors"), other)
        r = run([sower, "convert", os.path.join(tmp, "other.safetensors"), "--config", sd1, "-o", out])
        refused(r, 2, ["model.diffusion_model.label_emb.0.0.weight", "another architecture"], "an unknown tensor",
                [out, partial])
        twice = dict(tensors)  # older SD 1.x files lack the text_model level: the same tensor under both names
        twice["cond_stage_model.transformer.final_layer_norm.weight"] = tensors["cond_stage_model.transformer.text_model.final_layer_norm.weight"]
        write_safetensors(os.path.join(tmp, "twice.safetensors"), twice)
        r = run([sower, "convert", os.path.join(tmp, "twice.safetensors"), "--config", sd1, "-o", out])
        refused(r, 2, ["two tensors would be named 'text_model.final_layer_norm.weight'"], "a tensor under two names",
                [out, partial])
        r = run([sower, "convert", ckpt2, "--config", sd1, "-o", out])
        refused(r, 2, ["SD 2.x checkpoint", "SD 1.x text encoder"], "SD 2.x checkpoint, SD 1.x config", [out, partial])
        r = run([sower, "convert", ckpt1, "--config", sd2, "-o", out])
        refused(r, 2, ["SD 1.x checkpoint"], "SD 1.x checkpoint, SD 2.x config", [out, partial])
        wrong = os.path.join(tmp, "wrong-config")
        shutil.copytree(sd1, wrong)
        cfg = open(os.path.join(wrong, "unet", "config.json")).read().replace('"cross_attention_dim": 32', '"cross_attention_dim": 24')
        open(os.path.join(wrong, "unet", "config.json"), "w").write(cfg)
        r = run([sower, "convert", ckpt1, "--config", wrong, "-o", out])
        refused(r, 2, ["attn2.to_k.weight"], "a config that does not fit the tensors", [out, partial])
        raw = open(ckpt1, "rb").read()
        open(os.path.join(tmp, "cut.safetensors"), "wb").write(raw[:len(raw) // 2])
        r = run([sower, "convert", os.path.join(tmp, "cut.safetensors"), "--config", sd1, "-o", out])
        refused(r, 2, ["cut.safetensors"], "a truncated checkpoint", [out, partial])
        no_vae = {k: v for k, v in tensors.items() if not k.startswith("first_stage_model.")}
        write_safetensors(os.path.join(tmp, "no-vae.safetensors"), no_vae)
        r = run([sower, "convert", os.path.join(tmp, "no-vae.safetensors"), "--config", sd1, "-o", out])
        refused(r, 2, ["no VAE (first_stage_model.*) tensors"], "no VAE", [out, partial])
        r = run([sower, "convert", ckpt1, "-o", out])
        refused(r, 2, ["usage: sower convert"], "neither --config nor --tokenizer", [out, partial])
        os.mkdir(partial)
        open(os.path.join(partial, "notes.txt"), "w").write("mine")
        r = run([sower, "convert", ckpt1, "--config", sd1, "-o", out])
        refused(r, 2, ["is not an interrupted `sower convert`"], "a foreign OUT.partial", [out])
        check(open(os.path.join(partial, "notes.txt")).read() == "mine", "a foreign OUT.partial was touched")
        shutil.rmtree(partial)
        # An interrupted convert's marked .partial is made again.
        os.makedirs(os.path.join(partial, "unet"))
        open(os.path.join(partial, "sower-convert.json"), "w").write("{}")
        open(os.path.join(partial, "unet", "diffusion_pytorch_model.safetensors"), "wb").write(b"half")
        r = run([sower, "convert", ckpt1, "--config", sd1, "-o", out])
        check(r.returncode == 0 and os.path.isdir(out) and not os.path.exists(partial),
              f"after an interrupted convert: exit {r.returncode}: {r.stderr[-500:]}")
        # -o that cannot name a new folder, or names a working file: refused before converting (they used to
        # convert whole, then fail the rename, exit 3, leaving DIR/.partial). "DIR/" is the folder DIR.
        for bad, text in (("", "the path is empty"), (os.path.join(tmp, "new", "."), "name the new folder"),
                          (os.path.join(tmp, "new", ".."), "name the new folder"), ("/", "name the new folder"),
                          (out + ".partial", "a name ending in .partial is kept for a run's working files"),
                          (out + ".lock", "a name ending in .lock is kept")):
            r = run([sower, "convert", ckpt1, "--config", sd1, "-o", bad])
            refused(r, 2, [text], f"-o {bad!r}", [os.path.join(tmp, "new"), partial, os.path.join(tmp, ".partial")])
        slashed = os.path.join(tmp, "slashed")
        r = run([sower, "convert", ckpt1, "--config", sd1, "-o", slashed + "//"])
        check(r.returncode == 0 and os.path.isfile(os.path.join(slashed, "unet", "config.json"))
              and not os.path.exists(slashed + ".partial") and not os.path.exists(slashed + ".lock"),
              f"-o DIR/: exit {r.returncode}: {r.stderr[-500:]}")
        # Another convert into the same folder (its lock, from another node here): refused, its files untouched.
        held = os.path.join(tmp, "held")
        open(held + ".lock", "w").write("host: node-z\npid: 4242\npid_start: 0\nstarted: 2026-01-01T00:00:00Z\n"
                                       "command: sower convert other.safetensors\n")
        r = run([sower, "convert", ckpt1, "--config", sd1, "-o", held])
        refused(r, 2, ["is in use by another run: host node-z", "sower convert other.safetensors"],
                "a convert into a folder another convert holds", [held, held + ".partial"])
        os.remove(held + ".lock")
        print("refused, exit 2, nothing written: OUT exists, another architecture's tensor, SD 2.x/1.x mismatched "
              "both ways, a config that does not fit, a truncated file, no VAE, no --config, a foreign .partial; "
              "an interrupted convert's .partial is made again")

        disk = os.path.join(tmp, "disk")
        os.mkdir(disk)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", disk], capture_output=True).returncode:
            print("cannot mount a tmpfs here: the full-disk case is skipped")
        else:
            try:
                full = os.path.join(disk, "model")
                r = run([sower, "convert", ckpt1, "--config", sd1, "-o", full])
                refused(r, 3, ["No space left on device", full + ".partial"], "a full disk", [full, full + ".partial"])
                print("a full disk: exit 3 naming the path, no OUT and no .partial left")
            finally:
                subprocess.run(["umount", disk], capture_output=True)
    sys.exit(finish())


if __name__ == "__main__":
    main()
