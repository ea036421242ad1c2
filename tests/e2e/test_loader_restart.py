"""sushi-loader survives what the network and its own death throw at it:
  - killed with SIGKILL and restarted on the same (now stale) socket path: it asks the
    peers to say hello again (meta.reset = 1), and the stream continues from the
    trainer's next with bytes identical to `sushi-loader --dump`;
  - every malformed message of sushi_e2e.malformed_messages(), oversized_message() and
    well-formed messages that break the protocol sent to its socket: each is dropped
    and counted (published bad_messages equals the number sent), logged once per peer,
    and a later valid exchange still works;
  - a second loader on the same live socket refuses to start; bad options are refused.
Helpers come from test_loader_pipeline.py."""
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_loader_pipeline import (BIN, Loader, Peer, check, check_batch, decode, encode, malformed_messages,  # noqa: E402
                                  np, oversized_message, pump, setup, tail, zmq)


def restart(ctx, d, cfg, ref):
    loader = Loader(ctx, d, cfg)
    loader.start()
    trainer = Peer(ctx, loader.endpoint, "trainer", "trainer", next=0, window=4)
    worker = Peer(ctx, loader.endpoint, "teacher.1", "worker", credit=2)
    try:
        trainer.hello()
        worker.hello()
        pump(loader, [trainer, worker], 3, until=lambda: len(worker.ids()) >= 2)
        check(worker.ids() == [0, 1], "before the kill: %s" % worker.ids())
        trainer.next = 2          # the trainer applied 0 and 1
        trainer.heartbeat()
        pump(loader, [trainer, worker], 0.3)
        loader.proc.send_signal(signal.SIGKILL)
        loader.proc.wait()
        check(os.path.exists(loader.endpoint[6:]), "the killed loader's socket file is gone (test premise)")
        # the worker is done with 0 and 1: free again, it will say credit 2 in its hello
        loader.start()
        pump(loader, [trainer, worker], 8, until=lambda: len(worker.ids()) >= 4)
        check(trainer.resets >= 1 and worker.resets >= 1, "reset hellos: trainer %d, worker %d" % (
            trainer.resets, worker.resets))
        check(worker.ids() == [0, 1, 2, 3], "after the restart: %s (expected 2, 3 from the trainer's next)" %
              worker.ids())
        for hdr, tensors in worker.batches:
            check_batch(hdr, tensors, ref)
        log = open(loader.log).read()
        check("removed the stale socket" in log, "stale socket removal not logged:\n" + tail(loader.log))
        check("asking it to say hello" in log, "reset hello not logged")
        # a second loader on the live socket refuses to start
        r = subprocess.run([os.path.join(BIN, "sushi-loader"), "--config", cfg], capture_output=True, text=True,
                           timeout=30)
        check(r.returncode != 0 and "another process is listening" in r.stderr,
              "second loader: exit %d, %s" % (r.returncode, r.stderr))
        check(loader.proc.poll() is None, "the first loader died")
        check(loader.stop() == 0, "SIGTERM: exit code")
    finally:
        loader.stop()
        trainer.close()
        worker.close()
        loader.sub.close(0)
    print("ok: SIGKILL and restart: peers re-hello, stream continues from next with identical bytes")


def protocol_breaking():
    """Well-formed messages the loader must refuse (label, kind, meta, hello first)."""
    return [
        ("unknown role", "hello", {"role": "chef", "credit": 1}),
        ("role missing", "hello", {"credit": 1}),
        ("trainer without next", "hello", {"role": "trainer", "window": 4}),
        ("next beyond the epoch", "hello", {"role": "trainer", "next": 1 << 39, "window": 4}),
        ("window too large", "hello", {"role": "trainer", "next": 0, "window": 1 << 20}),
        ("credit not a number", "hello", {"role": "worker", "credit": "lots"}),
        ("batch to the loader", "batch", {}),
        ("scored to the loader", "scored", {}),
    ]


