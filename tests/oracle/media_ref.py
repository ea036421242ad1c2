#!/usr/bin/env python3
"""Reference tensors for the media decoders (tests/unit/test_media_*.c), computed with
the libraries a Python user would pick: PIL (decode, resize), soundfile (audio), PyAV
(video frames), and a numpy log-mel written from the SPEC §4 conventions (periodic
Hann, centred frames with reflect padding, power spectrum, Slaney mel with area
normalisation, log10(max(mel, 1e-10))) in float64.

Usage: media_ref.py FIXTURES OUT
Writes OUT/NAME.raw (little-endian, C order) and OUT/index.txt with one line per
tensor: "NAME DTYPE DIM..." (DTYPE u8, f32 or f64); extra scalars as "NAME f64 1"."""
import os
import sys

import numpy as np

fix, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
index = []


def put(name, arr, dtype):
    arr = np.ascontiguousarray(np.asarray(arr, dtype=dtype))
    arr.tofile(os.path.join(out, name + ".raw"))
    code = {np.uint8: "u8", np.float32: "f32", np.float64: "f64"}[dtype]
    index.append(" ".join([name, code] + [str(d) for d in (arr.shape or (1,))]))


# ---- images ----
from PIL import Image  # noqa: E402

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
for f in ["rgb.png", "odd.png", "gray.png", "mono1.png", "rgba.png", "palette.png", "rgb.jpg",
          "rgb444.jpg", "progressive.jpg", "gray.jpg", "rgb16.png", "graya16.png"]:
    img = Image.open(os.path.join(fix, f)).convert("RGB")
    put("img_" + f, np.asarray(img), np.uint8)
for f in ["rgb.png", "odd.png", "rgb.jpg"]:
    img = Image.open(os.path.join(fix, f)).convert("RGB")
    for fname, flt in FILTERS.items():
        for (w, h) in [(224, 224), (96, 64), (700, 500)]:
            put(f"resize_{fname}_{w}x{h}_{f}", np.asarray(img.resize((w, h), flt)), np.uint8)

# ---- audio ----
import soundfile as sf  # noqa: E402

for f in ["stereo44k.wav", "sine44k.wav", "tone16k.flac", "tone.ogg", "speech16k.wav"]:
    x, rate = sf.read(os.path.join(fix, f), dtype="float32", always_2d=True)
    put("audio_" + f, x.mean(axis=1, dtype=np.float64), np.float64)
    put("rate_" + f, [rate], np.float64)


def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-30) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def log_mel(x, sr, n_fft=400, hop=160, n_mels=80, fmin=0.0, fmax=None):
    fmax = sr / 2 if fmax is None else fmax
    x = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (len(x) - n_fft) // hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)          # periodic Hann
    frames = np.stack([x[i * hop:i * hop + n_fft] * win for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                        # [frames, bins]
    fft_f = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    w = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    w *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]                            # Slaney area norm
    return np.log10(np.maximum(w @ power.T, 1e-10))                          # [n_mels, frames]


for f in ["tone16k.flac", "speech16k.wav"]:
    x, rate = sf.read(os.path.join(fix, f), dtype="float32", always_2d=True)
    put("mel_" + f, log_mel(x.mean(axis=1, dtype=np.float64), rate), np.float64)
x = np.sin(np.arange(1000) * 0.05)                                           # a short signal
put("mel_short_in", x, np.float64)
put("mel_short", log_mel(x.astype(np.float32).astype(np.float64), 16000, n_fft=256, hop=100, n_mels=40,
                         fmin=50.0, fmax=7000.0), np.float64)

# ---- video ----
import av  # noqa: E402

for f, n in [("testsrc.mp4", 8), ("testsrc.mkv", 5), ("long.mp4", 4)]:
    with av.open(os.path.join(fix, f)) as c:
        st = c.streams.video[0]
        tb = float(st.time_base)
        dur = st.duration * tb if st.duration else c.duration / 1e6
        start = st.start_time or 0
        frames = [((fr.pts - start) * tb, fr.to_ndarray(format="rgb24")) for fr in c.decode(st)]
    frames.sort(key=lambda p: p[0])
    picks, times = [], []
    for i in range(n):
        t = (i + 0.5) * dur / n
        k = max([j for j, (ft, _) in enumerate(frames) if ft <= t] or [0])
        picks.append(frames[k][1].transpose(2, 0, 1))
        times.append(frames[k][0])
    put("video_" + f, np.stack(picks), np.uint8)
    put("vtimes_" + f, times, np.float64)
    put("vlast224_bilinear_" + f, np.asarray(Image.fromarray(picks[-1].transpose(1, 2, 0)).resize(
        (224, 224), Image.BILINEAR)).transpose(2, 0, 1), np.uint8)

with open(os.path.join(out, "index.txt"), "w") as fh:
    fh.write("\n".join(index) + "\n")
print(f"media_ref: {len(index)} tensors in {out}")
