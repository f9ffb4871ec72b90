#!/usr/bin/env python3
"""Running out of memory anywhere in a forward pass ends `sower sample` with exit 3 and "out of memory",
never a crash. The address space is capped (RLIMIT_AS) at a ladder of sizes so that allocations fail
at many different points of the UNet walk (time embedding, resnets, attention, transformer blocks,
skip concatenation); a failed run leaves no output behind.

BLIS aborted the process (SIGABRT) when a cap left too little for its packing buffers; and a double
free on this path (a failed transformer block freeing a stale copy of the activation that
the caller freed again) made `sower sample` of a Stable Diffusion folder at 16384x16384 die of
SIGSEGV under a 2-3.5 GiB cap. Not run under the sanitizers: their shadow memory needs terabytes of
address space.

Under any cap the main thread's stack is grown at the start: growing it later, with the cap used up by then,
was SIGSEGV. A failed allocation in cJSON or OpenSSL is "out of memory" too (exit 3), not bad input (exit 2) nor
an internal error.

Export under a cap reads small files into buffers of their size (it reserved up to 1 GiB per file).

`sower run` is capped only once MPI_Init has returned (CAP_SHIM, LD_PRELOAD): capped from the start,
Open MPI's own start crashed at random under some caps (SIGSEGV, a double free), which says nothing of sower.
Mapping the weights under the cap failed with "cannot map weights: Cannot allocate memory", an I/O error, not
"out of memory" (the failure that first showed this, on a CI machine whose CPU lacks AVX-512).

Usage: test_out_of_memory.py SOWER UNCONDITIONAL_MODEL SD_MODEL CAP_SHIM
"""
import os
import resource
import subprocess
import sys
import tempfile

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)
    return cond


def capped(limit_kib):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit_kib * 1024, limit_kib * 1024))
    return apply


def ladder(sower, tmp, label, argv, limits_kib, threads=1):
    """Runs argv under each cap; returns how many ran out of memory."""
    ran_out = 0
    for limit in limits_kib:
        out = os.path.join(tmp, f"{label}-{limit}.npy")
        try:
            r = subprocess.run([sower, "sample"] + argv + ["--threads", str(threads), "-o", out], capture_output=True,
                               preexec_fn=capped(limit), timeout=300,
                               env=dict(os.environ, OMP_WAIT_POLICY="passive"))  # beside other tests: no spinning
        except subprocess.TimeoutExpired:
            check(False, f"{label} under {limit} KiB: still running after 300 s")
            continue
        err = r.stderr.decode(errors="replace")
        if r.returncode == 3:
            ran_out += 1
            check("out of memory" in err, f"{label} under {limit} KiB: exit 3 without 'out of memory': {err[-600:]}")
            check(not os.path.exists(out) and not os.path.exists(out + ".json"),
                  f"{label} under {limit} KiB: a failed run left {out}")
        elif r.returncode == 127 and "error while loading shared libraries" in err:
            print(f"note: {label} under {limit} KiB: too little to load the libraries (the loader's exit 127)")
        elif r.returncode == 1 and err.startswith("\nlibgomp: Out of memory"):
            print(f"note: {label} under {limit} KiB: too little for libgomp's start (its exit 1, before main)")
        else:
            check(r.returncode == 0, f"{label} under {limit} KiB: exit {r.returncode} "
                                     f"({'signal ' + str(-r.returncode) if r.returncode < 0 else 'not 0 or 3'}): "
                                     f"{err[-600:]}")
            if r.returncode == 0:
                check(os.path.getsize(out) > 0, f"{label} under {limit} KiB: exit 0 without {out}")
    return ran_out


