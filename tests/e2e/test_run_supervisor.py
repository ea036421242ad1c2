"""sushi-run, the supervisor, with small test pipelines: stages are the real sushi-monitor
and a tiny Python stage (written into the test directory) that publishes hello/heartbeat
on $SUSHI_PUBLISH like common/transport/stage.c does.

  - --print-commands: exact command lines after var substitution, list vars, replicas
  - bad pipeline files are refused (exit 2) with a message naming the field
  - a crashing stage is restarted after 0.5, 1, 2 s (start timestamps); past max_restarts
    the run fails (exit 1) with a message naming the stage and max_restarts
  - a stage that crashes twice then works: run completes, restarts 2 in supervisor.json
  - kill -9 of a stage (pid from supervisor.json): restarted, new pid
  - a stage that never says hello is killed after the start timeout
  - SIGTERM to the supervisor stops every stage and their children (no orphans), a
    stage ignoring SIGTERM gets SIGKILL after stop_grace_s; exit 143
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import BIN, ROOT, tmpdir, wait_for, tail  # noqa: E402

RUN = os.path.join(BIN, "sushi-run")
MONITOR = os.path.join(BIN, "sushi-monitor")

STAGE_PY = r'''
import os, signal, subprocess, sys, time
sys.path.insert(0, %(e2e)r)
import zmq
from sushi_e2e import encode
mode, log = sys.argv[1], sys.argv[2]
name = os.environ.get("SUSHI_STAGE", "?")
with open(log, "a") as f:
    f.write("%%s %%d %%.6f start\n" %% (name, os.getpid(), time.time()))
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.setsockopt(zmq.LINGER, 500)
for ep in filter(None, os.environ.get("SUSHI_PUBLISH", "").split(",")):
    pub.connect(ep)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "child":   # a helper process of its own: must not outlive the stage
    kid = subprocess.Popen(["sleep", "1000"])
    with open(log, "a") as f:
        f.write("%%s %%d %%.6f child\n" %% (name, kid.pid, time.time()))
counter = log + "." + name + ".n"
n = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(n + 1))
t0 = time.time()
kind = "hello"
while True:
    if mode != "silent":
        pub.send_multipart(encode(kind, stage=name, meta={"pid": os.getpid()}))
        kind = "heartbeat"
    if mode == "crash" and time.time() - t0 > 0.2:
        sys.exit(3)
    if mode.startswith("crash-first-") and n < int(mode.split("-")[2]) and time.time() - t0 > 0.2:
        sys.exit(5)
    if mode.startswith("main-") and time.time() - t0 > float(mode.split("-")[1]):
        pub.send_multipart(encode("metrics", stage=name, meta={"step": 10, "total_steps": 10, "loss": 1.5, "event": "end"}))
        pub.send_multipart(encode("eval", stage=name, meta={"step": 10, "ppl": 12.5, "teacher_ppl": 7.25, "top1_agreement": 0.375}))
        pub.send_multipart(encode("checkpoint", stage=name, meta={"path": "/tmp/ckpt-step10", "step": 10}))
        time.sleep(0.3)
        sys.exit(0)
    time.sleep(0.1)
'''


def write(d, name, text):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def sushi_run(args, timeout=60, **kw):
    return subprocess.run([RUN] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          cwd=ROOT, **kw)


def pipeline(d, stages, extra="", phases=None, start_timeout=5):
    """A pipeline YAML in d: one phase with `stages` (YAML flow maps), or `phases` text."""
    body = phases or ("    - name: only\n      stages:\n" + "".join("        - %s\n" % s for s in stages))
    return write(d, "p.yaml", """pipeline:
  name: test
  vars: { run: %s, py: %s, stage: %s, log: %s }
  start_timeout_s: %g
  stop_grace_s: 2
