"""pipelines/multistage.yaml end to end under sushi-run, tiny: a small random DeepSeek
teacher with the byte-level tokenizer (tests/oracle/deepseek_ref.py, vocab 257) and the
shipped configs/multistage/tiny-cpu.yaml with a few steps per phase (vars.extra).

  text    distill (KD) -> cot-data (teacher batch generation) -> cot -> finetune, the
          image and mesh phases skipped: every phase completes; cot.jsonl has one
          {"text"} line per prompt starting with that prompt; each later phase started
          from the previous one's weights (its step counter restarts: the final
          trainer_state step equals that phase's steps) and the fine-tuning phase left
          the embedding and block 0 bit-identical to the cot phase's checkpoint while
          block 1 changed.
  media   (when build/media-fixtures exists) all six phases, image and mesh with the
          media manifests: the image checkpoint has the vision encoder, the mesh checkpoint
          vision and mesh encoders, its 5 vision/boundary tensors started from the image
          phase's (the trainer log says so), and the later phases keep the encoders."""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import run_supervised, BIN, ROOT, tmpdir, tail  # noqa: E402
from test_trainer_pipeline import read_safetensors  # noqa: E402

RUN = os.path.join(BIN, "sushi-run")
ORACLE = os.path.join(ROOT, "tests", "oracle", "deepseek_ref.py")
STEPS = 4
PROMPTS = os.path.join(ROOT, "configs", "multistage", "cot-prompts.jsonl")
# where the shipped manifests (configs/multistage/*-captions.jsonl) point, whatever $BUILD is
FIXTURES = os.path.join(ROOT, "build", "media-fixtures")
EVAL_CONFIG = """run: {{ dir: {d}/eval }}
data:
  seq_len: 32
  batch_size: 2
  tokenizer: {tok}
  sources: [ {{ name: fortunes, path: /usr/share/games/fortunes, exclude: "*[.v]*", format: text, separator: "%", weight: 1.0 }} ]
eval:
  batches: 1
  needle: {{ lengths: [32], depths: [0.5], trials: 1 }}
  data:
    seed: 7
    sources: [ {{ name: love, path: /usr/share/games/fortunes/love, format: text, separator: "%", weight: 1.0 }} ]
"""


def setup(d):
    r = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    if r.returncode != 0:
        print("skip: PyTorch is not installed")
        sys.exit(77)
    teacher = os.path.join(d, "teacher")
    subprocess.run([sys.executable, ORACLE, "write", teacher, "v2", "3", "--vocab", "257"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, ORACLE, "tokenizer", os.path.join(teacher, "tokenizer.json")], check=True)
    return teacher


def multistage(d, name, teacher, extra_vars):
    run = os.path.join(d, name)
    extra = "[train.steps=%d, train.save_every=2, train.log_every=1, train.warmup_steps=1, data.seq_len=32, " \
            "train.heartbeat_ms=200, train.dead_after_ms=3000]" % STEPS
    args = [RUN, "pipelines/multistage.yaml", "vars.run=" + run, "vars.teacher=" + teacher, "vars.extra=" + extra,
            "vars.cot_max_new=12", "start_timeout_s=30", "stop_grace_s=5"] + extra_vars
    out = run_supervised(args, run, name)
    return run, out


def step_of(ckpt):
    return json.load(open(os.path.join(ckpt, "trainer_state.json")))["step"]


