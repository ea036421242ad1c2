"""sushi-teacher pipeline end to end: two replicas (SUSHI_STAGE teacher.1, teacher.2)
between a fake loader and a fake trainer (Python ROUTERs) and a metrics SUB.

- each replica says hello to the loader (role worker, credit = teacher.credit) and to
  the trainer, and heartbeats both;
- batches whose rows hold two document segments each come back as `scored` with every
  batch tensor and meta passed through, topk_ids/topk_logprobs/tail_logprob equal to
  the reference top-K of each segment scored on its own from position 0
  (deepseek_ref.py logits; ids exact, log-probabilities within 1e-4), meta
  temperature/topk/teacher;
- credits: a replica never lets the loader hold more than `credit` credits for it and
  returns exactly one credit per batch that left it;
- a loader hello with meta.reset = 1 is answered with a new hello granting the free slots;
- malformed wire messages and protocol-breaking batches (missing tensor, wrong shape,
  wrong dtype, ids outside the vocabulary) and a wrong message kind sent to one
  replica's DEALER are dropped and counted (metrics bad_messages), their credits come
  back, and the replica scores the next good batch;
- SIGTERM: both exit 0."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import *  # noqa: E402,F401,F403
from test_teacher_serve import VOCAB, check_topk, reference_logits, write_checkpoint  # noqa: E402

B, T, K, TEMP, CREDIT, HB_MS = 2, 12, 4, 0.8, 2, 100
REPLICAS = ["teacher.1", "teacher.2"]


def make_batch(idx, rng, splits):
    """batch idx: rows of two document segments, split at splits[b]"""
    tokens = rng.integers(0, VOCAB, size=(B, T)).astype(np.int32)
    doc_ids = np.zeros((B, T), np.int32)
    positions = np.zeros((B, T), np.int32)
    targets = np.full((B, T), -1, np.int32)
    for b, s in enumerate(splits):
        doc_ids[b, s:] = 1
        positions[b, :s] = np.arange(s)
        positions[b, s:] = np.arange(T - s)
        for t in range(T - 1):
            if doc_ids[b, t] == doc_ids[b, t + 1]:
                targets[b, t] = tokens[b, t + 1]
    tensors = {"tokens": tokens, "targets": targets, "doc_ids": doc_ids, "positions": positions,
               "sample_ids": np.array([2 * idx, 2 * idx + 1], np.uint64), "answer_mask": np.zeros((B, T), np.uint8)}
    return tensors


def segments(tensors):
    """(row, start, end) of every document segment"""
    out = []
    for b in range(B):
        d = tensors["doc_ids"][b]
        s = 0
        for t in range(1, T + 1):
            if t == T or d[t] != d[s]:
                out.append((b, s, t))
                s = t
    return out


class FakeStages:
    """the loader and trainer ROUTERs and a metrics SUB, with the bookkeeping the test checks"""

    def __init__(self, ctx, d):
        self.loader = ctx.socket(zmq.ROUTER)
        self.trainer = ctx.socket(zmq.ROUTER)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        for s in (self.loader, self.trainer, self.sub):
            s.setsockopt(zmq.LINGER, 0)
        self.ep = {"loader": "ipc://%s/l.sock" % d, "trainer": "ipc://%s/tr.sock" % d, "pub": "ipc://%s/pub.sock" % d}
        self.loader.bind(self.ep["loader"])
        self.trainer.bind(self.ep["trainer"])
        self.sub.bind(self.ep["pub"])
        self.peer = {r: {"route": None, "credit": 0, "sent": 0, "returned": 0, "hellos": 0, "beats": 0,
                         "trainer_hellos": 0, "trainer_beats": 0} for r in REPLICAS}
        self.scored = {}   # id -> (stage, header, tensors)
        self.metrics = {}  # stage -> last metrics meta

    def pump(self, timeout_ms=50):
        poller = zmq.Poller()
        for s in (self.loader, self.trainer, self.sub):
            poller.register(s, zmq.POLLIN)
        for sock, _ in poller.poll(timeout_ms):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if sock is self.sub:
                    kind, hdr, _ = decode(frames)
                    if kind == "metrics":
                        self.metrics[hdr["stage"]] = hdr["meta"]
                    continue
                route, (kind, hdr, tensors) = frames[0], decode(frames[1:])
                p = self.peer[hdr["stage"]]
                meta = hdr.get("meta") or {}
                if sock is self.loader:
                    p["route"] = route
                    if kind == "hello":
                        assert meta.get("role") == "worker", hdr
                        p["hellos"] += 1
                        p["credit"] = meta["credit"]
                    elif kind == "heartbeat":
                        p["beats"] += 1
                        if "credit" in meta:
                            p["credit"] += meta["credit"]
                            p["returned"] += meta["credit"]
                    else:
                        raise AssertionError("loader got %s from %s" % (kind, hdr["stage"]))
                    assert 0 <= p["credit"] <= CREDIT, "%s granted %d credits (credit %d)" % (
                        hdr["stage"], p["credit"], CREDIT)
                else:
                    if kind == "hello":
                        assert meta.get("role") == "worker", hdr
                        p["trainer_hellos"] += 1
                    elif kind == "heartbeat":
                        p["trainer_beats"] += 1
                    elif kind == "scored":
                        assert hdr["id"] not in self.scored, "batch %d scored twice" % hdr["id"]
                        self.scored[hdr["id"]] = (hdr["stage"], hdr, tensors)
                    else:
                        raise AssertionError("trainer got %s from %s" % (kind, hdr["stage"]))

    def wait(self, pred, what, timeout=30):
        wait_for(lambda: (self.pump(20), pred())[1], timeout, what, step=0)

    def send(self, replica, frames, uses_credit=True):
        """to a replica's DEALER; a batch waits for (and spends) a credit"""
        p = self.peer[replica]
        if uses_credit:
            self.wait(lambda: p["credit"] > 0, "a credit from %s" % replica)
            p["credit"] -= 1
            p["sent"] += 1
        self.loader.send_multipart([p["route"]] + list(frames))


