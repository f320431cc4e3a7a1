#!/usr/bin/env python3
"""Write lost secret values back into the secrets file, from the cluster or from dist/.

    kubectl -n sentry get secret sentry-secrets -o json | .venv/bin/python tools/recover_secrets.py
    .venv/bin/python tools/recover_secrets.py dist/10-secrets.k8s.yaml

The synth refuses to invent new passwords for a stack that has them (PostgreSQL and
Redis keep the ones they were started with) and points here. The values go into the
stack's secrets file (.secrets/<namespace>-<release>.yaml, or --to FILE; mode 0600),
never to the terminal; an existing file is left alone. When make apply recorded the
stack, each value is checked against the record's digest, so a Secret from another
stack or an older dist/ is told apart before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from app.secrets_store import ALL_KEYS, SECRETS_FILE_ENV, write_secrets_file  # noqa: E402
from app.state import INSTANCE_LABEL, load_record, secret_values, state_dir  # noqa: E402


def recover(text: str, to: Path | None, project_dir: Path = PROJECT_DIR) -> tuple[Path, list[str]]:
    """Write the Secret's values; return the file and one line per key."""
    docs = [d for d in yaml.safe_load_all(text) if d]  # JSON is YAML too
    secrets_found = [d for d in docs if d.get("kind") == "Secret"]
    if len(secrets_found) != 1:
        raise ValueError(
            f"expected one Secret (a manifest, or `kubectl get secret -o json`), found {len(secrets_found)}"
        )
    (secret,) = secrets_found
    meta = secret.get("metadata", {})
    namespace, release = meta.get("namespace", ""), (meta.get("labels") or {}).get(INSTANCE_LABEL, "")
    if to is None:
        if not (namespace and release):
            raise ValueError("the Secret has no namespace or instance label: name the file with --to")
        to = Path(os.environ.get(SECRETS_FILE_ENV) or project_dir / ".secrets" / f"{namespace}-{release}.yaml")
    if to.exists():
        raise ValueError(f"{to} exists: move it away first (nothing was written)")
    known = {k.key for k in ALL_KEYS}
    values = secret_values(secret)
    kept = {k: v for k, v in values.items() if k in known}
    record = load_record(state_dir(project_dir), namespace, release) if namespace and release else None
    lines = []
    for key in sorted(values):
        if key not in known:
            lines.append(f"  {key}: skipped (not a key of this stack)")
        elif record is None or key not in record.secret_digests.get(meta.get("name", ""), {}):
            lines.append(f"  {key}: recovered (no apply record to check it against)")
        elif record.matches(meta["name"], key, values[key]):
            lines.append(f"  {key}: recovered, the value make apply applied")
        else:
            raise ValueError(
                f"{key} is not the value make apply applied to {namespace}/{release} ({record.applied_at}): "
                "this Secret is from another stack or an older output; nothing was written"
            )
    if not kept:
        raise ValueError("the Secret holds none of the stack's keys; nothing was written")
    write_secrets_file(to, kept)
    return to, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, help="a Secret manifest (default: stdin, e.g. from kubectl)")
    parser.add_argument("--to", type=Path, help="the secrets file (default: the stack's, under .secrets/)")
    args = parser.parse_args(argv)
    text = args.source.read_text(encoding="utf-8") if args.source else sys.stdin.read()
    try:
        path, lines = recover(text, args.to)
    except (ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}:", file=sys.stderr)
    print("\n".join(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
