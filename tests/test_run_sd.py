#!/usr/bin/python3
"""`sower run` of a Stable Diffusion job (prompts x seeds) over MPI: the rows are bit for bit what
`sower sample` gives for each (prompt, seed), whatever the ranks (1, 2, 3) and batch (1, 2, 3); the file
names every row's prompt; kill -9 then --resume gives the same file; `sower verify --all` re-renders every
row identically; bad Stable Diffusion manifests exit 2 naming the line; a prompts_file gives the same rows
as the same prompts listed, its output verifies without the file, and bad files exit 2 naming FILE:LINE:COL;
a manifest without pipeline.scheduler runs the folder's own, as `sower sample` does.

usage: test_run_sd.py SOWER MPIEXEC TINY_SD_DIR UNET2D_DIR
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Reading the killed run's .partial must not wait on a lock a dying rank may still hold (sanitizer builds
# take a while to die); sower's own --resume checks the file.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
import h5py  # noqa: E402
import numpy as np  # noqa: E402

from testing import check, failures  # noqa: E402  (the tests' shared helpers)

PROMPTS = [("a photograph of an astronaut riding a horse", "blurry, low quality"),
           ("l'été à Paris 🐱", None)]
SEEDS = ["0", "4294967303", "18446744073709551615", "5"]

JOB = """sower: 1
name: sd-run-test
model: {model}
pipeline: {{scheduler: {scheduler}, steps: {steps}, batch: {batch}, guidance: 7.5, clip_skip: 1}}
prompts:
  - {{prompt: "{p0}", negative_prompt: "{n0}"}}
  - "{p1}"
seeds:
  list: [{seeds}]
