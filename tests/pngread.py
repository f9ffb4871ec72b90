"""read_png: an 8-bit grey or RGB PNG as sower writes it, read with zlib and struct only (tests run
without PIL): its pixels and its tEXt/iTXt chunks. Shared by test_export.py and test_export_images.py."""
import struct
import zlib

import numpy as np


def read_png(path):
    """(pixels (h, w, channels) uint8, {keyword: text}) of an 8-bit grey or RGB PNG: tEXt and iTXt chunks."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
    pos, idat, head, texts = 8, b"", None, {}
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0], f"{kind} CRC"
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            key, text = body.split(b"\0", 1)
            texts[key.decode("latin-1")] = text.decode("latin-1")
        elif kind == b"iTXt":
            key, rest = body.split(b"\0", 1)
            compressed, rest = rest[0], rest[2:]  # the compression method byte is skipped
            _lang, _translated, text = rest.split(b"\0", 2)
            texts[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        pos += 12 + n
    width, height, depth, colour = head[:4]
    assert depth == 8 and colour in (0, 2), f"depth {depth} colour {colour}"
    bpp = 3 if colour == 2 else 1
    raw, stride = zlib.decompress(idat), width * bpp
    out = np.zeros((height, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], np.frombuffer(line[1:], np.uint8).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):  # the five PNG filters
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            cur[x] = (row[x] + pred) & 0xFF
        out[y], prev = cur, cur
    return out.astype(np.uint8).reshape(height, width, bpp), texts
