"""Multimodal distillation through real teacher replicas, under sushi-run: loader (an
image + mesh caption manifest over the media fixtures, and a fortunes text source) -> two
`sushi-teacher pipeline` replicas (a small random DeepSeek teacher from
tests/oracle/deepseek_ref.py with its byte-level tokenizer, the data's tokenizer too) ->
trainer with model.encoders image + mesh. Three phases of one pipeline file, same data,
seed and model:

  kd      train.kd.alpha 0.5 through the two replicas
  kd0     train.kd.alpha 0 through the two replicas (the teacher scores, the loss is CE)
  direct  no teacher: the trainer takes the loader's batches itself

Checks: every phase completes; applied.tsv applies ids 0..N-1 in order with every sample
id exactly once; the kd phase's image and mesh encoders have nonzero optimizer moments
(rows without a modality are zeros, so only real media gives them a gradient: the media
reached the trainer through the teachers); the kd0 losses equal the direct losses bit for
bit (the trainer saw the same tokens and byte-identical media tensors whether they came
through the teachers or straight from the loader; a changed pixel changes the loss); and
the kd losses differ from the kd0 losses from the first step on (KD is in the loss).

Then pipelines/multistage.yaml with the image phase's KD variant (image-kd, one replica):
the image checkpoint trained on scored batches with nonzero vision moments.
KEEP=1 keeps the temporary directory."""
import json
import math
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import run_supervised, BIN, ROOT, tmpdir, tail  # noqa: E402
from test_trainer_pipeline import read_safetensors  # noqa: E402

RUN = os.path.join(BIN, "sushi-run")
ORACLE = os.path.join(ROOT, "tests", "oracle", "deepseek_ref.py")
CORPUS = "/usr/share/games/fortunes/fortunes"
# where the shipped manifests (configs/multistage/*-captions.jsonl) point, whatever $BUILD is
FIXTURES = os.path.join(ROOT, "build", "media-fixtures")
STEPS, B, T = 6, 2, 32

CONFIG = """run: {{ dir: {d}/run }}
endpoints: {{ loader: ipc://{d}/l.sock, trainer: ipc://{d}/t.sock, events: ipc://{d}/e.sock }}
data:
  seed: 11
  seq_len: {T}
  batch_size: {B}
  threads: 1
  prefetch: 2
  needle_share: 0.0
  tokenizer: {d}/teacher/tokenizer.json
  media: {{ image: {{ height: 32, width: 32, filter: bicubic }}, mesh: {{ points: 64, seed: 0 }} }}
  sources:
    - {{ name: media, path: {d}/media.jsonl, format: manifest, weight: 0.6 }}
    - {{ name: fortunes, path: {corpus}, format: text, separator: "%", weight: 0.4 }}
loader: {{ heartbeat_ms: 200, dead_after_ms: 3000, resend_after_ms: 30000, threads: 1 }}
teacher:
  checkpoint: {d}/teacher
  backend: cpu
  topk: 8
  temperature: 1.0
  credit: 2
  threads: 1
  heartbeat_ms: 200
  dead_after_ms: 3000
model:
  n_layers: 1
  d_model: 32
  n_heads: 2
  n_kv_heads: 1
  d_ff: 64
  max_seq: 64
  vocab: 257
  tied: true
  rope_theta: 10000.0
  norm_eps: 1.0e-5
  encoders: {{ image: true, patch_dim: 192, grid_rows: 4, grid_cols: 4, mesh_tokens: 4, mesh_points: 64,
              mesh_hidden: 16 }}
train:
  backend: cpu
  steps: {steps}
  lr: 3.0e-3
  min_lr: 3.0e-4
  warmup_steps: 1
  schedule: cosine
  weight_decay: 0.1
  clip_norm: 1.0
  log_every: 1
  seed: 7
  threads: 1
  save_every: 3
  window: 4
  heartbeat_ms: 200
  dead_after_ms: 3000
  kd: {{ alpha: 0.5, mode: forward, temperature: 1.0 }}
  resume: true
  deterministic: true
"""

