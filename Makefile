# trigger-operator. The two commands a newcomer needs: `make run` and `make test` (see README).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER_DIR ?= .cluster
export PIP_DISABLE_PIP_VERSION_CHECK := 1

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "[make] creating $(VENV) and installing pinned dependencies (constraints.txt)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## virtual environment with the pinned dependencies

binaries: ## build (or find cached) etcd, kube-apiserver, KCM, scheduler, kwok, helm
	@bash hack/build-binaries.sh >/dev/null

cluster-up: venv binaries ## start the local control plane; kubeconfig in .cluster/kubeconfig
	$(PY) hack/localcluster.py up --dir $(CLUSTER_DIR)

cluster-down: venv ## stop the local control plane and remove its state
	$(PY) hack/localcluster.py down --dir $(CLUSTER_DIR)

run: venv ## run the operator with sample Triggers (local control plane unless KUBECONFIG is set)
	@bash hack/run.sh

lint: venv ## ruff, mypy and the layer contracts (.importlinter)
	$(VENV)/bin/ruff check operator tests hack bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test-unit: venv ## the pure tests, in seconds
	$(VENV)/bin/pytest tests/unit -q

docs: venv ## the docs site (MkDocs, Material) into build/site, strict: a broken link or page fails; offline
	$(PY) hack/docs_settings.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

prometheus: ## a real Prometheus for the tests (Debian's package, installed once per machine)
	@bash hack/install-prometheus.sh

nats: ## build (or find cached) nats-server for the JetStream intake's tests and benchmark (its own cache key)
	@bash hack/build-nats.sh >/dev/null

test-integration: venv binaries prometheus nats ## tests against a real control plane (started here unless KUBECONFIG is set)
	$(VENV)/bin/pytest tests/integration tests/differential -v --durations=15

node-packages: ## what a real node and `make image` need from Debian (podman, containerd, runc, CNI), once per machine
	@bash hack/install-node.sh

test-node: venv binaries node-packages ## the real-node tier: image built, chart from the local OCI registry on a real node (root)
	@echo "[make] the real-node tier: image, control plane with a real node, helm install oci://..., tests (progress below)"
	$(VENV)/bin/pytest tests/node -v --durations=10

test: lint docs test-unit test-integration test-node ## everything, from a fresh clone

metrics-picture: venv binaries prometheus ## redraw docs/metrics.png from a real Prometheus scraping sample Triggers (~5 min)
	$(PY) hack/metrics_picture.py

chaos: venv binaries ## kill, freeze and restart replicas, kube-apiserver and etcd under load, then check every promise (CHAOS_ARGS="--minutes 4 --seed 7")
	$(PY) hack/chaos.py $(CHAOS_ARGS)

IMAGE ?= ghcr.io/trigger-operator/trigger-operator:0.1.0
image: ## the operator's image with Docker or Podman (IMAGE=...); a local Debian base when none can be pulled
	@bash hack/image.sh $(IMAGE)

kind-e2e: venv binaries ## the chart on a kind cluster, then the integration tests against it (needs Docker and kind)
	@bash hack/kind-e2e.sh

bench: venv binaries nats ## every benchmark scenario at full sizes, vs CronJob (BENCH_ARGS="--scenarios idle --sizes 1000")
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: venv binaries ## thundering_minute at N = 1,000 only, Triggers vs CronJobs (under 10 minutes)
	$(PY) -m bench.run --scenarios thundering_minute --sizes 1000 $(BENCH_ARGS)

.PHONY: docs node-packages test-node help venv binaries prometheus nats metrics-picture chaos image kind-e2e cluster-up cluster-down run lint test-unit test-integration test bench bench-quick
