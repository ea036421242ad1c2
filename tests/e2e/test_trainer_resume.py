"""sushi-trainer killed with SIGKILL mid-run and restarted: it resumes from its last
checkpoint, says hello with that checkpoint's `next`, the (fake) loader rewinds, and
applied.tsv and losses.tsv end up byte-identical to an uninterrupted run's. Also:
SIGTERM stops it cleanly (exit 0) without writing a checkpoint."""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_trainer_pipeline import *  # noqa: E402,F401,F403

STEPS, SAVE_EVERY, WINDOW = 10, 3, 4


def serve(loader, proc, total, pace, until=None, timeout=40):
    """Sends batches from the trainer's `next` (rewinding on every hello), one per `pace`
    seconds, while it has credits; stops when the trainer exits or until() holds."""
    sent_hellos, cursor = 0, 0
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        loader.poll(5)
        if until and until():
            return True
        if len(loader.hellos) != sent_hellos:   # (re)start: rewind to its next
            sent_hellos = len(loader.hellos)
            cursor = loader.hellos[-1]["next"]
        if loader.route is not None and loader.credit > 0 and cursor < total and cursor < loader.next + WINDOW:
            loader.credit -= 1
            loader.send(batch_msg(cursor))
            cursor += 1
            time.sleep(pace)
    return False


def run(ctx, d, kill_at=None):
    cfg, _ = run_config(d, direct=True, steps=STEPS, save_every=SAVE_EVERY, window=WINDOW)
    loader = FakeLoader(ctx, d)
    log = os.path.join(d, "trainer.log")
    proc = spawn(["sushi-trainer", "--config", cfg], log)
    try:
        if kill_at is not None:
            # only batches 0 .. kill_at-1: past the checkpoint of step 3, short of step 6's; SIGKILL
            hit = serve(loader, proc, kill_at, 0.0, until=lambda: len(records(d)[1]) >= kill_at)
            assert hit, "trainer never reached step %d:\n%s" % (kill_at, tail(log))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            st = ckpt_state(d)
            assert st is not None and st["step"] == 3 and st["next"] == 3, st
            assert len(records(d)[1]) > 3, "the kill should leave records past the checkpoint"
            proc = spawn(["sushi-trainer", "--config", cfg], log)
            loader.wait_hello(2)
            assert loader.hellos[1]["next"] == 3, loader.hellos[1]
        serve(loader, proc, STEPS, 0.0)
        finish(proc, log)
    finally:
        stop(proc)
        loader.sock.close()
    return records(d)


def test_sigterm(ctx):
    d = tmpdir()
    try:
        cfg, _ = run_config(d, direct=True, steps=STEPS, save_every=SAVE_EVERY, window=WINDOW)
        loader = FakeLoader(ctx, d)
        log = os.path.join(d, "trainer.log")
        proc = spawn(["sushi-trainer", "--config", cfg], log)
        try:
            assert serve(loader, proc, 5, 0.0, until=lambda: len(records(d)[1]) >= 5), tail(log)
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            assert proc.returncode == 0, "SIGTERM exit %d:\n%s" % (proc.returncode, tail(log))
        finally:
            stop(proc)
            loader.sock.close()
        st = ckpt_state(d)
        assert st["step"] == 3, "SIGTERM must not write a checkpoint: %s" % st
        assert not [n for n in os.listdir(d) if ".tmp" in n or n.endswith(".old")], os.listdir(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ctx = zmq.Context()
    a, b = tmpdir(), tmpdir()
    try:
        applied_a, losses_a = run(ctx, a)
        applied_b, losses_b = run(ctx, b, kill_at=5)
        assert len(losses_a) == STEPS and len(applied_a) == STEPS, (losses_a, applied_a)
        expect_applied(applied_a, list(range(STEPS)))
        assert applied_b == applied_a, "applied.tsv differs:\n%s\nvs\n%s" % (applied_b, applied_a)
        assert losses_b == losses_a, "losses.tsv differs:\n%s\nvs\n%s" % (losses_b, losses_a)
        print("resume after SIGKILL: %d losses identical, last %s" % (len(losses_a), losses_a[-1]))
        test_sigterm(ctx)
        print("sigterm: ok")
    finally:
        ctx.destroy(0)
        shutil.rmtree(a, ignore_errors=True)
        shutil.rmtree(b, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
