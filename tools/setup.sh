#!/usr/bin/env bash
# make setup: only what synthesis needs, as any user, without apt: the project's venv
# with the pinned packages and the pinned cdk8s CLI. What the tests need on top
# (checkov, Debian's PostgreSQL, Redis and shellcheck) is tools/setup-test.sh, run by
# `make test`.
#
# It checks its prerequisites first and says what to install, instead of failing half
# way: Python 3.11+ with venv support, Node.js 20+ with npm (22 or 24 preferred: see below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python_bin="${PYTHON:-python3}"
# When the pinned jsii ended its support of Node 20 (tests/test_docs.py reads it from jsii).
JSII_NODE20_END=2026-10-30
fail() {
  echo "setup: $*" >&2
  exit 1
}

command -v "$python_bin" >/dev/null 2>&1 ||
  fail "$python_bin not found: install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3 python3-venv)"
"$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  fail "Python 3.11 or newer is needed; $python_bin is $("$python_bin" --version 2>&1)"
if [[ ! -x .venv/bin/python ]]; then
  # Debian and Ubuntu ship the venv module without ensurepip unless python3-venv is
  # installed, and `python3 -m venv` then fails with a half-made .venv.
  "$python_bin" -c 'import venv, ensurepip' >/dev/null 2>&1 ||
    fail "$python_bin cannot create a virtual environment: install python3-venv (Debian/Ubuntu: apt-get install python3-venv)"
fi

command -v node >/dev/null 2>&1 ||
  fail "Node.js 20 or newer is needed (the cdk8s CLI and jsii run on it): install it from nodejs.org or NodeSource; Debian 12's own nodejs package is 18, too old"
node_version="$(node --version 2>/dev/null || true)"
node_major="${node_version#v}"
node_major="${node_major%%.*}"
[[ $node_major =~ ^[0-9]+$ && $node_major -ge 20 ]] ||
  fail "Node.js ${node_version:-of unknown version} is too old: 20 or newer is needed (nodejs.org or NodeSource; Debian 12's own nodejs package is 18)"
if ((node_major == 20)); then
  # jsii (which cdk8s runs on) dropped Node 20 on JSII_NODE20_END, its end of life plus six
  # months, and prints a banner on every start, which main.py and the Makefile silence. The
  # pinned versions still run on 20 (the tests do), but a newer jsii may refuse it.
  echo "setup: note: Node.js $node_version works (the tests run on it), but jsii supports only Node 22 and 24 since ${JSII_NODE20_END}: prefer one of those (nodejs.org or NodeSource)" >&2
fi
command -v npm >/dev/null 2>&1 || fail "npm not found: it comes with Node.js from nodejs.org or NodeSource (Debian: apt-get install npm)"

if [[ ! -x .venv/bin/python ]]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
cp requirements.txt .venv/.requirements-installed
npm ci --prefix tools --no-fund --no-audit --loglevel=error
# Byte-compile the 2.8 MB generated bindings once: without a .pyc (e.g. under
# PYTHONDONTWRITEBYTECODE) every synth would spend ~0.3 s recompiling them.
.venv/bin/python -m compileall -q imports >/dev/null