def malformed(ctx, d, cfg, ref):
    loader = Loader(ctx, d, cfg)
    loader.start()
    trainer = Peer(ctx, loader.endpoint, "trainer", "trainer", next=0, window=4)
    worker = Peer(ctx, loader.endpoint, "teacher.1", "worker", credit=1)
    evil = ctx.socket(zmq.DEALER)
    evil.setsockopt(zmq.LINGER, 0)
    evil.connect(loader.endpoint)
    try:
        trainer.hello()
        worker.hello()
        pump(loader, [trainer, worker], 3, until=lambda: len(worker.ids()) >= 1)
        check(worker.ids() == [0], "before: %s" % worker.ids())
        sent = 0
        for label, frames in malformed_messages() + [("oversized", oversized_message())]:
            evil.send_multipart(frames)
            sent += 1
        for label, kind, meta in protocol_breaking():
            evil.send_multipart(encode(kind, stage="evil", meta=meta))
            sent += 1
        # a known worker breaking the protocol: credit on a heartbeat that is not an integer
        worker.send("heartbeat", meta={"credit": -3})
        sent += 1
        pump(loader, [trainer, worker], 5, until=lambda: loader.metrics.get("bad_messages") == sent)
        check(loader.metrics.get("bad_messages") == sent, "bad_messages %s, sent %d bad ones" % (
            loader.metrics.get("bad_messages"), sent))
        # the loader keeps serving: credit returned, batch 1 arrives, identical bytes
        worker.heartbeat(credit=1)
        pump(loader, [trainer, worker], 3, until=lambda: len(worker.ids()) >= 2)
        check(worker.ids() == [0, 1], "after the bad messages: %s" % worker.ids())
        check_batch(*worker.batches[1], ref)
        # the unknown peer never became one: a heartbeat from it gets "say hello again"
        evil.send_multipart(encode("heartbeat", stage="evil"))
        check(evil.poll(3000), "no reply to an unknown peer's heartbeat")
        kind, hdr, _ = decode(evil.recv_multipart())
        check(kind == "hello" and hdr["meta"].get("reset") == 1, "reply to unknown peer: %s %s" % (kind, hdr["meta"]))
        log = open(loader.log).read()
        check(log.count("further ones from this peer are only counted") == 3,
              "log once per peer (transport, protocol from evil, protocol from the worker):\n" + tail(loader.log))
        check('meta.role "chef"' in log, "the cause (unknown role) not logged:\n" + tail(loader.log))
        check(loader.stop() == 0, "SIGTERM: exit code")
    finally:
        loader.stop()
        trainer.close()
        worker.close()
        evil.close(0)
        loader.sub.close(0)
    print("ok: %d bad messages dropped, counted and logged once per peer; serving continues" % sent)


def bad_options(cfg):
    """Configuration mistakes stop the loader at once with a message naming the key."""
    exe = os.path.join(BIN, "sushi-loader")
    for args, want in [(["endpoints.loader=\"\""], "endpoints.loader: empty"),
                       (["endpoints.loader="], "endpoints.loader: missing"),
                       (["loader.threads=0"], "loader.threads: 0 out of range"),
                       (["loader.dead_after_ms=10"], "loader.dead_after_ms: 10 out of range"),
                       (["endpoints.loader=tcp://10.1.2.3:5555"], "not loopback"),
                       (["--cursor", "3"], "--epoch and --cursor go with --dump")]:
        r = subprocess.run([exe, "--config", cfg] + args, capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and want in r.stderr, "%s: exit %d, %r (expected %r)" % (
            args, r.returncode, r.stderr, want))
    print("ok: bad options refused with the key named")


def main():
    d, cfg, ref, ctx = setup(n_ref=6)
    try:
        bad_options(cfg)
        restart(ctx, d, cfg, ref)
        malformed(ctx, d, cfg, ref)
    finally:
        ctx.destroy(linger=0)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
