#!/usr/bin/python3
"""Bad model folders: each is refused with exit 2 and a message naming the file and what is wrong;
never a crash, and no output is written.

usage: test_model_errors.py SOWER_BINARY GOOD_MODEL_DIR (a pipeline-layout diffusers folder)
Each case copies the good folder to a temporary one and breaks one thing (standard library only).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

from testing import edit_json

failures = []


def read_st(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_st(path, header, data, pad=True):
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + data)


def edit_weights(fn):
    def apply(d):
        p = os.path.join(d, "unet", "diffusion_pytorch_model.safetensors")
        header, data = read_st(p)
        result = fn(header, data)
        if result is not None:
            header, data = result
        write_st(p, header, data)
    return apply



def first_tensor(h):
    return sorted(k for k in h if k != "__metadata__")[0]


def biggest_tensor(h):
    return max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1] - h[k]["data_offsets"][0])


def set_offsets(h, name, begin, end):
    h[name]["data_offsets"] = [begin, end]


def raw_file(content):
    def apply(d):
        open(os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"), "wb").write(content)
    return apply


def remove(rel):
    return lambda d: os.remove(os.path.join(d, rel))


def pickle_only(d):
    os.remove(os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"))
    open(os.path.join(d, "unet", "diffusion_pytorch_model.bin"), "wb").write(b"\x80\x02}q\x00.")


def shift_tensor(h, data):
    name = biggest_tensor(h)
    b, e = h[name]["data_offsets"]
    set_offsets(h, name, b + 4, e + 4)  # overlaps its neighbour or runs past the end


def poison(value):
    """The first tensor's first element set to value (a NaN or an infinity, as float32)."""
    def apply(h, data):
        name = first_tensor(h)
        assert h[name]["dtype"] == "F32"
        b = h[name]["data_offsets"][0]
        return h, data[:b] + struct.pack("<f", value) + data[b + 4:]
    return apply


def replaced_by(make, rel):
    """The file at rel replaced by what make(path) creates."""
    def apply(d):
        p = os.path.join(d, rel)
        os.remove(p)
        make(p)
    return apply


def fifo(rel):
    """A named pipe in place of a file: opening it for reading would wait for a writer forever."""
    return replaced_by(os.mkfifo, rel)


def directory(rel):
    return replaced_by(os.mkdir, rel)


def header_text(text):
    """The weights' header replaced by raw text (the data kept)."""
    def apply(d):
        p = os.path.join(d, "unet", "diffusion_pytorch_model.safetensors")
        header, data = read_st(p)
        body = json.dumps(header).encode() + text
        open(p, "wb").write(struct.pack("<Q", len(body)) + body + data)
    return apply


def repeat_key(rel, key, value):
    """key given again at the end of the file's object: Python's json (diffusers) takes this last value."""
    def apply(d):
        p = os.path.join(d, rel)
        text = open(p).read().rstrip()
        assert text.endswith("}")
        open(p, "w").write(text[:-1].rstrip() + f', "{key}": {json.dumps(value)}}}\n')
    return apply


def edit_json_padded(rel, size, **changes):
    """The config with changes, padded with spaces after its object to exactly size bytes."""
    def apply(d):
        path = os.path.join(d, rel)
        c = json.load(open(path))
        c.update(changes)
        text = json.dumps(c).encode()
        open(path, "wb").write(text + b" " * (size - len(text)))
    return apply


def escaped_nul_name(d):
    p = os.path.join(d, "unet", "diffusion_pytorch_model.safetensors")
    header, data = read_st(p)
    header["conv_in.bias\u0000junk"] = header.pop("conv_in.bias")  # json.dumps writes the NUL as \u0000
    write_st(p, header, data)


def invalid_utf8_name(d):
    """A tensor name with a byte that is no UTF-8 (safetensors refuses the header; sower took it as a name)."""
    p = os.path.join(d, "unet", "diffusion_pytorch_model.safetensors")
    header, data = read_st(p)
    body = json.dumps(header).encode().replace(b'"conv_in.bias"', b'"conv_in.bias\xff"')
    open(p, "wb").write(struct.pack("<Q", len(body)) + body + data)