%s  phases:
%s""" % (d, sys.executable, os.path.join(d, "stage.py"), os.path.join(d, "events.log"), start_timeout, extra, body))


def stage(name, mode, more=""):
    return '{ name: %s, program: "${py}", args: ["${stage}", %s, "${log}"]%s }' % (name, mode, more)


def events(d, what="start"):
    """[(stage, pid, time)] lines of the stage log."""
    out = []
    p = os.path.join(d, "events.log")
    if os.path.exists(p):
        for line in open(p):
            f = line.split()
            if len(f) == 4 and f[3] == what:
                out.append((f[0], int(f[1]), float(f[2])))
    return out


def state(d):
    try:
        return json.load(open(os.path.join(d, "supervisor.json")))
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill 0: count it as gone
    try:
        return open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def test_print_commands(d):
    p = write(d, "pc.yaml", """pipeline:
  name: pc
  vars: { run: runs/x, cfg: configs/distill/tiny-cpu.yaml, common: [ "run.dir=${run}", "endpoints.loader=ipc://${run}/l.sock" ] }
  phases:
    - name: a
      stages:
        - { name: loader, args: [--config, "${cfg}", "${common}"] }
        - { name: teacher, replicas: 2, args: [pipeline, --config, "${cfg}", "teacher.topk=16", "${common}"] }
        - { name: trainer, program: /opt/x/my-trainer, main: true, args: [--steps, 20, "note=two words", "cost=$$5"] }
