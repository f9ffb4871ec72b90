#!/usr/bin/env python3
"""Writes the fuzz targets' own seed inputs into tests/fuzz/corpus/<target>/ (the manifest and model
config targets also start from tests/data, see tests/fuzz/CMakeLists.txt).

usage: python3 tests/fuzz/make_seeds.py BUILD_DIR/sower
Standard library only; the generator state images come from `sower noise --state-out`, whose bytes
the test suite already proves equal to torch's get_state(). Inputs that a fuzzer found are added
to the same folders by hand (named for what they exercise), never rewritten by this script.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)] -> the file's bytes (header padded to 8 as
    the safetensors library pads it)."""
    header, offset, blob = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blob += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def main():
    sower = sys.argv[1]
    f32 = struct.pack("<6f", 0.5, -1.0, 2.0, 3.25, -0.0, 1e-3)
    write("safetensors", "f32-two-tensors.safetensors",
          safetensors([("conv.bias", "F32", [2], f32[:8]), ("conv.weight", "F32", [1, 1, 2, 2], f32[8:24])],
                      {"format": "pt"}))
    write("safetensors", "f16-bf16.safetensors",
          safetensors([("a.weight", "F16", [2, 2], struct.pack("<4H", 0x3C00, 0xC000, 0x7BFF, 0x0001)),
                       ("b.weight", "BF16", [3], struct.pack("<3H", 0x3F80, 0xBF80, 0x7F80))]))
    write("safetensors", "scalar-and-empty.safetensors",
          safetensors([("empty", "F32", [0, 4], b""), ("scalar", "F32", [], struct.pack("<f", 7.0))]))

    write("cli_values", "seeds-ranges", b"\x00" + b"0-7,4294967303,18446744073709551615")
    write("cli_values", "shape-nchw", b"\x01" + b"1,4,64,64")
    write("cli_values", "number-fraction", b"\x02" + b"0.5")
    write("cli_values", "number-hex", b"\x02" + b"0x10")
    write("cli_values", "number-negative", b"\x02" + b"-9223372036854775808")

    with tempfile.TemporaryDirectory() as tmp:
        for name, args in (("fresh", ["--shape", "0"]), ("after-624-words", ["--shape", "624"]),
                           ("after-scalar-double", ["--shape", "1:f64"])):
            state = os.path.join(tmp, name)
            subprocess.run([sower, "noise", "--seed", "12345", *args, "--state-out", state, "--quiet",
                            "-o", os.devnull], check=True)
            with open(state, "rb") as f:
                write("rng_state", name + ".state", f.read())


if __name__ == "__main__":
    main()