PIPELINE = """pipeline:
  name: multimodal-kd
  vars:
    run: {d}
    d: {d}
    config: {d}/run.yaml
    kd: [ "run.dir=${{d}}/kd", "endpoints.loader=ipc://${{d}}/kd-l.sock", "endpoints.trainer=ipc://${{d}}/kd-t.sock",
          "endpoints.events=ipc://${{d}}/kd-e.sock", "train.checkpoint_dir=${{d}}/kd/student", "train.kd.alpha=0.5" ]
    kd0: [ "run.dir=${{d}}/kd0", "endpoints.loader=ipc://${{d}}/kd0-l.sock", "endpoints.trainer=ipc://${{d}}/kd0-t.sock",
           "endpoints.events=ipc://${{d}}/kd0-e.sock", "train.checkpoint_dir=${{d}}/kd0/student", "train.kd.alpha=0" ]
    direct: [ "run.dir=${{d}}/direct", "endpoints.loader=ipc://${{d}}/dir-l.sock", "endpoints.trainer=\\"\\"",
              "endpoints.events=ipc://${{d}}/dir-e.sock", "train.checkpoint_dir=${{d}}/direct/student" ]
  start_timeout_s: 30
  stop_grace_s: 5
  max_restarts: 0
  phases:
    - name: kd
      stages:
        - {{ name: loader, args: [--config, "${{config}}", "${{kd}}"] }}
        - {{ name: teacher, replicas: 2, args: [pipeline, --config, "${{config}}", "${{kd}}"] }}
        - {{ name: trainer, main: true, args: [--config, "${{config}}", "${{kd}}"] }}
    - name: kd0
      stages:
        - {{ name: loader, args: [--config, "${{config}}", "${{kd0}}"] }}
        - {{ name: teacher, replicas: 2, args: [pipeline, --config, "${{config}}", "${{kd0}}"] }}
        - {{ name: trainer, main: true, args: [--config, "${{config}}", "${{kd0}}"] }}
    - name: direct
      stages:
        - {{ name: loader, args: [--config, "${{config}}", "${{direct}}"] }}
        - {{ name: trainer, main: true, args: [--config, "${{config}}", "${{direct}}"] }}
"""


def setup(d):
    need = ["rgb.png", "rgb.jpg", "palette.png", "cube.obj", "tetra.ply"]
    if not all(os.path.exists(os.path.join(FIXTURES, n)) for n in need):
        r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen-media-fixtures.sh"), FIXTURES], cwd=ROOT)
        if r.returncode == 77:
            print("skip: the media fixture tools are missing (ffmpeg, espeak-ng or PIL)")
            sys.exit(77)
        assert r.returncode == 0, "gen-media-fixtures.sh exit %d" % r.returncode
    teacher = os.path.join(d, "teacher")
    subprocess.run([sys.executable, ORACLE, "write", teacher, "v2", "3", "--vocab", "257"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, ORACLE, "tokenizer", os.path.join(teacher, "tokenizer.json")], check=True)
    recs = [{"image": "rgb.png", "text": "A test pattern of coloured bars."},
            {"image": "rgb.jpg", "text": "The same bars, saved as a JPEG."},
            {"mesh": "cube.obj", "text": "A cube."},
            {"image": "palette.png", "text": "A picture with few colours."},
            {"mesh": "tetra.ply", "text": "A tetrahedron."}]
    with open(os.path.join(d, "media.jsonl"), "w") as f:
        for r in recs:
            k = "image" if "image" in r else "mesh"
            f.write(json.dumps({k: os.path.join(FIXTURES, r[k]), "text": r["text"]}) + "\n")
    with open(os.path.join(d, "run.yaml"), "w") as f:
        f.write(CONFIG.format(d=d, T=T, B=B, steps=STEPS, corpus=CORPUS))
    with open(os.path.join(d, "pipeline.yaml"), "w") as f:
        f.write(PIPELINE.format(d=d))


def read_tsv(path):
    return [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]


def run_pipeline(d):
    t0 = time.time()
    out = run_supervised([RUN, os.path.join(d, "pipeline.yaml")], d, "sushi-run")
    print("pipeline completed in %.1f s" % (time.time() - t0))
    return out


def check_exactly_once(run):
    applied = read_tsv(os.path.join(run, "trainer", "applied.tsv"))
    assert [int(r[0]) for r in applied] == list(range(1, STEPS + 1)), applied
    assert [int(r[1]) for r in applied] == list(range(STEPS)), applied
    samples = [int(s) for r in applied for s in r[2].split(",")]
    assert len(samples) == len(set(samples)) == STEPS * B, samples
    assert sorted(samples) == list(range(STEPS * B)), samples
    losses = read_tsv(os.path.join(run, "trainer", "losses.tsv"))
    assert [int(r[0]) for r in losses] == list(range(1, STEPS + 1)), losses
    assert all(math.isfinite(float(r[1])) for r in losses), losses
    return applied, [r[1] for r in losses]


