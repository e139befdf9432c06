# healthscale developer commands. `make help` lists them.
PYTHON ?= python3
DEVCLUSTER := .devcluster

.PHONY: help install test unit check lint typecheck crds crds-check bench demo backtest-demo cluster cluster-down binaries helm chart-crds chart-crds-check chart-test chart-golden

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install:  ## install healthscale and its test tools into the current Python
	$(PYTHON) -m pip install -e ".[test]"

test: check helm  ## the whole suite: static checks, unit and chart tests, then integration tests on the local control plane
	$(PYTHON) -m pytest

unit: check  ## static checks and the unit tests only (no cluster, no helm needed)
	$(PYTHON) -m pytest -m "not integration and not chart"

check: typecheck lint crds-check chart-crds-check  ## mypy, import layering, CRD drift (crds/ and the chart's copies)

typecheck:
	$(PYTHON) -m mypy

lint:
	lint-imports

crds:  ## regenerate crds/ from the pydantic models, and the Helm chart's copies
	$(PYTHON) -m healthscale crds --output-dir crds
	$(PYTHON) tools/sync_chart_crds.py

crds-check:
	$(PYTHON) -m healthscale crds --check --output-dir crds

chart-crds:  ## copy crds/ into the Helm chart (helm/healthscale/crds/)
	$(PYTHON) tools/sync_chart_crds.py

chart-crds-check:
	$(PYTHON) tools/sync_chart_crds.py --check

helm:  ## build helm from Go modules into .devcluster/bin (about 1.5 minutes cold)
	tools/build-helm.sh

chart-test: helm chart-crds-check  ## helm lint, golden files, values schema, least-privilege RBAC, dashboard, GitOps, Dockerfile
	$(PYTHON) -m pytest -m chart

chart-golden: helm  ## rewrite tests/chart/golden/ after an intended template change (review the diff!)
	HEALTHSCALE_UPDATE_GOLDEN=1 $(PYTHON) -m pytest tests/chart/test_helm_golden.py

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