""")
    r = sushi_run([p, "--print-commands", "vars.run=/tmp/r1"])
    out = r.stdout.decode()
    assert r.returncode == 0, out
    want = [
        BIN + "/sushi-loader --config configs/distill/tiny-cpu.yaml run.dir=/tmp/r1 endpoints.loader=ipc:///tmp/r1/l.sock",
        BIN + "/sushi-teacher pipeline --config configs/distill/tiny-cpu.yaml teacher.topk=16 run.dir=/tmp/r1 "
        "endpoints.loader=ipc:///tmp/r1/l.sock",
    ]
    want.append(want[1])
    want.append("/opt/x/my-trainer --steps 20 'note=two words' 'cost=$5'")
    assert out.splitlines() == want, out
    r = sushi_run([p, "--dry-run"])
    out = r.stdout.decode()
    assert r.returncode == 0 and "# phase a" in out and "# SUSHI_STAGE=teacher.2" in out, out
    assert "# SUSHI_STAGE=trainer (main)" in out, out
    print("ok print-commands")


def test_bad_files(d):
    cases = [
        ("pipeline:\n  name: x\n  phases:\n    - name: a\n      stages:\n        - { program: /bin/true }\n",
         "pipeline.phases[0].stages[0].name: missing"),
        ("pipeline:\n  name: x\n  phases:\n    - name: a\n      stages:\n        - { name: s, replica: 2 }\n",
         "replica"),
        ("pipeline:\n  name: x\n  phases:\n    - name: a\n      stages:\n        - { name: s, args: [\"${nope}\"] }\n",
         "pipeline.phases[0].stages[0].args[0]: unknown variable ${nope}"),
        ("pipeline:\n  name: x\n  phases:\n    - name: a\n      stages:\n        - { name: s, main: true }\n"
         "        - { name: t, main: true }\n", "at most one"),
        ("pipeline:\n  name: x\n  phases:\n    - name: a\n      stages:\n        - { name: s, replicas: 0 }\n",
         "pipeline.phases[0].stages[0].replicas: 0 out of range"),
        ("pipeline:\n  name: x\n  phases: []\n", "pipeline.phases: expected a list"),
        ("pipeline:\n  name: x\n  vars: { a: \"${b}\", b: \"${a}\" }\n  phases:\n    - name: a\n      stages:\n"
         "        - { name: s, args: [\"${a}\"] }\n", "vars nest deeper"),
        ("pipeline:\n  name: x\n  phases:\n    - name: a\n      stages:\n        - { name: s, ready: later }\n",
         "pipeline.phases[0].stages[0].ready: \"later\": expected heartbeat or start"),
        ("pipeline:\n  name: x\n  phases:\n    - name: a\n      stages:\n        - { name: \"bad name\" }\n",
         "pipeline.phases[0].stages[0].name"),
        ("stages: []\n", "pipeline: missing"),
    ]
    for i, (text, want) in enumerate(cases):
        p = write(d, "bad%d.yaml" % i, text)
        r = sushi_run([p, "--print-commands"])
        out = r.stdout.decode()
        assert r.returncode == 2, (text, out)
        assert p in out and want in out, "case %d: want %r in %r" % (i, want, out)
    # a program that does not exist: refused before anything starts
    p = write(d, "missing.yaml", "pipeline:\n  name: x\n  vars: { run: %s }\n  phases:\n    - name: a\n"
              "      stages:\n        - { name: s, program: /nonexistent/prog }\n" % d)
    r = sushi_run([p])
    out = r.stdout.decode()
    assert r.returncode == 2 and "/nonexistent/prog" in out and "stages[0]" in out, out
    print("ok bad pipeline files")


def test_backoff_and_max_restarts(d):
    p = pipeline(d, [stage("crasher", "crash", ", max_restarts: 3"), stage("worker", "main-30", ", main: true")])
    t0 = time.time()
    r = sushi_run([p], timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 1, out
    assert "stage crasher failed: exit 3 after 3 restarts (max_restarts 3)" in out, out
    starts = [t for (n, _, t) in events(d) if n == "crasher"]
    assert len(starts) == 4, (starts, out)
    # each crash happens ~0.2-0.5 s after its start; the gaps must include 0.5, 1, 2 s delays
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    for g, delay in zip(gaps, [0.5, 1.0, 2.0]):
        assert delay + 0.15 <= g <= delay + 1.5, (gaps, out)
    # the healthy main stage was stopped, not left behind
    wpid = [pid for (n, pid, _) in events(d) if n == "worker"]
    assert len(wpid) == 1 and not alive(wpid[0]), wpid
    s = state(d)
    assert s["stages"]["crasher"]["restarts"] == 3 and s["stages"]["crasher"]["state"] == "failed", s
    assert time.time() - t0 < 30
    print("ok backoff %s and max_restarts" % ["%.2f" % g for g in gaps])


def test_recover(d):
    p = pipeline(d, [stage("flaky", "crash-first-2"), stage("trainer", "main-4", ", main: true")])
    proc = subprocess.Popen([RUN, p], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    # kill -9 the main stage once, by the pid supervisor.json gives
    s = wait_for(lambda: (lambda s: s if s and s["stages"]["trainer"]["ready"] else None)(state(d)), 20,
                 "trainer ready")
    victim = s["stages"]["trainer"]["pid"]
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=40)
    out = out.decode()
    assert proc.returncode == 0, out
    s = state(d)
    assert s["stages"]["flaky"]["restarts"] == 2, s
    assert s["stages"]["trainer"]["restarts"] == 1 and s["stages"]["trainer"]["pid"] != victim, s
    tpids = [pid for (n, pid, _) in events(d) if n == "trainer"]
    assert len(tpids) == 2 and tpids[0] == victim, tpids
    assert "trainer crashed (signal 9" in out, out
    # the summary: restarts, exit codes, eval results and checkpoints received
    assert "phase only" in out and "completed" in out, out
    assert any(l.split()[:3] == ["flaky", "restarts", "2"] for l in out.splitlines()), out
    assert any(l.split()[:5] == ["trainer", "restarts", "1", "exit", "0"] for l in out.splitlines()), out
    assert "student ppl 12.5000  teacher ppl 7.2500  top-1 agreement 0.3750" in out, out
    assert "checkpoint: /tmp/ckpt-step10" in out, out
    # progress lines printed by the supervisor itself (no console stage)
    assert "[only] trainer step 10/10 loss 1.5000" in out, out
    print("ok restart after crashes and kill -9; summary")


def test_start_timeout(d):
    p = pipeline(d, [stage("mute", "silent", ", max_restarts: 0"), stage("main", "main-20", ", main: true")],
                 start_timeout=1)
    t0 = time.time()
    r = sushi_run([p], timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 1, out
    assert "stage mute failed: signal 9" in out and "no hello/heartbeat within the start timeout" in out, out
    assert time.time() - t0 < 8, time.time() - t0
    print("ok start timeout")


def test_sigterm(d):
    mon_bind = "ipc://%s/mon.sock" % d
    stages = [
        stage("teacher", "child", ", replicas: 2"),
        stage("stubborn", "ignore-term"),
        stage("trainer", "main-60", ", main: true"),
        '{ name: monitor, program: %s, ready: start, args: [--bind, "%s", --jsonl, "${run}/metrics.jsonl"] }'
        % (MONITOR, mon_bind),
    ]
    p = pipeline(d, stages, extra='  publish: [ "%s" ]\n' % mon_bind)
    proc = subprocess.Popen([RUN, p], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    names = ["teacher.1", "teacher.2", "stubborn", "trainer", "monitor"]

    def all_ready():
        s = state(d)
        return s if s and all(s["stages"].get(n, {}).get("ready") for n in names) else None
    s = wait_for(all_ready, 20, "every stage ready")
    pids = [s["stages"][n]["pid"] for n in names]
    kids = [pid for (_, pid, _) in events(d, "child")]
    assert len(kids) == 2 and all(alive(k) for k in kids + pids), (kids, pids)
    # the monitor got the stages' heartbeats through SUSHI_PUBLISH
    wait_for(lambda: os.path.exists(d + "/metrics.jsonl") and "teacher.2" in open(d + "/metrics.jsonl").read(),
             10, "heartbeats in the monitor's JSONL")
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    out = out.decode()
    took = time.time() - t0
    assert proc.returncode == 143, out
    assert 1.5 < took < 8, (took, out)  # the stubborn stage needed the 2 s grace + SIGKILL
    for pid in pids + kids:
        assert not alive(pid), ("still running", pid, out)
    assert "stubborn did not stop within 2 s: SIGKILL" in out, out
    assert "interrupted" in out, out
    s = state(d)
    assert all(s["stages"][n]["pid"] == 0 for n in names), s
    assert s["stages"]["monitor"]["last_exit"] == "exit 0", s
    assert s["stages"]["stubborn"]["last_exit"].startswith("signal 9"), s
    print("ok SIGTERM stops everything in %.1f s, no orphans" % took)


def test_phases(d):
    """phases in order: promote (rename + copy), a { json, key } var read when its phase
    starts (written by the phase before), skip_if_exists; a var whose file is still
    missing when its phase starts fails the run naming the field"""
    write(d, "extra.txt", "tokenizer bytes\n")
    p = write(d, "ph.yaml", """pipeline:
  name: phases
  vars:
    run: %s
    vocab: { json: "${run}/final/config.json", key: model.vocab_size }
  phases:
    - name: make
      promote: { from: "${run}/tmp", to: "${run}/final", copy: [ "${run}/extra.txt" ] }
      stages:
        - { name: writer, program: /bin/sh, main: true, ready: start,
            args: [-c, "mkdir -p ${run}/tmp && echo '{\\"model\\": {\\"vocab_size\\": 321}}' > ${run}/tmp/config.json"] }
    - name: use
      skip_if_exists: "${run}/never"
      stages:
        - { name: reader, program: /bin/sh, main: true, ready: start, args: [-c, "echo $$1 > ${run}/got.txt", sh, "${vocab}"] }
    - name: again
      skip_if_exists: "${run}/final/config.json"
      stages:
        - { name: never, program: /bin/false, main: true, ready: start }
