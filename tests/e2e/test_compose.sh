#!/usr/bin/env bash
# docker-compose.yml: `docker-compose config` accepts it, and every service's command is
# exactly a command line `sushi-run pipelines/distill.yaml --print-commands` prints with
# the compose variant's vars (x-sushi-run-vars in the file), with SUSHI_STAGE set to the
# service name and SUSHI_PUBLISH to the monitor's endpoint. Skips (77) without
# docker-compose.
set -u
cd "${SUSHI_REPO_ROOT:-$(dirname "$0")/../..}"
BUILD=${BUILD:-build}
command -v docker-compose >/dev/null 2>&1 || { echo "skip: docker-compose is not installed"; exit 77; }
[ -x "$BUILD/bin/sushi-run" ] || { echo "skip: $BUILD/bin/sushi-run is not built"; exit 77; }
docker-compose -f docker-compose.yml config -q || { echo "FAIL: docker-compose config refused docker-compose.yml"; exit 1; }
exec /usr/bin/python3 - "$BUILD/bin/sushi-run" <<'PY'
import os, shlex, subprocess, sys
import yaml
run = sys.argv[1]
comp = yaml.safe_load(open("docker-compose.yml"))
vars_ = comp["x-sushi-run-vars"]
out = subprocess.run([run, "pipelines/distill.yaml", "--print-commands"] + vars_, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, check=True).stdout.decode()
printed = set()
for line in out.splitlines():
    argv = shlex.split(line)
    printed.add(tuple([os.path.basename(argv[0])] + argv[1:]))
monitor_ep = [v.split("=", 1)[1] for v in vars_ if v.startswith("vars.monitor_ep=")][0]
services = comp["services"]
assert set(services) == {"loader", "teacher", "trainer", "eval", "monitor"}, sorted(services)
bad = 0
for name, svc in services.items():
    cmd = tuple(str(a) for a in svc["command"])
    if cmd not in printed:
        bad += 1
        print("FAIL: service %s runs a command sushi-run does not print:\n  %s" % (name, " ".join(cmd)))
        near = [p for p in printed if p[0] == cmd[0]]
        for p in near:
            print("  sushi-run: %s" % " ".join(p))
    env = svc.get("environment", {})
    if env.get("SUSHI_STAGE") != name:
        bad += 1
        print("FAIL: service %s: SUSHI_STAGE is %r" % (name, env.get("SUSHI_STAGE")))
    if name != "monitor" and env.get("SUSHI_PUBLISH") != monitor_ep:
        bad += 1
        print("FAIL: service %s: SUSHI_PUBLISH %r is not the monitor's %s" % (name, env.get("SUSHI_PUBLISH"), monitor_ep))
    print("ok %s: %s" % (name, cmd[0]))
replicas = services["teacher"].get("deploy", {}).get("replicas")
if replicas != 2:
    bad += 1
    print("FAIL: teacher deploy.replicas is %r, the pipeline runs 2" % replicas)
sys.exit(1 if bad else 0)
PY