def batch_msg(idx, tensors):
    return encode("batch", id=idx, epoch=0, cursor=idx, stage="loader", meta={"next": idx + 1, "tag": "b%d" % idx},
                  tensors=tensors)


def main():
    d = tmpdir()
    procs, logs = [], []
    ctx = zmq.Context()
    try:
        ck = write_checkpoint(d, seed=33)
        fake = FakeStages(ctx, d)
        cfg = os.path.join(d, "run.yaml")
        with open(cfg, "w") as f:
            f.write("endpoints:\n  loader: %s\n  trainer: %s\n" % (fake.ep["loader"], fake.ep["trainer"]))
            f.write("data:\n  batch_size: %d\n  seq_len: %d\n" % (B, T))
            f.write("teacher:\n  checkpoint: %s\n  backend: cpu\n  topk: 16\n  temperature: %g\n  credit: %d\n"
                    "  threads: 1\n  heartbeat_ms: %d\n  dead_after_ms: 2000\n" % (ck, TEMP, CREDIT, HB_MS))
        for r in REPLICAS:
            logs.append(os.path.join(d, r + ".log"))
            procs.append(spawn(["sushi-teacher", "pipeline", "--config", cfg, "teacher.topk=%d" % K], logs[-1],
                               env={"SUSHI_STAGE": r, "SUSHI_PUBLISH": fake.ep["pub"]}))
        fake.wait(lambda: all(p["hellos"] == 1 and p["trainer_hellos"] == 1 for p in fake.peer.values()),
                  "hellos from both replicas")
        assert all(p["credit"] == CREDIT for p in fake.peer.values()), fake.peer

        # batches to whichever replica has a credit
        rng = np.random.default_rng(5)
        batches = {}
        for idx in range(10):
            batches[idx] = make_batch(idx, rng, [1 + (idx + b) % (T - 1) for b in range(B)])
            fake.wait(lambda: any(p["credit"] > 0 for p in fake.peer.values()), "a credit")
            r = max(REPLICAS, key=lambda r: fake.peer[r]["credit"])
            fake.send(r, batch_msg(idx, batches[idx]))
        fake.wait(lambda: len(fake.scored) == 10, "10 scored batches")
        fake.wait(lambda: all(p["returned"] == p["sent"] for p in fake.peer.values()), "every credit back")
        assert all(p["sent"] > 0 for p in fake.peer.values()), "one replica got no batch: %s" % fake.peer

        # a restarted loader: hello reset = 1 -> hello again, with every slot free
        r1 = fake.peer[REPLICAS[0]]
        r1["credit"] = 0
        fake.send(REPLICAS[0], encode("hello", stage="loader", meta={"reset": 1}), uses_credit=False)
        fake.wait(lambda: r1["hellos"] == 2, "a second hello after the reset")
        assert r1["credit"] == CREDIT, r1
        batches[10] = make_batch(10, rng, [6, 3])
        fake.send(REPLICAS[0], batch_msg(10, batches[10]))
        fake.wait(lambda: 10 in fake.scored, "the batch after the reset")

        # malformed messages and protocol-breaking batches to teacher.2, then a good batch
        r2 = REPLICAS[1]
        bad_wire = malformed_messages() + [("oversized", oversized_message())]
        for _, frames in bad_wire:
            fake.send(r2, frames, uses_credit=False)
        good = make_batch(11, rng, [4, 9])
        missing = {k: v for k, v in good.items() if k != "doc_ids"}
        short = dict(good, tokens=good["tokens"][:, :T - 2].copy())
        wrong_dtype = dict(good, positions=good["positions"].astype(np.int64))
        big_ids = dict(good, tokens=np.full((B, T), VOCAB, np.int32))
        bad_batches = [missing, short, wrong_dtype, big_ids]
        for i, t in enumerate(bad_batches):
            fake.send(r2, batch_msg(100 + i, t))
        fake.send(r2, encode("ack", id=3, stage="loader"), uses_credit=False)
        fake.send(r2, batch_msg(11, good))
        batches[11] = good
        fake.wait(lambda: 11 in fake.scored, "the good batch after the bad ones")
        fake.wait(lambda: fake.peer[r2]["returned"] == fake.peer[r2]["sent"], "credits of the dropped batches")
        n_bad = len(bad_wire) + len(bad_batches) + 1
        fake.wait(lambda: fake.metrics.get(r2, {}).get("bad_messages") == n_bad,
                  "teacher.2 metrics bad_messages = %d (last %s)" % (n_bad, fake.metrics.get(r2)))
        assert all(i not in fake.scored for i in range(100, 104)), "a bad batch was scored"
        for r in REPLICAS:
            n = sum(1 for s, _, _ in fake.scored.values() if s == r)
            fake.wait(lambda: fake.metrics.get(r, {}).get("scored") == n, "%s metrics scored = %d" % (r, n))
            m = fake.metrics[r]
            assert m["queue_input"] == 0 and m["tokens_per_s"] > 0, m
        assert fake.metrics[REPLICAS[0]]["bad_messages"] == 0, fake.metrics

        # every scored batch: passed through, and per-segment reference top-K
        segs = {i: segments(t) for i, t in batches.items()}
        seqs = [batches[i]["tokens"][b, s:e] for i in sorted(batches) for b, s, e in segs[i]]
        ref = iter(reference_logits(ck, seqs, d))
        for i in sorted(batches):
            stage, hdr, got = fake.scored[i]
            assert hdr["kind"] == "scored" and hdr["epoch"] == 0 and hdr["cursor"] == i, hdr
            meta = hdr["meta"]
            assert meta["next"] == i + 1 and meta["tag"] == "b%d" % i, meta
            assert meta["teacher"] == stage and meta["topk"] == K and abs(meta["temperature"] - TEMP) < 1e-6, meta
            for name, arr in batches[i].items():
                assert got[name].dtype == arr.dtype and np.array_equal(got[name], arr), "batch %d: %s" % (i, name)
            assert got["topk_ids"].shape == (B, T, K) and got["topk_ids"].dtype == np.int32
            assert got["topk_logprobs"].shape == (B, T, K) and got["topk_logprobs"].dtype == np.float32
            assert got["tail_logprob"].shape == (B, T) and got["tail_logprob"].dtype == np.float32
            for b, s, e in segs[i]:
                check_topk(got["topk_ids"][b, s:e], got["topk_logprobs"][b, s:e], got["tail_logprob"][b, s:e],
                           next(ref), K, TEMP, "batch %d row %d segment [%d,%d)" % (i, b, s, e))

        # heartbeats reached both peers
        for r, p in fake.peer.items():
            assert p["beats"] >= 3 and p["trainer_beats"] >= 3, (r, p)
        for i, p in enumerate(procs):
            rc = stop(p)
            assert rc == 0, "%s: exit %s on SIGTERM\n%s" % (REPLICAS[i], rc, tail(logs[i]))
        print("ok: %d batches scored by two replicas, credits, reset hello, %d bad messages dropped"
              % (len(fake.scored), n_bad))
    except AssertionError:
        for lg in logs:
            print("---- %s\n%s" % (lg, tail(lg)))
        raise
    finally:
        for p in procs:
            stop(p)
        ctx.destroy(linger=0)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
