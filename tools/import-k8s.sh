#!/usr/bin/env bash
# Regenerate imports/k8s (Kubernetes L1 bindings for Python) without network
# access. The output has the same layout as
# `cdk8s import k8s@1.27.0 --language python --output imports`.
#
#   npm ci --prefix tools      # once: installs the pinned cdk8s-cli
#   tools/import-k8s.sh        # from anywhere; works relative to the repo root
#
# Steps:
#   1. tools/k8s_schema.py converts the 1.27 schema bundled in the PyPI package
#      kubernetes-validate into the form the cdk8s importer expects.
#   2. cdk8s-cli runs with tools/offline-schema.cjs preloaded, so the schema
#      download from GitHub reads the converted file instead.
#
# Environment overrides: PYTHON (an interpreter that has kubernetes-validate
# installed; default .venv/bin/python).
set -euo pipefail

K8S_VERSION=1.27.0
OUTPUT_DIR=imports

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

cdk8s_bin="tools/node_modules/.bin/cdk8s"
if [[ ! -x "$cdk8s_bin" ]]; then
  echo "import-k8s: $cdk8s_bin not found; run 'npm ci --prefix tools' first" >&2
  exit 1
fi

python_bin="${PYTHON:-.venv/bin/python}"
if [[ ! -x "$python_bin" ]] && ! command -v "$python_bin" >/dev/null 2>&1; then
  echo "import-k8s: python interpreter '$python_bin' not found; set PYTHON" >&2
  exit 1
fi

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/import-k8s.XXXXXX")"
trap 'rm -rf "$work_dir"' EXIT

schema_file="$work_dir/_definitions.json"
"$python_bin" tools/k8s_schema.py --k8s-version "$K8S_VERSION" "$schema_file"

# Start from an empty module directory so that files removed upstream do not
# linger. Only imports/k8s is ours; leave any other imports alone.
rm -rf "${OUTPUT_DIR:?}/k8s"

# --no-check-upgrade: skip the npm registry query for a newer CLI.
# --no-save: do not add "k8s@..." to a cdk8s.yaml if one exists.
# `node --require` (not NODE_OPTIONS) loads the preload only in the CLI
# process, not in the jsii/jsii-pacmak child processes it starts.
OFFLINE_K8S_SCHEMA="$schema_file" \
JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 \
JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1 \
  node --require ./tools/offline-schema.cjs "$cdk8s_bin" \
    import "k8s@$K8S_VERSION" \
    --language python \
    --output "$OUTPUT_DIR" \
    --no-check-upgrade \
    --no-save

# Drop Python bytecode caches in case anything imported the module while
# it was being built; everything else jsii-pacmak writes is deterministic
# (checked by running this script twice and comparing sha256sum output).
find "$OUTPUT_DIR/k8s" -name '__pycache__' -type d -prune -exec rm -rf {} +

echo "import-k8s: wrote $OUTPUT_DIR/k8s (Kubernetes $K8S_VERSION)" >&2