output: {{path: out.h5}}
verify: {{count: 3}}
"""


def write_job(path, model, scheduler="euler-a", steps=4, batch=3, **extra):
    text = JOB.format(model=model, scheduler=scheduler, steps=steps, batch=batch, p0=PROMPTS[0][0],
                      n0=PROMPTS[0][1], p1=PROMPTS[1][0], seeds=", ".join(SEEDS))
    for old, new in extra.items():
        text = text.replace(old, new)
    open(path, "w", encoding="utf-8").write(text)
    return path


def launch(argv, ranks, mpiexec):
    return [mpiexec, "-np", str(ranks), "--oversubscribe"] + argv if ranks > 1 else argv


def run(sower, mpiexec, job, out, ranks, *extra, env=None):
    return subprocess.run(launch([sower, "run", job, "-o", out, *extra], ranks, mpiexec), capture_output=True, env=env,
                          text=True, timeout=900)


def contents(path):
    with h5py.File(path, "r") as f:
        return ({k: f[k][...] for k in ("latents", "seeds", "digest", "done", "prompt_index")},
                [p.decode() for p in f["prompts"][...]], [p.decode() for p in f["negative_prompts"][...]])


def main():
    sower, mpiexec, sd, unet2d = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3]), os.path.abspath(sys.argv[4])
    with tempfile.TemporaryDirectory() as tmp:
        write_job(os.path.join(tmp, "job.yaml"), sd)
        # 1. ranks 1, 2, 3 and batches 3, 1, 2: identical rows
        files = {}
        for ranks, batch in ((1, 3), (2, 1), (3, 2)):
            j = write_job(os.path.join(tmp, f"job{ranks}.yaml"), sd, batch=batch)
            out = os.path.join(tmp, f"ranks{ranks}.h5")
            r = run(sower, mpiexec, j, out, ranks)
            if check(r.returncode == 0, f"{ranks} ranks: exit {r.returncode}: {r.stderr[-800:]}"):
                files[ranks] = contents(out)
        if check(len(files) == 3, "not every run finished"):
            base = files[1][0]
            for ranks in (2, 3):
                for k in base:
                    check(np.array_equal(base[k], files[ranks][0][k]), f"/{k}: {ranks} ranks differ from 1 rank")
            print("ranks 1/2/3 x batch 3/1/2: identical /latents, /seeds, /digest, /prompt_index")
            # 2. the file names every row's prompt and seed, prompt-major
            data, prompts, negatives = files[1]
            check(prompts == [p for p, _ in PROMPTS], f"/prompts {prompts}")
            check(negatives == [n or "" for _, n in PROMPTS], f"/negative_prompts {negatives}")
            want_index = [p for p in range(len(PROMPTS)) for _ in SEEDS]
            check(list(data["prompt_index"]) == want_index, f"/prompt_index {list(data['prompt_index'])}")
            check([str(s) for s in data["seeds"]] == SEEDS * len(PROMPTS), f"/seeds {list(data['seeds'])}")
            # 3. each prompt's rows are what `sower sample` renders, bit for bit
            for p, (prompt, negative) in enumerate(PROMPTS):
                npy = os.path.join(tmp, f"sample{p}.npy")
                argv = [sower, "sample", sd, "--prompt", prompt, "--guidance", "7.5", "--clip-skip", "1",
                        "--scheduler", "euler-a", "--steps", "4", "--seeds", ",".join(SEEDS), "-o", npy]
                if negative:
                    argv += ["--negative-prompt", negative]
                r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
                if check(r.returncode == 0, f"sample prompt {p}: {r.stderr[-500:]}"):
                    rows = data["latents"][p * len(SEEDS):(p + 1) * len(SEEDS)]
                    check(np.array_equal(np.load(npy), rows), f"prompt {p}: the rows differ from sower sample's")
            print(f"{len(PROMPTS)} prompts x {len(SEEDS)} seeds: every row == sower sample's, bit for bit")
            # 4. verify re-renders every row
            r = subprocess.run([sower, "verify", os.path.join(tmp, "ranks2.h5"), "--all"], capture_output=True,
                               text=True, timeout=600)
            check(r.returncode == 0 and "0 differ" in r.stdout, f"verify --all: {r.returncode} {r.stdout} {r.stderr}")
            print("sower verify --all: every row re-rendered identically")

        def ranks_match_sample(tag, scheduler, job_keys, sample_options, attribute_bytes, label):
            """2 ranks at batch 2 render the second prompt's rows as sower sample does at batch 3, the pipeline
            attribute names the setting (attribute_bytes), and verify --all re-renders them."""
            j = write_job(os.path.join(tmp, tag + ".yaml"), sd, scheduler=scheduler, batch=2,
                          **{"guidance: 7.5": job_keys + ", guidance: 7.5"})
            out = os.path.join(tmp, tag + ".h5")
            r = run(sower, mpiexec, j, out, 2)
            if not check(r.returncode == 0, f"{label} run: exit {r.returncode}: {r.stderr[-800:]}"):
                return
            npy = os.path.join(tmp, tag + ".npy")
            s = subprocess.run([sower, "sample", sd, "--prompt", PROMPTS[1][0], "--guidance", "7.5", "--clip-skip",
                                "1", "--scheduler", scheduler, *sample_options, "--steps", "4", "--batch", "3",
                                "--seeds", ",".join(SEEDS), "-o", npy], capture_output=True, text=True, timeout=600)
            if check(s.returncode == 0, f"{label} sample: {s.stderr[-500:]}"):
                rows = contents(out)[0]["latents"][len(SEEDS):]
                check(np.array_equal(np.load(npy), rows), f"{label}: the rows differ from sower sample's")
            with h5py.File(out, "r") as f:
                check(all(b in f.attrs["pipeline"] for b in attribute_bytes), f"pipeline attribute {f.attrs['pipeline']}")
            v = subprocess.run([sower, "verify", out, "--all"], capture_output=True, text=True, timeout=600)
            check(v.returncode == 0 and "0 differ" in v.stdout, f"verify {label}: {v.returncode} {v.stdout} {v.stderr}")
            print(f"{label}: 2 ranks at batch 2 == sower sample at batch 3, bit for bit; verify --all agrees")

        # 4b. DPM-Solver++ 2M SDE (a history per value and a draw every step), Karras, guidance_rescale
        ranks_match_sample("sde", "dpm++2m-sde", "karras: true, guidance_rescale: 0.7",
                           ["--karras", "--guidance-rescale", "0.7"],
                           [b'"scheduler": "dpm++2m-sde"', b'"guidance_rescale": 0.7'],
                           "dpm++2m-sde karras, guidance_rescale 0.7")
        # 4c. pipeline.sigmas: beta with DPM++ SDE (the Brownian tree's midpoints from a float32 tensor schedule)
        ranks_match_sample("beta", "dpm++sde", "sigmas: beta", ["--sigmas", "beta"], [b'"sigmas": "beta"'],
                           "dpm++sde, sigmas: beta")

        # A scheduler of more UNet calls than steps (KDPM2: 2N - 1) says so in its progress lines
        kd = run(sower, mpiexec, write_job(os.path.join(tmp, "kdpm2.yaml"), sd, scheduler="dpm2", steps=3, batch=2),
                 os.path.join(tmp, "kdpm2.h5"), 1, env=dict(os.environ, SOWER_PROGRESS_SECONDS="0"))
        calls = [l for l in kd.stderr.splitlines() if re.search(r", UNet call [1-5]/5 \(3 steps\) of a batch of [12],", l)]
        check(kd.returncode == 0 and calls and not re.search(r", step \d+/5 ", kd.stderr),
              f"dpm2 progress lines: exit {kd.returncode}: {kd.stderr[-600:]}")
        print(f"dpm2, 3 steps: progress counts its 5 UNet calls as such ({len(calls)} lines)")

        # 5. kill -9 mid-run, then --resume: the same file as the uninterrupted run
        slow = write_job(os.path.join(tmp, "slow.yaml"), sd, steps=30, batch=1)
        ref, killed = os.path.join(tmp, "ref.h5"), os.path.join(tmp, "killed.h5")
        r = run(sower, mpiexec, slow, ref, 2, env=dict(os.environ, SOWER_PROGRESS_SECONDS="0"))
        check(r.returncode == 0, f"uninterrupted slow run: {r.stderr[-500:]}")
        # Progress a person can read: the denoising step of the batch in hand, percent, elapsed, ETA; the
        # last line (all rows) once.
        lines = [l for l in r.stderr.splitlines() if l.startswith("[sower]")]
        stepping = [l for l in lines if re.fullmatch(r"\[sower\] \d+/\d+ rows \(\d+\.\d%\), step \d+/30 of a batch "
                                                     r"of 1, \d+\.\d\d rows/s, elapsed \S+( s)?, ETA \S+( s)?", l)]
        total = len(PROMPTS) * len(SEEDS)
        last = [l for l in lines if l.startswith(f"[sower] {total}/{total} rows (100.0%), ")]
        check(stepping and len(last) == 1 and "\r" not in r.stderr,
              f"progress lines: {len(stepping)} with the step, {len(last)} final ones: {lines[:3]} ... {lines[-2:]}")
        p = subprocess.Popen(launch([sower, "run", slow, "-o", killed], 2, mpiexec), stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, start_new_session=True,
                             env=dict(os.environ, SOWER_PROGRESS_SECONDS="0"))
        deadline, line = time.time() + 300, b""
        while time.time() < deadline:  # until some rows are reported written
            line = p.stderr.readline()
            if not line or (line.startswith(b"[sower]") and not line.startswith(b"[sower] 0/")):
                break
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        subprocess.run(["pkill", "-9", "-f", killed], capture_output=True)  # ranks outside the group too
        for _ in range(100):
            if subprocess.run(["pgrep", "-f", killed], capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
        check(os.path.exists(killed + ".partial") and not os.path.exists(killed),
              "after kill -9: expected only the .partial")
        with h5py.File(killed + ".partial", "r") as f:
            kept = int(f["done"][...].sum())
        r = run(sower, mpiexec, slow, killed, 2, "--resume")
        if check(r.returncode == 0, f"--resume: {r.stderr[-800:]}"):
            a, b = contents(ref)[0], contents(killed)[0]
            for k in a:
                check(np.array_equal(a[k], b[k]), f"/{k} after kill -9 + --resume differs")
        print(f"kill -9 after '{line.decode().strip()}' ({kept} rows kept), --resume: identical to the uninterrupted run")

        # 6. bad Stable Diffusion manifests: exit 2, the manifest's line named, nothing written
        def bad(name, path, texts):
            out = os.path.join(tmp, "bad.h5")
            r = run(sower, mpiexec, path, out, 1)
            missing = [t for t in texts if t not in r.stderr]
            check(r.returncode == 2 and not missing, f"{name}: exit {r.returncode}, missing {missing}: {r.stderr[-500:]}")
            check(not os.path.exists(out) and not os.path.exists(out + ".partial"), f"{name}: wrote an output")
            c = subprocess.run([sower, "check", path], capture_output=True, text=True, timeout=600)
            missing = [t for t in texts if t not in c.stderr]
            check(c.returncode == 2 and not missing, f"{name}: sower check exit {c.returncode} (run's 2), missing "
                                                     f"{missing}: {c.stderr[-500:]}")

        bad("prompts on a UNet2DModel", write_job(os.path.join(tmp, "b1.yaml"), unet2d),
            ["b1.yaml:4:", "apply to Stable Diffusion"])
        nop = write_job(os.path.join(tmp, "b2.yaml"), sd)
        text = open(nop, encoding="utf-8").read()
        open(nop, "w", encoding="utf-8").write(text[:text.index("prompts:")] + text[text.index("seeds:"):])
        bad("an SD folder without prompts", nop, ["b2.yaml:3:", "needs prompts"])
        bad("height not a multiple of 8", write_job(os.path.join(tmp, "b3.yaml"), sd, **{"clip_skip: 1}": "clip_skip: 1, height: 100, width: 64}"}),
            ["b3.yaml:4:", "pipeline.height", "multiple of 8"])
        bad("clip_skip past the layers", write_job(os.path.join(tmp, "b4.yaml"), sd, **{"clip_skip: 1": "clip_skip: 9"}),
            ["b4.yaml:4:", "clip_skip 9", "layers"])
        empty = os.path.join(tmp, "b5.yaml")
        open(empty, "w", encoding="utf-8").write(text[:text.index("prompts:")] + "prompts: []\n" + text[text.index("seeds:"):])
        bad("an empty prompt list", empty, ["b5.yaml:5:", "prompts", "a list of 1..100000 prompts"])
        # a text encoder of another width than the UNet's cross_attention_dim (check passed it, run refused it)
        mixed = os.path.join(tmp, "mixed-text-width")
        shutil.copytree(sd, mixed)
        shutil.rmtree(os.path.join(mixed, "text_encoder"))
        shutil.copytree(os.path.join(os.path.dirname(sd), "tiny-sd2", "text_encoder"), os.path.join(mixed, "text_encoder"))
        bad("a text encoder 48 wide for a UNet of cross_attention_dim 32", write_job(os.path.join(tmp, "b6.yaml"), mixed),
            ["text_encoder/config.json", "hidden_size 48 is not the UNet's cross_attention_dim 32"])
        # a batch whose rows do not fit one MPI message (check passed it, run refused it)
        bad("a batch of 64 rows at 16384x16384", write_job(os.path.join(tmp, "b7.yaml"), sd, batch=64,
                                                            **{"clip_skip: 1}": "clip_skip: 1, height: 16384, width: 16384}"}),
            ["b7.yaml: a batch of 64 rows of 16777216 floats", "lower pipeline.batch"])
        # more steps than the scheduler's num_train_timesteps: run named no manifest line (check did)
        short = os.path.join(tmp, "short-schedule")
        shutil.copytree(sd, short)
        cfg_path = os.path.join(short, "scheduler", "scheduler_config.json")
        cfg = json.load(open(cfg_path))
        cfg["num_train_timesteps"] = 10
        json.dump(cfg, open(cfg_path, "w"))
        bad("20 steps of a 10-timestep schedule", write_job(os.path.join(tmp, "b8.yaml"), short, steps=20),
            ["b8.yaml:3:", "num_inference_steps", "found 20"])
        print("8 bad Stable Diffusion manifests: exit 2 from run and check alike, named, nothing written")

        # 7. prompts_file: the list's prompt, then the file's (byte-order mark, CRLF, blank lines skipped), on
        # 2 ranks == the same prompts listed in the manifest on 1 rank, bit for bit, with the same job key
        listed = write_job(os.path.join(tmp, "listed.yaml"), sd, batch=2,
                           **{'seeds:': '  - "a third prompt"\nseeds:'})
        filed = os.path.join(tmp, "filed.yaml")
        text = open(listed, encoding="utf-8").read()
        open(filed, "w", encoding="utf-8").write(text[:text.index('  - "' + PROMPTS[1][0])] +
                                                 "prompts_file: {path: prompts.txt}\n" + text[text.index("seeds:"):])
        prompts_txt = os.path.join(tmp, "prompts.txt")
        open(prompts_txt, "wb").write(b"\xef\xbb\xbf\r\n" + PROMPTS[1][0].encode() + b"\r\n  \n\na third prompt")
        a, b = os.path.join(tmp, "listed.h5"), os.path.join(tmp, "filed.h5")
        ra, rb = run(sower, mpiexec, listed, a, 1), run(sower, mpiexec, filed, b, 2)
        if check(ra.returncode == 0 and rb.returncode == 0, f"prompts_file runs: {ra.stderr[-400:]} {rb.stderr[-400:]}"):
            (da, pa, na), (db, pb, nb) = contents(a), contents(b)
            check(pa == pb and na == nb and len(pb) == 3, f"/prompts {pa} vs {pb}, {na} vs {nb}")
            for k in da:
                check(np.array_equal(da[k], db[k]), f"prompts_file: /{k} differs from the listed prompts'")
            with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
                check(fa.attrs["job_key"] == fb.attrs["job_key"], "prompts_file: another job key")
            # the output says what its rows are without the file: verify re-renders from /prompts
            os.unlink(prompts_txt)
            r = subprocess.run([sower, "verify", b, "--all"], capture_output=True, text=True, timeout=600)
            check(r.returncode == 0 and "0 differ" in r.stdout, f"verify --all, prompts file gone: {r.stdout} {r.stderr}")
            # ... and a changed file is another job: not accepted as this output
            open(prompts_txt, "w", encoding="utf-8").write(PROMPTS[1][0] + "\na 3rd prompt\n")
            r = run(sower, mpiexec, filed, b, 1, "--resume-auto")
            check(r.returncode == 2 and "prompts_sha256" in r.stderr, f"--resume-auto, file changed: {r.returncode} {r.stderr[-400:]}")
        print("prompts_file (BOM, CRLF, blank lines) on 2 ranks == the same prompts listed, on 1 rank; verify without "
              "the file (deleted); a changed file refused")

        def bad_file(name, content, texts):
            open(os.path.join(tmp, "bad.txt"), "wb").write(content)
            path = os.path.join(tmp, "bpf.yaml")
            open(path, "w", encoding="utf-8").write(open(filed, encoding="utf-8").read().replace("prompts.txt", "bad.txt"))
            bad(name, path, texts)

        bad_file("invalid UTF-8 in the prompts file", b"fine\nalso fine\nbad \xc3\x28 here\n", ["bad.txt:3:5:", "UTF-8"])
        bad_file("a NUL byte in the prompts file", b"a\x00b\n", ["bad.txt:1:2:", "NUL"])
        bad_file("a prompts file without a prompt", b"\n \r\n", ["bad.txt:", "no prompt"])
        bad_file("a prompt over 8192 characters", b"ok\n" + "\u00e9".encode() * 8193 + b"\n", ["bad.txt:2:1:", "at most 8192 characters, found 8193"])
        os.unlink(os.path.join(tmp, "bad.txt"))
        bad("a missing prompts file", os.path.join(tmp, "bpf.yaml"), ["bad.txt", "prompts file (named at", "bpf.yaml:7:"])
        print("5 bad prompts files: exit 2, FILE:LINE:COLUMN named, nothing written")

        # 8. a manifest without pipeline.scheduler runs the folder's own (tiny-sd1's PNDM), as `sower sample`
        # without --scheduler and StableDiffusionPipeline do: the same rows; `check` lists it; the file records
        # it; verify re-renders with it; eta then must suit it.
        own = write_job(os.path.join(tmp, "own.yaml"), sd, steps=2, **{"scheduler: euler-a, ": ""})
        out = os.path.join(tmp, "own.h5")
        r = run(sower, mpiexec, own, out, 2)
        listing = subprocess.run([sower, "check", own], capture_output=True, text=True, timeout=600)
        check(listing.returncode == 0 and "scheduler: pndm" in listing.stdout, f"check: {listing.stdout} {listing.stderr}")
        npy = os.path.join(tmp, "own.npy")
        s = subprocess.run([sower, "sample", sd, "--prompt", PROMPTS[1][0], "--guidance", "7.5", "--clip-skip", "1",
                            "--steps", "2", "--seeds", ",".join(SEEDS), "-o", npy], capture_output=True, text=True,
                           timeout=600)
        if check(r.returncode == 0 and s.returncode == 0, f"no scheduler named: {r.stderr[-500:]} {s.stderr[-500:]}"):
            with h5py.File(out, "r") as f:
                check(b'"scheduler": "pndm"' in f.attrs["pipeline"], f"pipeline attribute {f.attrs['pipeline']}")
                rows = f["latents"][len(SEEDS):]
            check(np.array_equal(np.load(npy), rows), "no scheduler named: rows differ from sower sample's")
            r = subprocess.run([sower, "verify", out, "--all"], capture_output=True, text=True, timeout=600)
            check(r.returncode == 0 and "0 differ" in r.stdout, f"verify, no scheduler named: {r.stdout} {r.stderr}")
        bad("eta with the folder's PNDM", write_job(os.path.join(tmp, "b6.yaml"), sd, **{"scheduler: euler-a": "eta: 0.5"}),
            ["b6.yaml:4:", "pipeline.eta", "pndm", "the folder's own"])
        # A file as sowers before this rule wrote it (a manifest without pipeline.scheduler meant ddim): its
        # rows and attributes are a ddim job's, its stored manifest names none. verify re-renders with ddim.
        old = os.path.join(tmp, "old.h5")
        r = run(sower, mpiexec, write_job(os.path.join(tmp, "ddim.yaml"), sd, scheduler="ddim", steps=2), old, 1)
        if check(r.returncode == 0, f"ddim run: {r.stderr[-500:]}"):
            with h5py.File(old, "r+") as f:
                manifest = f.attrs["manifest"].replace(b"scheduler: ddim, ", b"")  # fixed-size strings, as sower's
                f.attrs["manifest"] = np.bytes_(manifest)
                f.attrs["manifest_sha256"] = np.bytes_(hashlib.sha256(manifest).hexdigest().encode())
            r = subprocess.run([sower, "verify", old, "--all"], capture_output=True, text=True, timeout=600)
            check(r.returncode == 0 and "0 differ" in r.stdout, f"verify, older file: {r.stdout} {r.stderr}")
            # ... and resuming such an unfinished file under today's rule is another job: refused, file kept
            partial = os.path.join(tmp, "again.h5.partial")
            shutil.copyfile(old, partial)
            before = open(partial, "rb").read()
            r = run(sower, mpiexec, own, os.path.join(tmp, "again.h5"), 1, "--resume")
            check(r.returncode == 2 and "scheduler=ddim" in r.stderr and "scheduler=pndm" in r.stderr and
                  open(partial, "rb").read() == before and not os.path.exists(os.path.join(tmp, "again.h5")),
                  f"--resume of an older implicit-ddim partial: {r.returncode} {r.stderr[-500:]}")
        print("no pipeline.scheduler: the folder's PNDM, rows == sower sample's without --scheduler, recorded, "
              "verified; eta against it exits 2; an older file's implicit ddim still verifies, its --resume is refused")

    if failures:
        print("\n".join("FAIL: " + f for f in failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
