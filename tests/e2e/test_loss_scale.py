"""Dynamic loss scaling in sushi-trainer's pipeline mode (direct, CPU f32) against the
fake loader of test_trainer_pipeline.py:

  pow2     - train.loss_scale 1024 (student; student and DeepSeek with accum_steps 2):
             applied.tsv and losses.tsv byte-identical to the run with loss_scale off
             (scaling by 2^k is exact in f32 when nothing overflows);
             metrics carry loss_scale 1024 and skipped_steps 0; the checkpoint keeps them.
  overflow - train.loss_scale 1e38: the first steps overflow (Σg² beyond f32 takes
             about 64 halvings), are skipped and halve the scale, then training
             proceeds (with an occasional skip near the threshold): every skip logged
             ("step N skipped: gradient norm ..., loss scale A → B"), the metrics and the
             checkpoint count them, optimizer steps = train.steps − skipped, every batch
             applied exactly once, losses finite.
  resume   - the overflow run killed (SIGKILL) in the middle of its skips and restarted
             from its checkpoint ends with applied.tsv and losses.tsv identical to the
             uninterrupted run's (the scale and counters come back from the checkpoint).
  config   - bad train.loss_scale values are refused naming the field.
"""
import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_trainer_pipeline import *  # noqa: E402,F401,F403
from test_trainer_deepseek import DS_MODEL  # noqa: E402
from test_trainer_resume import serve  # noqa: E402

WINDOW = 4


def train(ctx, d, steps, loss_scale, save_every=5, kill_after=None, extra=None, model=None):
    """Runs the trainer over batches 0..steps-1 (optionally SIGKILLed once kill_after
    batches are applied, then restarted); returns (applied, losses, metrics, log text)."""
    extra = dict(extra or {}, loss_scale=loss_scale)
    batches = steps * extra.get("accum_steps", 1)
    cfg, c = run_config(d, direct=True, steps=steps, save_every=save_every, window=WINDOW, extra_train=extra)
    if model:
        c["model"] = model
        with open(cfg, "w") as f:
            json.dump(c, f, indent=1)
    loader = FakeLoader(ctx, d)
    events = Events(ctx, d)
    log = os.path.join(d, "trainer.log")
    proc = spawn(["sushi-trainer", "--config", cfg], log)
    try:
        if kill_after is not None:
            hit = serve(loader, proc, batches, 0.0, until=lambda: len(records(d)[0]) >= kill_after)
            assert hit, "trainer never applied %d batches:\n%s" % (kill_after, tail(log))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = spawn(["sushi-trainer", "--config", cfg], log)
            loader.wait_hello(2)
        else:
            loader.wait_hello()
            time.sleep(0.3)   # the events SUB reconnects to the new PUB
        serve(loader, proc, batches, 0.0)
        finish(proc, log)
        time.sleep(0.2)
        metrics = events.of("metrics")
    finally:
        stop(proc)
        loader.sock.close()
        events.sock.close()
    applied, losses = records(d)
    return applied, losses, [h["meta"] for h in metrics], open(log).read()


def test_pow2(ctx, what, extra=None, model=None):
    a, b = tmpdir(), tmpdir()
    batches = 8 * (extra or {}).get("accum_steps", 1)
    try:
        applied_off, losses_off, m_off, _ = train(ctx, a, 8, "off", extra=extra, model=model)
        applied_s, losses_s, m_s, log = train(ctx, b, 8, 1024, extra=extra, model=model)
        assert len(losses_off) == 8 and len(applied_off) == batches, (losses_off, applied_off)
        assert applied_s == applied_off, "applied.tsv differs:\n%s\nvs\n%s" % (applied_s, applied_off)
        assert losses_s == losses_off, "losses.tsv differs:\n%s\nvs\n%s" % (losses_s, losses_off)
        assert "skipped:" not in log, log
        assert m_s and all(m["loss_scale"] == 1024 and m["skipped_steps"] == 0 for m in m_s), m_s
        assert m_off and all(m["loss_scale"] == 1 and m["skipped_steps"] == 0 for m in m_off), m_off
        st = ckpt_state(b)
        assert (st["step"], st["loss_scale"], st["skipped_steps"], st["scale_good_steps"]) == (8, 1024, 0, 8), st
        print("pow2 %s: 8 losses identical with loss_scale 1024 and off, last %s" % (what, losses_s[-1]))
    finally:
        shutil.rmtree(a, ignore_errors=True)
        shutil.rmtree(b, ignore_errors=True)


STEPS_OVERFLOW = 90


