"""Shared helpers for sushi's end-to-end tests (run by /usr/bin/python3 with pyzmq and
msgpack): the v1 wire format written independently of the C code, process handling,
and the conventions of scripts/run-tests.sh (exit 0 pass, 77 skip, else fail).

    from sushi_e2e import *
    msg = encode("batch", id=3, meta={"next": 4}, tensors={"tokens": np.zeros((2, 8), np.int32)})
    sock.send_multipart(msg)
    kind, hdr, tensors = decode(sock.recv_multipart())
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import numpy as np

try:
    import zmq
except ImportError:  # python3-zmq missing: the suite cannot run these tests
    print("skip: python3-zmq is not installed")
    sys.exit(77)

ROOT = os.environ.get("SUSHI_REPO_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
BIN = os.path.join(BUILD, "bin")

# wire dtype names (common/core/dtype.c) <-> numpy
DTYPES = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16,
          "U32": np.uint32, "U64": np.uint64, "F16": np.float16, "F32": np.float32, "F64": np.float64,
          "BF16": np.uint16}


def wire_dtype(arr):
    for name, t in DTYPES.items():
        if np.dtype(t) == arr.dtype and name != "BF16":
            return name
    raise ValueError("no wire dtype for %s" % arr.dtype)


def encode(kind, id=0, epoch=0, cursor=0, stage="test", meta=None, tensors=None, v=1):
    """A v1 multipart message: [header, frame1, ...]. tensors: dict name -> numpy array."""
    tensors = tensors or {}
    desc, frames = [], []
    for i, (name, arr) in enumerate(tensors.items()):
        arr = np.ascontiguousarray(arr)
        desc.append({"name": name, "dtype": wire_dtype(arr), "shape": list(arr.shape), "frame": i + 1})
        frames.append(arr.tobytes())
    hdr = {"v": v, "kind": kind, "id": id, "epoch": epoch, "cursor": cursor, "stage": stage,
           "meta": meta or {}, "tensors": desc}
    return [msgpack.packb(hdr, use_bin_type=True)] + frames


def decode(frames):
    """(kind, header dict, {name: numpy array}) from a received multipart message."""
    hdr = msgpack.unpackb(frames[0], raw=False)
    out = {}
    for t in hdr.get("tensors", []):
        dt = DTYPES[t["dtype"]]
        out[t["name"]] = np.frombuffer(frames[t["frame"]], dtype=dt).reshape(t["shape"])
    return hdr["kind"], hdr, out


def malformed_messages():
    """(label, frames) pairs every socket must survive: logged, counted, dropped."""
    good = encode("heartbeat")
    hdr = msgpack.unpackb(good[0], raw=False)
    bad_version = dict(hdr, v=99)
    bad_kind = dict(hdr, kind="nonsense")
    shape_lie = encode("batch", tensors={"tokens": np.zeros((2, 4), np.int32)})
    h2 = msgpack.unpackb(shape_lie[0], raw=False)
    h2["tensors"][0]["shape"] = [2, 400]
    return [
        ("garbage", [b"\xc1\xff\x00garbage"]),
        ("empty", [b""]),
        ("truncated header", [good[0][: len(good[0]) // 2]]),
        ("wrong version", [msgpack.packb(bad_version, use_bin_type=True)]),
        ("unknown kind", [msgpack.packb(bad_kind, use_bin_type=True)]),
        ("shape larger than frame", [msgpack.packb(h2, use_bin_type=True), shape_lie[1]]),
        ("missing frame", [shape_lie[0]]),
        ("extra frame", good + [b"junk"]),
        ("trailing bytes", [good[0] + b"\x00"]),
        ("not a map", [msgpack.packb([1, 2, 3])]),
    ]


def oversized_message(nbytes=(2 << 30) + 1024):
    """A header announcing a tensor bigger than any cap (the frame itself is small)."""
    h = encode("batch", tensors={"tokens": np.zeros(4, np.int32)})
    hdr = msgpack.unpackb(h[0], raw=False)
    hdr["tensors"][0]["shape"] = [nbytes // 4]
    return [msgpack.packb(hdr, use_bin_type=True), h[1]]


def tmpdir(prefix="sushi-e2e-"):
    """A fresh directory (short path, so ipc:// endpoints fit in 107 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def spawn(args, log_path, env=None, cwd=ROOT):
    """Starts a program (args[0] a name in $BUILD/bin or a path), output to log_path."""
    exe = args[0] if os.path.sep in args[0] else os.path.join(BIN, args[0])
    if not os.path.exists(exe):
        print("skip: %s is not built" % exe)
        sys.exit(77)
    e = dict(os.environ)
    if env:
        e.update(env)
    log = open(log_path, "ab")
    return subprocess.Popen([exe] + list(args[1:]), stdout=log, stderr=subprocess.STDOUT, env=e, cwd=cwd,
                            start_new_session=True)


def stop(proc, timeout=10):
    """SIGTERM, then SIGKILL after timeout; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_for(pred, timeout, what, step=0.05):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def tail(path, n=40):
    try:
        return "".join(open(path, errors="replace").readlines()[-n:])
    except OSError:
        return "(no log)"


def run_supervised(args, run_dir, what="sushi-run", timeout=150):
    """Runs sushi-run (args[0] its path) in the repository root to the end and returns its
    output; on a non-zero exit prints the tail of every stage log in RUN/logs and fails."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = out.decode(errors="replace")
    if proc.returncode != 0:
        logs = os.path.join(run_dir, "logs")
        for log in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            print("---- %s\n%s" % (log, tail(os.path.join(logs, log), 20)))
        raise AssertionError("%s: sushi-run exit %d\n%s" % (what, proc.returncode, out[-4000:]))
    return out