def test_text(d, teacher):
    t0 = time.time()
    run, out = multistage(d, "text", teacher, ["vars.skip_image=/", "vars.skip_mesh=/",
                                               "vars.cot_from=${run}/distill/student", "vars.encoders=[]"])
    for phase in ("distill", "cot", "finetune"):
        ck = os.path.join(run, phase, "student")
        assert step_of(ck) == STEPS, (phase, step_of(ck))
    assert not os.path.exists(os.path.join(run, "image")) and not os.path.exists(os.path.join(run, "mesh"))
    prompts = [json.loads(l)["prompt"] for l in open(PROMPTS) if l.strip()]
    cot = [json.loads(l) for l in open(os.path.join(run, "cot.jsonl"))]
    assert len(cot) == len(prompts), (len(cot), len(prompts))
    for c, p in zip(cot, prompts):
        assert set(c) == {"text"} and c["text"].startswith(p), (c, p)
    assert any(len(c["text"]) > len(p) for c, p in zip(cot, prompts)), "nothing generated"
    # the cot phase read the generated file (its loader indexed the source `cot`)
    assert "cot" in open(os.path.join(run, "logs", "loader.log")).read()
    # init_from: each later phase logged it; fine-tuning froze the embedding and block 0
    tlog = open(os.path.join(run, "logs", "trainer.log")).read()
    for src in ("distill", "cot"):
        assert "init_from %s: weights loaded" % os.path.join(run, src, "student") in tlog, tail(
            os.path.join(run, "logs", "trainer.log"), 40)
    a = read_safetensors(os.path.join(run, "cot", "student", "model.safetensors"))
    b = read_safetensors(os.path.join(run, "finetune", "student", "model.safetensors"))
    frozen = [n for n in a if n == "model.embed_tokens.weight" or n.startswith("model.layers.0.")]
    assert len(frozen) == 10, frozen
    for n in frozen:
        assert (a[n] == b[n]).all(), "frozen %s changed in fine-tuning" % n
    moved = [n for n in a if n.startswith("model.layers.1.") and not (a[n] == b[n]).all()]
    assert moved, "fine-tuning changed nothing in block 1"
    # the cot phase started from distill's weights: block 0 there differs from a fresh init
    # but after only STEPS steps at lr 1e-3 it stays close to distill's
    c = read_safetensors(os.path.join(run, "distill", "student", "model.safetensors"))
    w = "model.layers.0.self_attn.q_proj.weight"
    assert abs(a[w] - c[w]).max() < 0.05 and not (a[w] == c[w]).all(), abs(a[w] - c[w]).max()
    print("text: ok in %.1f s (%d cot lines, %d frozen tensors identical)" % (time.time() - t0, len(cot), len(frozen)))


def test_media(d, teacher):
    need = ["rgb.png", "rgb.jpg", "palette.png", "cube.obj", "tetra.ply"]
    if not all(os.path.exists(os.path.join(FIXTURES, n)) for n in need):
        r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen-media-fixtures.sh"), FIXTURES], cwd=ROOT)
        if r.returncode == 77:
            print("media: skipped (the fixture tools are missing: ffmpeg, espeak-ng or PIL)")
            return
        assert r.returncode == 0, "gen-media-fixtures.sh exit %d" % r.returncode
    t0 = time.time()
    run, out = multistage(d, "media", teacher, ["vars.skip_image=/nonexistent", "vars.skip_mesh=/nonexistent"])
    img = read_safetensors(os.path.join(run, "image", "student", "model.safetensors"))
    mesh = read_safetensors(os.path.join(run, "mesh", "student", "model.safetensors"))
    assert "model.vision.patch_proj.weight" in img and "model.mesh.fc1.weight" not in img, sorted(img)[:5]
    assert "model.vision.patch_proj.weight" in mesh and "model.mesh.fc1.weight" in mesh
    tlog = open(os.path.join(run, "logs", "trainer.log")).read()
    assert "init_from %s: a text-only checkpoint" % os.path.join(run, "distill", "student") in tlog
    assert "init_from %s: 5 of 10 encoder tensors from the checkpoint" % os.path.join(run, "image", "student") in tlog, \
        [l for l in tlog.splitlines() if "init_from" in l]
    # the weights that multiply the pixels / points only get a gradient from real inputs
    # (rows without the modality are zeros): nonzero moments mean the media arrived
    oi = read_safetensors(os.path.join(run, "image", "student", "optimizer.safetensors"))
    om = read_safetensors(os.path.join(run, "mesh", "student", "optimizer.safetensors"))
    assert abs(oi["model.vision.patch_proj.weight.exp_avg_sq"]).max() > 0, "no image reached the trainer"
    assert abs(om["model.mesh.fc1.weight.exp_avg_sq"]).max() > 0, "no mesh reached the trainer"
    fin = read_safetensors(os.path.join(run, "finetune", "student", "model.safetensors"))
    assert "model.mesh.fc1.weight" in fin, "the later phases keep the encoders"
    # eval scores a multimodal checkpoint's language model on held-out text
    tok = os.path.join(teacher, "tokenizer.json")
    cfg = os.path.join(d, "eval.yaml")
    with open(cfg, "w") as f:
        f.write(EVAL_CONFIG.format(d=d, tok=tok))
    r = subprocess.run([os.path.join(BIN, "sushi-eval"), "--config", cfg, "--once",
                        os.path.join(run, "finetune", "student")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
    assert res["ppl"] > 1 and res["tokens"] > 0, res
    print("media: ok in %.1f s" % (time.time() - t0))


def main():
    for p in ("sushi-run", "sushi-loader", "sushi-teacher", "sushi-trainer"):
        if not os.path.exists(os.path.join(BIN, p)):
            print("skip: %s not built" % p)
            return 77
    d = tmpdir()
    try:
        teacher = setup(d)
        which = sys.argv[1:] or ["text", "media"]
        if "text" in which:
            test_text(d, teacher)
        if "media" in which:
            test_media(d, teacher)
        return 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