def check_overflow(applied, losses, metrics, log, d):
    skips = re.findall(r"step (\d+) skipped: gradient norm (\S+), loss scale (\S+) → (\S+)", log)
    st = ckpt_state(d)
    n = st["skipped_steps"]
    assert 2 <= n < STEPS_OVERFLOW - 10, "expected several skipped steps, then training: %s" % st
    # one warning per skip; the first ones are the first iterations; each halves the scale
    it = [int(s[0]) for s in skips]
    assert len(it) == n and it == sorted(set(it)) and it[:2] == [1, 2], skips
    for i, (_, norm, before, after) in enumerate(skips):
        assert norm in ("inf", "nan", "-nan"), skips[i]
        assert abs(float(before) / float(after) - 2) < 1e-4, skips[i]
    assert abs(float(skips[0][2]) - 1e38) < 1e31, skips[0]
    want_scale = float(np.float32(1e38)) / 2.0 ** n
    assert st["step"] == STEPS_OVERFLOW - n, "optimizer steps %d, expected %d - %d" % (st["step"], STEPS_OVERFLOW, n)
    assert np.float32(st["loss_scale"]) == np.float32(want_scale), (st["loss_scale"], want_scale)   # 9 digits
    # every batch applied once in order, counted towards the step it was applied in (a
    # skipped iteration's batch and the next one's share a step number)
    assert [int(l.split("\t")[1]) for l in applied] == list(range(STEPS_OVERFLOW)), applied
    done, want = 0, []
    for i in range(1, STEPS_OVERFLOW + 1):
        want.append(done + 1)
        done += i not in it
    assert [int(l.split("\t")[0]) for l in applied] == want, applied
    assert [int(l.split("\t")[0]) for l in losses] == list(range(1, STEPS_OVERFLOW - n + 1)), losses
    vals = [float(l.split("\t")[1]) for l in losses]
    assert all(np.isfinite(vals)), vals
    assert all(4.5 < v < 7.0 for v in vals), "random tokens: losses stay near ln(%d): %s" % (V, vals)
    return n, want_scale


def test_overflow(ctx):
    d = tmpdir()
    try:
        applied, losses, metrics, log = train(ctx, d, STEPS_OVERFLOW, 1e38, save_every=5)
        n, scale = check_overflow(applied, losses, metrics, log, d)
        end = [m for m in metrics if m.get("event") == "end"]
        assert end and end[0]["skipped_steps"] == n and np.float32(end[0]["loss_scale"]) == np.float32(scale), end
        assert end[0]["step"] == STEPS_OVERFLOW - n, end
        counts = [m["skipped_steps"] for m in metrics]
        assert counts == sorted(counts) and counts[0] >= 1 and counts[-1] == n, counts
        assert any(0 < m["skipped_steps"] < n for m in metrics), counts
        print("overflow: %d of %d steps skipped, scale 1e38 -> %g, last loss %s" % (n, STEPS_OVERFLOW, scale,
                                                                                    losses[-1]))
        return applied, losses, n
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_resume(ctx, applied_ref, losses_ref, n):
    d = tmpdir()
    try:
        kill = n // 2 + 3   # past the checkpoint at iteration 5·k, inside the skipping
        applied, losses, metrics, log = train(ctx, d, STEPS_OVERFLOW, 1e38, save_every=5, kill_after=kill)
        assert "resumed" in log, tail(os.path.join(d, "trainer.log"))
        assert applied == applied_ref, "applied.tsv differs after resume"
        assert losses == losses_ref, "losses.tsv differs after resume:\n%s\nvs\n%s" % (losses, losses_ref)
        assert ckpt_state(d)["skipped_steps"] == n
        print("resume: killed at %d applied batches (mid-skipping), records identical" % kill)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_config():
    d = tmpdir()
    try:
        for bad, why in [("bogus", '"bogus"'), ("-4", "-4"), ("[1]", "auto, off, dynamic")]:
            cfg, _ = run_config(d, direct=True, extra_train={"loss_scale": 1})
            r = subprocess.run([os.path.join(BIN, "sushi-trainer"), "--config", cfg, "train.loss_scale=" + bad],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode != 0, (bad, r.stderr)
            assert "train.loss_scale" in r.stderr and why in r.stderr, (bad, r.stderr)
        r = subprocess.run([os.path.join(BIN, "sushi-trainer"), "--config", cfg,
                            "train.loss_scale_growth_interval=0"], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "train.loss_scale_growth_interval" in r.stderr, r.stderr
        print("config: bad values refused")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ctx = zmq.Context()
    try:
        test_config()
        test_pow2(ctx, "student")
        test_pow2(ctx, "student, accum_steps 2", extra={"accum_steps": 2})
        test_pow2(ctx, "deepseek, accum_steps 2", extra={"accum_steps": 2}, model=DS_MODEL)
        applied, losses, n = test_overflow(ctx)
        test_resume(ctx, applied, losses, n)
    finally:
        ctx.destroy(0)
    print("ok")


if __name__ == "__main__":
    main()
