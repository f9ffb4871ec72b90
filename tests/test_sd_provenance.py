#!/usr/bin/python3
"""What a Stable Diffusion output says about each row, and the model parts beside the UNet (a helper's
review of stop 38 found each gap; every case failed on 8f805dc):

1. `sower verify` checks /prompts, /negative_prompts and /prompt_index against the stored manifest (an
   edit of any passed, exit 0): exit 1 naming the dataset. A digest edited in the job key is an altered
   file (exit 1), not a changed model.
2. `sower export` checks the whole job_key against the stored manifest (it checked the rows and seeds
   only): a manifest whose guidance was edited (manifest_sha256 rewritten to match), or a prompts-file
   job whose /prompts was edited, is refused, exit 2, nothing labelled.
3. `sower verify --model` with another text encoder or VAE is a changed model (exit 2, naming the part),
   not an altered file (exit 1).
4. `sower check` loads the tokenizer, text encoder and (decode) VAE a run loads: a missing one is exit 2
   naming the file (it said the job could run).
   The truncation warning names the prompt (its index in /prompts).
5. Each exported row's metadata carries every setting that decides its pixels: eta, karras, clip_skip,
   height, width, job_sha256 in metadata.jsonl and the `sower` chunk; `Eta DDIM` and the exact CFG scale in
   the `parameters` chunk (it printed 7.12346 for 7.123456789).
6. Scheduler configs as diffusers writes or reads them: a DPM-Solver config with lambda_min_clipped
   -Infinity (what save_config writes) loads, and renders as the same config without it; a folder whose
   scheduler_config.json lacks steps_offset (or, DDIM, clip_sample) renders as StableDiffusionPipeline's
   own scheduler does after its rewrites: as the folder with steps_offset 1 (clip_sample false).

usage: test_sd_provenance.py SOWER SD_DIR SD_BF16_DIR
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from pngread import read_png  # noqa: E402
from testing import check, edit_json, finish  # noqa: E402

JOB = """sower: 1
name: sd-provenance
model: {model}
pipeline: {{scheduler: ddim, steps: 2, guidance: 7.123456789, eta: 0.5, batch: 2{extra}}}
{prompts}
seeds: {{list: [0, 1, 2]}}
output: {{path: out.h5}}
verify: {{count: 2}}
"""
PROMPTS = """prompts:
  - {prompt: "a red cube", negative_prompt: "blurry"}
  - {prompt: "a blue ball""" + ", a blue ball" * 30 + """", negative_prompt: "dark"}"""


NEW_LABELS = ("clip_skip", "karras", "eta", "height", "width", "job_sha256")  # labels this release added to lines


def strip_png_chunk_keys(path, keys):
    """Rewrites the PNG's `sower` text chunk without `keys` (as a sower before them wrote it)."""
    data, out, pos = open(path, "rb").read(), [], 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind in (b"tEXt", b"iTXt") and body.startswith(b"sower\0"):
            if kind == b"tEXt":
                facts = json.loads(body[6:].decode("latin-1"))
                body = b"sower\0" + json.dumps({k: v for k, v in facts.items() if k not in keys}).encode("latin-1")
            else:  # keyword, NUL, compression flag and method, language NUL, translated keyword NUL, text
                head, text = body.split(b"\0", 1)[0], body.split(b"\0", 1)[1]
                flag, rest = text[0], text[2:]
                lang, translated, payload = rest.split(b"\0", 2)
                facts = json.loads((zlib.decompress(payload) if flag else payload).decode("utf-8"))
                payload = json.dumps({k: v for k, v in facts.items() if k not in keys}, ensure_ascii=False).encode()
                body = head + b"\0\0\0" + lang + b"\0" + translated + b"\0" + payload
        out.append(struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body)))
        pos += 12 + n
    open(path, "wb").write(data[:8] + b"".join(out))


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)


def expect(r, what, code, text):
    ok = r.returncode == code and text in r.stderr and "Sanitizer" not in r.stderr
    check(ok, f"{what}: exit {r.returncode} (expected {code}), stderr {r.stderr.strip()[-300:]!r} "
              f"(expected to contain {text!r})")