def test_multistage_image_kd(d):
    """pipelines/multistage.yaml with its image phase's KD variant (image-kd: one teacher
    replica), the mesh phase skipped, the cot data given: the image checkpoint has the
    vision encoder with nonzero moments, every sample id once, the teacher scored them."""
    run = os.path.join(d, "multistage")
    os.makedirs(run)
    with open(os.path.join(run, "cot.jsonl"), "w") as f:   # cot-data is skipped when present
        f.write(json.dumps({"text": "Question: why? Answer: because."}) + "\n")
    steps = 4
    extra = "[train.steps=%d, train.save_every=2, train.log_every=1, train.warmup_steps=1, data.seq_len=%d, " \
            "train.heartbeat_ms=200, train.dead_after_ms=3000]" % (steps, T)
    args = [RUN, "pipelines/multistage.yaml", "vars.run=" + run, "vars.teacher=" + os.path.join(d, "teacher"),
            "vars.extra=" + extra, "vars.skip_image=/", "vars.skip_image_kd=/nonexistent", "vars.skip_mesh=/",
            "vars.cot_from=${run}/image/student", "vars.encoders=[ \"${image_encoders}\" ]",
            "start_timeout_s=30", "stop_grace_s=5"]
    out = run_supervised(args, run, "multistage")
    assert "phase image-kd" in out, out[-3000:]
    img = os.path.join(run, "image")
    applied = read_tsv(os.path.join(img, "trainer", "applied.tsv"))
    assert [int(r[1]) for r in applied] == list(range(steps)), applied
    samples = [int(s) for r in applied for s in r[2].split(",")]
    assert sorted(samples) == list(range(steps * B)), samples
    # the image phase's trainer took scored batches from the replica (the distill phase's
    # replica logged first, then the image-kd phase's)
    tlog = open(os.path.join(run, "logs", "teacher.log")).read()
    n = [int(m) for m in re.findall(r"stopping: (\d+) batches scored", tlog)]
    assert len(n) == 2 and n[1] >= steps, n
    assert "image-trainer.sock" in tlog
    model = read_safetensors(os.path.join(img, "student", "model.safetensors"))
    assert "model.vision.patch_proj.weight" in model and "model.mesh.fc1.weight" not in model
    opt = read_safetensors(os.path.join(img, "student", "optimizer.safetensors"))
    assert abs(opt["model.vision.patch_proj.weight.exp_avg_sq"]).max() > 0, "no image reached the trainer"
    fin = read_safetensors(os.path.join(run, "finetune", "student", "model.safetensors"))
    assert "model.vision.patch_proj.weight" in fin, "the later phases keep the image encoder"
    print("multistage image-kd: ok (%d batches scored by the replica)" % n[1])


def main():
    for p in ("sushi-run", "sushi-loader", "sushi-teacher", "sushi-trainer"):
        if not os.path.exists(os.path.join(BIN, p)):
            print("skip: %s not built" % p)
            return 77
    if not os.path.exists(CORPUS):
        print("skip: %s missing (Debian package fortunes)" % CORPUS)
        return 77
    if subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode != 0:
        print("skip: PyTorch is not installed")
        return 77
    d = tmpdir()
    try:
        setup(d)
        out = run_pipeline(d)
        res = {ph: check_exactly_once(os.path.join(d, ph)) for ph in ("kd", "kd0", "direct")}
        # the same batches in every phase (same data seed, ids applied in order)
        assert res["kd"][0] == res["kd0"][0] == res["direct"][0], "applied.tsv differs between phases"
        # the two replicas scored every batch of both KD phases (their logs: one
        # "stopping: N batches scored" line per phase, kd first)
        scored = [0, 0]
        for r in ("teacher.1", "teacher.2"):
            n = [int(m) for m in re.findall(r"stopping: (\d+) batches scored", open(os.path.join(d, "logs", r + ".log")).read())]
            assert len(n) == 2, (r, n)
            scored = [scored[0] + n[0], scored[1] + n[1]]
        assert all(s >= STEPS for s in scored), scored
        # media reached the trainer through the teachers: the encoders got gradients
        opt = read_safetensors(os.path.join(d, "kd", "student", "optimizer.safetensors"))
        assert abs(opt["model.vision.patch_proj.weight.exp_avg_sq"]).max() > 0, "no image reached the trainer"
        assert abs(opt["model.mesh.fc1.weight.exp_avg_sq"]).max() > 0, "no mesh reached the trainer"
        # byte-identical tokens and media through the teachers: CE-only losses match direct mode
        assert res["kd0"][1] == res["direct"][1], "alpha 0 through the teachers != direct:\n%s\n%s" % (
            res["kd0"][1], res["direct"][1])
        # KD changed the loss from the first step on
        assert all(a != b for a, b in zip(res["kd"][1], res["kd0"][1])), (res["kd"][1], res["kd0"][1])
        print("kd losses %s\nkd0 = direct losses %s" % (res["kd"][1], res["kd0"][1]))
        test_multistage_image_kd(d)
        return 0
    finally:
        if not os.environ.get("KEEP"): subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    sys.exit(main())
