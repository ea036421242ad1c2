#!/usr/bin/env bash
# Writes the media test fixtures into DIR (default $BUILD/media-fixtures): PIL-made
# PNG/JPEG images, ffmpeg `sine`/`testsrc` audio and video, espeak-ng speech, and
# procedurally written OBJ/PLY/STL/glTF meshes, and in DIR/ref the reference tensors of
# tests/oracle/media_ref.py. Nothing is downloaded. The folder is
# built under a temporary name and renamed, so concurrent callers see it whole or not
# at all; an existing complete folder of this version is kept.
#   scripts/gen-media-fixtures.sh [DIR]
# Needs python3 with PIL and numpy, ffmpeg, espeak-ng (exit 77 when one is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-${BUILD:-build}/media-fixtures}
# the stamp: a folder made by another version of this script or the oracle is redone
STAMP=$(cat scripts/gen-media-fixtures.sh tests/oracle/media_ref.py | md5sum | cut -c1-32)
[ "$(cat "$DIR/.complete" 2>/dev/null)" = "$STAMP" ] && exit 0
PY=${SUSHI_PYTHON:-/usr/bin/python3}
for tool in ffmpeg espeak-ng; do
  command -v "$tool" >/dev/null || { echo "gen-media-fixtures: $tool missing" >&2; exit 77; }
done
"$PY" -c 'import PIL, numpy' 2>/dev/null || { echo "gen-media-fixtures: python3 PIL/numpy missing" >&2; exit 77; }

