# Common commands. `make setup` on a new machine, then `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup synth synth-cli test lint validate imports bench mutants clean

setup:            ## install everything (venv, npm CLI, test servers) and synthesize dist/
	tools/setup.sh
	$(PY) main.py

synth:            ## synthesize dist/ (CONFIG=config/production.yaml to choose a values file)
	$(PY) main.py $(if $(CONFIG),--config $(CONFIG))

synth-cli:        ## the same through the cdk8s CLI
	$(if $(CONFIG),SENTRY_K8S_CONFIG=$(CONFIG)) tools/node_modules/.bin/cdk8s synth --no-check-upgrade

test:             ## lint, the whole test suite, then validate dist/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest
	$(MAKE) --no-print-directory validate

validate: synth   ## dist/ and the tests' configurations: strict schemas (Kubernetes 1.27, 1.35, 1.36, 1.37) and checkov, offline
	$(PY) tools/validate.py dist
	$(PY) -m pytest -m validate -q

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench:            ## benchmarks: synth time, backup/restore on ~1 GB (prints figures)
	$(PY) tools/bench_synth.py
	$(PY) tools/bench_backup.py

mutants:          ## mutation check: the suite (no snapshot) must catch each bug in tools/mutants.yaml (slow)
	$(PY) tools/mutants.py --jobs 2

imports:          ## regenerate imports/k8s offline
	tools/import-k8s.sh

clean:
	rm -rf dist .dist.* .pytest_cache
