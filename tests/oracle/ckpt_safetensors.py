#!/usr/bin/python3
"""Independent safetensors reader/writer (struct + json only) for test_safetensors.

  ckpt_safetensors.py write PATH   writes one tensor per dtype, bytes from pattern()
  ckpt_safetensors.py check PATH   parses PATH from scratch and verifies every tensor's
                                   bytes against pattern(); prints "OK <n> <meta>"

The byte pattern of tensor i: byte j = (i*31 + j*7 + 3) & 0xff. Shapes below.
"""
import json
import struct
import sys

SIZES = {"F32": 4, "BF16": 2, "F16": 2, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1,
         "I16": 2, "I32": 4, "I64": 8, "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}
DTYPES = list(SIZES)


def shape_of(i):
    return [[2, 3], [5], [1, 2, 2], [], [3, 1]][i % 5]


def pattern(i, n):
    return bytes(((i * 31 + j * 7 + 3) & 0xFF) for j in range(n))


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def write(path):
    header, blobs, off = {"__metadata__": {"writer": "python", "k": "v"}}, [], 0
    for i, dt in enumerate(DTYPES):
        shape = shape_of(i)
        nbytes = numel(shape) * SIZES[dt]
        data = pattern(i, nbytes)
        if dt == "BOOL":
            data = bytes(b & 1 for b in data)
        header["t%02d_%s" % (i, dt)] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nbytes]}
        blobs.append(data)
        off += nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def check(path):
    raw = open(path, "rb").read()
    (hl,) = struct.unpack("<Q", raw[:8])
    assert 8 + hl <= len(raw), "header length beyond the file"
    header = json.loads(raw[8:8 + hl].decode())
    data = raw[8 + hl:]
    meta = header.pop("__metadata__", {})
    assert (8 + hl) % 8 == 0, "data not 8-byte aligned"
    spans = []
    for name, t in header.items():
        i = int(name[1:3])
        assert t["dtype"] == DTYPES[i], name
        assert t["shape"] == shape_of(i), name
        b, e = t["data_offsets"]
        assert e - b == numel(t["shape"]) * SIZES[t["dtype"]], name
        want = pattern(i, e - b)
        if t["dtype"] == "BOOL":
            want = bytes(x & 1 for x in want)
        assert data[b:e] == want, name + " bytes differ"
        spans.append((b, e))
    spans.sort()
    for (b0, e0), (b1, e1) in zip(spans, spans[1:]):
        assert e0 <= b1, "overlap"
    assert spans[-1][1] == len(data), "trailing bytes"
    print("OK %d %s" % (len(header), json.dumps(meta, sort_keys=True)))


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
