#!/usr/bin/python3
"""`sower export` reads only finished sower outputs (src/io/h5read.h, the reader `sower verify`
shares): another HDF5 file, a file that is not HDF5, a truncated one, an unfinished run's, another
format_version or misshapen datasets exit 2 with a message naming the file and what is wrong; a
good file gives a PNG whose pixels are the latents post-processed as diffusers does
((x / 2 + 0.5) clamped to [0, 1], times 255, rounded). Also checks the reader's /verify table as
`sower verify` reports it, and a damaged one.

usage: test_export.py SOWER_BINARY MODEL_DIR   (MODEL_DIR: a 1-channel 8x8 model, mono_v)
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

from pngread import read_png

failures = []

JOB = """sower: 1
name: export-test
model: {model}
pipeline: {{scheduler: ddim, steps: 2, batch: 3}}
seeds:
  ranges: [{{start: 10, count: 6}}]
output: {{path: out.h5}}
verify: {{count: 2}}
"""
ROWS = 6


def run(argv, **kw):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    except subprocess.TimeoutExpired:
        failures.append(f"{argv}: hung (no exit in 120 s)")
        return None


def expect(r, what, code, texts):
    if r is None:
        return
    for text in texts:
        if r.returncode != code or text not in r.stderr:
            failures.append(f"{what}: exit {r.returncode} (expected {code}), message {r.stderr.strip()[-300:]!r} "
                            f"(expected to contain {text!r})")
            return
    if "Sanitizer" in r.stderr or "runtime error" in r.stderr:
        failures.append(f"{what}: crashed: {r.stderr[-600:]}")


def check_good(sower, good, tmp):
    png = os.path.join(tmp, "sheet.png")
    r = run([sower, "export", good, "--png", png])
    if r is None or r.returncode != 0 or not os.path.exists(png):
        failures.append(f"export of a good file: exit {r and r.returncode}: {r and r.stderr.strip()!r}")
        return
    # 6 rows of 1x8x8: 3 columns, 2 rows, 2-px mid-grey (128) gaps -> 28 x 18 grey.
    pixels, _ = read_png(png)
    (height, width, channels), pixels = pixels.shape, pixels[:, :, 0]
    if (width, height, channels) != (28, 18, 1):
        failures.append(f"export: PNG {width}x{height} of {channels} channels, expected 28x18 grey")
        return
    with h5py.File(good, "r") as f:
        latents = f["latents"][()]
    want = np.full((18, 28), 128, np.uint8)
    for k in range(ROWS):
        x0, y0 = (k % 3) * 10, (k // 3) * 10
        v = np.clip(latents[k, 0] / np.float32(2) + np.float32(0.5), 0, 1) * np.float32(255)
        want[y0:y0 + 8, x0:x0 + 8] = np.rint(v).astype(np.uint8)
    if not np.array_equal(pixels, want):
        failures.append(f"export: pixels differ from the post-processed latents at "
                        f"{np.argwhere(pixels != want)[:4].tolist()}")
    # --rows picks rows: 2-3 side by side (2 columns, 1 row: 18 x 8).
    r = run([sower, "export", good, "--png", png, "--rows", "2-3"])  # refused: the sheet exists
    if r is None or r.returncode != 2 or "export never replaces a file unless --force" not in r.stderr:
        failures.append(f"export onto an existing sheet without --force: exit {r and r.returncode}")
    r = run([sower, "export", good, "--png", png, "--rows", "2-3", "--force"])
    pixels = read_png(png)[0][:, :, 0] if r is not None and r.returncode == 0 else None
    height, width = pixels.shape if pixels is not None else (0, 0)
    if (width, height) != (18, 8):
        failures.append(f"export --rows 2-3: {width}x{height}, {r and r.stderr.strip()!r}")
    elif not np.array_equal(pixels[:, :8], want[0:8, 20:28]) or not np.array_equal(pixels[:, 10:], want[10:18, 0:8]):
        failures.append("export --rows 2-3: the pixels are not rows 2 and 3")
    # --rows is one row or one range: a list (its ends were taken for a range), a negative, a reversed or
    # out-of-file range are refused, the sheet kept.
    kept = open(png, "rb").read()
    for rows in ("0,3,1", "-1", "3-2", "0-6", "", "2-"):
        r = run([sower, "export", good, "--png", png, "--rows", rows, "--force"])
        if r is None or r.returncode != 2 or "expected one row A or one range A-B within 0-5" not in r.stderr:
            failures.append(f"export --rows {rows!r}: exit {r and r.returncode}: {r and r.stderr.strip()!r}")
    r = run([sower, "export", good, "--png", png, "--rows", "4", "--force"])
    if r is None or r.returncode != 0 or read_png(png)[0].shape[:2] != (8, 8):
        failures.append(f"export --rows 4: exit {r and r.returncode}")
    if open(png, "rb").read() == kept:
        failures.append("export --rows 4 did not write its sheet")


def mutated(good, tmp, name, mutate):
    path = os.path.join(tmp, name + ".h5")
    shutil.copy(good, path)
    with h5py.File(path, "r+") as f:
        mutate(f)
    return path


def replace(name, data):
    def mutate(f):
        del f[name]
        f[name] = data
    return mutate


def main():
    sower, model = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        open(job, "w").write(JOB.format(model=model))
        r = run([sower, "run", job])
        good = os.path.join(tmp, "good.h5")
        if r is None or r.returncode != 0:
            print(f"FAIL: the reference run: {r and r.stderr}", file=sys.stderr)
            sys.exit(1)
        os.rename(os.path.join(tmp, "out.h5"), good)
        check_good(sower, good, tmp)
        png = os.path.join(tmp, "refused.png")

        # Files export must refuse: (name, path, texts the message must contain besides the path).
        other = os.path.join(tmp, "other.h5")
        with h5py.File(other, "w") as f:  # HDF5, with a latents-like dataset, but not sower's
            f["latents"] = np.zeros((ROWS, 1, 8, 8), "f4")
        text = os.path.join(tmp, "notes.h5")
        open(text, "w").write("not an HDF5 file\n")
        data = open(good, "rb").read()
        cut = os.path.join(tmp, "cut.h5")
        open(cut, "wb").write(data[:len(data) // 2])
        unfinished = mutated(good, tmp, "unfinished", replace("done", np.array([1, 1, 0, 1, 0, 1], "u1")))
        partial_only = os.path.join(tmp, "interrupted.h5")
        shutil.copy(unfinished, partial_only + ".partial")
        refused = [
            ("another program's HDF5 file", other, ["not a sower output", "format attribute 'sower-latents'"]),
            ("a text file", text, ["not an HDF5 file"]),
            ("a truncated file", cut, ["not an HDF5 file"]),
            ("an unfinished run's file", unfinished, ["unfinished (4 of 6 rows done"]),
            ("an unfinished run's .partial", partial_only + ".partial", ["unfinished (4 of 6 rows done"]),
            ("the output of an unfinished run", partial_only, ["no such file", "unfinished run"]),
            ("format_version 2", mutated(good, tmp, "version2", lambda f: f.attrs.__setitem__("format_version", "2")),
             ["format_version '2': this sower reads version 1"]),
            ("no format_version", mutated(good, tmp, "noversion", lambda f: f.attrs.__delitem__("format_version")),
             ["format_version missing"]),
            ("another format", mutated(good, tmp, "format", lambda f: f.attrs.__setitem__("format", "x")),
             ["not a sower output (format attribute 'x', expected 'sower-latents')"]),
            ("no manifest", mutated(good, tmp, "nomanifest", lambda f: f.attrs.__delitem__("manifest")),
             ["no manifest attribute"]),
            ("misshapen latents", mutated(good, tmp, "latents44", replace("latents", np.zeros((ROWS, 1, 4, 4), "f4"))),
             ["/latents is (6, 1, 4, 4), expected (6, 1, 8, 8)"]),
            ("float64 latents", mutated(good, tmp, "latents64", replace("latents", np.zeros((ROWS, 1, 8, 8), "f8"))),
             ["/latents is not float32"]),
            ("longer latents", mutated(good, tmp, "latents99", replace("latents", np.zeros((99, 1, 8, 8), "f4"))),
             ["/latents is (99, 1, 8, 8), expected (6, 1, 8, 8)"]),
            ("no /done", mutated(good, tmp, "nodone", lambda f: f.__delitem__("done")), ["no /done dataset"]),
            ("an altered digest", mutated(good, tmp, "digest", lambda f: f["digest"].__setitem__((4, 0), f["digest"][4, 0] ^ 1)),
             ["row 4 does not match its /digest"]),
            ("a flipped latent", mutated(good, tmp, "flipped", lambda f: f["latents"].__setitem__((2, 0, 0, 0), -f["latents"][2, 0, 0, 0])),
             ["row 2 does not match its /digest"]),
            ("an altered seed", mutated(good, tmp, "seed", lambda f: f["seeds"].__setitem__(3, 99999)),
             ["row 3 holds seed 99999 in /seeds where its manifest gives"]),
        ]
        for what, path, texts in refused:
            expect(run([sower, "export", path, "--png", png]), f"export of {what}", 2, [path] + texts)
            if os.path.exists(png):
                failures.append(f"export of {what}: wrote {png}")
                os.remove(png)

        # The sheet never replaces the file it shows (even with --force, even through a link), nor, without
        # --force, any other file.
        before = open(good, "rb").read()
        link = os.path.join(tmp, "link.png")
        os.symlink(good, link)
        for target, extra in ((good, []), (good, ["--force"]), (link, ["--force"])):
            expect(run([sower, "export", good, "--png", target] + extra), f"export onto its input {extra}", 2,
                   ["the file being exported"])
        notes = os.path.join(tmp, "notes.txt")
        open(notes, "w").write("precious\n")
        expect(run([sower, "export", good, "--png", notes]), "export onto another file", 2,
               ["the file exists", "--force"])
        if open(good, "rb").read() != before or open(notes).read() != "precious\n":
            failures.append("export replaced its input or another file")
        r = run([sower, "export", good, "--png", notes, "--force"])
        if r is None or r.returncode != 0 or open(notes, "rb").read(8) != b"\x89PNG\r\n\x1a\n":
            failures.append(f"export --force onto another file: exit {r and r.returncode}")

        # The reader's /verify table, as `sower verify` reports it; a damaged one is refused.
        r = run([sower, "verify", good])
        if r is None or r.returncode != 0 or "the run's own verification (/verify): 2 rows re-rendered, 0 differed" \
                not in r.stdout:
            failures.append(f"verify's report of /verify: exit {r and r.returncode}, {r and r.stdout!r}")
        for name, mutate, message in (
                ("verify-match-2d", replace("verify/match", np.ones((2, 2), "u1")), "/verify/match is not a vector of 2"),
                ("verify-rows-long", replace("verify/rows", np.arange(50, dtype="u8")),
                 "/verify/rows is not a vector of at most 6"),
                ("verify-diff-f8", replace("verify/max_abs_diff", np.zeros(2, "f8")),
                 "/verify/max_abs_diff has another element type")):
            path = mutated(good, tmp, name, mutate)
            expect(run([sower, "verify", path]), f"verify, {name}", 2, [path, message])

    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_export: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
