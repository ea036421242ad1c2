#!/usr/bin/python3
"""sushi-eval --watch: a checkpoint directory appearing later is evaluated once; one
swapped in by rename (as checkpoint_save does) is evaluated again; a truncated
model.safetensors is skipped with a log line while the service keeps going, and is
evaluated once it is complete; SIGTERM ends the service with exit 0."""
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sushi_e2e import spawn, stop, tail, tmpdir, wait_for  # noqa: E402
from test_eval import check, make_run, write_student  # noqa: E402


def results(d):
    try:
        return [json.loads(x) for x in open(os.path.join(d, "run", "eval.jsonl"))]
    except OSError:
        return []


def publish(tmp_parent, dst, seed, step):
    """writes a student into a temporary folder and renames it into place (old one aside)"""
    tmp = dst + ".tmp-%d" % seed
    write_student(tmp, seed, step=step)
    if os.path.exists(dst):
        os.rename(dst, dst + ".old")
    os.rename(tmp, dst)
    shutil.rmtree(dst + ".old", ignore_errors=True)


def main():
    d = tmpdir()
    log = os.path.join(d, "eval.log")
    proc = None
    try:
        cfg = make_run(d, teacher=False, needle=False)
        watch = os.path.join(d, "ckpts")
        os.makedirs(watch)
        proc = spawn(["sushi-eval", "--config", cfg, "--watch", watch], log)
        wait_for(lambda: "watching" in tail(log), 20, "sushi-eval to start")
        time.sleep(1.5)
        check(results(d) == [], "nothing to evaluate yet: %r" % results(d))

        a = os.path.join(watch, "a")
        publish(d, a, 1, 10)
        wait_for(lambda: len(results(d)) >= 1, 20, "the first checkpoint to be evaluated")
        time.sleep(2.5)   # two more polls: an unchanged checkpoint is not evaluated again
        r = results(d)
        check(len(r) == 1 and r[0]["checkpoint"] == a and r[0]["step"] == 10, "once: %r" % r)

        publish(d, a, 2, 20)   # swapped in by rename: a new version
        wait_for(lambda: len(results(d)) >= 2, 20, "the updated checkpoint to be evaluated")
        r = results(d)
        check(r[1]["checkpoint"] == a and r[1]["step"] == 20 and r[1]["ppl"] != r[0]["ppl"], "update: %r" % r)

        # a truncated checkpoint: skipped with a log line; the service keeps going
        b = os.path.join(watch, "b")
        write_student(b, 3, step=30)
        full = open(os.path.join(b, "model.safetensors"), "rb").read()
        with open(os.path.join(b, "model.safetensors"), "wb") as f:
            f.write(full[:len(full) // 3])
        wait_for(lambda: "skipping checkpoint %s" % b in tail(log), 20, "the truncated checkpoint to be skipped")
        check(proc.poll() is None, "sushi-eval exited on a truncated checkpoint:\n" + tail(log))
        c = os.path.join(watch, "c")
        publish(d, c, 4, 40)
        wait_for(lambda: len(results(d)) >= 3, 20, "the next checkpoint after the bad one")
        check(results(d)[2]["checkpoint"] == c and len(results(d)) == 3, "after bad: %r" % results(d))
        # completed later: evaluated then
        with open(os.path.join(b, "model.safetensors"), "wb") as f:
            f.write(full)
        wait_for(lambda: len(results(d)) >= 4, 20, "the completed checkpoint to be evaluated")
        r = results(d)
        check(r[3]["checkpoint"] == b and r[3]["step"] == 30, "completed: %r" % r)
        time.sleep(2.5)
        check(len(results(d)) == 4, "re-evaluated without a change: %r" % results(d))
        check(stop(proc) == 0, "SIGTERM: exit %r\n%s" % (proc.returncode, tail(log)))
        check("4 evaluations, 1 checkpoints skipped" in tail(log), "final counts:\n" + tail(log))
        print("ok")
    except AssertionError as e:
        print("FAIL:", e)
        print(tail(log))
        sys.exit(1)
    finally:
        if proc:
            stop(proc)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
