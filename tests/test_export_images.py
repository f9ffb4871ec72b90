#!/usr/bin/python3
"""`sower export OUT.h5|OUT.npy --imagefolder DIR | --pngs DIR | --webdataset DIR`: one PNG per row, a Stable Diffusion output's latents
decoded by its model's VAE, pixels bit for bit diffusers' postprocess of `sower sample --decode`'s images;
the `parameters` (AUTOMATIC1111) and `sower` (JSON provenance) text chunks; metadata.jsonl as Hugging Face
datasets' imagefolder loader reads it; a second run keeps the PNGs there and completes the rest; folders
that are not this job's export are refused; `sower sample`'s arrays exported through the record beside them.

What `datasets.load_dataset("imagefolder", data_dir=DIR)` needs, checked here without datasets: DIR holds the
images (a known extension: .png) and one metadata.jsonl, each line a JSON object whose "file_name" names an
image of DIR relative to it; every line has the same keys; the other keys become columns.

usage: test_export_images.py SOWER SD_DIR MONO_DIR (a 1-channel pixel-space model)
Standard library, numpy and h5py only (the PNGs are read with zlib and struct: pngread.py).
"""
import hashlib
import filecmp
import json
import os
import subprocess
import sys
import shutil
import socket
import tarfile
import tempfile
import time

import h5py
import numpy as np

from pngread import read_png
from testing import check, finish

JOB = """sower: 1
name: export-images
model: {model}
pipeline: {{scheduler: euler-a, steps: 4, batch: 2, guidance: 7.5, clip_skip: 1}}
prompts:
  - {{prompt: "a photograph of an astronaut riding a horse", negative_prompt: "blurry"}}
prompts_file: prompts.txt
seeds:
  list: [0, 18446744073709551615]
output: {{path: out.h5}}
"""
SECOND_PROMPT = "l'été à Paris 🐱"


def sums_ok(folder, what):
    """DIR/SHA256SUMS (sha256sum's format) names every file of the export but the marker, each with its SHA-256."""
    lines = open(os.path.join(folder, "SHA256SUMS"), encoding="utf-8").read().splitlines()
    listed = {line[66:]: line[:64] for line in lines if line[64:66] == "  "}
    files = sorted(n for n in os.listdir(folder) if n not in ("SHA256SUMS", "sower-export.json") and ".tmp." not in n)
    wrong = [n for n in files if listed.get(n) != hashlib.sha256(open(os.path.join(folder, n), "rb").read()).hexdigest()]
    return check(len(listed) == len(lines) and sorted(listed) == files and not wrong,
                 f"{what}: SHA256SUMS lists {sorted(listed)[:4]}..., files {files[:4]}..., wrong {wrong[:3]}")


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)