mkdir -p "$(dirname "$DIR")"
TMP=$(mktemp -d "$DIR.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FF="ffmpeg -hide_banner -loglevel error -nostdin -y"

# ---- images (PIL) ----
"$PY" - "$TMP" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(7)
def photo(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)
    g = 255 * x / max(w - 1, 1)
    b = 128 + 120 * np.sin((x + y) / 11.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    img[h // 3:h // 2, w // 4:w // 2] = [250, 20, 30]          # hard edges
    return np.clip(img, 0, 255).astype(np.uint8)
rgb = photo(480, 640)
Image.fromarray(rgb).save(f"{d}/rgb.png")
Image.fromarray(photo(257, 333)).save(f"{d}/odd.png")
Image.fromarray(rgb).convert("L").save(f"{d}/gray.png")
Image.fromarray(rgb).convert("1").save(f"{d}/mono1.png")
rgba = np.concatenate([rgb, rng.integers(0, 256, (480, 640, 1), dtype=np.uint8)], -1)
Image.fromarray(rgba, "RGBA").save(f"{d}/rgba.png")
pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=64)
pal.save(f"{d}/palette.png", transparency=3)
Image.fromarray(rgb).save(f"{d}/rgb.jpg", quality=90)
Image.fromarray(rgb).save(f"{d}/rgb444.jpg", quality=95, subsampling=0)
Image.fromarray(photo(257, 333)).save(f"{d}/progressive.jpg", quality=85, progressive=True)
Image.fromarray(rgb).convert("L").save(f"{d}/gray.jpg", quality=90)
PYEOF

# 16-bit RGB and 16-bit grey+alpha PNGs (PIL does not write them)
$FF -f lavfi -i "testsrc=size=96x64" -frames:v 1 -pix_fmt rgb48be "$TMP/rgb16.png"
$FF -f lavfi -i "testsrc=size=96x64" -frames:v 1 -pix_fmt ya16be "$TMP/graya16.png"

# ---- audio ----
$FF -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=1.5" -f lavfi \
    -i "sine=frequency=1000:sample_rate=44100:duration=1.5" -filter_complex amerge=inputs=2 \
    -c:a pcm_s16le "$TMP/stereo44k.wav"
$FF -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=1" -c:a pcm_f32le "$TMP/sine44k.wav"
$FF -f lavfi -i "sine=frequency=700:sample_rate=16000:duration=1.2" -c:a flac "$TMP/tone16k.flac"
$FF -f lavfi -i "sine=frequency=500:sample_rate=22050:duration=1" -c:a libvorbis "$TMP/tone.ogg"
espeak-ng -w "$TMP/speech.wav" "The pass key is four eight two one three. Remember it."
$FF -i "$TMP/speech.wav" -ar 16000 -c:a pcm_s16le "$TMP/speech16k.wav"

# ---- video ----
$FF -f lavfi -i "testsrc=size=320x240:rate=25:duration=2" -c:v libx264 -pix_fmt yuv420p -g 12 "$TMP/testsrc.mp4"
$FF -f lavfi -i "testsrc=size=176x144:rate=10:duration=3" -c:v mpeg4 -q:v 4 "$TMP/testsrc.mkv"
$FF -f lavfi -i "testsrc=size=96x64:rate=10:duration=30" -c:v libx264 -pix_fmt yuv420p -g 40 "$TMP/long.mp4"

# ---- meshes ----
"$PY" - "$TMP" <<'PYEOF'
import base64, json, struct, sys
d = sys.argv[1]
# a cube from (-1,2,3) to (1,4,5), outward winding: centre (0,3,4), radius sqrt(3)
v = [(x, y, z) for x in (-1, 1) for y in (2, 4) for z in (3, 5)]
quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
with open(f"{d}/cube.obj", "w") as f:
    f.write("# unit test cube\n")
    for p in v:
        f.write("v %g %g %g\n" % p)
    for q in quads:
        f.write("f %d %d %d\nf %d %d %d\n" % (q[0] + 1, q[1] + 1, q[2] + 1, q[0] + 1, q[2] + 1, q[3] + 1))
# a tetrahedron in ASCII PLY
tv = [(0, 0, 0), (2, 0, 0), (0, 2, 0), (0, 0, 2)]
tf = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
with open(f"{d}/tetra.ply", "w") as f:
    f.write("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
            "property float z\nelement face 4\nproperty list uchar int vertex_indices\nend_header\n")
    for p in tv:
        f.write("%g %g %g\n" % p)
    for t in tf:
        f.write("3 %d %d %d\n" % t)
# binary STL: two disjoint triangles in the plane z = 0, areas 1 and 3 (normal +z)
tris = [((0, 0, 0), (1, 0, 0), (0, 2, 0)), ((3, 0, 0), (6, 0, 0), (3, 2, 0))]
with open(f"{d}/two.stl", "wb") as f:
    f.write(b"sushi two triangles".ljust(80, b" "))
    f.write(struct.pack("<I", len(tris)))
    for t in tris:
        f.write(struct.pack("<3f", 0, 0, 1))
        for p in t:
            f.write(struct.pack("<3f", *p))
        f.write(b"\0\0")
# glTF 2.0 with an embedded buffer: the same two triangles under a node that moves them by +10 in x
pos = [c for t in tris for p in t for c in p]
buf = struct.pack("<%df" % len(pos), *pos)
gltf = {
    "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
    "nodes": [{"mesh": 0, "translation": [10, 0, 0]}],
    "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 4}]}],
    "buffers": [{"byteLength": len(buf),
                 "uri": "data:application/octet-stream;base64," + base64.b64encode(buf).decode()}],
    "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(buf)}],
    "accessors": [{"bufferView": 0, "componentType": 5126, "count": 6, "type": "VEC3",
                   "min": [0, 0, 0], "max": [6, 2, 0]}],
}
with open(f"{d}/two.gltf", "w") as f:
    json.dump(gltf, f)
PYEOF

# ---- references (PIL, soundfile, PyAV, numpy log-mel) for the unit tests ----
if "$PY" -c 'import soundfile, av' 2>/dev/null; then
  "$PY" tests/oracle/media_ref.py "$TMP" "$TMP/ref" >/dev/null
else
  echo "gen-media-fixtures: python3 soundfile/av missing: no references" >&2
fi

echo "$STAMP" > "$TMP/.complete"
[ -d "$DIR" ] && [ "$(cat "$DIR/.complete" 2>/dev/null)" != "$STAMP" ] && rm -rf "$DIR"
if ! mv -T "$TMP" "$DIR" 2>/dev/null; then
  [ "$(cat "$DIR/.complete" 2>/dev/null)" = "$STAMP" ] || { echo "gen-media-fixtures: cannot create $DIR" >&2; exit 1; }
fi
trap - EXIT
echo "gen-media-fixtures: wrote $DIR"
