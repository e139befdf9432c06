# healthscale developer commands. `make help` lists them.
# Each target first sets up what it needs, via tools/bootstrap.sh (quick when all is in place):
# .venv with the package and its test tools, Debian's prometheus and lua5.4, the Go binaries.
VENV := .venv
PYTHON ?= $(VENV)/bin/python
# The venv's tools (lint-imports, hadolint, healthscale) first on PATH, for recipes and the tests they run.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# `make unit PYTHON=python3` uses that Python as it is, without setting up .venv.
VENV_SETUP := $(if $(filter $(VENV)/bin/python,$(PYTHON)),venv)
DEVCLUSTER := .devcluster

.PHONY: help setup venv system-packages install test unit faults check lint typecheck crds crds-check bench demo backtest-demo cluster cluster-down binaries addons helm chart-crds chart-crds-check chart-test chart-golden lock image image-archive

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(VENV_SETUP) system-packages binaries helm  ## everything make test and make demo need (they run it themselves): cold ~10-15 min, warm ~5 s

venv:  ## .venv with healthscale and its test tools; reinstalls only when pyproject.toml or locks/test.txt change
	@tools/bootstrap.sh venv

install: venv  ## same as make venv

system-packages:  ## apt-get install prometheus, lua5.4 (and openssl, curl) if missing
	@tools/bootstrap.sh system

# Two pytest-xdist workers: the local cluster's tests run in order on one (tests/conftest.py groups
# them), everything else on the other, so the cluster's waits overlap the CPU-bound tests.
test: setup check  ## the whole suite: static checks, then unit, chart and integration tests on two workers
	$(PYTHON) -m pytest -n 2 --durations=30

unit: check  ## static checks and the unit tests only (no cluster, no helm needed)
	$(PYTHON) -m pytest -m "not integration and not chart"

faults: $(VENV_SETUP) system-packages binaries  ## fault injection on the local stack (RELIABILITY.md; also part of make test): about 5 minutes
	$(PYTHON) -m pytest tests/integration/test_faults.py

check: typecheck lint crds-check chart-crds-check  ## mypy, import layering, CRD drift (crds/ and the chart's copies)

typecheck: $(VENV_SETUP)
	$(PYTHON) -m mypy

lint: $(VENV_SETUP)
	lint-imports

crds: $(VENV_SETUP)  ## regenerate crds/ from the pydantic models, and the Helm chart's copies
	$(PYTHON) -m healthscale crds --output-dir crds
	$(PYTHON) tools/sync_chart_crds.py

crds-check: $(VENV_SETUP)
	$(PYTHON) -m healthscale crds --check --output-dir crds

chart-crds: $(VENV_SETUP)  ## copy crds/ into the Helm chart (helm/healthscale/crds/)
	$(PYTHON) tools/sync_chart_crds.py

chart-crds-check: $(VENV_SETUP)
	$(PYTHON) tools/sync_chart_crds.py --check

helm:  ## build helm from Go modules into .devcluster/bin (about 1.5 minutes cold)
	@tools/bootstrap.sh helm

chart-test: $(VENV_SETUP) system-packages helm chart-crds-check  ## helm lint, golden files, values schema, least-privilege RBAC, dashboard, GitOps, Dockerfile
	$(PYTHON) -m pytest -m chart

chart-golden: $(VENV_SETUP) helm  ## rewrite tests/chart/golden/ after an intended template change (review the diff!)
	HEALTHSCALE_UPDATE_GOLDEN=1 $(PYTHON) -m pytest tests/chart/test_helm_golden.py

bench: $(VENV_SETUP) system-packages binaries  ## replay the real traces and measure forecasting throughput; rewrites BENCHMARKS.md
	$(PYTHON) bench/run.py

demo: $(VENV_SETUP) system-packages binaries  ## live: local cluster + Prometheus, the operator scaling ahead of a surge; ends with out/demo-timeline.png
	$(PYTHON) tools/demo.py

.PHONY: loadtest
loadtest: $(VENV_SETUP) system-packages  ## load test (issue 14): Locust replays a real morning on processes of known capacity, the reconcile vs an HPA-style policy; ~10 min, writes docs/bench/loadtest.png
	$(PYTHON) -m loadtest.run --profile long --out out/loadtest --plot docs/bench/loadtest.png

backtest-demo: $(VENV_SETUP)  ## backtest the bundled example trace: writes out/plan.csv and out/plan.png (no cluster needed)
	$(PYTHON) -m healthscale backtest --trace examples/backtest/nyc-taxi-demand.csv \
		--slo examples/backtest/clinicalslo.yaml --schedule examples/backtest/surgeschedule.yaml \
		--output out/plan.csv --plot out/plan.png

lock: $(VENV_SETUP)  ## regenerate locks/runtime.txt (the image) and locks/test.txt (.venv, CI) from pyproject.toml with uv (needs PyPI)
	$(PYTHON) tools/lock.py

image:  ## build the operator image healthscale:<version> with buildah, no Docker daemon (about 3 minutes cold, under a second cached)
	tools/build-image.sh

image-archive:  ## make image, then save it to out/healthscale-image.tar for `kind load image-archive`
	tools/build-image.sh --archive out/healthscale-image.tar

binaries:  ## build kube-apiserver, etcd, kwok... from Go modules into .devcluster/bin (~7-10 min cold, once per checkout)
	@tools/bootstrap.sh binaries

addons:  ## build Karpenter (KWOK provider) and KEDA from Go modules into .devcluster/bin (~13 min cold; make test builds them in the background)
	@tools/bootstrap.sh addons

cluster: system-packages binaries addons  ## start etcd, kube-apiserver, scheduler, controller-manager, KWOK nodes, Prometheus, Karpenter and KEDA on loopback
	tools/devcluster/up.sh

cluster-down:  ## stop the local control plane and Prometheus
	tools/devcluster/down.sh