CASES = [  # (name, breakage, text the message must contain)
    ("freq_shift at half the time channels (NaN)", edit_json("unet/config.json", lambda c: c.update(freq_shift=8)),
     "key 'freq_shift': 8 is not below half"),
    ("_use_default_values not a list", edit_json("unet/config.json", lambda c: c.update(_use_default_values="norm_eps")),
     "key '_use_default_values': expected a list of key names"),
    ("header length huge", raw_file(struct.pack("<Q", 1 << 40) + b"{}"), "header length"),
    ("file too short", raw_file(b"\x01\x02"), "too short"),
    ("header past end", raw_file(struct.pack("<Q", 4096) + b"{}"), "runs past the end"),
    ("header not JSON", raw_file(struct.pack("<Q", 8) + b"{not js}"), "not a JSON object"),
    ("unknown dtype", edit_weights(lambda h, d: h[first_tensor(h)].update(dtype="F64")), "dtype F64"),
    ("integer weights", edit_weights(lambda h, d: h[first_tensor(h)].update(dtype="I32")), "stored as an integer dtype"),
    ("shape vs bytes", edit_weights(lambda h, d: h[first_tensor(h)].update(shape=[3, 3, 3, 3, 3])), "bytes"),
    ("offsets past end", edit_weights(lambda h, d: (h, d[:-8])), "past the"),
    ("overlap", edit_weights(shift_tensor), "tensor"),
    ("hole", edit_weights(lambda h, d: (h, d + b"\0" * 8)), "after the last tensor"),
    ("missing tensor", edit_weights(lambda h, d: h.update({"renamed.bias": h.pop("conv_in.bias")})),
     "missing tensor 'conv_in.bias'"),
    ("unexpected tensor", edit_weights(lambda h, d: (dict(h, **{"extra.weight": {"dtype": "F32", "shape": [2], "data_offsets": [len(d), len(d) + 8]}}), d + b"\0" * 8)),
     "unexpected tensor 'extra.weight'"),
    ("bad metadata", edit_weights(lambda h, d: h.update(__metadata__={"format": 1})), "__metadata__"),
    ("pickle weights", pickle_only, "pickle weights are refused"),
    ("no weights", remove("unet/diffusion_pytorch_model.safetensors"), "no such file"),
    ("no scheduler config", remove("scheduler/scheduler_config.json"), "scheduler config"),
    ("no unet config", remove("unet/config.json"), "found neither"),
    ("fourier embedding", edit_json("unet/config.json", lambda c: c.update(time_embedding_type="fourier")),
     "key 'time_embedding_type'"),
    ("cross attention block", edit_json("unet/config.json", lambda c: c.update(
        down_block_types=["CrossAttnDownBlock2D"] + c["down_block_types"][1:])), "key 'down_block_types'"),
    ("groups do not divide", edit_json("unet/config.json", lambda c: c.update(norm_num_groups=7)),
     "key 'norm_num_groups'"),
    ("wrong config type", edit_json("unet/config.json", lambda c: c.update(layers_per_block="two")),
     "key 'layers_per_block'"),
    ("block count mismatch", edit_json("unet/config.json", lambda c: c.update(up_block_types=["UpBlock2D"])),
     "same length"),
    ("conditional unet", edit_json("unet/config.json", lambda c: c.update(_class_name="UNet2DConditionModel")),
     "key '_class_name'"),
    ("config shape mismatch", edit_json("unet/config.json", lambda c: c.update(
        block_out_channels=[x * 2 for x in c["block_out_channels"]])), "shape"),
    ("scheduler thresholding", edit_json("scheduler/scheduler_config.json", lambda c: c.update(thresholding=True)),
     "key 'thresholding'"),
    ("scheduler beta schedule", edit_json("scheduler/scheduler_config.json", lambda c: c.update(beta_schedule="cubic")),
     "key 'beta_schedule'"),
    ("config not JSON", lambda d: open(os.path.join(d, "unet", "config.json"), "w").write("{oops"), "not a JSON object"),
    ("NaN weight", edit_weights(poison(float("nan"))), "holds NaN at index 0"),
    ("infinite weight", edit_weights(poison(float("-inf"))), "holds an infinity at index 0"),
    ("text after the header", header_text(b"xx"), "text after the header's JSON object"),
    ("NUL in the header", header_text(b"\0"), "a NUL byte in the header"),
    ("weights a FIFO", fifo("unet/diffusion_pytorch_model.safetensors"), "not a regular file"),
    ("weights a directory", directory("unet/diffusion_pytorch_model.safetensors"), "it is a directory"),
    ("unet config a FIFO", fifo("unet/config.json"), "not a regular file"),
    ("scheduler config a FIFO", fifo("scheduler/scheduler_config.json"), "not a regular file"),
    ("model index a FIFO", fifo("model_index.json"), "not a regular file"),
    ("model index a directory", directory("model_index.json"), "it is a directory"),
    ("fractional sample size", edit_json("unet/config.json", lambda c: c.update(
        sample_size=[c["sample_size"] + 0.5] * 2)), "key 'sample_size'"),
    ("betas add no noise", edit_json("scheduler/scheduler_config.json", lambda c: c.update(
        beta_schedule="linear", beta_start=0, beta_end=0)), "add no noise"),
    ("betas leave no signal", edit_json("scheduler/scheduler_config.json", lambda c: c.update(
        beta_schedule="linear", beta_start=0.9999, beta_end=0.9999)), "leave no signal from train step"),
    ("index names an unknown scheduler", edit_json("model_index.json", lambda c: c.update(
        scheduler=["diffusers", "FooScheduler"])), "key 'scheduler': found class 'FooScheduler'"),
    ("index names another unet", edit_json("model_index.json", lambda c: c.update(
        unet=["diffusers", "UNet3DModel"])), "key 'unet': found class 'UNet3DModel'"),
    ("index has no unet", edit_json("model_index.json", lambda c: c.update(unet=[None, None])),
     "key 'unet': the pipeline has none"),
    ("a repeated config key, the last bad", repeat_key("unet/config.json", "norm_num_groups", 7),
     "key 'norm_num_groups'"),
    ("a repeated index key, the last bad", repeat_key("model_index.json", "unet", ["diffusers", "UNet3DModel"]),
     "found class 'UNet3DModel'"),
    ("an escaped NUL in a tensor name", escaped_nul_name, "a NUL byte in the header"),
    ("invalid UTF-8 in a tensor name", invalid_utf8_name, "invalid UTF-8 in the header at byte"),
    ("index entry not a pair", edit_json("model_index.json", lambda c: c.update(unet="UNet2DModel")),
     "key 'unet': expected [library, class]"),
    # configs are read into buffers of their size, grown as they are read, up to 1 MiB: one byte more is refused
    ("config over 1 MiB", edit_json_padded("unet/config.json", (1 << 20) + 1), "it is larger than 1048576 bytes"),
    ("config of exactly 1 MiB, then bad", edit_json_padded("unet/config.json", 1 << 20, norm_num_groups=7),
     "key 'norm_num_groups'"),
]


