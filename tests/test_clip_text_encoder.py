#!/usr/bin/env python3
"""sower encode against transformers' CLIPTextModel (reference: validate/make_sd_reference.py).

usage: test_clip_text_encoder.py SOWER tests/data/sd

1. Every case of text_reference.json (tiny SD 1.x / 2.x pipelines, F32/F16/BF16 weights, clip_skip 0/1/2,
   empty, accented, CJK + emoji, "!" and truncated prompts): `sower tokenize` gives the case's ids and
   `sower encode` its embeddings within 5 x max(torch's batch yardstick, torch's fp32-vs-fp64 yardstick).
2. The bits do not depend on --threads. A config with use_attention_mask gets the padding mask diffusers'
   encode_prompt passes (text_masked_reference.json).
3. Real checkpoints' extras: an int64 position_ids buffer (SD 1.5 has one) is ignored, same bits.
4. Bad input exits 2 naming the file and the key or tensor, and writes nothing.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

from testing import check, failures  # noqa: E402  (the tests' shared helpers)


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def encode(sower, folder, prompt, clip_skip, out, threads=None):
    argv = [sower, "encode", folder, "--prompt", prompt, "--clip-skip", str(clip_skip), "--force", "-o", out]
    if threads:
        argv += ["--threads", str(threads)]
    return run(argv)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_safetensors(path, header, body):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + body)


def main():
    sower, data = sys.argv[1], sys.argv[2]
    ref = json.load(open(os.path.join(data, "text_reference.json"), encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "emb.npy")
        # 1. Against transformers.
        worst, worst_abs = 0.0, 0.0
        for case in ref["cases"]:
            folder = os.path.join(data, case["pipeline"])
            what = f"{case['pipeline']} clip_skip {case['clip_skip']} {case['prompt'][:40]!r}"
            r = run([sower, "tokenize", folder, "--prompt", case["prompt"]])
            if check(r.returncode == 0, f"{what}: tokenize exit {r.returncode}: {r.stderr}"):
                check(json.loads(r.stdout)["input_ids"] == case["ids"], f"{what}: ids differ from CLIPTokenizer's")
            r = encode(sower, folder, case["prompt"], case["clip_skip"], out)
            if not check(r.returncode == 0, f"{what}: encode exit {r.returncode}: {r.stderr}"):
                continue
            got = np.load(out)
            want = np.load(os.path.join(data, f"text_embeddings_{case['pipeline']}.npy"))[case["row"]]
            if not check(got.shape == (1,) + want.shape and got.dtype == np.float32,
                         f"{what}: shape {got.shape} {got.dtype}, expected {(1,) + want.shape} float32"):
                continue
            diff = float(np.abs(got[0].astype(np.float64) - want).max())
            tol = 5 * max(case["torch_batch_yardstick"], case["torch_fp64_yardstick"])
            worst, worst_abs = max(worst, diff / tol), max(worst_abs, diff)
            check(diff <= tol, f"{what}: max|sower - transformers| {diff:.3g} > tolerance {tol:.3g}")
        print(f"{len(ref['cases'])} cases against transformers: max|diff| up to {worst_abs:.3g}, at worst "
              f"{worst:.2f} of its tolerance")

        # 2. Threads.
        case = ref["cases"][1]
        folder = os.path.join(data, case["pipeline"])
        outs = []
        for threads in (1, 2, 3):
            path = os.path.join(tmp, f"t{threads}.npy")
            r = encode(sower, folder, case["prompt"], 0, path, threads)
            check(r.returncode == 0, f"--threads {threads}: exit {r.returncode}: {r.stderr}")
            outs.append(open(path, "rb").read() if r.returncode == 0 else b"")
        check(outs[0] == outs[1] == outs[2], "the embeddings depend on --threads")
        print("threads 1, 2, 3: identical bytes")

        # 2b. A text encoder whose config says use_attention_mask (validate/make_masked_text_reference.py): the
        # pipeline passes the tokenizer's padding mask, and the padding positions' embeddings change (sower read
        # past the key: exit 0, up to 2.6 off, the unmasked_gap below).
        masked_ref = json.load(open(os.path.join(data, "text_masked_reference.json"), encoding="utf-8"))
        masked_want = np.load(os.path.join(data, "text_masked_embeddings_tiny-sd1.npy"))
        masked = os.path.join(tmp, "masked")
        shutil.copytree(os.path.join(data, masked_ref["pipeline"]), masked)
        cfg_path = os.path.join(masked, "text_encoder", "config.json")
        cfg = json.load(open(cfg_path))
        cfg.update(masked_ref["config"])
        json.dump(cfg, open(cfg_path, "w"))
        worst = 0.0
        for c in masked_ref["cases"]:
            what = f"use_attention_mask, clip_skip {c['clip_skip']} {c['prompt'][:30]!r}"
            r = encode(sower, masked, c["prompt"], c["clip_skip"], out)
            if not check(r.returncode == 0, f"{what}: encode exit {r.returncode}: {r.stderr}"):
                continue
            diff = float(np.abs(np.load(out)[0].astype(np.float64) - masked_want[c["row"]]).max())
            tol = 5 * max(c["torch_fp64_yardstick"], 1e-6)
            worst = max(worst, diff)
            check(diff <= tol and (c["unmasked_gap"] == 0 or c["unmasked_gap"] > 100 * tol),
                  f"{what}: max|sower - diffusers' encode_prompt| {diff:.3g} > tolerance {tol:.3g}")
        print(f"use_attention_mask: {len(masked_ref['cases'])} cases against encode_prompt, max|diff| {worst:.3g}")

        # 3. An int64 position_ids buffer, as SD 1.5's text_encoder/model.safetensors has it.
        extra = os.path.join(tmp, "with-position-ids")
        shutil.copytree(folder, extra)
        weights = os.path.join(extra, "text_encoder", "model.safetensors")
        header, body = read_safetensors(weights)
        header["text_model.embeddings.position_ids"] = {"dtype": "I64", "shape": [1, 77],
                                                        "data_offsets": [len(body), len(body) + 8 * 77]}
        write_safetensors(weights, header, body + struct.pack("<77q", *range(77)))
        r = encode(sower, extra, case["prompt"], 0, os.path.join(tmp, "pos.npy"))
        if check(r.returncode == 0, f"with position_ids: exit {r.returncode}: {r.stderr}"):
            check(open(os.path.join(tmp, "pos.npy"), "rb").read() == outs[0], "with position_ids: other bits")
        print("an int64 position_ids buffer: ignored, identical bytes")

        # 4. Bad input: exit 2, the file and key/tensor named, nothing written.
        def broken(name, edit):
            path = os.path.join(tmp, name)
            shutil.copytree(folder, path)
            edit(path)
            return path

        def edit_config(**changes):
            def edit(path):
                cfg_path = os.path.join(path, "text_encoder", "config.json")
                cfg = json.load(open(cfg_path))
                cfg.update(changes)
                json.dump(cfg, open(cfg_path, "w"))
            return edit

        def edit_weights(fn):
            def edit(path):
                w = os.path.join(path, "text_encoder", "model.safetensors")
                header, body = read_safetensors(w)
                fn(header)
                write_safetensors(w, header, body)
            return edit

        def rename(header):
            header["text_model.final_layer_norm.gamma"] = header.pop("text_model.final_layer_norm.weight")

        bad = [
            ("no text encoder", lambda p: shutil.rmtree(os.path.join(p, "text_encoder")), ["no text encoder"]),
            ("pickle weights", lambda p: os.rename(os.path.join(p, "text_encoder", "model.safetensors"),
                                                   os.path.join(p, "text_encoder", "pytorch_model.bin")),
             ["model.safetensors: missing", "pickle"]),
            ("activation", edit_config(hidden_act="relu"), ["config.json", "hidden_act", "quick_gelu"]),
            ("architecture", edit_config(architectures=["CLIPTextModelWithProjection"]),
             ["config.json", "architectures", "CLIPTextModelWithProjection"]),
            ("heads", edit_config(num_attention_heads=5), ["config.json", "hidden_size", "num_attention_heads"]),
            ("layers", edit_config(num_hidden_layers=4), ["model.safetensors", "text_model.encoder.layers.3"]),
            ("width", edit_config(hidden_size=40, num_attention_heads=4), ["model.safetensors", "has shape"]),
            ("renamed tensor", edit_weights(rename), ["model.safetensors", "text_model.final_layer_norm"]),
            ("config not JSON", lambda p: open(os.path.join(p, "text_encoder", "config.json"), "w").write("{"),
             ["config.json", "not a JSON object"]),
        ]
        for name, edit, texts in bad:
            path = broken(name.replace(" ", "-"), edit)
            target = os.path.join(tmp, f"bad-{name.replace(' ', '-')}.npy")
            r = encode(sower, path, case["prompt"], 0, target)
            missing = [t for t in texts if t not in r.stderr]
            check(r.returncode == 2 and not missing,
                  f"{name}: exit {r.returncode} (expected 2), missing {missing}: {r.stderr.strip()}")
            check(not os.path.exists(target), f"{name}: wrote {target}")
        r = encode(sower, folder, case["prompt"], 4, os.path.join(tmp, "skip.npy"))
        check(r.returncode == 2 and "--clip-skip 4" in r.stderr, f"--clip-skip 4 of 3 layers: {r.returncode} {r.stderr}")
        target = os.path.join(tmp, "utf8.npy")
        r = subprocess.run([os.fsencode(sower), b"encode", os.fsencode(folder), b"--prompt", b"caf\xe9 au lait", b"-o",
                            os.fsencode(target)], capture_output=True, timeout=120)
        check(r.returncode == 2 and b"invalid UTF-8 at byte 3" in r.stderr and not os.path.exists(target),
              f"a prompt of invalid UTF-8: exit {r.returncode}: {r.stderr}")
        # sample names the prompt that is not UTF-8: the negative one here (was: "prompt" either way)
        r = subprocess.run([os.fsencode(sower), b"sample", os.fsencode(folder), b"--seeds", b"0", b"--steps", b"1",
                            b"--prompt", b"a cat", b"--negative-prompt", b"caf\xe9", b"-o", os.fsencode(target)],
                           capture_output=True, timeout=120)
        check(r.returncode == 2 and b"the negative prompt: invalid UTF-8 at byte 3" in r.stderr and
              not os.path.exists(target), f"a negative prompt of invalid UTF-8: exit {r.returncode}: {r.stderr}")
        kept = os.path.join(tmp, "kept.npy")
        open(kept, "wb").write(b"precious")
        r = subprocess.run([sower, "encode", folder, "--prompt", "a cat", "-o", kept], capture_output=True, text=True,
                           timeout=120)
        check(r.returncode == 2 and "without --force" in r.stderr and open(kept, "rb").read() == b"precious",
              f"encode onto an existing file without --force: exit {r.returncode}: {r.stderr}")
        print(f"{len(bad) + 3} kinds of bad input: exit 2, named, nothing written")

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
