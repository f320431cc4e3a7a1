"""A stand-in for kubectl and the API server behind it, for `make apply` without a cluster.

No API server can be installed on the build machines, so the tests of tools/apply.py
(app/applier.py) and of day-2 transitions run against this model. It keeps the cluster
as the union of everything applied and not deleted (a plain `kubectl apply` deletes
nothing), and answers the calls make apply makes the way kubectl and the API server do
where it matters:

- `apply -f PATH... [-l SELECTOR]`: creates or updates every object; refuses, per object,
  the changes the API server refuses (frozen fields, by app/apply_rules.py, and a
  NodePort that another Service holds: "provided port is already allocated"), applies the
  rest, and exits 1 if any was refused; a namespaced object needs its Namespace;
- a Deployment's replicas follow kubectl's three-way merge: set by the manifest, kept
  when neither the manifest nor the last-applied configuration has them (an autoscaler
  owns them), reset to 1 when they leave the manifest but were in the last-applied one;
- `apply set-last-applied`, `delete`, `get` (jobs as JSON, one object by name, a
  Deployment's replicas), `scale`, `rollout status`, `config current-context`.

Not a cluster: nothing runs. Jobs count as finished unless a test marks one active.

Used in-process (`FakeCluster(path).run(argv)`, a runner for app.applier.Kubectl) and as
a program (`python tests/fake_kubectl.py ARGS...` with $FAKE_KUBE_STATE), for the make
target.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from app.apply_rules import apply_conflicts  # noqa: E402

CLUSTER_SCOPED = {"Namespace"}
GROUPS = {
    "Deployment": "apps",
    "StatefulSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
    "Ingress": "networking.k8s.io",
    "NetworkPolicy": "networking.k8s.io",
    "PodDisruptionBudget": "policy",
    "HorizontalPodAutoscaler": "autoscaling",
    "ServiceMonitor": "monitoring.coreos.com",
}


def _key(obj: dict[str, Any], namespace: str = "") -> str:
    meta = obj["metadata"]
    ns = "" if obj["kind"] in CLUSTER_SCOPED else meta.get("namespace") or namespace or "default"
    return f"{obj['kind']}|{ns}|{meta['name']}"


def _resource_name(kind: str) -> str:
    group = GROUPS.get(kind)
    return f"{kind.lower()}.{group}" if group else kind.lower()


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    return all(labels.get(k) == v for k, v in (term.split("=", 1) for term in selector.split(",")))


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    return [path]


class FakeCluster:
    """The cluster's objects in a JSON file; `run(argv)` answers one kubectl call."""

    def __init__(self, state: Path, context: str = "fake") -> None:
        self.state = state
        if not state.exists():
            state.parent.mkdir(parents=True, exist_ok=True)
            self._save({"context": context, "objects": {}, "calls": []})

    # --- state ---------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        return json.loads(self.state.read_text())

    def _save(self, data: dict[str, Any]) -> None:
        tmp = self.state.with_name(f"{self.state.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        tmp.replace(self.state)

    @property
    def objects(self) -> dict[str, dict[str, Any]]:
        return {k: v["obj"] for k, v in self._load()["objects"].items()}

    @property
    def calls(self) -> list[list[str]]:
        return self._load()["calls"]

    def live_replicas(self, namespace: str, name: str) -> int | None:
        entry = self._load()["objects"].get(f"Deployment|{namespace}|{name}")
        return None if entry is None else entry.get("replicas")

    def set_replicas(self, namespace: str, name: str, replicas: int) -> None:
        data = self._load()
        data["objects"][f"Deployment|{namespace}|{name}"]["replicas"] = replicas
        self._save(data)

    def mark_job_active(self, namespace: str, name: str) -> None:
        data = self._load()
        data["objects"][f"Job|{namespace}|{name}"]["active"] = True
        self._save(data)

    # --- kubectl -------------------------------------------------------------------------

    def run(self, argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        args = list(argv)
        if args and Path(args[0]).name == "kubectl":
            args = args[1:]
        namespace = ""
        rest: list[str] = []
        i = 0
        while i < len(args):
            if args[i] in ("-n", "--namespace"):
                namespace = args[i + 1]
                i += 2
            elif args[i] == "--context":
                i += 2
            else:
                rest.append(args[i])
                i += 1
        data = self._load()
        data["calls"].append(list(argv))
        out, err, code = self._dispatch(data, rest, namespace)
        self._save(data)
        return subprocess.CompletedProcess(list(argv), code, out, err)

    def _dispatch(self, data: dict[str, Any], args: list[str], namespace: str) -> tuple[str, str, int]:
        verb = args[0] if args else ""
        if args[:2] == ["config", "current-context"]:
            return data["context"] + "\n", "", 0
        if args[:2] == ["apply", "set-last-applied"]:
            return self._set_last_applied(data, args[2:], namespace)
        if verb == "apply":
            return self._apply(data, args[1:], namespace)
        if verb == "delete":
            return self._delete(data, args[1:], namespace)
        if verb == "get":
            return self._get(data, args[1:], namespace)
        if verb == "scale":
            name = args[2] if args[1] == "deployment" else args[1].split("/", 1)[1]
            replicas = int(next(a for a in args if a.startswith("--replicas=")).split("=", 1)[1])
            entry = data["objects"].get(f"Deployment|{namespace}|{name}")
            if entry is None:
                return "", f'Error from server (NotFound): deployments.apps "{name}" not found\n', 1
            entry["replicas"] = replicas
            return f"deployment.apps/{name} scaled\n", "", 0
        if verb == "rollout":
            return f"{args[2]} rolled out\n", "", 0
        return "", f"fake kubectl: unsupported call {args}\n", 2

    def _read(self, args: list[str]) -> tuple[list[dict[str, Any]], str | None, list[str]]:
        paths, selector, flags = [], None, []
        i = 0
        while i < len(args):
            if args[i] == "-f":
                paths.append(Path(args[i + 1]))
                i += 2
            elif args[i] in ("-l", "--selector"):
                selector = args[i + 1]
                i += 2
            else:
                flags.append(args[i])
                i += 1
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        objects = [
            doc
            for path in paths
            for file in _files(path)
            for doc in yaml.load_all(file.read_text(), Loader=loader)
            if doc
        ]
        return objects, selector, flags

    def _apply(self, data: dict[str, Any], args: list[str], namespace: str) -> tuple[str, str, int]:
        objects, selector, _ = self._read(args)
        out, err = [], []
        store = data["objects"]
        for obj in objects:
            if not _selected(obj, selector):
                continue
            key = _key(obj, namespace)
            kind, ns, name = key.split("|")
            label = f"{_resource_name(kind)}/{name}"
            if ns and f"Namespace||{ns}" not in store:
                err.append(f'Error from server (NotFound): error when creating "{label}": namespaces "{ns}" not found')
                continue
            old = store.get(key)
            if old is not None:
                conflicts = apply_conflicts([old["obj"]], [obj])
                if conflicts:
                    err.append(
                        f'The {kind} "{name}" is invalid: {conflicts[0].field}: Forbidden: {conflicts[0].problem}'
                    )
                    continue
            taken = self._node_port_taken(store, key, obj)
            if taken:
                err.append(
                    f'The Service "{name}" is invalid: spec.ports[0].nodePort: Invalid value: {taken}: '
                    "provided port is already allocated"
                )
                continue
            entry = {"obj": copy.deepcopy(obj), "last_applied": copy.deepcopy(obj)}
            if kind == "Deployment":
                entry["replicas"] = self._replicas(old, obj)
            if old is not None and kind == "Job":
                entry["active"] = old.get("active", False)
            store[key] = entry
            verb = "created" if old is None else ("unchanged" if old["obj"] == obj else "configured")
            out.append(f"{label} {verb}")
        return "".join(f"{line}\n" for line in out), "".join(f"{line}\n" for line in err), 1 if err else 0

    @staticmethod
    def _replicas(old: dict[str, Any] | None, new: dict[str, Any]) -> int:
        wanted = new.get("spec", {}).get("replicas")
        if wanted is not None:
            return wanted
        if old is None:
            return 1  # the API server's default
        if "replicas" in old.get("last_applied", {}).get("spec", {}):
            return 1  # removed from the manifest: kubectl's merge deletes it, the default applies
        return old.get("replicas", 1)

    @staticmethod
    def _node_port_taken(store: dict[str, Any], key: str, obj: dict[str, Any]) -> int | None:
        if obj["kind"] != "Service":
            return None
        mine = {p.get("nodePort") for p in obj.get("spec", {}).get("ports", []) if p.get("nodePort")}
        for other_key, entry in store.items():
            if other_key == key or entry["obj"]["kind"] != "Service":
                continue
            theirs = {p.get("nodePort") for p in entry["obj"].get("spec", {}).get("ports", []) if p.get("nodePort")}
            if mine & theirs:
                return min(mine & theirs)
        return None

    def _set_last_applied(self, data: dict[str, Any], args: list[str], namespace: str) -> tuple[str, str, int]:
        objects, _, _ = self._read(args)
        for obj in objects:
            entry = data["objects"].get(_key(obj, namespace))
            if entry is None:
                return "", f'Error from server (NotFound): {obj["kind"]} "{obj["metadata"]["name"]}" not found\n', 1
            entry["last_applied"] = copy.deepcopy(obj)
        return "", "", 0

    def _delete(self, data: dict[str, Any], args: list[str], namespace: str) -> tuple[str, str, int]:
        ignore = "--ignore-not-found" in args
        by_resource = {
            f"{_resource_name(k.split('|')[0])}/{k.split('|')[2]}": k
            for k in data["objects"]
            if k.split("|")[1] in (namespace or "default", "")
        }
        out, err = [], []
        for target in (a for a in args if not a.startswith("-")):
            key = by_resource.get(target)
            if key is None:
                if not ignore:
                    err.append(f'Error from server (NotFound): "{target}" not found')
                continue
            del data["objects"][key]
            out.append(f"{target} deleted")
        return "".join(f"{line}\n" for line in out), "".join(f"{line}\n" for line in err), 1 if err else 0

    def _get(self, data: dict[str, Any], args: list[str], namespace: str) -> tuple[str, str, int]:
        store = data["objects"]
        ns = namespace or "default"
        if args[0] == "jobs" and "json" in args:
            items = []
            for key, entry in store.items():
                kind, job_ns, _ = key.split("|")
                if kind == "Job" and job_ns == ns:
                    status = {"active": 1} if entry.get("active") else {"succeeded": 1}
                    items.append({**entry["obj"], "status": status})
            return json.dumps({"items": items}), "", 0
        kind = {"secret": "Secret", "configmap": "ConfigMap", "deployment": "Deployment"}.get(args[0])
        if kind is None:
            return "", f"fake kubectl: unsupported get {args}\n", 2
        entry = store.get(f"{kind}|{ns}|{args[1]}")
        if entry is None:
            return "", f'Error from server (NotFound): {args[0]}s "{args[1]}" not found\n', 1
        if "jsonpath={.spec.replicas}" in args:
            return str(entry.get("replicas", "")), "", 0
        return f"{args[0]}/{args[1]}\n", "", 0

    # --- for tests: objects the user brings -----------------------------------------------

    def create(self, obj: dict[str, Any]) -> None:
        """An object made by hand (`kubectl create`): no last-applied configuration."""
        data = self._load()
        data["objects"][_key(obj)] = {"obj": copy.deepcopy(obj), "last_applied": {}}
        self._save(data)


if __name__ == "__main__":
    state = Path(os.environ["FAKE_KUBE_STATE"])
    done = FakeCluster(state).run(sys.argv[1:], sys.stdin.read() if not sys.stdin.isatty() else None)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    sys.exit(done.returncode)
