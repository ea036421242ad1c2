#!/usr/bin/python3
"""sushi-eval on endpoints.events: checkpoint announcements from a Python PUB (kind
checkpoint, meta.path) trigger evaluation; a repeated announcement of an unchanged
checkpoint does not; malformed messages (wire-invalid, and well-formed ones that are not
announcements) are dropped and counted; results are published (kind eval, id = step)
to $SUSHI_PUBLISH, with a metrics message carrying the counts."""
import json
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import decode, encode, malformed_messages, spawn, stop, tail, tmpdir, wait_for, zmq  # noqa: E402
from test_eval import check, make_run, write_student  # noqa: E402


def results(d):
    try:
        return [json.loads(x) for x in open(os.path.join(d, "run", "eval.jsonl"))]
    except OSError:
        return []


def main():
    d = tmpdir()
    log = os.path.join(d, "eval.log")
    proc = None
    done = threading.Event()
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    mon = ctx.socket(zmq.SUB)
    try:
        events, publish = "ipc://%s/ev.sock" % d, "ipc://%s/mon.sock" % d
        pub.bind(events)
        mon.setsockopt(zmq.SUBSCRIBE, b"")
        mon.bind(publish)
        cfg = make_run(d, teacher=False, needle=False, extra="endpoints:\n  events: %s\n" % events)
        a, b = os.path.join(d, "a"), os.path.join(d, "b")
        write_student(a, 1, step=7)
        write_student(b, 2, step=9)
        seen = []

        def collect():   # what sushi-eval publishes, read as it arrives
            while not done.is_set():
                if mon.poll(50):
                    seen.append(decode(mon.recv_multipart()))
        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        proc = spawn(["sushi-eval", "--config", cfg], log, env={"SUSHI_PUBLISH": publish})
        wait_for(lambda: "subscribed to" in tail(log), 20, "sushi-eval to subscribe")

        # PUB/SUB joins late: announce until the first evaluation shows up
        def announce_a():
            pub.send_multipart(encode("checkpoint", id=1, stage="trainer", meta={"path": a, "step": 7, "arch": "llama"}))
            return results(d)
        wait_for(announce_a, 20, "an announced checkpoint to be evaluated", step=0.2)
        time.sleep(1.5)
        r = results(d)
        check(len(r) == 1 and r[0]["checkpoint"] == a and r[0]["step"] == 7, "one evaluation of a: %r" % r)

        for _, frames in malformed_messages():
            pub.send_multipart(frames)
        pub.send_multipart(encode("checkpoint", stage="trainer", meta={"step": 3}))          # no path
        pub.send_multipart(encode("checkpoint", stage="trainer", meta={"path": 12}))         # not a string
        pub.send_multipart(encode("batch", stage="trainer", meta={"path": b}))               # wrong kind
        pub.send_multipart(encode("metrics", stage="trainer", meta={"loss": 1.0}))           # ignored, not bad
        pub.send_multipart(encode("checkpoint", stage="trainer", meta={"path": a}))          # unchanged: skipped
        pub.send_multipart(encode("checkpoint", stage="trainer", meta={"path": b, "step": 9}))
        wait_for(lambda: len(results(d)) >= 2, 20, "the second announcement to be evaluated")
        time.sleep(1.5)
        r = results(d)
        check(len(r) == 2 and r[1]["checkpoint"] == b and r[1]["step"] == 9, "evaluations %r" % r)
        check(proc.poll() is None, "sushi-eval exited:\n" + tail(log))

        # what reached the publish endpoint: eval messages (id = step) and the counts
        done.set()
        reader.join()
        evals = [(h["id"], h["meta"]) for k, h, _ in seen if k == "eval"]
        counts = [h["meta"] for k, h, _ in seen if k == "metrics" and h["stage"] == "eval"]
        counts = counts[-1] if counts else None
        check([e[0] for e in evals] == [7, 9] and evals[1][1]["ppl"] == r[1]["ppl"], "published evals %r" % evals)
        nbad = len(malformed_messages()) + 3
        check(counts and counts["bad_messages"] == nbad and counts["evaluations"] == 2, "published counts %r" % counts)
        check(stop(proc) == 0, "SIGTERM: exit %r\n%s" % (proc.returncode, tail(log)))
        check("2 evaluations, 0 checkpoints skipped, %d bad messages dropped" % nbad in tail(log),
              "final counts:\n" + tail(log))
        print("ok")
    except AssertionError as e:
        print("FAIL:", e)
        print(tail(log))
        sys.exit(1)
    finally:
        done.set()
        if proc:
            stop(proc)
        pub.close(0)
        mon.close(0)
        ctx.term()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
