#!/usr/bin/env bash
# What `make test` needs beyond `make setup`, installed on first use and skipped when
# present: checkov in a venv of its own (its pinned dependencies conflict with the
# project's, see tools/requirements-checkov.txt), the Debian packages the tests run:
# postgresql and redis-server (real servers for the backup and script tests), the
# linter for tools/*.sh, shellcheck, and for the real Sentry tier patchelf (its copy of
# Python 2.7) and tini (the image's init); then the real Sentry 9.1.2 itself, cached outside
# the repository (tools/setup-sentry.sh, seconds when cached). The packages need root; apt
# waits for another apt or dpkg (unattended-upgrades, a parallel install) instead of failing
# at once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python_bin="${PYTHON:-python3}"
fail() {
  echo "setup-test: $*" >&2
  exit 1
}

# The project's own pins, again when requirements.txt changed since `make setup` (a pull that
# added a test dependency would otherwise fail the tests with ModuleNotFoundError).
stamp=.venv/.requirements-installed
if [[ -x .venv/bin/python ]] && ! cmp -s requirements.txt "$stamp"; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt "$stamp"
fi

# checkov: reinstalled only when its pinned requirements changed.
stamp=.venv-checkov/.requirements-installed
if [[ ! -x .venv-checkov/bin/python ]] || ! cmp -s tools/requirements-checkov.txt "$stamp"; then
  [[ -x .venv-checkov/bin/python ]] || "$python_bin" -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-checkov.txt
  cp tools/requirements-checkov.txt "$stamp"
fi

need=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v patchelf >/dev/null 2>&1 || need+=(patchelf)
[[ -x /usr/bin/tini ]] || need+=(tini)
[[ -f /usr/share/i18n/locales/en_US ]] || need+=(locales)
# pg_config and libpq's headers: the sentry-auth image's psycopg2 is built from source.
command -v pg_config >/dev/null 2>&1 || need+=(libpq-dev)
if ((${#need[@]} == 0)); then
  exec tools/setup-sentry.sh
fi

[[ $(id -u) -eq 0 ]] ||
  fail "the tests need the Debian packages ${need[*]}: install them as root (apt-get install ${need[*]}), then run make test again"
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout makes apt-get wait up to 10 minutes for the dpkg lock. `apt-get
# update` takes another lock (the package lists') that the option does not cover on
# every apt version, so it is retried for as long.
apt_opts=(-o DPkg::Lock::Timeout=600)
deadline=$((SECONDS + 600))
until apt-get "${apt_opts[@]}" update -qq; do
  ((SECONDS < deadline)) || fail "apt-get update kept failing for 10 minutes"
  echo "setup-test: apt-get update failed (another apt may hold its lock); retrying in 10 s" >&2
  sleep 10
done
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start system-wide services; the tests run servers of their own.
service postgresql stop >/dev/null 2>&1 || true
service redis-server stop >/dev/null 2>&1 || true
exec tools/setup-sentry.sh
