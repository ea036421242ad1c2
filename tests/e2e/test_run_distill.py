"""The end-to-end guarantee of pipelines/distill.yaml under sushi-run: loader -> two
teacher replicas -> trainer (KD) -> eval, with a small random DeepSeek teacher
(tests/oracle/deepseek_ref.py, byte-level vocabulary of 257, so the teacher-pretraining
phase is skipped) and a tiny student, on a Debian fortunes file.

  1. an uninterrupted run completes; applied.tsv applies batch ids 0..N-1 in order and
     every sample id of them exactly once; losses.tsv has one finite loss per step; the
     final eval reports student and teacher perplexity;
  2. kill -9 one of the two teacher replicas mid-run,
  3. kill -9 the loader mid-run,
  4. kill -9 the trainer mid-run:
     each run still completes (the supervisor restarts the stage) with applied.tsv equal
     to the uninterrupted run's (exactly-once ids), and the trainer-kill run's losses.tsv
     equals the uninterrupted run's bit for bit (resume from the last checkpoint).
"""
import json
import math
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import BIN, ROOT, tmpdir, wait_for, tail  # noqa: E402

RUN = os.path.join(BIN, "sushi-run")
ORACLE = os.path.join(ROOT, "tests", "oracle", "deepseek_ref.py")
CORPUS = "/usr/share/games/fortunes/fortunes"
HELDOUT = "/usr/share/games/fortunes/love"
STEPS, B, T = 60, 2, 32

CONFIG = """run:
  dir: {d}/run
endpoints:
  loader: ipc://{d}/run/loader.sock
  trainer: ipc://{d}/run/trainer.sock
  events: ipc://{d}/run/events.sock
data:
  seed: 5
  seq_len: {T}
  batch_size: {B}
  threads: 1
  prefetch: 2
  needle_share: 0.0
  tokenizer: {d}/tok.json
  sources:
    - {{ name: fortunes, path: {corpus}, format: text, separator: "%" }}
loader: {{ heartbeat_ms: 200, dead_after_ms: 1500, resend_after_ms: 30000, threads: 1 }}
teacher:
  checkpoint: {d}/teacher
  backend: cpu
  topk: 8
  temperature: 1.0
  credit: 2
  threads: 1
  heartbeat_ms: 200
  dead_after_ms: 1500
model: {{ n_layers: 1, d_model: 32, n_heads: 2, n_kv_heads: 1, d_ff: 64, max_seq: {T}, vocab: 257, tied: true,
         rope_theta: 10000.0, norm_eps: 1.0e-5 }}
train:
  backend: cpu
  steps: {steps}
  lr: 3.0e-3
  min_lr: 3.0e-4
  warmup_steps: 3
  schedule: cosine
  weight_decay: 0.1
  clip_norm: 1.0
  log_every: 4
  seed: 7
  threads: 1
  save_every: 4
  window: 4
  heartbeat_ms: 200
  dead_after_ms: 1500
  kd: {{ alpha: 0.5, mode: forward, temperature: 1.0 }}
  resume: true
  deterministic: true
eval:
  batches: 1
  data:
    sources:
      - {{ name: love, path: {heldout}, format: text, separator: "%" }}
"""


def setup(d):
    subprocess.run([sys.executable, ORACLE, "tokenizer", os.path.join(d, "tok.json")], check=True)
    subprocess.run([sys.executable, ORACLE, "write", os.path.join(d, "teacher"), "v2", "3", "--vocab", "257"],
                   check=True, stdout=subprocess.DEVNULL)
    # like an HF checkpoint directory, the teacher carries its tokenizer (the pipeline uses it)
    with open(os.path.join(d, "tok.json")) as src, open(os.path.join(d, "teacher", "tokenizer.json"), "w") as dst:
        dst.write(src.read())
    with open(os.path.join(d, "run.yaml"), "w") as f:
        f.write(CONFIG.format(d=d, T=T, B=B, steps=STEPS, corpus=CORPUS, heldout=HELDOUT))


