#!/usr/bin/python3
"""sushi-monitor's SUB socket fed every malformed message of sushi_e2e (garbage, empty,
truncated, wrong version, unknown kind, shape larger than its frame, missing/extra frame,
trailing bytes, not a map, oversized): each is dropped and counted, the monitor keeps
serving (a later metrics message is recorded), and the report at the end of the run says
exactly how many were bad."""
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import encode, malformed_messages, oversized_message, spawn, stop, tail, tmpdir, wait_for, zmq  # noqa: E402


def main():
    d = tmpdir()
    log = os.path.join(d, "monitor.log")
    ep = "ipc://%s/mon.sock" % d
    report, jsonl = os.path.join(d, "report.json"), os.path.join(d, "m.jsonl")
    proc = spawn(["sushi-monitor", "--bind", ep, "--jsonl", jsonl, "--report", report], log)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.connect(ep)
    try:
        wait_for(lambda: "listening on" in tail(log), 20, "the monitor to bind")

        def joined():   # PUB/SUB joins late: publish until the first message is recorded
            pub.send_multipart(encode("metrics", stage="probe", meta={"probe": 1}))
            return os.path.exists(jsonl) and os.path.getsize(jsonl) > 0
        wait_for(joined, 20, "the monitor to receive a message", step=0.1)
        bad = malformed_messages() + [("oversized", oversized_message())]
        for _, frames in bad:
            pub.send_multipart(frames)
        pub.send_multipart(encode("metrics", stage="trainer", meta={"step": 3, "total_steps": 4, "loss": 2.5}))
        wait_for(lambda: any(json.loads(x)["stage"] == "trainer" for x in open(jsonl)), 20,
                 "a valid message after the bad ones")
        pub.send_multipart(encode("metrics", stage="trainer", meta={"step": 4, "total_steps": 4, "event": "end"}))
        proc.wait(20)
        assert proc.returncode == 0, "monitor exit %s\n%s" % (proc.returncode, tail(log))
        rep = json.load(open(report))
        assert rep["bad_messages"] == len(bad), (rep["bad_messages"], len(bad), tail(log))
        assert rep["stages"]["trainer"]["loss"]["min"] == 2.5, rep["stages"]["trainer"]
        print("ok: %d malformed messages dropped and counted; monitor kept serving" % len(bad))
    finally:
        pub.close(0)
        ctx.term()
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