""" % d)
    r = sushi_run([p, "--print-commands"])
    out = r.stdout.decode()
    assert r.returncode == 0 and "sh '<model.vocab_size of %s/final/config.json>'" % d in out, out
    r = sushi_run([p])
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert open(d + "/got.txt").read() == "321\n", open(d + "/got.txt").read()
    assert open(d + "/final/extra.txt").read() == "tokenizer bytes\n"
    assert not os.path.exists(d + "/tmp") and os.path.exists(d + "/final/config.json")
    assert "phase again" in out and "skipped (%s/final/config.json exists)" % d in out, out
    assert "phase use" in out and "  reader       restarts 0  exit 0" in out, out
    # the same pipeline again: the json file is gone before the phase that reads it
    subprocess.run(["rm", "-rf", d + "/final", d + "/tmp", d + "/logs", d + "/supervisor.json"])
    p2 = write(d, "ph2.yaml", open(p).read().replace("mkdir -p ${run}/tmp &&", "mkdir -p ${run}/tmp; true ||"))
    r = sushi_run([p2])
    out = r.stdout.decode()
    assert r.returncode == 1, out
    assert ("phase use cannot start: %s: pipeline.phases[1].stages[0].args[3]: ${vocab}: %s/final/config.json: "
            "missing" % (p2, d)) in out, out
    print("ok phases: promote, copy, json vars at phase start, skip_if_exists")


def main():
    for p in (RUN, MONITOR):
        if not os.path.exists(p):
            print("skip: %s is not built" % p)
            sys.exit(77)
    tests = [test_print_commands, test_bad_files, test_phases, test_backoff_and_max_restarts, test_recover, test_start_timeout,
             test_sigterm]
    only = sys.argv[1:]
    for t in tests:
        if only and t.__name__ not in only:
            continue
        d = tmpdir()
        write(d, "stage.py", STAGE_PY % {"e2e": os.path.dirname(os.path.abspath(__file__))})
        try:
            t(d)
        except Exception:
            for log in sorted(os.listdir(os.path.join(d, "logs"))) if os.path.isdir(os.path.join(d, "logs")) else []:
                print("---- %s\n%s" % (log, tail(os.path.join(d, "logs", log), 15)))
            raise
        finally:
            subprocess.run(["rm", "-rf", d])
    print("all supervisor tests passed")


if __name__ == "__main__":
    main()
