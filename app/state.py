"""The record of what `make apply` applied: the comparison base of every later synth.

A plain `kubectl apply` deletes nothing, so the cluster holds everything ever applied.
The synth must judge a change against that, not against whatever the last synth
happened to write into dist/ (a fresh clone's dist/ was never applied anywhere). So
`make apply` (tools/apply.py) records, per stack, the objects it applied and did not
delete since, in `.state/applied/<namespace>-<release>.json` (git-ignored; another
folder with SENTRY_K8S_STATE_DIR, one per cluster). main.py compares a new output
with that record; make apply refuses a dist/ that was synthesized against another
record than the current one, so the two cannot drift apart.

Secret values are not kept: a Secret's data is replaced by keyed digests (HMAC-SHA256
with a random salt of the record), enough to tell that a value changed, and to check a
recovered value, but not to read it.

The synth leaves a small note in dist/, `.synth-base` (no .yaml/.json extension, so
`kubectl apply -f dist/` ignores it): which record it compared with, and what its user
confirmed. make apply reads it back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "SENTRY_K8S_STATE_DIR"
BASE_FILE = ".synth-base"
RECORD_FORMAT = 1
INSTANCE_LABEL = "app.kubernetes.io/instance"
REDACTED = "(a digest of the value is in secret_digests)"


class StateError(ValueError):
    """A record or a dist/ note that cannot be read; the message says which and why."""


def state_dir(project_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(STATE_DIR_ENV) or project_dir / ".state")


def record_path(folder: Path, namespace: str, release: str) -> Path:
    return folder / "applied" / f"{namespace}-{release}.json"


ObjectKey = tuple[str, str, str]


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata", {})
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def describe(key: ObjectKey) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def stack_of(objects: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(namespace, release) of a synthesized output: its Namespace and instance label."""
    namespace = release = None
    for obj in objects:
        if obj["kind"] == "Namespace":
            namespace = obj["metadata"]["name"]
        release = release or obj.get("metadata", {}).get("labels", {}).get(INSTANCE_LABEL)
    return (namespace, release) if namespace and release else None


def digest(salt: str, key: str, value: str) -> str:
    mac = hmac.new(bytes.fromhex(salt), f"{key}\0{value}".encode(), hashlib.sha256)
    return "hmac-sha256:" + mac.hexdigest()


def secret_values(obj: Mapping[str, Any]) -> dict[str, str]:
    """A Secret manifest's values, decoded (data is base64, stringData plain)."""
    values = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    values.update(obj.get("stringData") or {})
    return values


@dataclass
class Record:
    """One stack as make apply left it: every object it applied and has not deleted."""

    namespace: str
    release: str
    objects: list[dict[str, Any]]
    secret_digests: dict[str, dict[str, str]] = field(default_factory=dict)
    """Secret name -> key -> digest of the value applied."""
    salt: str = field(default_factory=lambda: secrets.token_hex(16))
    context: str = ""
    applied_at: str = ""
    path: Path | None = None
    digest: str = ""
    """sha256 of the file as read: what a synth compared with (its .synth-base names it)."""

    @property
    def stack(self) -> str:
        return f"{self.namespace}/{self.release}"

    def by_key(self) -> dict[ObjectKey, dict[str, Any]]:
        return {object_key(o): o for o in self.objects}

    def changed_secrets(self, name: str, values: Mapping[str, str]) -> list[str]:
        """The keys of Secret `name` whose value differs from the one applied."""
        applied = self.secret_digests.get(name, {})
        return sorted(k for k, v in values.items() if k in applied and applied[k] != digest(self.salt, k, v))

    def matches(self, name: str, key: str, value: str) -> bool:
        return self.secret_digests.get(name, {}).get(key) == digest(self.salt, key, value)


def redact(objects: Iterable[dict[str, Any]], salt: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """The objects with every Secret's values replaced by digests kept beside them."""
    kept: list[dict[str, Any]] = []
    digests: dict[str, dict[str, str]] = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            values = secret_values(obj)
            digests[obj["metadata"]["name"]] = {k: digest(salt, k, v) for k, v in values.items()}
            obj = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
            obj["data"] = dict.fromkeys(sorted(values), REDACTED)
        kept.append(obj)
    return kept, digests


def load_record(folder: Path, namespace: str, release: str) -> Record | None:
    return read_record(record_path(folder, namespace, release))


def read_record(path: Path) -> Record | None:
    if not path.exists():
        return None
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {RECORD_FORMAT}")
        return Record(
            namespace=data["namespace"],
            release=data["release"],
            objects=list(data["objects"]),
            secret_digests=dict(data.get("secret_digests", {})),
            salt=data["salt"],
            context=data.get("context", ""),
            applied_at=data.get("applied_at", ""),
            path=path,
            digest=hashlib.sha256(raw).hexdigest(),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"the apply record {path} cannot be read ({exc}); it was written by make apply and "
            "must not be edited: restore it from your copy, or move it away to start a new record "
            "(the next synth then cannot see what was applied)"
        ) from None


def all_records(folder: Path) -> list[Record]:
    found = []
    for path in sorted((folder / "applied").glob("*.json")):
        record = read_record(path)
        if record is not None:
            found.append(record)
    return found


def save_record(folder: Path, record: Record) -> Path:
    """Write atomically, private to the user (digests of secrets are in it)."""
    path = record_path(folder, record.namespace, record.release)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    record.applied_at = record.applied_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = {
        "format": RECORD_FORMAT,
        "namespace": record.namespace,
        "release": record.release,
        "context": record.context,
        "applied_at": record.applied_at,
        "salt": record.salt,
        "secret_digests": record.secret_digests,
        "objects": sorted(record.objects, key=object_key),
    }
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    record.path = path
    record.digest = hashlib.sha256(text.encode()).hexdigest()
    return path


@dataclass(frozen=True)
class SynthBase:
    """What a synth compared its output with, and what its user confirmed."""

    stack: str
    record: str | None
    """The digest of the record compared with; None when there was none."""
    confirmed: tuple[str, ...] = ()
    allow_apply_conflicts: bool = False
    config: str = ""

    def write(self, dist: Path) -> None:
        data = {
            "stack": self.stack,
            "record": self.record,
            "confirmed": list(self.confirmed),
            "allow_apply_conflicts": self.allow_apply_conflicts,
            "config": self.config,
        }
        (dist / BASE_FILE).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, dist: Path) -> SynthBase:
        path = dist / BASE_FILE
        if not path.exists():
            raise StateError(
                f"{path} is missing: {dist.name}/ was not written by this project's synth (or by an "
                "older version); run `make synth` first"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                stack=data["stack"],
                record=data["record"],
                confirmed=tuple(data.get("confirmed", ())),
                allow_apply_conflicts=bool(data.get("allow_apply_conflicts")),
                config=data.get("config", ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{path} cannot be read ({exc}); run `make synth` again") from None