def make(sower, tmp, name, model, prompts=PROMPTS, extra=""):
    """A finished output of the job, at tmp/name/out.h5."""
    d = os.path.join(tmp, name)
    os.makedirs(d)
    open(os.path.join(d, "job.yaml"), "w").write(JOB.format(model=model, prompts=prompts, extra=extra))
    r = run([sower, "run", "job.yaml"], cwd=d)
    check(r.returncode == 0, f"{name}: run: {r.stderr[-400:]}")
    if prompts == PROMPTS:  # the truncation warning says which prompt
        check("warning: prompt 1 is longer than 77 tokens" in r.stderr, f"{name}: the warning: {r.stderr[-400:]}")
    return os.path.join(d, "out.h5")


def altered(good, tmp, name, edit):
    path = os.path.join(tmp, f"altered-{name}.h5")
    shutil.copyfile(good, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def set_item(name, index, value):
    def edit(f):
        f[name][index] = value
    return edit


def swap_negatives(f):
    a, b = f["negative_prompts"][0], f["negative_prompts"][1]
    f["negative_prompts"][0], f["negative_prompts"][1] = b, a


def reverse_index(f):
    f["prompt_index"][...] = f["prompt_index"][...][::-1].copy()


def edit_manifest(old, new):
    def edit(f):
        m = f.attrs["manifest"]
        m = (m.decode() if isinstance(m, bytes) else m).replace(old, new)
        f.attrs["manifest"] = np.bytes_(m.encode())
        f.attrs["manifest_sha256"] = np.bytes_(hashlib.sha256(m.encode()).hexdigest().encode())
    return edit


def copy_model(src, dst, edit):
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def sample(sower, folder, out, *extra):
    """sower sample's latents: prompt "a cat", seed 0, 5 steps unless extra says otherwise (a later option wins)."""
    r = run([sower, "sample", folder, "--prompt", "a cat", "--seeds", "0", "--steps", "5", "-o", out, *extra])
    check(r.returncode == 0, f"sample {folder} {extra}: {r.stderr[-300:]}")
    return np.load(out) if r.returncode == 0 else None


def set_keys(folder, rel, drop=(), **changes):
    """folder's JSON file rel without the keys in drop, with changes."""
    def change(c):
        for k in drop:
            c.pop(k, None)
        c.update(changes)
    edit_json(rel, change)(folder)


def main():
    sower, sd, sd_bf16 = (os.path.abspath(a) for a in sys.argv[1:4])
    with tempfile.TemporaryDirectory() as tmp:
        good = make(sower, tmp, "listed", sd, extra=", decode: true")
        expect(run([sower, "verify", good, "--all"]), "verify of the unaltered file", 0, "")

        # 1. the prompt record
        for name, edit, text in (
                ("prompt", set_item("prompts", 0, b"a red cubE"), "/prompts[0] differs from the prompt of prompt 0"),
                ("negatives-swapped", swap_negatives, "/negative_prompts[0] differs from the negative prompt"),
                ("prompt-index", set_item("prompt_index", 0, 1), "/prompt_index gives 1 row(s) another prompt"),
                ("prompt-index-reversed", reverse_index, "/prompt_index gives 6 row(s) another prompt")):
            expect(run([sower, "verify", altered(good, tmp, name, edit)]), f"verify, {name}", 1, text)

        def zero_text_side(f):  # an edited digest in the key is an altered file, not a changed text encoder
            key = f.attrs["job_key"]
            key = key.decode() if isinstance(key, bytes) else key
            at = key.index("text_side_sha256: ") + len("text_side_sha256: ")
            f.attrs["job_key"] = np.bytes_((key[:at] + "0" * 64 + key[at + 64:]).encode())
        expect(run([sower, "verify", altered(good, tmp, "key-digest", zero_text_side)]), "verify, a key digest edited",
               1, "is not the SHA-256 of its 'job_key'")

        # 2. export checks the whole job key
        folder = os.path.join(tmp, "export")
        expect(run([sower, "export", altered(good, tmp, "guidance", edit_manifest("guidance: 7.123456789",
                                                                                    "guidance: 3.5")),
                    "--npy", folder]), "export, guidance edited", 2, "does not name the job of the manifest")
        check(not os.path.exists(folder), "export, guidance edited: the folder was made")
        pf_dir = os.path.join(tmp, "pf")
        os.makedirs(pf_dir)
        open(os.path.join(pf_dir, "p.txt"), "w").write("alpha\nbeta\n")
        pf = make(sower, pf_dir, "job", sd, prompts="prompts_file: ../p.txt")
        folder = os.path.join(tmp, "export-pf")
        expect(run([sower, "export", altered(pf, tmp, "pf-prompt", set_item("prompts", 1, b"betA")),
                    "--npy", folder]), "export, prompts-file /prompts edited", 2, "does not name the job")
        check(not os.path.exists(folder), "export, /prompts edited: the folder was made")

        # 3. a changed text encoder or VAE is a changed model
        for part, text in (("text_encoder", "the text encoder and tokenizer at"), ("vae", "the VAE at")):
            def swap(d, part=part):
                shutil.rmtree(os.path.join(d, part))
                shutil.copytree(os.path.join(sd_bf16, part), os.path.join(d, part))
            m = copy_model(sd, os.path.join(tmp, f"other-{part}"), swap)
            expect(run([sower, "verify", good, "--model", m]), f"verify, another {part}", 2, text)
        # ...and so are the files beside the weights that decide the bits: added_tokens.json (a legacy tokenizer's
        # added tokens; it was read but not hashed) and the VAE's config.json (scaling_factor: only the weights
        # were hashed). verify re-rendered and said the rows differ (exit 1), --resume mixed rows of both.
        for name, edit, text in (
                ("added-tokens", lambda d: open(os.path.join(d, "tokenizer", "added_tokens.json"), "w").write(
                    '{"cube": 3511}'), "the text encoder and tokenizer at"),
                ("vae-config", edit_json("vae/config.json", lambda c: c.update(scaling_factor=0.13025)), "the VAE at")):
            m = copy_model(sd, os.path.join(tmp, "edited-" + name), edit)
            expect(run([sower, "verify", good, "--model", m]), f"verify, {name} edited", 2, text)

        # 4. check loads every part a run loads
        job = os.path.join(tmp, "listed", "job.yaml")
        for rel in ("text_encoder/model.safetensors", "text_encoder/config.json", "tokenizer/vocab.json",
                    "tokenizer/merges.txt", "vae/diffusion_pytorch_model.safetensors"):
            m = copy_model(sd, os.path.join(tmp, "missing-" + rel.replace("/", "-")),
                           lambda d, rel=rel: os.remove(os.path.join(d, rel)))
            text = open(job).read().replace(f"model: {sd}", f"model: {m}")
            bad_job = os.path.join(tmp, f"check-{rel.replace('/', '-')}.yaml")
            open(bad_job, "w").write(text)
            expect(run([sower, "check", bad_job]), f"check, no {rel}", 2, rel.split("/")[0])

        # 5. every setting in the exported metadata
        images = os.path.join(tmp, "images")
        r = run([sower, "export", good, "--imagefolder", images])
        if check(r.returncode == 0, f"export --imagefolder: {r.stderr[-300:]}"):
            with h5py.File(good, "r") as f:
                job_sha = f.attrs["job_sha256"]
                job_sha = job_sha.decode() if isinstance(job_sha, bytes) else job_sha
                ih, iw = f["images"].shape[2:]
            lines = [json.loads(line) for line in open(os.path.join(images, "metadata.jsonl"))]
            want = {"guidance": 7.123456789, "eta": 0.5, "karras": False, "clip_skip": 0, "height": ih, "width": iw,
                    "job_sha256": job_sha, "scheduler": "ddim", "steps": 2}
            for line in lines:
                check(all(line.get(k) == v for k, v in want.items()), f"metadata line {line} lacks {want}")
            _, texts = read_png(os.path.join(images, lines[0]["file_name"]))
            params, chunk = texts.get("parameters", ""), json.loads(texts.get("sower", "{}"))
            check("CFG scale: 7.123456789," in params and "Eta DDIM: 0.5" in params, f"parameters: {params!r}")
            check(all(chunk.get(k) == v for k, v in want.items()), f"sower chunk {chunk} lacks {want}")
            r = run([sower, "export", good, "--imagefolder", images])
            check(r.returncode == 0 and "6 already there" in r.stderr, f"export again keeps the PNGs: {r.stderr[-300:]}")
            # files an earlier sower wrote (their facts without this release's labels) are kept, not refused as
            # another row's: the PNGs' sower chunks and an --npy shard's lines
            for name in os.listdir(images):
                if name.endswith(".png"):
                    strip_png_chunk_keys(os.path.join(images, name), NEW_LABELS)
            r = run([sower, "export", good, "--imagefolder", images])
            check(r.returncode == 0 and "6 already there" in r.stderr, f"an earlier sower's PNGs: {r.stderr[-300:]}")
            latents = os.path.join(tmp, "latents")
            r = run([sower, "export", good, "--npy", latents])
            jsonl = os.path.join(latents, "shard-000000.jsonl")
            if check(r.returncode == 0 and os.path.exists(jsonl), f"export --npy: {r.stderr[-300:]}"):
                lines = [json.loads(line) for line in open(jsonl)]
                open(jsonl, "w").write("".join(json.dumps({k: v for k, v in line.items() if k not in NEW_LABELS}) + "\n"
                                               for line in lines))
                r = run([sower, "export", good, "--npy", latents])
                check(r.returncode == 0 and "6 already there" in r.stderr, f"an earlier sower's shard: {r.stderr[-300:]}")
                lines[2]["seed"] = 99
                open(jsonl, "w").write("".join(json.dumps(line) + "\n" for line in lines))
                r = run([sower, "export", good, "--npy", latents])
                check(r.returncode == 2 and "other metadata lines" in r.stderr, f"a shard line of another seed: {r.stderr[-300:]}")

        # 5a. export decodes with the run's pipeline only: --model of another one was taken (exit 0, its VAE's
        # images labelled with this file's weights)
        sd2 = os.path.join(os.path.dirname(sd), "tiny-sd2")
        other = os.path.join(tmp, "other-model-pngs")
        expect(run([sower, "export", pf, "--pngs", other, "--model", sd2]), "export --model another pipeline", 2,
               "is not the one that rendered it")
        check(not os.path.exists(other), "export --model another pipeline: the folder was made")
        r = run([sower, "export", pf, "--pngs", other, "--model", sd])
        check(r.returncode == 0, f"export --model the run's pipeline: {r.stderr[-300:]}")

        # 5b. a quoted "" prompt (the unconditional one) renders as sample --prompt "" does
        empty = make(sower, tmp, "empty", sd, prompts='prompts: [""]')
        alone = sample(sower, sd, os.path.join(tmp, "empty.npy"), "--prompt", "", "--scheduler", "ddim", "--eta", "0.5",
                       "--guidance", "7.123456789", "--steps", "2", "--seeds", "0,1,2")
        if check(os.path.exists(empty), "prompts: [\"\"]: no output"):
            with h5py.File(empty, "r") as f:
                check(alone is not None and np.array_equal(f["latents"][...], alone) and f["prompts"][0] == b"",
                      "prompts: [\"\"]: not sample --prompt \"\"'s latents")

        # 6. scheduler configs as diffusers writes them
        base = sample(sower, sd, os.path.join(tmp, "base.npy"), "--scheduler", "dpm++2m")
        sched = "scheduler/scheduler_config.json"
        m = copy_model(sd, os.path.join(tmp, "dpm-inf"), lambda d: open(os.path.join(d, sched), "w").write(
            open(os.path.join(sd, sched)).read().rstrip().rstrip("}") + ', "lambda_min_clipped": -Infinity}'))
        inf = sample(sower, m, os.path.join(tmp, "inf.npy"), "--scheduler", "dpm++2m")
        check(base is not None and inf is not None and np.array_equal(base, inf),
              "lambda_min_clipped -Infinity renders otherwise than the default")
        own = sample(sower, sd, os.path.join(tmp, "own.npy"))
        m = copy_model(sd, os.path.join(tmp, "no-offset"), lambda d: set_keys(d, sched, drop=["steps_offset"]))
        no_offset = sample(sower, m, os.path.join(tmp, "no-offset.npy"))
        check(own is not None and no_offset is not None and np.array_equal(own, no_offset),
              "a folder without steps_offset: not the pipeline's own scheduler (steps_offset rewritten to 1)")

        def ddim_folder(d, **changes):
            set_keys(d, "model_index.json", scheduler=["diffusers", "DDIMScheduler"])
            set_keys(d, sched, drop=["skip_prk_steps", "clip_sample"], _class_name="DDIMScheduler",
                      **changes)
        clip_false = sample(sower, copy_model(sd, os.path.join(tmp, "ddim-false"),
                                              lambda d: ddim_folder(d, clip_sample=False)), os.path.join(tmp, "f.npy"))
        clip_absent = sample(sower, copy_model(sd, os.path.join(tmp, "ddim-absent"), ddim_folder),
                             os.path.join(tmp, "a.npy"))
        check(clip_false is not None and clip_absent is not None and np.array_equal(clip_false, clip_absent),
              "a DDIM folder without clip_sample: not the pipeline's own scheduler (clip_sample rewritten to false)")
    print("sd provenance: prompt record, job key, model parts, check, export metadata, scheduler configs")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
