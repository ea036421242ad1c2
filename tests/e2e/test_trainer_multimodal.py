"""sushi-trainer with a multimodal student (model.encoders: image) in direct mode against
a fake loader that sends image [N,3,H,W] u8 + image_row [N] i32 with each batch (only
some rows have an image; the others get zeros). Scenarios:
  first   - the first step's loss equals an independent float64 PyTorch computation
            (tests/oracle/encoder_ref.py: prefix [begin | image patches | end] + student)
            from the step-0 checkpoint, with the pixels normalised and patchified here;
            the checkpoint holds the encoder tensors, their AdamW moments and
            config.json's sushi.encoders; the loss decreases over 16 steps.
  kd      - scored batches with the image tensors through the trainer's ROUTER: the
            first step's KD + CE loss (text positions only) equals PyTorch's.
  resume  - SIGKILL after the step-3 checkpoint, restart: losses.tsv and the final
            checkpoint (weights and moments, encoders included) are identical to an
            uninterrupted run's.
  stages  - a text-only run, then a multimodal stage with train.init_from (its encoders
            start fresh) and train.freeze_layers 1: the embedding and block 0 stay
            bit-identical to the previous stage's, block 1 and the encoders change, and
            the new stage's step counter and schedule start at 0. Resuming the text-only
            checkpoint with encoders switched on continues at its step, encoders fresh."""
import os
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_trainer_pipeline import *  # noqa: E402,F401,F403
from test_trainer_pipeline import read_safetensors  # noqa: E402

P_SIDE, GRID = 4, 2           # 4x4 patches, 2x2 grid: 8x8 images, patch_dim 48
HW = P_SIDE * GRID
ENC = {"image": True, "patch_dim": P_SIDE * P_SIDE * 3, "grid_rows": GRID, "grid_cols": GRID}
IMAGE_ROWS = [0]              # rows of each batch with an image (B = 2)


def image_tensors(id):
    r = np.random.RandomState(5000 + id % 2)
    img = r.randint(0, 256, (len(IMAGE_ROWS), 3, HW, HW)).astype(np.uint8)
    return {"image": img, "image_row": np.array(IMAGE_ROWS, np.int32)}


def mm_batch(id):
    """Two distinct batches, repeated (the loss must fall), each with its image rows."""
    t = make_batch(id % 2)
    t["sample_ids"] = (id * B + np.arange(B)).astype(np.uint64)
    t.update(image_tensors(id))
    return encode("batch", id=id, cursor=id, stage="loader", meta={"next": id + 1}, tensors=t)


def mm_config(d, steps, save_every, encoders=True, extra=None):
    cfg_path, cfg = run_config(d, direct=True, steps=steps, save_every=save_every, window=4, extra_train=extra)
    cfg["model"]["n_layers"] = 2
    cfg["model"]["max_seq"] = 32
    if encoders:
        cfg["model"]["encoders"] = dict(ENC)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    return cfg_path, cfg


def serve(loader, proc, total, until=None, timeout=40):
    """Sends batches from the trainer's `next` (rewinding on every hello) while it has credits."""
    seen, cursor, t0 = 0, 0, time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        loader.poll(5)
        if until and until():
            return True
        if len(loader.hellos) != seen:
            seen = len(loader.hellos)
            cursor = loader.hellos[-1]["next"]
        if loader.route is not None and loader.credit > 0 and cursor < total and cursor < loader.next + 4:
            loader.credit -= 1
            loader.send(mm_batch(cursor))
            cursor += 1
    return False


def losses_of(d):
    return [float(l.split("\t")[1]) for l in records(d)[1]]


