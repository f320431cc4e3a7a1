# Common commands: `make setup` on a new machine, then `make test`. `make help` lists them.
VENV := .venv
PY := $(VENV)/bin/python
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

# make's variables are case-sensitive: `make synth config=FILE` would set `config`, which nothing
# reads, and build the default values file without a word. Each pair: what was typed, what is read.
$(foreach pair,config:CONFIG Config:CONFIG e2e_args:E2E_ARGS,$(eval typed := $(firstword $(subst :, ,$(pair))))\
  $(if $(filter command line,$(origin $(typed))),\
    $(error $(typed)=$($(typed)): make's variables are case-sensitive, nothing reads $(typed); write $(lastword $(subst :, ,$(pair)))=$($(typed)))))

.PHONY: help setup synth synth-cli apply check test test-setup lint validate e2e imports bench mutants clean

# Two test processes (pytest-xdist), a test file each at a time: the real Sentry tier's file is
# collected first and goes to the first worker at once (tests/conftest.py), the rest share the other.
PARALLEL := -n 2 --dist loadfile --no-loadscope-reorder

# The inner loop (make check): the properties that matter, without the real servers' slow
# starts or the real Sentry tier. Everything here runs again in make test.
CHECK_TESTS := tests/test_wiring.py tests/test_bad_input.py tests/test_constructs_alone.py \
  tests/test_props.py tests/test_front_door.py tests/test_secrets.py tests/test_ignored.py \
  tests/test_summary.py tests/test_security.py tests/test_foundation.py tests/test_image_contract.py \
  tests/test_sentry_conf.py tests/test_day2_review.py tests/test_redis_scripts.py \
  tests/test_day2.py::test_the_apply_rules_know_which_fields_the_api_server_freezes
.DEFAULT_GOAL := help

help:             ## list the targets
	@awk -F':[^#]*## ' '/^[a-z][a-z0-9-]*:.*## / { printf "  make %-11s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

setup:            ## what synthesis needs (venv, pinned cdk8s CLI; no root, no apt), then synthesize dist/
	tools/setup.sh
	$(PY) main.py

synth:            ## synthesize dist/ (CONFIG=config/production.yaml; ARGS='--confirm WHAT' passes flags)
	$(PY) main.py $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

synth-cli:        ## the same through the cdk8s CLI (CONFIG and ARGS too)
	$(if $(CONFIG),SENTRY_K8S_CONFIG=$(CONFIG)) SENTRY_K8S_SYNTH_ARGS="$(ARGS)" tools/node_modules/.bin/cdk8s synth --no-check-upgrade

apply:            ## apply dist/, delete what left it, record it in .state/ (ARGS='--delete-claim NAME', '--only database')
	$(PY) tools/apply.py $(ARGS)

check: test-setup ## the inner loop: lint, wiring, apply rules, bad input, constructs, fast script tests
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q -n 2 -m 'not validate and not real_sentry' $(CHECK_TESTS)

test: test-setup  ## lint, the whole test suite, then validate dist/ (installs what the tests need on first use)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest $(PARALLEL)
	$(MAKE) --no-print-directory validate

test-setup:       ## what the tests need on top of setup: checkov venv; postgresql, redis-server, shellcheck (apt, root)
	tools/setup-test.sh

lint:             ## ruff check and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

validate: synth   ## dist/ and the tests' configurations: strict schemas (Kubernetes 1.27, 1.35, 1.36, 1.37) and checkov, offline
	$(PY) tools/validate.py dist
	$(PY) -m pytest -m validate -q -n 2

e2e:              ## prove it on a real minikube (E2E_ARGS=--kind: kind): login, event, zero downtime, backup/restore, NetworkPolicies
	tools/e2e.sh $(E2E_ARGS)

bench:            ## benchmarks: synth time, backup/restore of a generated Sentry-shaped database, make check and the suite (prints figures)
	$(PY) tools/bench_synth.py
	$(PY) tools/bench_backup.py
	$(PY) tools/bench_checks.py

mutants:          ## mutation check: the suite (no snapshot) must catch each bug in tools/mutants.yaml (slow)
	$(PY) tools/mutants.py --jobs 2

imports:          ## regenerate imports/k8s offline
	tools/import-k8s.sh

clean:            ## remove generated output
	rm -rf dist .dist.* .pytest_cache
