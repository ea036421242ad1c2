"""sushi-trainer (KD mode) fed malformed and protocol-breaking messages on both of its
sockets — the teacher ROUTER and the loader DEALER: undecodable frames
(sushi_e2e.malformed_messages(), oversized_message()), wrong shapes, wrong dtypes,
missing tensors, ids outside the vocabulary, a different teacher temperature, wrong
kinds for the socket. Each is dropped and counted in bad_messages; training goes on and
applies the valid batches in order."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_trainer_pipeline import *  # noqa: E402,F401,F403


def protocol_breakers():
    """(label, frames): well-formed messages the trainer must refuse on its teacher socket."""
    bad_ids = make_batch(0)["tokens"].copy()
    bad_ids[1, 3] = V   # outside the vocabulary
    topk_bad = teacher_topk(1)[0].copy()
    topk_bad[0, 0, 0] = -1
    return [
        ("other temperature", scored_msg(0, sent_temperature=2.0)),   # first: the one logged
        ("wrong shape", scored_msg(0, tensors={"tokens": np.zeros((B, T + 1), np.int32)})),
        ("wrong dtype", scored_msg(0, tensors={"targets": np.zeros((B, T), np.int64)})),
        ("missing tensor", scored_msg(1, tensors={"tail_logprob": None})),
        ("token id >= vocab", scored_msg(0, tensors={"tokens": bad_ids})),
        ("top-k id < 0", scored_msg(1, tensors={"topk_ids": topk_bad})),
        ("top-k shape", scored_msg(1, tensors={"topk_logprobs": np.zeros((B, T, K + 1), np.float32)})),
        ("no meta.next", encode("scored", id=0, meta={"temperature": 1.0}, tensors=make_batch(0))),
        ("batch on the teacher socket", batch_msg(0)),
        ("ack on the teacher socket", encode("ack", id=3)),
    ]


def main():
    ctx = zmq.Context()
    d = tmpdir()
    try:
        cfg, _ = run_config(d, direct=False, steps=3, save_every=10, window=4)
        loader = FakeLoader(ctx, d)
        events = Events(ctx, d)
        teacher = ctx.socket(zmq.DEALER)
        teacher.setsockopt(zmq.LINGER, 0)
        teacher.connect("ipc://%s/trainer.sock" % d)
        log = os.path.join(d, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg], log)
        undecodable = malformed_messages() + [("oversized", oversized_message())]
        breakers = protocol_breakers()
        on_loader = [("batch in KD mode", batch_msg(0)), ("scored on the loader socket", scored_msg(0))]
        try:
            loader.wait_hello()
            time.sleep(0.3)   # the events SUB reconnects (100 ms interval) to the new PUB
            for _, frames in undecodable:
                loader.send(frames)
                teacher.send_multipart(frames)
            for _, frames in on_loader:
                loader.send(frames)
            for _, frames in breakers:
                teacher.send_multipart(frames)
            time.sleep(0.3)
            assert proc.poll() is None, "trainer died:\n%s" % tail(log)
            assert records(d)[0] == [], "a bad message was applied: %s" % records(d)[0]
            for id in [0, 1, 2]:
                teacher.send_multipart(scored_msg(id))
            t0 = time.time()
            while proc.poll() is None and time.time() - t0 < 30:
                loader.poll()
            finish(proc, log)
        finally:
            stop(proc)
        applied, losses = records(d)
        expect_applied(applied, [0, 1, 2])
        assert len(losses) == 3, losses
        time.sleep(0.2)
        end = [m for m in events.of("metrics") if m["meta"].get("event") == "end"]
        assert len(end) == 1, events.msgs
        want = 2 * len(undecodable) + len(on_loader) + len(breakers)
        got = end[0]["meta"]["bad_messages"]
        print("malformed: %d bad messages counted (%d sent), training finished" % (got, want))
        assert got == want, (got, want, tail(log))
        text = open(log).read()
        assert "temperature 2 differs from train.kd.temperature 1" in text, tail(log)
    finally:
        ctx.destroy(0)
        shutil.rmtree(d, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