def reference_first_loss(weights_dir, cfg, kd=False):
    """float64 PyTorch: normalise + patchify the pixels, encoder prefix, student, CE
    (and with kd, the teacher's top-K term on the text positions)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
    import torch
    import torch.nn.functional as F
    import encoder_ref
    m, tr = cfg["model"], cfg["train"]
    W = {k: torch.tensor(v.astype(np.float64)) for k, v in
         read_safetensors(os.path.join(weights_dir, "model.safetensors")).items()}
    b, im = make_batch(0), image_tensors(0)
    x = np.zeros((B, GRID * GRID, ENC["patch_dim"]))
    for i, row in enumerate(im["image_row"]):
        a = (im["image"][i].astype(np.float64) / 255.0 - 0.5) / 0.5           # [3, H, W]
        a = a.transpose(1, 2, 0).reshape(GRID, P_SIDE, GRID, P_SIDE, 3)      # (r, py, c, px, ch)
        x[row] = a.transpose(0, 2, 1, 3, 4).reshape(GRID * GRID, -1)          # raster patches, (py, px, ch)
    e = dict(ENC)
    prefix = encoder_ref.prefix_fwd(W, {"image": torch.tensor(x)}, e)
    c = {"n_heads": m["n_heads"], "n_kv_heads": m["n_kv_heads"], "d_head": m["d_model"] // m["n_heads"],
         "n_layers": m["n_layers"], "window": 0, "rope_theta": m["rope_theta"], "norm_eps": m["norm_eps"],
         "tied": True}
    ids = torch.tensor(b["tokens"].astype(np.int64))
    logits = encoder_ref.student_logits(W, c, prefix, ids)
    z = logits.reshape(B * T, -1)[:, :V]
    y = torch.tensor(b["targets"].astype(np.int64)).reshape(-1)
    valid = y >= 0
    row = F.cross_entropy(z, y.clamp(min=0), label_smoothing=tr["label_smoothing"], reduction="none")
    if kd:
        k = tr["kd"]
        ids_k, lp, tail = teacher_topk(0, k["temperature"])
        ck = {"temperature": k["temperature"], "mode": ["forward", "reverse", "jsd"].index(k["mode"]),
              "jsd_beta": k["jsd_beta"]}
        kdl = encoder_ref.kd_loss(z, torch.tensor(ids_k.reshape(-1, K).astype(np.int64)),
                                  torch.tensor(lp.reshape(-1, K).astype(np.float64)),
                                  torch.tensor(tail.reshape(-1).astype(np.float64)), ck)
        row = k["alpha"] * kdl + (1 - k["alpha"]) * row
    return ((row * valid).sum() / valid.sum()).item()


def test_first(ctx):
    d = tmpdir()
    try:
        cfg_path, cfg = mm_config(d, steps=16, save_every=100, extra={"save_initial": True})
        loader = FakeLoader(ctx, d)
        log = os.path.join(d, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg_path], log)
        try:
            loader.wait_hello()
            ck = os.path.join(d, "ckpt")
            wait_for(lambda: os.path.exists(os.path.join(ck, "trainer_state.json")), 20, "the step-0 checkpoint")
            shutil.copytree(ck, os.path.join(d, "step0"))
            serve(loader, proc, 16)
            finish(proc, log)
        finally:
            stop(proc)
            loader.sock.close()
        losses = losses_of(d)
        assert len(losses) == 16, losses
        ref = reference_first_loss(os.path.join(d, "step0"), cfg)
        assert abs(losses[0] - ref) < 1e-4 * max(1.0, abs(ref)), "first loss %.6f, PyTorch %.6f" % (losses[0], ref)
        assert np.mean(losses[-3:]) < losses[0] - 0.5, "loss did not decrease: %s" % losses
        w = read_safetensors(os.path.join(d, "ckpt", "model.safetensors"))
        w0 = read_safetensors(os.path.join(d, "step0", "model.safetensors"))
        o = read_safetensors(os.path.join(d, "ckpt", "optimizer.safetensors"))
        for name, shape in [("model.vision.patch_proj.weight", (32, 48)), ("model.vision.patch_proj.bias", (32,)),
                            ("model.vision.row_embed.weight", (GRID, 32)), ("model.vision.col_embed.weight", (GRID, 32)),
                            ("model.prefix.boundary.weight", (2, 32))]:
            assert w[name].shape == shape, (name, w[name].shape)
            assert not np.array_equal(w[name], w0[name]), "%s never updated" % name
            assert np.abs(o[name + ".exp_avg_sq"]).max() > 0, "%s: no AdamW moments" % name
        hf = json.load(open(os.path.join(d, "ckpt", "config.json")))
        assert hf["sushi"]["encoders"]["patch_dim"] == 48 and hf["sushi"]["encoders"]["image"], hf["sushi"]
        print("first: ok (loss %.5f = PyTorch %.5f; %.3f -> %.3f)" % (losses[0], ref, losses[0], losses[-1]))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_kd(ctx):
    """Scored batches (the teacher passes the image tensors through) on the trainer's
    ROUTER: KD + CE on the text positions only, equal to PyTorch's first-step loss."""
    d = tmpdir()
    try:
        kd = {"alpha": 0.6, "mode": "reverse", "temperature": 1.5, "jsd_beta": 0.5}
        cfg_path, cfg = run_config(d, direct=False, steps=2, save_every=5, window=4,
                                   extra_train={"save_initial": True, "kd": kd})
        cfg["model"]["n_layers"] = 2
        cfg["model"]["max_seq"] = 32
        cfg["model"]["encoders"] = dict(ENC)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=1)
        loader = FakeLoader(ctx, d)
        teacher = ctx.socket(zmq.DEALER)
        teacher.setsockopt(zmq.LINGER, 0)
        teacher.connect("ipc://%s/trainer.sock" % d)
        log = os.path.join(d, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg_path], log)
        try:
            loader.wait_hello()
            wait_for(lambda: (loader.poll(), len(loader.acks) >= 1)[1], 20, "the step-0 ack")
            shutil.copytree(os.path.join(d, "ckpt"), os.path.join(d, "step0"))
            teacher.send_multipart(encode("hello", stage="teacher.1", meta={"role": "worker", "credit": 2}))
            for id in [0, 1]:
                teacher.send_multipart(scored_msg(id, kd["temperature"], tensors=image_tensors(id)))
            t0 = time.time()
            while proc.poll() is None and time.time() - t0 < 30:
                loader.poll()
            finish(proc, log)
        finally:
            stop(proc)
            teacher.close()
            loader.sock.close()
        got = losses_of(d)[0]
        want = reference_first_loss(os.path.join(d, "step0"), cfg, kd=True)
        ce = reference_first_loss(os.path.join(d, "step0"), cfg, kd=False)
        assert abs(got - want) < 1e-4 * max(1.0, abs(want)), "first loss %.6f, PyTorch %.6f" % (got, want)
        assert abs(want - ce) > 1e-2, (want, ce)
        print("kd: ok (first loss %.5f = PyTorch KD+CE %.5f; CE alone %.5f)" % (got, want, ce))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_resume(ctx, d, kill_at=None):
    cfg_path, _ = mm_config(d, steps=8, save_every=3)
    loader = FakeLoader(ctx, d)
    log = os.path.join(d, "trainer.log")
    proc = spawn(["sushi-trainer", "--config", cfg_path], log)
    try:
        if kill_at is not None:
            assert serve(loader, proc, kill_at, until=lambda: len(records(d)[1]) >= kill_at), tail(log)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert ckpt_state(d)["step"] == 3, ckpt_state(d)
            proc = spawn(["sushi-trainer", "--config", cfg_path], log)
            loader.wait_hello(2)
            assert loader.hellos[1]["next"] == 3, loader.hellos[1]
        serve(loader, proc, 8)
        finish(proc, log)
    finally:
        stop(proc)
        loader.sock.close()
    ck = os.path.join(d, "ckpt")
    return (records(d)[1], read_safetensors(os.path.join(ck, "model.safetensors")),
            read_safetensors(os.path.join(ck, "optimizer.safetensors")))