def main():
    sower, good = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npy")
        for name, breakage, expected in CASES:
            d = os.path.join(tmp, "model")
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(good, d)
            breakage(d)
            for argv in ([sower, "info", d], [sower, "sample", d, "--seeds", "0", "--steps", "1", "-o", out]):
                try:  # a hang is a failure, not a stuck test
                    r = subprocess.run(argv, capture_output=True, timeout=120)
                except subprocess.TimeoutExpired:
                    failures.append(f"{name} ({argv[1]}): still running after 120 s")
                    continue
                err = r.stderr.decode()
                if r.returncode != 2:
                    failures.append(f"{name} ({argv[1]}): exit {r.returncode}, expected 2: {err.strip()[:300]}")
                elif expected not in err:
                    failures.append(f"{name} ({argv[1]}): message lacks {expected!r}: {err.strip()[:300]}")
                if "Sanitizer" in err or "runtime error" in err:
                    failures.append(f"{name}: crashed: {err[:500]}")
                for written in (out, out + ".json"):
                    if os.path.exists(written):
                        failures.append(f"{name}: wrote {os.path.basename(written)}")
                        os.remove(written)
        # A key named in _use_default_values is not read, its default applies (diffusers' extract_init_dict):
        # the file's flip_sin_to_cos false rendered another model (exit 0, 1.5 off diffusers).
        ref, got = os.path.join(tmp, "ref.npy"), os.path.join(tmp, "got.npy")
        d = os.path.join(tmp, "defaults")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(good, d)
        edit_json("unet/config.json", lambda c: c.update(flip_sin_to_cos=not c.get("flip_sin_to_cos", True),
                                                         _use_default_values=["flip_sin_to_cos"]))(d)
        sample = [sower, "sample", "--seeds", "0,1", "--steps", "2", "--force", "-o"]
        r1 = subprocess.run(sample[:2] + [good] + sample[2:] + [ref], capture_output=True)
        r2 = subprocess.run(sample[:2] + [d] + sample[2:] + [got], capture_output=True)
        if r1.returncode or r2.returncode or open(ref, "rb").read() != open(got, "rb").read():
            failures.append(f"_use_default_values: the listed key was read: exit {r1.returncode} {r2.returncode} "
                            f"{r2.stderr.decode()[-300:]}")
        r = subprocess.run([sower, "info", "/nonexistent/model"], capture_output=True)
        if r.returncode != 2 or b"not a directory" not in r.stderr:
            failures.append(f"nonexistent model dir: exit {r.returncode} {r.stderr!r}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_model_errors: {len(CASES)} broken models, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
