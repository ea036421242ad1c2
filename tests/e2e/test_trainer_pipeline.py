"""sushi-trainer in pipeline mode against a fake loader (and a fake teacher replica)
written in Python from common/transport/protocol.h.

Batches are regenerated from their ids (numpy RandomState(id)); teacher top-K from
RandomState(10**6 + id). Scenarios here:
  direct  - batches straight from the loader, delivered 9 (beyond the window), 2, 0, 1,
            1 (duplicate), 3: applied once each in id order; credits flow; acks only
            after the checkpoint they cover exists; checkpoint announcements and the
            "end" metrics on the events socket.
  accum   - accum_steps 2: two batches per step in applied.tsv, acks on step edges.
  kd      - scored batches through the trainer's ROUTER: the first step's loss equals an
            independent PyTorch computation (tests/oracle/student_ref.py) from the
            step-0 checkpoint, and differs from cross-entropy alone; forward, reverse
            and JSD at several temperatures, alpha 0 (cross-entropy only), document masking.
Other files (test_trainer_resume.py, test_trainer_malformed.py,
test_trainer_deepseek.py) import the helpers below.
"""
import json
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import *  # noqa: E402,F401,F403

B, T, V, VP, K = 2, 16, 300, 320, 8


def make_batch(id, vocab=V):
    """The batch with this id: tokens, targets (a few -1), doc_ids, positions, ..."""
    r = np.random.RandomState(id)
    tokens = r.randint(0, vocab, (B, T)).astype(np.int32)
    targets = np.concatenate([tokens[:, 1:], r.randint(0, vocab, (B, 1))], 1).astype(np.int32)
    targets[0, -3:] = -1
    doc_ids = np.zeros((B, T), np.int32)
    doc_ids[:, T // 2:] = 1
    positions = np.tile(np.arange(T, dtype=np.int32) % (T // 2), (B, 1))
    return {"tokens": tokens, "targets": targets, "doc_ids": doc_ids, "positions": positions,
            "sample_ids": (id * B + np.arange(B)).astype(np.uint64),
            "answer_mask": np.zeros((B, T), np.uint8)}


def teacher_topk(id, temperature=1.0, vocab=V):
    """Fake teacher outputs: top-K ids, their log-probs at T, and the tail log-mass."""
    r = np.random.RandomState(10 ** 6 + id)
    z = r.randn(B, T, vocab) * 3.0 / temperature
    z -= z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ids = np.argsort(-logp, -1, kind="stable")[..., :K].astype(np.int32)
    lp = np.take_along_axis(logp, ids, -1)
    mask = np.ones_like(logp, bool)
    np.put_along_axis(mask, ids, False, -1)
    rest = np.where(mask, logp, -np.inf)
    m = rest.max(-1, keepdims=True)
    tail = (m + np.log(np.exp(rest - m).sum(-1, keepdims=True)))[..., 0]
    return ids, lp.astype(np.float32), tail.astype(np.float32)


def batch_msg(id):
    return encode("batch", id=id, cursor=id, stage="loader", meta={"next": id + 1}, tensors=make_batch(id))


def scored_msg(id, temperature=1.0, sent_temperature=None, tensors=None):
    t = make_batch(id)
    ids, lp, tail = teacher_topk(id, temperature)
    t.update({"topk_ids": ids, "topk_logprobs": lp, "tail_logprob": tail})
    if tensors:
        t.update(tensors)
    t = {k: v for k, v in t.items() if v is not None}
    temp = temperature if sent_temperature is None else sent_temperature
    return encode("scored", id=id, cursor=id, stage="teacher.1",
                  meta={"next": id + 1, "temperature": temp, "topk": K, "teacher": "teacher.1"}, tensors=t)


def run_config(d, direct, steps=4, save_every=2, window=4, extra_train=None):
    cfg = {
        "run": {"dir": os.path.join(d, "run")},
        "endpoints": {"loader": "ipc://%s/loader.sock" % d,
                      "trainer": "" if direct else "ipc://%s/trainer.sock" % d,
                      "events": "ipc://%s/events.sock" % d},
        "data": {"batch_size": B, "seq_len": T},
        "model": {"n_layers": 1, "d_model": 32, "n_heads": 4, "n_kv_heads": 2, "d_ff": 64, "max_seq": T,
                  "vocab": V, "vocab_padded": VP, "tied": True, "rope_theta": 10000.0, "norm_eps": 1e-5},
        "train": {"backend": "cpu", "threads": 1, "steps": steps, "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 2,
                  "schedule": "cosine", "weight_decay": 0.1, "clip_norm": 1.0, "accum_steps": 1,
                  "label_smoothing": 0.1, "log_every": 1, "seed": 7,
                  "checkpoint_dir": os.path.join(d, "ckpt"), "save_every": save_every, "window": window,
                  "heartbeat_ms": 100, "dead_after_ms": 1000, "resume": True, "deterministic": True,
                  "kd": {"alpha": 0.5, "mode": "forward", "temperature": 1.0, "jsd_beta": 0.5}},
    }
    if extra_train:
        cfg["train"].update(extra_train)
    path = os.path.join(d, "run.yaml")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)   # JSON is YAML
    return path, cfg


def ckpt_state(d):
    try:
        return json.load(open(os.path.join(d, "ckpt", "trainer_state.json")))
    except (OSError, ValueError):
        return None


class FakeLoader:
    """The loader's side of protocol.h, enough for the trainer: ROUTER bound at
    endpoints.loader; learns the trainer's routing id, next and credits from its hello
    and heartbeats; records acks with the checkpoint state on disk at that moment."""

    def __init__(self, ctx, d):
        self.d = d
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("ipc://%s/loader.sock" % d)
        self.route = None
        self.hellos, self.acks = [], []
        self.next, self.credit, self.heartbeats = 0, 0, 0

    def poll(self, timeout_ms=20):
        if not self.sock.poll(timeout_ms):
            return
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            kind, hdr, _ = decode(frames[1:])
            meta = hdr.get("meta") or {}
            if kind == "hello":
                self.route = frames[0]
                self.hellos.append(meta)
                self.next = meta["next"]
                self.credit = meta.get("credit", 0)
            elif kind == "heartbeat":
                self.heartbeats += 1
                self.next = meta.get("next", self.next)
                self.credit += meta.get("credit", 0)
            elif kind == "ack":
                self.acks.append((hdr["id"], ckpt_state(self.d)))

    def send(self, frames):
        self.sock.send_multipart([self.route] + list(frames))

    def send_batch(self, id, timeout=20):
        """Sends batch id to the trainer once it has a credit for it."""
        wait_for(lambda: (self.poll(), self.credit > 0)[1], timeout, "a credit for batch %d" % id)
        self.credit -= 1
        self.send(batch_msg(id))

    def wait_hello(self, n=1, timeout=20):
        wait_for(lambda: (self.poll(), len(self.hellos) >= n)[1], timeout, "trainer hello #%d" % n)


class Events:
    """SUB on endpoints.events."""

    def __init__(self, ctx, d):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect("ipc://%s/events.sock" % d)
        self.msgs = []

    def drain(self):
        while self.sock.poll(0):
            kind, hdr, _ = decode(self.sock.recv_multipart())
            self.msgs.append((kind, hdr))

    def of(self, kind):
        self.drain()
        return [h for k, h in self.msgs if k == kind]


def read_lines(path):
    try:
        return open(path).read().splitlines()
    except OSError:
        return []


def records(d):
    return (read_lines(os.path.join(d, "run", "trainer", "applied.tsv")),
            read_lines(os.path.join(d, "run", "trainer", "losses.tsv")))


def finish(proc, log, timeout=30):
    """Waits for the trainer to exit; fails on a non-zero code."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError("trainer did not finish in %d s:\n%s" % (timeout, tail(log)))
    assert proc.returncode == 0, "trainer exit %d:\n%s" % (proc.returncode, tail(log))


def expect_applied(applied, ids):
    want = ["%d\t%d\t%s" % (i + 1, id, ",".join(str(id * B + b) for b in range(B))) for i, id in enumerate(ids)]
    assert applied == want, "applied.tsv:\n%s\nexpected:\n%s" % ("\n".join(applied), "\n".join(want))


# ---- scenarios -------------------------------------------------------------------------

def test_direct(ctx):
    d = tmpdir()
    try:
        cfg, _ = run_config(d, direct=True, steps=4, save_every=2, window=4)
        loader = FakeLoader(ctx, d)
        events = Events(ctx, d)
        log = os.path.join(d, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg], log)
        try:
            loader.wait_hello()
            h = loader.hellos[0]
            assert (h["role"], h["next"], h["window"], h["direct"], h["credit"]) == ("trainer", 0, 4, 1, 4), h
            time.sleep(0.3)   # the events SUB reconnects (100 ms interval) to the new PUB
            for id in [9, 2, 0, 1, 1, 3]:
                loader.send_batch(id)
            t0 = time.time()
            while proc.poll() is None and time.time() - t0 < 30:
                loader.poll()
            finish(proc, log)
            loader.poll(200)
        finally:
            stop(proc)
        applied, losses = records(d)
        expect_applied(applied, [0, 1, 2, 3])
        assert [l.split("\t")[0] for l in losses] == ["1", "2", "3", "4"], losses
        assert all(np.isfinite(float(l.split("\t")[1])) for l in losses), losses
        # acks: after steps 2 and 4, each only once its checkpoint was on disk
        assert [a for a, _ in loader.acks] == [2, 4], loader.acks
        for a, st in loader.acks:
            assert st is not None and st["next"] >= a, "ack %d before its checkpoint: %s" % (a, st)
        st = ckpt_state(d)
        assert (st["step"], st["next"]) == (4, 4), st
        assert st["applied_bytes"] == os.path.getsize(os.path.join(d, "run", "trainer", "applied.tsv")), st
        assert loader.heartbeats > 0
        time.sleep(0.2)
        ck = events.of("checkpoint")
        assert [(c["id"], c["meta"]["step"], c["meta"]["arch"]) for c in ck] == [(2, 2, "llama"), (4, 4, "llama")], ck
        assert ck[0]["meta"]["path"] == os.path.join(d, "ckpt"), ck[0]
        end = [m for m in events.of("metrics") if m["meta"].get("event") == "end"]
        assert len(end) == 1 and end[0]["meta"]["step"] == 4 and end[0]["meta"]["total_steps"] == 4, end
        for key in ["loss", "lr", "grad_norm", "tokens_per_s", "data_stall_s", "step_time_s", "queue_reorder",
                    "bad_messages"]:
            assert key in end[0]["meta"], (key, end[0])
        assert end[0]["meta"]["bad_messages"] == 0, end[0]
        # backend memory: the model's buffers are allocated and the peak covers them
        mem = end[0]["meta"]
        assert mem["mem_allocated_bytes"] > 0 and mem["mem_peak_bytes"] >= mem["mem_allocated_bytes"], mem
        print("direct: ok (applied 0..3 once in order, acks %s)" % [a for a, _ in loader.acks])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_accum(ctx):
    """accum_steps 2: two batches per optimizer step; checkpoints (and acks) on step edges."""
    d = tmpdir()
    try:
        cfg, _ = run_config(d, direct=True, steps=2, save_every=1, window=4, extra_train={"accum_steps": 2})
        loader = FakeLoader(ctx, d)
        log = os.path.join(d, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg], log)
        try:
            loader.wait_hello()
            for id in [1, 0, 3, 2]:
                loader.send_batch(id)
            t0 = time.time()
            while proc.poll() is None and time.time() - t0 < 30:
                loader.poll()
            finish(proc, log)
            loader.poll(200)
        finally:
            stop(proc)
        applied, losses = records(d)
        want = ["%d\t%d\t%d,%d" % (step, id, 2 * id, 2 * id + 1) for step, id in [(1, 0), (1, 1), (2, 2), (2, 3)]]
        assert applied == want, applied
        assert [l.split("\t")[0] for l in losses] == ["1", "2"], losses
        assert [a for a, _ in loader.acks] == [2, 4], loader.acks
        print("accum: ok (%s)" % losses)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], np.float32).reshape(t["shape"])
    return out


def reference_loss(weights_dir, id, cfg, kd=True):
    """First-step loss from the step-0 weights, in float64 PyTorch (student_ref.py)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
    import torch
    import student_ref
    m, tr = cfg["model"], cfg["train"]
    tensors = {k: torch.tensor(v.astype(np.float64)) for k, v in
               read_safetensors(os.path.join(weights_dir, "model.safetensors")).items()}
    c = {"n_heads": m["n_heads"], "n_kv_heads": m["n_kv_heads"], "d_head": m["d_model"] // m["n_heads"],
         "n_layers": m["n_layers"], "window": 0, "rope_theta": m["rope_theta"], "norm_eps": m["norm_eps"],
         "tied": True, "vocab": V, "smoothing": tr["label_smoothing"], "k": K if kd else 0,
         "alpha": tr["kd"]["alpha"], "temperature": tr["kd"]["temperature"],
         "mode": ["forward", "reverse", "jsd"].index(tr["kd"]["mode"]), "jsd_beta": tr["kd"]["jsd_beta"]}
    model = student_ref.Student(c, tensors)
    b = make_batch(id)
    ids, lp, tail = teacher_topk(id, tr["kd"]["temperature"])
    doc = torch.tensor(b["doc_ids"].astype(np.int64)) if m.get("doc_mask") else None
    inp = {"ids": torch.tensor(b["tokens"].astype(np.int64)), "targets": torch.tensor(b["targets"].astype(np.int64)),
           "doc": doc, "topk_ids": torch.tensor(ids.reshape(-1, K).astype(np.int64)),
           "topk_lp": torch.tensor(lp.reshape(-1, K).astype(np.float64)),
           "tail": torch.tensor(tail.reshape(-1).astype(np.float64))}
    with torch.no_grad():
        return student_ref.loss_fn(model, inp, c).item()


def test_kd(ctx, mode="forward", alpha=0.5, temperature=1.0, beta=0.5, doc_mask=False):
    d = tmpdir()
    try:
        kd = {"alpha": alpha, "mode": mode, "temperature": temperature, "jsd_beta": beta}
        cfg, cfgd = run_config(d, direct=False, steps=3, save_every=2, window=4,
                               extra_train={"save_initial": True, "kd": kd})
        if doc_mask:
            cfgd["model"]["doc_mask"] = True
            with open(cfg, "w") as f:
                json.dump(cfgd, f, indent=1)
        loader = FakeLoader(ctx, d)
        teacher = ctx.socket(zmq.DEALER)
        teacher.setsockopt(zmq.LINGER, 0)
        teacher.connect("ipc://%s/trainer.sock" % d)
        log = os.path.join(d, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg], log)
        init = os.path.join(d, "init")
        try:
            loader.wait_hello()
            h = loader.hellos[0]
            assert h["direct"] == 0 and "credit" not in h, h
            # the step-0 checkpoint is acked (id 0) before any batch exists: keep a copy
            wait_for(lambda: (loader.poll(), len(loader.acks) >= 1)[1], 20, "the step-0 ack")
            assert loader.acks[0][0] == 0 and loader.acks[0][1]["step"] == 0, loader.acks
            shutil.copytree(os.path.join(d, "ckpt"), init)
            teacher.send_multipart(encode("hello", stage="teacher.1", meta={"role": "worker", "credit": 2}))
            for id in [1, 0, 2]:
                teacher.send_multipart(scored_msg(id, temperature))
            t0 = time.time()
            while proc.poll() is None and time.time() - t0 < 30:
                loader.poll()
            finish(proc, log)
        finally:
            stop(proc)
        applied, losses = records(d)
        expect_applied(applied, [0, 1, 2])
        got = float(losses[0].split("\t")[1])
        want = reference_loss(init, 0, cfgd, kd=True)
        ce = reference_loss(init, 0, cfgd, kd=False)
        print("kd %s alpha %g T %g%s: first loss %.7f, PyTorch KD+CE %.7f, CE alone %.7f" %
              (mode, alpha, temperature, " doc mask" if doc_mask else "", got, want, ce))
        assert abs(got - want) <= 1e-4 * abs(want), (got, want)
        if alpha > 0:
            assert abs(want - ce) > 1e-2, (want, ce)
        assert [a for a, _ in loader.acks] == [0, 2, 3], loader.acks
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ctx = zmq.Context()
    try:
        test_direct(ctx)
        test_accum(ctx)
        test_kd(ctx)
        test_kd(ctx, mode="reverse", alpha=0.5, temperature=2.0)
        test_kd(ctx, mode="jsd", alpha=0.7, temperature=1.5, beta=0.3)
        test_kd(ctx, mode="forward", alpha=0.0)   # cross-entropy alone
        test_kd(ctx, doc_mask=True)               # attention within documents, positions restart
    finally:
        ctx.destroy(0)
    print("ok")


if __name__ == "__main__":
    main()