def test_resume(ctx):
    d1, d2 = tmpdir(), tmpdir()
    try:
        la, wa, oa = run_resume(ctx, d1)
        lb, wb, ob = run_resume(ctx, d2, kill_at=5)
        assert la == lb, "losses differ after resume:\n%s\n%s" % (la, lb)
        assert sorted(wa) == sorted(wb) and sorted(oa) == sorted(ob)
        for name in wa:
            assert np.array_equal(wa[name], wb[name]), "weights %s differ after resume" % name
        for name in oa:
            assert np.array_equal(oa[name], ob[name]), "moments %s differ after resume" % name
        assert "model.vision.patch_proj.weight.exp_avg" in oa
        print("resume: ok (%d steps, %d tensors identical)" % (len(la), len(wa) + len(oa)))
    finally:
        shutil.rmtree(d1, ignore_errors=True)
        shutil.rmtree(d2, ignore_errors=True)


def text_batch(id):
    return encode("batch", id=id, cursor=id, stage="loader", meta={"next": id + 1}, tensors=make_batch(id))


def test_stages(ctx):
    d1, d2 = tmpdir(), tmpdir()
    try:
        # stage 1: text only
        cfg1, _ = mm_config(d1, steps=3, save_every=3, encoders=False)
        loader = FakeLoader(ctx, d1)
        log = os.path.join(d1, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg1], log)
        try:
            loader.wait_hello()
            for id in range(3):
                wait_for(lambda: (loader.poll(), loader.credit > 0)[1], 20, "credit")
                loader.credit -= 1
                loader.send(text_batch(id))
            finish(proc, log)
        finally:
            stop(proc)
            loader.sock.close()
        prev = read_safetensors(os.path.join(d1, "ckpt", "model.safetensors"))
        # stage 2: image encoders on, weights from stage 1, block 0 and the embedding frozen
        cfg2, _ = mm_config(d2, steps=4, save_every=100, extra={
            "init_from": os.path.join(d1, "ckpt"), "freeze_layers": 1, "lr": 5e-3, "warmup_steps": 0})
        loader = FakeLoader(ctx, d2)
        log = os.path.join(d2, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg2], log)
        try:
            serve(loader, proc, 4)
            finish(proc, log)
        finally:
            stop(proc)
            loader.sock.close()
        text = open(log).read()
        assert "text-only checkpoint" in text and "encoders start freshly initialised" in text, tail(log)
        w = read_safetensors(os.path.join(d2, "ckpt", "model.safetensors"))
        frozen = [n for n in prev if n == "model.embed_tokens.weight" or n.startswith("model.layers.0.")]
        assert len(frozen) == 10, frozen
        for n in frozen:
            assert np.array_equal(w[n], prev[n]), "frozen %s changed" % n
        for n in [n for n in prev if n.startswith("model.layers.1.")] + ["model.norm.weight"]:
            assert not np.array_equal(w[n], prev[n]), "trainable %s did not change" % n
        assert "model.vision.patch_proj.weight" in w
        st = ckpt_state(d2)
        assert st["step"] == 4 and st["next"] == 4, st
        # a fresh schedule: warmup 0, so step 1 of this stage ran at its peak lr
        assert re.search(r"step +1/4 .* lr 5\.000e-03", text), tail(log)
        # resuming a text-only checkpoint with encoders switched on: the text model and its
        # moments continue from step 3, the encoders start fresh (logged)
        cfg3, _ = mm_config(d1, steps=5, save_every=5)
        loader = FakeLoader(ctx, d1)
        log = os.path.join(d1, "trainer3.log")
        proc = spawn(["sushi-trainer", "--config", cfg3], log)
        try:
            loader.wait_hello()
            assert loader.hellos[0]["next"] == 3, loader.hellos[0]
            serve(loader, proc, 5)
            finish(proc, log)
        finally:
            stop(proc)
            loader.sock.close()
        assert "a text-only checkpoint; this model's encoders start freshly initialised" in open(log).read(), tail(log)
        assert ckpt_state(d1)["step"] == 5 and len(records(d1)[1]) == 5, ckpt_state(d1)
        assert "model.vision.patch_proj.weight" in read_safetensors(os.path.join(d1, "ckpt", "model.safetensors"))
        print("stages: ok (init_from, %d frozen tensors identical, encoders fresh; text-only resume)" % len(frozen))
    finally:
        shutil.rmtree(d1, ignore_errors=True)
        shutil.rmtree(d2, ignore_errors=True)


def main():
    ctx = zmq.Context()
    try:
        which = sys.argv[1:] or ["first", "kd", "resume", "stages"]
        for name in which:
            globals()["test_" + name](ctx)
    finally:
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