def main():
    sower, unconditional, sd, cap_shim = sys.argv[1:5]
    with tempfile.TemporaryDirectory() as tmp:
        # 1024 samples of the small unconditional UNet on 2 threads: a peak of about 175 MiB here. The low
        # caps run out before the first product: BLIS, which aborts the process when it cannot make its
        # packing buffers, gets them before anything else takes the memory (gemm_reserve_packing).
        caps = list(range(96_000, 208_000, 8_000))
        n = ladder(sower, tmp, "unconditional", [unconditional, "--steps", "1", "--seeds", "0-1023",
                                                  "--batch", "1024"], caps, threads=2)
        check(n >= 4, f"unconditional: only {n} caps ran out of memory; the ladder no longer brackets the peak")
        print(f"unconditional UNet, batch 1024, 2 threads: {n} of {len(caps)} caps (96-200 MB) out of memory, "
              "exit 3 each, no crash")
        # Stable Diffusion from its start (about 80 MB of libraries here): its JSON files read (a failed
        # allocation in cJSON was "not a JSON object", exit 2), then the prompt encoded before the UNet's
        # backend is made (BLIS, without its packing buffers yet, aborted: SIGABRT at 86-102 MB).
        n = ladder(sower, tmp, "sd-start", [sd, "--prompt", "a cat", "--steps", "1", "--seeds", "0"],
                   list(range(82_000, 126_000, 4_000)))
        check(n >= 1, "sd-start: no cap ran out of memory; the ladder no longer brackets the start")
        print(f"Stable Diffusion from its start: {n} of 11 caps (82-122 MB) out of memory, exit 3 each, no crash")
        # Stable Diffusion at 16384x16384 (2048x2048 latents): every cap runs out somewhere in the walk.
        n = ladder(sower, tmp, "sd", [sd, "--prompt", "a cat", "--height", "16384", "--width", "16384",
                                      "--steps", "1", "--seeds", "0"],
                   list(range(1_000_000, 3_600_000, 400_000)))
        check(n == 7, f"sd: {n} of 7 caps ran out of memory; expected all")
        print(f"Stable Diffusion 16384x16384: {n} of 7 caps (1.0-3.4 GB) out of memory, exit 3 each, no crash")
        # sower run alone (one rank, MPI singleton): out of memory ends it with exit 3, its lock removed, never
        # SIGABRT from BLIS (whose first product made each OpenMP thread's malloc arena, 64 MiB of address
        # space, after sower had checked that the packing buffers fit) leaving OUT.lock behind. The cap
        # applies from MPI_Init's return (cap_shim), so every cap tests sower, not Open MPI's start.
        job = os.path.join(tmp, "job.yaml")
        with open(job, "w") as f:
            f.write(f"sower: 1\nname: capped\nmodel: {unconditional}\npipeline: {{steps: 2, threads: 2}}\n"
                    f"seeds: {{list: [1, 2]}}\noutput: {{path: capped.h5}}\nverify: {{count: 2}}\n")
        out, ran_out, finished = os.path.join(tmp, "capped.h5"), 0, 0
        # Headroom over what Open MPI mapped: 0.25-4 MB run out in the first allocations (the weights' mapping
        # and header, OpenSSL's SHA-256, the main thread's stack), the rest in BLIS's buffers or the render.
        for limit in list(range(250, 4_250, 250)) + list(range(8_000, 160_000, 12_000)):
            r = subprocess.run([sower, "run", job, "--force"], capture_output=True, timeout=300,
                               env=dict(os.environ, OMP_WAIT_POLICY="passive", LD_PRELOAD=cap_shim,
                                        SOWER_TEST_HEADROOM_KIB=str(limit)))
            err = r.stderr.decode(errors="replace")
            check(r.returncode in (0, 3), f"run with {limit} KiB to spare: exit {r.returncode}: {err[-1500:]}")
            check(r.returncode != 3 or "out of memory" in err,
                  f"run with {limit} KiB to spare: exit 3 without 'out of memory': {err[-1500:]}")
            check(not os.path.exists(out + ".lock"), f"run with {limit} KiB to spare (exit {r.returncode}) left {out}.lock")
            ran_out += r.returncode == 3
            finished += r.returncode == 0
        check(ran_out >= 1, "run: no cap ran out of memory; the ladder no longer brackets the need")
        print(f"sower run, 2 threads, 0.25-152 MB over Open MPI's start: {ran_out} caps out of memory (exit 3, "
              f"no lock left), {finished} finished")
        # sower verify of a Stable Diffusion output from its start: reading /prompts under a cap was "not a list of
        # UTF-8 strings (... a damaged one)", exit 2, for a sound file; HDF5's H5Fopen died of SIGSEGV (its metadata
        # cache's allocation unchecked) where a cap left it less than a few MiB
        sd_job, sd_out = os.path.join(tmp, "sd.yaml"), os.path.join(tmp, "sd.h5")
        with open(sd_job, "w") as f:
            f.write(f"sower: 1\nname: capped-sd\nmodel: {sd}\npipeline: {{scheduler: euler, steps: 2, threads: 1}}\n"
                    f"prompts: [\"a cat\"]\nseeds: {{list: [1, 2]}}\noutput: {{path: sd.h5}}\nverify: {{count: 2}}\n")
        r = subprocess.run([sower, "run", sd_job, "--force"], capture_output=True, timeout=300)
        if check(r.returncode == 0, f"SD run for verify: {r.stderr.decode()[-400:]}"):
            outcomes = {0: 0, 3: 0}
            for limit in list(range(80_000, 92_000, 500)) + list(range(92_000, 140_000, 6_000)):
                r = subprocess.run([sower, "verify", sd_out, "--all"], capture_output=True, timeout=300,
                                   preexec_fn=capped(limit), env=dict(os.environ, OMP_WAIT_POLICY="passive"))
                err = (r.stdout + r.stderr).decode(errors="replace")
                if r.returncode == 127 and "error while loading shared libraries" in err:
                    continue
                check(r.returncode in (0, 3) and (r.returncode == 0 or "out of memory" in err),
                      f"verify under {limit} KiB: exit {r.returncode}: {err[-600:]}")
                outcomes[r.returncode] = outcomes.get(r.returncode, 0) + 1
            check(outcomes[3] >= 1 and outcomes[0] >= 1, f"verify: {outcomes}: the ladder no longer brackets the need")
            print(f"sower verify of an SD output, 80-134 MB: {outcomes[3]} caps out of memory (exit 3), "
                  f"{outcomes[0]} verified")
        # Reading small files takes memory in proportion to them, not to their cap: export of a sample
        # read its 1 KiB record (sample.npy.json) into a 256 MiB buffer and, a rerun, every PNG already
        # there into 1 GiB, so under a 200 MB cap it stopped with "no record of what produced it" (exit 2).
        sample = os.path.join(tmp, "sd.npy")
        r = subprocess.run([sower, "sample", sd, "--prompt", "a cat", "--steps", "1", "--seeds", "0-3",
                            "--threads", "1", "-o", sample], capture_output=True, timeout=300)
        if check(r.returncode == 0, f"sample for the export: {r.stderr.decode()[-400:]}"):
            folder = os.path.join(tmp, "images")
            for attempt, said in ((1, "4 PNGs written, 0 already there"), (2, "0 PNGs written, 4 already there")):
                r = subprocess.run([sower, "export", sample, "--imagefolder", folder, "--threads", "1"],
                                   capture_output=True, timeout=300, preexec_fn=capped(200_000))
                check(r.returncode == 0 and said.encode() in r.stdout + r.stderr,
                      f"export {attempt} under 200 MB: exit {r.returncode}, {r.stdout.decode()[-200:]} "
                      f"{r.stderr.decode()[-400:]}")
            print("export of a sample to an image folder under 200 MB, twice: written, then kept")
    print(f"test_out_of_memory: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
