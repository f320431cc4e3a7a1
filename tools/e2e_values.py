"""What tools/e2e.sh needs to know from a values file, read through the project's own model.

Run with the project's venv (it imports constructs/):

    .venv/bin/python tools/e2e_values.py show config/minikube.yaml
        one `key=value` line per setting the script uses (names, images, switches)
    .venv/bin/python tools/e2e_values.py restore-values config/minikube.yaml DUMP OUT
        write OUT: the same values with postgres.backup.restore on for DUMP, as step 4
        of the restore runbook (docs/operations.md) asks

Reading the values through load_config (rather than grepping YAML in shell) means the
script uses exactly the names and defaults the synthesized manifests use.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
# constructs/ loads jsii, which prints an end-of-life banner on Node 20 (as in main.py).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from app.values import ConfigError, load_config  # noqa: E402  (needs the path above)


def show(config_path: Path) -> str:
    config = load_config(config_path)
    sentry = config.sentry
    values = {
        "namespace": config.namespace,
        "release": config.release,
        "admin_email": sentry.admin_email,
        "secret_name": config.secrets.existing_secret or f"{config.release}-secrets",
        "auth_image": sentry.auth_image,
        "postgres_image": config.postgres.image,
        "service_type": sentry.web.service_type,
        "node_port": sentry.web.node_port,
        "network_policies": str(config.network.policies).lower(),
        "backup_enabled": str(config.postgres.backup.enabled).lower(),
        "cleanup_enabled": str(sentry.cleanup.enabled).lower(),
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


def restore_values(config_path: Path, dump: str, out: Path) -> None:
    data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    backup = data.setdefault("postgres", {}).setdefault("backup", {})
    backup["restore"] = {**(backup.get("restore") or {}), "enabled": True, "file": dump}
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    load_config(out)  # the same validation a synth does, before the script relies on it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("show")
    p.add_argument("config", type=Path)
    p = sub.add_parser("restore-values")
    p.add_argument("config", type=Path)
    p.add_argument("dump", help="a dump's file name, or latest")
    p.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            sys.stdout.write(show(args.config))
        else:
            restore_values(args.config, args.dump, args.out)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
