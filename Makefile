# healthscale developer commands. `make help` lists them.
PYTHON ?= python3
DEVCLUSTER := .devcluster

.PHONY: help install test unit check lint typecheck crds crds-check bench demo backtest-demo cluster cluster-down binaries

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install:  ## install healthscale and its test tools into the current Python
	$(PYTHON) -m pip install -e ".[test]"

test: check  ## the whole suite: static checks, unit tests, then integration tests on the local control plane
	$(PYTHON) -m pytest

unit: check  ## static checks and the unit tests only (no cluster needed)
	$(PYTHON) -m pytest -m "not integration"

check: typecheck lint crds-check  ## mypy, import layering and CRD drift

typecheck:
	$(PYTHON) -m mypy

lint:
	lint-imports

crds:  ## regenerate crds/ from the pydantic models
	$(PYTHON) -m healthscale crds --output-dir crds

crds-check:
	$(PYTHON) -m healthscale crds --check --output-dir crds

bench:  ## replay the real traces and measure forecasting throughput; rewrites BENCHMARKS.md
	$(PYTHON) bench/run.py

demo: binaries  ## live: local cluster + Prometheus, the operator scaling ahead of a surge; ends with out/demo-timeline.png
	$(PYTHON) tools/demo.py

backtest-demo:  ## backtest the bundled example trace: writes out/plan.csv and out/plan.png (no cluster needed)
	$(PYTHON) -m healthscale backtest --trace examples/backtest/nyc-taxi-demand.csv \
		--slo examples/backtest/clinicalslo.yaml --schedule examples/backtest/surgeschedule.yaml \
		--output out/plan.csv --plot out/plan.png

binaries:  ## build kube-apiserver, etcd, kwok... from Go modules into .devcluster/bin (once per machine)
	tools/build-binaries.sh

cluster: binaries  ## start etcd, kube-apiserver, scheduler, controller-manager, KWOK nodes and Prometheus on loopback
	tools/devcluster/up.sh

cluster-down:  ## stop the local control plane and Prometheus
	tools/devcluster/down.sh
