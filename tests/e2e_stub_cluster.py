"""Stand-ins for `minikube`, `kind`, `docker` and `kubectl`, so tools/e2e.sh can run its whole course offline.

tests/test_e2e_offline.py puts small wrappers named after those tools on the
PATH that call this file. It logs every command line to $E2E_STUB_DIR/calls.log and
answers the calls the script makes the way a healthy cluster would, with the output
formats of the real programs where the script parses them (the backup and restore logs
are the lines constructs/scripts/postgres-*.sh print). Two answers are real work:

- applying `dist/90-restore.k8s.yaml` (make apply, restore mode) records which dump the
  restore Job names;
- `kubectl run probe ... -- bash -c SCRIPT probe TARGETS` runs the script's probe for
  real, on this machine, with each target's host replaced by 127.0.0.1 and its port by
  the one in $E2E_STUB_PORTS (name=port,...): the fake Sentry's port for web, closed
  ports for PostgreSQL and Redis, as NetworkPolicies would leave them.

Not a cluster: it checks the script's course and parsing, not Kubernetes.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

STATE_DIR = Path(os.environ["E2E_STUB_DIR"])
STATE = STATE_DIR / "state.json"


def _state() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {"restarted": False, "scaled_down": False}


def _save(state: dict) -> None:
    # Atomic: `kubectl create ... | kubectl apply -f -` runs two stubs at once.
    tmp = STATE.with_name(f"state.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(STATE)


def minikube(args: list[str]) -> int:
    if args[:2] == ["profile", "list"]:
        print(json.dumps({"invalid": [], "valid": []}))
    elif "service" in args and "--url" in args:
        print(os.environ["E2E_STUB_URL"])
    elif "image" in args and "ls" in args:
        print("docker.io/sentry-k8s/sentry-auth:9.1.2")
    return 0  # start, image build, delete


def kind(args: list[str]) -> int:
    if args[:2] == ["create", "cluster"]:
        state = _state()
        state["kind_config"] = sys.stdin.read()
        _save(state)
    return 0  # get clusters (none), load docker-image, delete cluster


def docker(args: list[str]) -> int:
    if args[:1] == ["port"]:  # where the kind node publishes the web NodePort
        print(os.environ["E2E_STUB_URL"].removeprefix("http://"))
    return 0  # build


def kubectl(args: list[str]) -> int:
    state = _state()
    before = dict(state)
    # Drop the global flags the script always passes.
    rest = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--context", "-n"):
            skip = True
        else:
            rest.append(arg)
    verb = rest[0] if rest else ""

    if verb == "version":
        print(json.dumps({"serverVersion": {"gitVersion": "v1.35.1"}}, indent=2))
    elif verb == "get" and rest[1:2] == ["jobs"] and "json" in rest:
        print(json.dumps({"items": []}))  # make apply: none still running
    elif verb == "get" and rest[1:2] == ["jobs"]:
        print("job.batch/sentry-migrations-0123abcd")
    elif verb == "get" and rest[1:2] == ["job"]:
        print("Complete ", end="")
    elif verb == "get" and rest[1:2] == ["secret"]:
        print(base64.b64encode(os.environ["E2E_STUB_PASSWORD"].encode()).decode(), end="")
    elif verb == "get" and rest[1:2] == ["cronjob"]:
        print("false", end="")
    elif verb == "get" and rest[1:2] == ["pods"] and "-l" in rest:
        if "name" in rest:  # waiting for the pods to go, after the scale to 0
            if not state["scaled_down"]:
                print("pod/sentry-web-new")
        else:  # the pods of web and worker, before and after the rollout
            suffix = "new" if state["restarted"] else "old"
            print(f"sentry-web-{suffix}\nsentry-worker-{suffix}")
    elif verb == "get" and rest[1:3] == ["pod", "probe"]:
        print("Succeeded", end="")
    elif verb == "rollout" and rest[1] == "restart":
        state["restarted"] = True
    elif verb == "scale":
        state["scaled_down"] = True
    elif verb == "apply" and rest[2:3] and rest[2].endswith("90-restore.k8s.yaml"):
        state["restore_manifest"] = Path(rest[2]).read_text()
    elif verb == "apply" and rest[2:3] == ["-"]:
        sys.stdin.read()  # as kubectl does; the writer of the pipe would see it broken otherwise
    elif verb == "apply" and rest[2:3] and Path(rest[2]).name == "dist":
        state["scaled_down"] = False
        state["applied_dist"] = state.get("applied_dist", 0) + 1
    elif verb == "create" and rest[1] == "namespace":
        print(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {rest[2]}")
    elif verb == "create" and rest[1] == "job":
        state["backup_job"] = rest[-1]
    elif verb == "logs" and rest[1].startswith("job/sentry-backup-e2e-"):
        # The log lines of constructs/scripts/postgres-backup.sh and postgres-restore.sh.
        print("backup: verified in 1s")
        print(
            "backup: wrote /backups/sentry-20261130T075300Z "
            "(1843222 bytes; 312 tables, 5120 rows, roles, filestore: 3 entries, 3s)"
        )
        print("backup: done; 1 backups in /backups, newest sentry-20261130T075300Z, 7000 MiB free")
    elif verb == "logs" and rest[1] == "job/sentry-restore":
        print("restore: verified: database sentry (312 tables, 5120 rows), roles, filestore")
        print("restore: checked: all 312 tables have the backup's row counts")
        print("restore: done in 9s: sentry-20261130T075300Z (database sentry: 312 tables, 5120 rows)")
    elif verb == "run" and rest[1] == "probe":
        state["probe_output"] = _run_probe(rest[rest.index("--") + 1 :])
    elif verb == "logs" and rest[1] == "probe":
        print(state.get("probe_output", ""), end="")
    if state != before:
        _save(state)
    return 0


def _run_probe(command: list[str]) -> str:
    """The probe pod's command, run here against local ports."""
    ports = dict(item.split("=") for item in os.environ["E2E_STUB_PORTS"].split(","))
    bash, flag, script, name, *targets = command
    local = [f"{t.split(':')[0]}:127.0.0.1:{ports[t.split(':')[0]]}" for t in targets]
    STATE_DIR.joinpath("probe-targets.txt").write_text("\n".join(targets))
    done = subprocess.run([bash, flag, script, name, *local], capture_output=True, text=True, timeout=60)
    return done.stdout


if __name__ == "__main__":
    tool, *argv = sys.argv[1:]
    with (STATE_DIR / "calls.log").open("a") as log:
        log.write(" ".join([tool, *argv]) + "\n")
    sys.exit({"minikube": minikube, "kind": kind, "docker": docker, "kubectl": kubectl}[tool](argv))
