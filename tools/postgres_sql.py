#!/usr/bin/env python3
"""SQL for the PostgreSQL procedures of docs/operations.md, for psql's stdin.

    .venv/bin/python tools/postgres_sql.py --config FILE password | kubectl -n NS exec -i \\
        RELEASE-postgresql-0 -c postgresql -- psql -X -q -v ON_ERROR_STOP=1 -U USER -d postgres
    ... rename-user OLD        # postgres.user was OLD: rename the role, keep its password
    ... rename-database OLD    # postgres.database was OLD: rename the database (Sentry stopped)

The values come from the values file and the stack's secrets (SENTRY_K8S_POSTGRES_PASSWORD,
else the secrets file), as the synth reads them. A password never reaches a command line:
the SQL carries it base64-encoded into a psql variable (\\gset), and this script writes only
into a pipe, never to a terminal.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from app.secrets_store import SECRETS_FILE_ENV, SecretsError, default_secrets_file, read_secrets_file  # noqa: E402
from app.values import ConfigError, load_config  # noqa: E402
from constructs.secret_keys import POSTGRES_PASSWORD  # noqa: E402

RENAME_ROLE = "sentry_k8s_rename"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _password_variable(password: str) -> str:
    encoded = base64.b64encode(password.encode()).decode()
    return f"SELECT convert_from(decode('{encoded}', 'base64'), 'UTF8') AS pw \\gset\n"


def password_sql(user: str, password: str) -> str:
    """Give `user` the stack's password (run as that user: a role may change its own)."""
    return _password_variable(password) + f"ALTER ROLE {ident(user)} PASSWORD :'pw';\n"


def rename_user_sql(old: str, new: str, password: str) -> str:
    """Rename role `old` to `new`. A session cannot rename its own role, so a helper role does
    it and is dropped after; renaming clears an MD5 password (the name is its salt), so the
    password is set again."""
    helper = ident(RENAME_ROLE)
    return (
        _password_variable(password)
        + f"CREATE ROLE {helper} SUPERUSER LOGIN PASSWORD :'pw';\n"
        + f"\\connect - {RENAME_ROLE}\n"
        + f"ALTER ROLE {ident(old)} RENAME TO {ident(new)};\n"
        + f"ALTER ROLE {ident(new)} PASSWORD :'pw';\n"
        + f"\\connect - {new}\n"
        + f"DROP ROLE {helper};\n"
    )


def rename_database_sql(old: str, new: str) -> str:
    """Rename the database; nobody may be connected to it (Sentry stopped; psql on 'postgres')."""
    return f"ALTER DATABASE {ident(old)} RENAME TO {ident(new)};\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=PROJECT_DIR / "config" / "minikube.yaml")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("password", help="set postgres.user's password to the stack's postgres-password")
    sub.add_parser("rename-user", help="rename role OLD to postgres.user").add_argument("old")
    sub.add_parser("rename-database", help="rename database OLD to postgres.database").add_argument("old")
    args = parser.parse_args(argv)
    if sys.stdout.isatty():
        print("error: the SQL carries a password: pipe it into psql (see docs/operations.md)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        secrets_path = Path(os.environ.get(SECRETS_FILE_ENV) or default_secrets_file(config, PROJECT_DIR))
        password = os.environ.get(POSTGRES_PASSWORD.env_var) or read_secrets_file(secrets_path).get(
            POSTGRES_PASSWORD.key
        )
    except (ConfigError, SecretsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command != "rename-database" and not password:
        print(
            f"error: no postgres-password: set {POSTGRES_PASSWORD.env_var} or keep it in {secrets_path}",
            file=sys.stderr,
        )
        return 2
    user, database = config.postgres.user, config.postgres.database
    if args.command == "password":
        sys.stdout.write(password_sql(user, password or ""))
    elif args.command == "rename-user":
        sys.stdout.write(rename_user_sql(args.old, user, password or ""))
    else:
        sys.stdout.write(rename_database_sql(args.old, database))
    return 0


if __name__ == "__main__":
    sys.exit(main())