def read_tsv(path):
    try:
        return [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
    except OSError:
        return []


def state(run):
    try:
        return json.load(open(os.path.join(run, "supervisor.json")))
    except (OSError, ValueError):
        return None


def distill(d, name, kill=None):
    """Runs pipelines/distill.yaml into d/name; kill = a stage instance to SIGKILL once
    the trainer has applied a few batches. Returns (run dir, sushi-run output)."""
    run = os.path.join(d, name)
    args = [RUN, "pipelines/distill.yaml", "vars.run=" + run, "vars.teacher=" + os.path.join(d, "teacher"),
            "vars.config=" + os.path.join(d, "run.yaml"), "start_timeout_s=30", "stop_grace_s=5"]
    t0 = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    try:
        if kill:
            applied = os.path.join(run, "trainer", "applied.tsv")
            # mid-run: after a few checkpoints (every 4 steps), well before the last step
            wait_for(lambda: len(read_tsv(applied)) >= 18, 60, "18 applied batches before killing " + kill)
            s = state(run)
            victim = s["stages"][kill]["pid"]
            assert victim > 0, s
            os.kill(victim, signal.SIGKILL)
            print("killed %s (pid %d) at %d applied batches" % (kill, victim, len(read_tsv(applied))))
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = out.decode(errors="replace")
    if proc.returncode != 0:
        for log in sorted(os.listdir(os.path.join(run, "logs"))):
            print("---- %s\n%s" % (log, tail(os.path.join(run, "logs", log), 20)))
        raise AssertionError("%s: sushi-run exit %d\n%s" % (name, proc.returncode, out[-4000:]))
    print("%s: completed in %.1f s" % (name, time.time() - t0))
    return run, out


def check_exactly_once(run):
    applied = read_tsv(os.path.join(run, "trainer", "applied.tsv"))
    assert [int(r[0]) for r in applied] == list(range(1, STEPS + 1)), [r[0] for r in applied]
    assert [int(r[1]) for r in applied] == list(range(STEPS)), [r[1] for r in applied]
    samples = [int(s) for r in applied for s in r[2].split(",")]
    assert len(samples) == len(set(samples)) == STEPS * B, (len(samples), len(set(samples)))
    assert sorted(samples) == list(range(STEPS * B)), samples
    losses = read_tsv(os.path.join(run, "trainer", "losses.tsv"))
    assert [int(r[0]) for r in losses] == list(range(1, STEPS + 1)), losses
    assert all(math.isfinite(float(r[1])) for r in losses), losses
    return applied, losses


def main():
    for p in ("sushi-run", "sushi-loader", "sushi-teacher", "sushi-trainer", "sushi-eval", "sushi-monitor"):
        if not os.path.exists(os.path.join(BIN, p)):
            print("skip: %s is not built" % p)
            sys.exit(77)
    for p in (CORPUS, HELDOUT):
        if not os.path.exists(p):
            print("skip: %s missing (Debian package fortunes)" % p)
            sys.exit(77)
    only = sys.argv[1:]
    d = tmpdir()
    try:
        setup(d)
        base, out = distill(d, "base")
        applied, losses = check_exactly_once(base)
        assert "phase teacher-pretrain" in out and "skipped" in out, out[-3000:]
        assert "phase distill" in out and "phase final-eval" in out, out[-3000:]
        ev = [json.loads(l) for l in open(os.path.join(base, "eval.jsonl")) if l.strip()]
        last = ev[-1].get("meta", ev[-1])
        assert last["ppl"] > 1 and last["teacher_ppl"] > 1, last
        assert "student ppl %.4f" % last["ppl"] in out, (last, out[-2000:])
        assert "checkpoint: %s/student" % base in out, out[-2000:]
        print("base: %d steps, final loss %s, student ppl %.2f, teacher ppl %.2f" %
              (STEPS, losses[-1][1], last["ppl"], last["teacher_ppl"]))
        for victim in ("teacher.2", "loader", "trainer"):
            if only and victim not in only:
                continue
            run, out = distill(d, "kill-" + victim.replace(".", ""), kill=victim)
            a2, l2 = check_exactly_once(run)
            assert a2 == applied, "kill %s: applied.tsv differs from the uninterrupted run's" % victim
            assert "%s crashed (signal 9" % victim in out, out[-3000:]
            if victim == "trainer":
                assert "resumed" in open(os.path.join(run, "logs", "trainer.log")).read(), "trainer did not resume"
                assert l2 == losses, "losses.tsv after a trainer kill differs:\n%s\n%s" % (l2, losses)
            print("ok kill -9 %s: exactly-once ids%s" % (victim, ", identical losses" if victim == "trainer" else ""))
    finally:
        subprocess.run(["rm", "-rf", d])
    print("all distill pipeline tests passed")


if __name__ == "__main__":
    main()
