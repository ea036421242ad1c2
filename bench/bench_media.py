#!/usr/bin/env python3
"""Python side of bench/bench_media.c: the same work with the libraries a Python user
would pick, on one core: PIL decode + resize (640x480 -> 224x224 bilinear), soundfile
decode, PyAV decode + rgb24 conversion. Prints "NAME VALUE" lines (images/s, seconds of
audio per second, frames/s).
Usage: bench_media.py FIXTURES [MIN_SECONDS]"""
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import av  # noqa: E402
import soundfile as sf  # noqa: E402
from PIL import Image  # noqa: E402

fix = sys.argv[1]
min_s = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0


def rate(fn, units):
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < min_s:
        fn()
        reps += 1
    return units * reps / (time.perf_counter() - t0)


for name in ["rgb.png", "rgb.jpg"]:
    path = os.path.join(fix, name)
    print(f"decode_{name} {rate(lambda: Image.open(path).convert('RGB').load(), 1):.2f}", flush=True)
    print(f"decode_resize_{name} "
          f"{rate(lambda: Image.open(path).convert('RGB').resize((224, 224), Image.BILINEAR), 1):.2f}", flush=True)

for name in ["speech16k.wav", "tone16k.flac", "tone.ogg"]:
    path = os.path.join(fix, name)
    info = sf.info(path)
    print(f"audio_{name} {rate(lambda: sf.read(path, dtype='float32'), info.frames / info.samplerate):.2f}",
          flush=True)


def video(path):
    with av.open(path) as c:
        st = c.streams.video[0]
        st.thread_count = 1
        n = 0
        for fr in c.decode(st):
            fr.to_ndarray(format="rgb24")
            n += 1
    return n


for name in ["testsrc.mp4", "testsrc.mkv"]:
    path = os.path.join(fix, name)
    n = video(path)
    print(f"video_{name} {rate(lambda: video(path), n):.2f}", flush=True)