def main():
    sower, sd, mono = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        open(job, "w", encoding="utf-8").write(JOB.format(model=sd))
        open(os.path.join(tmp, "prompts.txt"), "w", encoding="utf-8").write(SECOND_PROMPT + "\n")
        # the output away from the manifest: its model is found where the run recorded it (/run model_path)
        out = os.path.join(tmp, "outputs", "out.h5")
        os.makedirs(os.path.dirname(out))
        r = run([sower, "run", job, "-o", out])
        if not check(r.returncode == 0, f"sower run: {r.stderr[-600:]}"):
            return finish()
        with h5py.File(out, "r") as f:
            digests = [bytes(d).hex() for d in f["digest"][...]]
            seeds = [int(s) for s in f["seeds"][...]]
        # 1. the imagefolder layout
        folder = os.path.join(tmp, "images")
        r = run([sower, "export", out, "--imagefolder", folder, "--threads", "2"])
        check(r.returncode == 0 and "4 PNGs written" in r.stderr, f"export --imagefolder: {r.returncode} {r.stderr[-600:]}")
        lines = [json.loads(line) for line in open(os.path.join(folder, "metadata.jsonl"), encoding="utf-8")]
        check(len(lines) == 4 and len({tuple(sorted(line)) for line in lines}) == 1, f"metadata lines {lines}")
        pngs = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
        check(sorted(line["file_name"] for line in lines) == pngs and len(pngs) == 4, f"files {pngs}")
        prompts = ["a photograph of an astronaut riding a horse", SECOND_PROMPT]
        for row, line in enumerate(lines):
            p = row // 2
            check(line["row"] == row and line["seed"] == seeds[row] and line["prompt"] == prompts[p] and
                  line["negative_prompt"] == ("blurry" if p == 0 else "") and line["steps"] == 4 and
                  line["scheduler"] == "euler-a" and line["guidance"] == 7.5, f"metadata row {row}: {line}")
            check(line["file_name"] == f"row{row:08d}_seed{seeds[row]}.png", f"name {line['file_name']}")
            check(line["latents_sha256"] == digests[row], f"row {row}: latents_sha256 is not the file's /digest")
            data = open(os.path.join(folder, line["file_name"]), "rb").read()
            check(line["png_sha256"] == hashlib.sha256(data).hexdigest(), f"row {row}: png_sha256")
        check(seeds[1] == 2**64 - 1 and lines[1]["seed"] == 2**64 - 1, "seed 2^64-1 not exact in metadata.jsonl")
        print("imagefolder: 4 PNGs, metadata.jsonl (file_name, row, seed, prompt, ..., digests) consistent")

        # 2. the pixels are diffusers' postprocess of `sower sample --decode`, and the text chunks
        for p, prompt in enumerate(prompts):
            npy = os.path.join(tmp, f"decoded{p}.npy")
            argv = [sower, "sample", sd, "--prompt", prompt, "--guidance", "7.5", "--clip-skip", "1", "--scheduler",
                    "euler-a", "--steps", "4", "--seeds", ",".join(str(s) for s in seeds[:2]), "--decode", "-o", npy]
            if p == 0:
                argv += ["--negative-prompt", "blurry"]
            r = run(argv)
            if not check(r.returncode == 0, f"sample --decode: {r.stderr[-400:]}"):
                continue
            images = np.load(npy)
            for k in range(2):
                row = 2 * p + k
                pixels, texts = read_png(os.path.join(folder, lines[row]["file_name"]))
                want = np.round(np.clip(images[k] / 2 + 0.5, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
                check(np.array_equal(pixels, want), f"row {row}: pixels differ from sample --decode's postprocessed")
                params = texts.get("parameters", "")
                check(params.startswith(prompt + "\n") and f"Seed: {seeds[row]}," in params and
                      "Sampler: Euler a," in params and "CFG scale: 7.5," in params and "Clip skip: 2" in params and
                      "Size: 128x128" in params and (("Negative prompt: blurry\n" in params) == (p == 0)),
                      f"row {row}: parameters {params!r}")
                prov = json.loads(texts.get("sower", "{}"))
                check(prov.get("latents_sha256") == digests[row] and prov.get("row") == row and
                      prov.get("seed") == seeds[row] and len(prov.get("vae_sha256", "")) == 64 and
                      prov.get("source") == out, f"row {row}: sower chunk {prov}")
        print("PNG pixels == (x / 2 + 0.5).clamp(0, 1) * 255 rounded of sample --decode, bit for bit; "
              "parameters and sower chunks read back")

        # 3. interrupted: two PNGs and the metadata gone, a stale temporary left: the rerun completes it
        first = open(os.path.join(folder, "metadata.jsonl"), "rb").read()
        for name in pngs[1:3]:
            os.unlink(os.path.join(folder, name))
        os.unlink(os.path.join(folder, "metadata.jsonl"))
        open(os.path.join(folder, pngs[1] + ".tmp.999999"), "wb").write(b"\x89PNG half")
        r = run([sower, "export", out, "--imagefolder", folder])
        check(r.returncode == 0 and "2 PNGs written, 2 already there" in r.stderr, f"rerun: {r.stderr[-400:]}")
        check(open(os.path.join(folder, "metadata.jsonl"), "rb").read() == first, "rerun: another metadata.jsonl")
        sums_ok(folder, "imagefolder rerun")
        print("rerun after an interruption: 2 PNGs written, 2 kept, the same metadata.jsonl; SHA256SUMS names every "
              "file with its digest")
        # a PNG's name taken by something unreadable (a folder): named, exit 2, never taken for a missing PNG
        # and written over, the folder's lists unchanged
        sums_before = open(os.path.join(folder, "SHA256SUMS"), "rb").read()
        os.rename(os.path.join(folder, pngs[0]), os.path.join(tmp, "kept.png"))
        os.mkdir(os.path.join(folder, pngs[0]))
        r = run([sower, "export", out, "--imagefolder", folder])
        check(r.returncode == 2 and f"'{os.path.join(folder, pngs[0])}': it is a directory" in r.stderr,
              f"a folder in a PNG's place: {r.returncode} {r.stderr[-300:]}")
        check(open(os.path.join(folder, "SHA256SUMS"), "rb").read() == sums_before, "a refused rerun changed SHA256SUMS")
        os.rmdir(os.path.join(folder, pngs[0]))
        os.rename(os.path.join(tmp, "kept.png"), os.path.join(folder, pngs[0]))
        # another row's PNG, or a PNG sower did not make, at a row's name: named, exit 2, kept as it is and
        # never listed in SHA256SUMS as that row's (the same file back: kept, as before)
        import zlib
        plain = b"\x89PNG\r\n\x1a\n" + b"".join(
            len(d).to_bytes(4, "big") + t + d + zlib.crc32(t + d).to_bytes(4, "big")
            for t, d in ((b"IHDR", (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])),
                         (b"IDAT", zlib.compress(b"\0\0")), (b"IEND", b"")))
        for what, data in (("another row's PNG", open(os.path.join(folder, pngs[1]), "rb").read()),
                           ("a PNG without sower's chunk", plain)):
            os.rename(os.path.join(folder, pngs[0]), os.path.join(tmp, "kept.png"))
            open(os.path.join(folder, pngs[0]), "wb").write(data)
            r = run([sower, "export", out, "--imagefolder", folder])
            check(r.returncode == 2 and f"'{os.path.join(folder, pngs[0])}' is there but is not row" in r.stderr,
                  f"{what} at a row's name: {r.returncode} {r.stderr[-300:]}")
            check(open(os.path.join(folder, "SHA256SUMS"), "rb").read() == sums_before
                  and open(os.path.join(folder, pngs[0]), "rb").read() == data, f"{what}: the folder changed")
            os.rename(os.path.join(tmp, "kept.png"), os.path.join(folder, pngs[0]))
        r = run([sower, "export", out, "--imagefolder", folder])
        check(r.returncode == 0 and "0 PNGs written, 4 already there" in r.stderr, f"the PNGs back: {r.stderr[-300:]}")
        check(open(os.path.join(folder, "SHA256SUMS"), "rb").read() == sums_before, "SHA256SUMS changed on a rerun")
        print("a folder, another row's PNG or a foreign PNG at a row's name: named, exit 2, nothing changed")

        # 3b. WebDataset shards: KEY.png + KEY.json per row, in row order; the same PNG bytes and metadata lines
        # as the imagefolder's; a shard deleted is made again byte for byte
        shards = os.path.join(tmp, "shards")
        r = run([sower, "export", out, "--webdataset", shards, "--shard-size", "3"])
        names = sorted(n for n in os.listdir(shards) if n.endswith(".tar"))
        if check(r.returncode == 0 and names == ["shard-000000.tar", "shard-000001.tar"], f"--webdataset: {names} {r.stderr[-300:]}"):
            members = []
            for name in names:
                with tarfile.open(os.path.join(shards, name)) as t:
                    for m in t.getmembers():
                        check(m.isfile() and m.mtime == 0, f"{name}/{m.name}: not a plain file of mtime 0")
                        members.append((m.name, t.extractfile(m).read()))
            check([m[0] for m in members] == [n for line in lines for n in (line["file_name"], line["file_name"][:-4] + ".json")],
                  f"shard members {[m[0] for m in members]}")
            for k, line in enumerate(lines):
                png, meta = members[2 * k][1], json.loads(members[2 * k + 1][1])
                check(png == open(os.path.join(folder, line["file_name"]), "rb").read(), f"row {k}: tar PNG differs")
                check(meta == line, f"row {k}: KEY.json {meta} is not the metadata line {line}")
            first_shard = open(os.path.join(shards, names[0]), "rb").read()
            os.unlink(os.path.join(shards, names[0]))
            r = run([sower, "export", out, "--webdataset", shards, "--shard-size", "3"])
            check(r.returncode == 0 and "3 PNGs written, 1 already there" in r.stderr, f"--webdataset rerun: {r.stderr[-300:]}")
            check(open(os.path.join(shards, names[0]), "rb").read() == first_shard, "a shard made again differs")
            sums_ok(shards, "webdataset")
            print("webdataset: 2 shards of KEY.png + KEY.json (the imagefolder's bytes and lines), a deleted shard "
                  "made again byte for byte")

        # 3b'. a new folder another export holds (its lock there, its marker not yet written): refused before
        # this export writes its own marker there (that export would then write its images under this job's).
        held = os.path.join(tmp, "held")
        os.mkdir(held)
        open(os.path.join(held, "sower-export.lock"), "w").write(
            "host: node-z\npid: 4242\npid_start: 0\nstarted: 2026-01-01T00:00:00Z\ncommand: sower export other.h5 "
            "--imagefolder held\n")
        r = run([sower, "export", out, "--imagefolder", held])
        check(r.returncode == 2 and "host node-z" in r.stderr, f"export into a folder another export holds: {r.stderr[-300:]}")
        check(sorted(os.listdir(held)) == ["sower-export.lock"], f"a refused export wrote into the folder another export "
                                                                 f"holds: {sorted(os.listdir(held))}")
        # a lock's draft left by an export killed on another host does not make a new folder "not empty"
        drafted = os.path.join(tmp, "drafted")
        os.mkdir(drafted)
        open(os.path.join(drafted, "sower-export.lock.node-z.4242"), "w").write("host: node-z\n")
        r = run([sower, "export", out, "--imagefolder", drafted])
        check(r.returncode == 0 and "4 PNGs written" in r.stderr, f"export beside a dead export's lock draft: "
                                                                  f"{r.returncode} {r.stderr[-300:]}")

        # 3c. latents shards (--npy): the rows' bytes as stored, their lines the imagefolder's less the PNG's
        latents_dir = os.path.join(tmp, "latents")
        r = run([sower, "export", out, "--npy", latents_dir, "--shard-size", "3"])
        if check(r.returncode == 0 and "4 rows of latents written" in r.stderr, f"--npy: {r.stderr[-300:]}"):
            with h5py.File(out, "r") as f:
                stored = f["latents"][...]
            arrays = [np.load(os.path.join(latents_dir, f"shard-00000{k}.npy")) for k in (0, 1)]
            check(np.array_equal(np.concatenate(arrays), stored) and arrays[0].dtype == np.float32,
                  "--npy: the shards are not /latents")
            got = [json.loads(line) for k in (0, 1) for line in open(os.path.join(latents_dir, f"shard-00000{k}.jsonl"))]
            for k, (line, want) in enumerate(zip(got, lines)):
                check(line["file_name"] == f"shard-00000{k // 3}.npy" and line["index"] == k % 3 and
                      {a: b for a, b in line.items() if a not in ("file_name", "index")} ==
                      {a: b for a, b in want.items() if a not in ("file_name", "png_sha256", "height", "width")},
                      f"--npy line {k}: {line}")
            r = run([sower, "export", out, "--npy", latents_dir, "--shard-size", "3"])
            check(r.returncode == 0 and "0 rows of latents written, 4 already there" in r.stderr, f"--npy rerun: {r.stderr}")
            sums_ok(latents_dir, "--npy")
            print("latents shards: 2 .npy == /latents, their .jsonl lines; a rerun keeps them")
            # shard k is the rows k*N..(k+1)*N-1 whatever --rows each export gave: rows 0-2 then 3-3 make the
            # same shards as one export (before, the second took shard 0, rows 0-2, for its row 3 and wrote
            # nothing); --rows that split a shard are refused; a shard altered, or another's at its name, is
            # refused (exit 2), never kept and listed in SHA256SUMS
            parts = os.path.join(tmp, "latents-parts")
            for rows, written in (("0-2", 3), ("3-3", 1)):
                r = run([sower, "export", out, "--npy", parts, "--shard-size", "3", "--rows", rows])
                check(r.returncode == 0 and f"{written} rows of latents written, 0 already there" in r.stderr,
                      f"--npy --rows {rows}: {r.stderr[-300:]}")
            for name in ("shard-000000.npy", "shard-000000.jsonl", "shard-000001.npy", "shard-000001.jsonl"):
                check(os.path.exists(os.path.join(parts, name)) and
                      filecmp.cmp(os.path.join(parts, name), os.path.join(latents_dir, name), shallow=False),
                      f"--npy by --rows: {name} differs from one export's")
            r = run([sower, "export", out, "--npy", parts, "--shard-size", "3", "--rows", "1-2"])
            check(r.returncode == 2 and "shards hold 3 rows each" in r.stderr, f"--rows splitting a shard: {r.stderr[-300:]}")
            for shard_dir, layout, ext in ((parts, "--npy", "npy"), (os.path.join(tmp, "shards"), "--webdataset", "tar")):
                sums = open(os.path.join(shard_dir, "SHA256SUMS"), "rb").read()
                shard1 = os.path.join(shard_dir, f"shard-000001.{ext}")
                kept = open(shard1, "rb").read()
                open(shard1, "wb").write(open(os.path.join(shard_dir, f"shard-000000.{ext}"), "rb").read())
                r = run([sower, "export", out, layout, shard_dir, "--shard-size", "3"])
                check(r.returncode == 2 and f"'{shard1}' is there but does not hold rows 3-3" in r.stderr,
                      f"another shard's .{ext} at shard 1: {r.returncode} {r.stderr[-300:]}")
                check(open(os.path.join(shard_dir, "SHA256SUMS"), "rb").read() == sums, "a refused shard changed SHA256SUMS")
                open(shard1, "wb").write(kept)
            tars = os.path.join(tmp, "shards")
            r = run([sower, "export", out, "--webdataset", tars, "--shard-size", "3"])
            check(r.returncode == 0 and "0 PNGs written, 4 already there" in r.stderr, f"webdataset rerun: {r.stderr[-300:]}")
            print("shards by --rows == one export's; --rows splitting a shard refused; another shard's .npy or tar "
                  "at a shard's name refused, SHA256SUMS unchanged")

        # 4. refusals: exit 2, nothing written
        def refused(name, argv, texts, folder_after=None):
            r = run(argv)
            missing = [t for t in texts if t not in r.stderr]
            check(r.returncode == 2 and not missing, f"{name}: exit {r.returncode}, missing {missing}: {r.stderr[-400:]}")
            if folder_after:
                check(sorted(os.listdir(folder_after[0])) == folder_after[1], f"{name}: the folder changed")

        other = os.path.join(tmp, "other")
        os.makedirs(other)
        open(os.path.join(other, "notes.txt"), "w").write("mine")
        refused("a folder with other files", [sower, "export", out, "--pngs", other], ["not empty", other],
                (other, ["notes.txt"]))
        mono_job = os.path.join(tmp, "mono.yaml")
        open(mono_job, "w").write(f"sower: 1\nname: mono\nmodel: {mono}\npipeline: {{scheduler: ddim, steps: 2}}\n"
                                  "seeds:\n  list: [3, 4, 5]\noutput: {path: mono.h5}\n")
        r = run([sower, "run", mono_job])
        check(r.returncode == 0, f"mono run: {r.stderr[-300:]}")
        mono_out = os.path.join(tmp, "mono.h5")
        before = sorted(os.listdir(folder))
        refused("another job's export folder", [sower, "export", mono_out, "--pngs", folder], ["another job"],
                (folder, before))
        # The folder's identity is the file's job_sha256: a copied one (another job's rows passed off as this
        # job's, merged into its folder), or none, is refused.
        def forged(name, edit):
            path = os.path.join(tmp, f"forged-{name}.h5")
            shutil.copyfile(mono_out, path)
            with h5py.File(path, "r+") as f:
                edit(f.attrs)
            return path

        with h5py.File(out, "r") as f:
            sd_sha = f.attrs["job_sha256"]
        with h5py.File(mono_out, "r") as f:
            mono_key = f.attrs["job_key"]
        mono_key = mono_key.decode() if isinstance(mono_key, bytes) else mono_key
        other_seeds = mono_key.replace("seeds_sha256: ", "seeds_sha256: 0")[:len(mono_key)]
        for name, edit, text in (
                ("copied-sha", lambda a: a.__setitem__("job_sha256", sd_sha), "is not the SHA-256 of its 'job_key'"),
                ("no-sha", lambda a: a.__delitem__("job_sha256"), "no 'job_sha256' attribute"),
                ("other-seeds", lambda a: [a.__setitem__("job_key", other_seeds),
                                           a.__setitem__("job_sha256", hashlib.sha256(other_seeds.encode()).hexdigest())],
                 "does not name the job of the manifest stored in it")):
            refused(f"an export of a file with a forged job ({name})",
                    [sower, "export", forged(name, edit), "--pngs", folder], [text], (folder, before))
        refused("--pngs and --imagefolder", [sower, "export", out, "--pngs", other, "--imagefolder", folder],
                ["one of --png FILE"])
        refused("a folder under a file", [sower, "export", out, "--pngs", os.path.join(other, "notes.txt", "x")],
                ["notes.txt"])
        refused("--model without a VAE", [sower, "export", out, "--pngs", os.path.join(tmp, "new"), "--model", mono],
                ["--model DIR", "not the one that rendered it"])
        refused("--shard-size 0", [sower, "export", out, "--webdataset", os.path.join(tmp, "new"), "--shard-size", "0"],
                ["--shard-size"])
        refused("--scale with a folder", [sower, "export", out, "--pngs", os.path.join(tmp, "new"), "--scale", "2"],
                ["--scale and --columns apply to --png"])
        # One layout and shard size per folder: another's files would share keys in SHA256SUMS.
        before = sorted(os.listdir(latents_dir))
        refused("another layout in an export folder", [sower, "export", out, "--imagefolder", latents_dir],
                ["holds a --npy export of this job", "not --imagefolder"], (latents_dir, before))
        refused("another shard size", [sower, "export", out, "--npy", latents_dir, "--shard-size", "2"],
                ["shards hold 3 rows each", "--shard-size 3"], (latents_dir, before))
        refused("--force with a folder", [sower, "export", out, "--npy", latents_dir, "--force"],
                ["--force applies to --png"], (latents_dir, before))
        # One export at a time per folder (two would each merge the index files they read, the last rename
        # winning): a live export's lock (this process stands in for it) refuses a second, naming it.
        lock = os.path.join(latents_dir, "sower-export.lock")
        start_ticks = open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]
        open(lock, "w").write(f"host: {socket.gethostname()}\npid: {os.getpid()}\npid_start: {start_ticks}\n"
                              f"started: now\ncommand: sower export (test)\n")
        refused("a folder another export is writing", [sower, "export", out, "--npy", latents_dir, "--shard-size", "3"],
                ["in use by another run", f"pid {os.getpid()}"], (latents_dir, sorted(before + ["sower-export.lock"])))
        os.remove(lock)
        r = run([sower, "export", out, "--npy", latents_dir, "--shard-size", "3"])
        check(r.returncode == 0 and not os.path.exists(lock), f"export after the lock went: {r.stderr[-300:]}")
        check(not os.path.exists(os.path.join(tmp, "new")), "a refused export made its folder")
        print("11 refusals: exit 2, the folders untouched")

        # 5. a pixel-space model: grey PNGs of the samples themselves, no prompt
        grey = os.path.join(tmp, "grey")
        r = run([sower, "export", mono_out, "--pngs", grey])
        if check(r.returncode == 0, f"export --pngs of a 1-channel output: {r.stderr[-400:]}"):
            with h5py.File(mono_out, "r") as f:
                latents = f["latents"][...]
            names = sorted(n for n in os.listdir(grey) if n.endswith(".png"))
            check(names == [f"row{r:08d}_seed{s}.png" for r, s in enumerate([3, 4, 5])], f"grey names {names}")
            pixels, texts = read_png(os.path.join(grey, names[0]))
            want = np.round(np.clip(latents[0] / 2 + 0.5, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
            check(np.array_equal(pixels, want), "grey pixels differ")
            check(texts.get("parameters", "").startswith("Steps: 2, Sampler: DDIM, Seed: 3,"), f"grey: {texts}")
            check(not os.path.exists(os.path.join(grey, "metadata.jsonl")), "--pngs wrote metadata.jsonl")
            print("1-channel pixel-space output: 3 grey PNGs of the samples, parameters without a prompt")

        # 6. kill -9 of a 2000-row export mid-way, then the same command: the uninterrupted result
        big_job = os.path.join(tmp, "big.yaml")
        open(big_job, "w").write(f"sower: 1\nname: big\nmodel: {mono}\npipeline: {{scheduler: ddim, steps: 2, batch: 64}}\n"
                                 "seeds:\n  ranges: [{start: 0, count: 2000}]\noutput: {path: big.h5}\n")
        r = run([sower, "run", big_job])
        big = os.path.join(tmp, "big.h5")
        whole, killed = os.path.join(tmp, "whole"), os.path.join(tmp, "killed")
        if check(r.returncode == 0, f"big run: {r.stderr[-300:]}"):
            check(run([sower, "export", big, "--imagefolder", whole]).returncode == 0, "uninterrupted export")
            p = subprocess.Popen([sower, "export", big, "--imagefolder", killed], stderr=subprocess.DEVNULL)
            deadline = time.time() + 60
            while time.time() < deadline and p.poll() is None:
                if os.path.isdir(killed) and len(os.listdir(killed)) > 150:
                    break
                time.sleep(0.01)
            p.kill()
            p.wait()
            kept = len([n for n in os.listdir(killed) if n.endswith(".png")])
            r = run([sower, "export", big, "--imagefolder", killed])
            check(r.returncode == 0 and f"{kept} already there" in r.stderr, f"after kill -9 at {kept}: {r.stderr[-300:]}")
            check(open(os.path.join(killed, "metadata.jsonl"), "rb").read() ==
                  open(os.path.join(whole, "metadata.jsonl"), "rb").read(), "after kill -9: another metadata.jsonl")
            pngs = sorted(n for n in os.listdir(whole) if n.endswith(".png"))
            check(pngs == sorted(n for n in os.listdir(killed) if n.endswith(".png")) and len(pngs) == 2000,
                  "after kill -9: other PNG files")
            check(open(os.path.join(killed, "SHA256SUMS"), "rb").read() == open(os.path.join(whole, "SHA256SUMS"), "rb").read(),
                  "after kill -9: another SHA256SUMS")
            # a row range exported into the same folder again: its lines replaced in place, the others kept
            r = run([sower, "export", big, "--imagefolder", killed, "--rows", "100-109"])
            check(r.returncode == 0 and "10 already there" in r.stderr, f"--rows 100-109 again: {r.stderr[-300:]}")
            listed = [line[66:] for line in open(os.path.join(killed, "SHA256SUMS"), encoding="utf-8")]
            check(len(listed) == 2001 and listed[-1] == "metadata.jsonl\n" and sums_ok(killed, "after --rows 100-109"),
                  f"--rows 100-109: SHA256SUMS has {len(listed)} lines")
            check(open(os.path.join(killed, "metadata.jsonl"), "rb").read() ==
                  open(os.path.join(whole, "metadata.jsonl"), "rb").read(), "--rows 100-109: metadata.jsonl lost rows")
            print(f"kill -9 after {kept} of 2000 PNGs, the same command again: metadata.jsonl, SHA256SUMS and the "
                  "PNG names of the uninterrupted export; a row range again keeps the other rows' lines (SHA256SUMS, metadata.jsonl)")

        # 7. sample's arrays: `sower export OUT.npy` reads the record sample writes beside it (OUT.npy.json)
        latents_npy = os.path.join(tmp, "latents0.npy")
        r = run([sower, "sample", sd, "--prompt", prompts[0], "--negative-prompt", "blurry", "--guidance", "7.5",
                 "--clip-skip", "1", "--scheduler", "euler-a", "--steps", "4", "--seeds",
                 ",".join(str(s) for s in seeds[:2]), "-o", latents_npy])
        if check(r.returncode == 0, f"sample (latents): {r.stderr[-400:]}"):
            record = json.load(open(latents_npy + ".json", encoding="utf-8"))
            check(record["format"] == "sower-sample" and record["rows_are"] == "latents" and
                  record["shape"] == list(np.load(latents_npy).shape) and record["seeds"] == f"0,{2**64 - 1}" and
                  record["prompt"] == prompts[0] and record["negative_prompt"] == "blurry" and
                  record["pipeline"]["scheduler"] == "euler-a" and record["pipeline"]["height"] == 128 and
                  record["row_sha256"] == digests[:2] and record["model"]["path"] == sd, f"sample's record: {record}")
            from_latents = os.path.join(tmp, "from-latents")
            r = run([sower, "export", latents_npy, "--imagefolder", from_latents])
            check(r.returncode == 0 and "2 PNGs written" in r.stderr, f"export latents.npy: {r.stderr[-400:]}")
            got = [json.loads(line) for line in open(os.path.join(from_latents, "metadata.jsonl"), encoding="utf-8")]
            for k, line in enumerate(got):  # the run's rows 0 and 1: the same latents, so the same PNG pixels
                check(line["file_name"] == lines[k]["file_name"] and line["prompt"] == prompts[0] and
                      line["seed"] == seeds[k] and line["latents_sha256"] == digests[k], f"npy metadata {k}: {line}")
                pixels, texts = read_png(os.path.join(from_latents, line["file_name"]))
                want, _ = read_png(os.path.join(folder, lines[k]["file_name"]))
                check(np.array_equal(pixels, want), f"npy row {k}: pixels differ from the run's export")
                prov = json.loads(texts.get("sower", "{}"))
                check(texts.get("parameters", "").startswith(prompts[0] + "\nNegative prompt: blurry\n") and
                      prov.get("source") == latents_npy and len(prov.get("vae_sha256", "")) == 64, f"npy chunks {texts}")
            decoded_npy = os.path.join(tmp, "decoded0.npy")
            from_images = os.path.join(tmp, "from-images")
            r = run([sower, "export", decoded_npy, "--pngs", from_images, "--model", mono])  # no VAE needed
            check(r.returncode == 0 and "2 PNGs written" in r.stderr, f"export of sample --decode: {r.stderr[-400:]}")
            for k in range(2):
                pixels, texts = read_png(os.path.join(from_images, lines[k]["file_name"]))
                want, _ = read_png(os.path.join(folder, lines[k]["file_name"]))
                prov = json.loads(texts.get("sower", "{}"))
                check(np.array_equal(pixels, want) and "images_f32_sha256" in prov and "latents_sha256" not in prov,
                      f"decoded npy row {k}: pixels or provenance {prov}")
            sheet = os.path.join(tmp, "npy-sheet.png")
            r = run([sower, "export", decoded_npy, "--png", sheet])
            check(r.returncode == 0 and os.path.exists(sheet), f"--png of a sample's array: {r.stderr[-300:]}")
            print("sample's arrays: record (seeds exact, row digests == the run's /digest); export of latents.npy == "
                  "the run's PNGs, of sample --decode's images (no VAE) the same pixels; a contact sheet")
            # refusals: no record, a row altered, a record of another array
            bare = os.path.join(tmp, "bare.npy")
            np.save(bare, np.zeros((2, 3, 8, 8), np.float32))
            refused("an .npy without a record", [sower, "export", bare, "--pngs", os.path.join(tmp, "new")],
                    ["bare.npy.json", "no record"])
            altered = os.path.join(tmp, "altered.npy")
            data = np.load(latents_npy)
            data[1, 0, 0, 0] += 1
            np.save(altered, data)
            open(altered + ".json", "w").write(open(latents_npy + ".json").read())
            altered_dir = os.path.join(tmp, "altered-export")
            refused("an altered row", [sower, "export", altered, "--npy", altered_dir],
                    ["altered.npy: row 1 does not match"])
            check(os.listdir(altered_dir) == ["sower-export.json"], f"an altered row: {os.listdir(altered_dir)} written "
                  "(the shard holding it must not be)")
            np.save(altered, data[:1])
            refused("a record of another shape", [sower, "export", altered, "--png", os.path.join(tmp, "new.png")],
                    ["records an array of shape (2, 4, 16, 16)"])
            rescaled = os.path.join(tmp, "rescaled.npy")  # guidance_rescale outside 0..1 in a record
            shutil.copyfile(latents_npy, rescaled)
            record = json.load(open(latents_npy + ".json", encoding="utf-8"))
            record["pipeline"]["guidance_rescale"] = 1.5
            json.dump(record, open(rescaled + ".json", "w", encoding="utf-8"))
            refused("a record's guidance_rescale past 1", [sower, "export", rescaled, "--pngs", os.path.join(tmp, "new")],
                    ["rescaled.npy.json", "'pipeline'"])
            # a record's sigmas: exponential or beta only, never beside karras: true, never another name or type
            for sigmas, karras in (("cosine", False), ("karras", False), ("beta", True), (7, False)):
                record = json.load(open(latents_npy + ".json", encoding="utf-8"))
                record["pipeline"].update(sigmas=sigmas, karras=karras)
                json.dump(record, open(rescaled + ".json", "w", encoding="utf-8"))
                refused(f"a record's sigmas {sigmas!r} (karras {karras})",
                        [sower, "export", rescaled, "--pngs", os.path.join(tmp, "new")], ["rescaled.npy.json", "'pipeline'"])
            open(altered + ".json", "w").write('{"format": "sower-sample", "format_version": 1}')
            refused("a damaged record", [sower, "export", altered, "--pngs", os.path.join(tmp, "new")],
                    ["altered.npy.json", "'shape'"])
            # .npy headers that only look like numpy's (the real data and record beside them): read strictly
            payload = np.load(latents_npy).tobytes()
            for name, header in (("a descr nested in another key", "{'descr': '<f8', 'fortran_order': False, "
                                  "'shape': (2, 4, 16, 16), 'x': {'descr': '<f4'}, }"),
                                 ("a shape without commas", "{'descr': '<f4', 'fortran_order': False, 'shape': (2 4 16 16), }"),
                                 ("an unclosed shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4, 16, 16"),
                                 ("a key twice", "{'descr': '<f4', 'fortran_order': False, 'fortran_order': True, "
                                  "'shape': (2, 4, 16, 16), }")):
                text = header.encode() + b" " * (-(10 + len(header) + 1) % 64) + b"\n"
                open(altered, "wb").write(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + payload)
                open(altered + ".json", "w").write(open(latents_npy + ".json").read())
                refused(f"an .npy header with {name}", [sower, "export", altered, "--pngs", os.path.join(tmp, "new")],
                        ["altered.npy: the .npy header is not the dict numpy writes"])
            check(not os.path.exists(os.path.join(tmp, "new")) and not os.path.exists(os.path.join(tmp, "new.png")),
                  "a refused export wrote something")
            print("sample's arrays refused (exit 2, nothing written): no record, a row altered, another shape, a "
                  "damaged record")
    return finish()



if __name__ == "__main__":
    sys.exit(main())
