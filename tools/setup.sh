#!/usr/bin/env bash
# Set up a new machine: Python venvs with pinned packages (project, checkov), the pinned cdk8s CLI,
# and (as root, via apt) the PostgreSQL and Redis servers the tests run against.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python_bin="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
# checkov (make validate) gets a venv of its own: its pinned dependencies conflict with
# the project's (see tools/requirements-checkov.txt).
if [[ ! -x .venv-checkov/bin/python ]]; then
  "$python_bin" -m venv .venv-checkov
fi
.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-checkov.txt
npm ci --prefix tools --no-fund --no-audit --loglevel=error
# Byte-compile the 2.8 MB generated bindings once: without a .pyc (e.g. under
# PYTHONDONTWRITEBYTECODE) every synth would spend ~0.3 s recompiling them.
.venv/bin/python -m compileall -q imports >/dev/null

need=()
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The packages start system-wide services; the tests run their own servers.
    service postgresql stop >/dev/null 2>&1 || true
    service redis-server stop >/dev/null 2>&1 || true
  else
    echo "setup: the tests need: ${need[*]} (Debian packages); install them as root" >&2
  fi
fi
