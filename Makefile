# kubemind: `make serve` runs the main job on embedded defaults, `make test` runs the tests.
# Both install what they need first (tools/install.sh is idempotent and cheap when done).
VENV ?= .venv
export VENV
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test serve up lint bench protos validate observability images test-images test-storm test-fuzz

install:
	@flock $(CURDIR)/.install.lock tools/install.sh

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The local overlay's InferenceServices behind nginx (kubemind up), served from this machine's
# registry: the rag service's Feast features (features/, SQLite) are applied and materialized,
# and the overlay's models registered (kubemind models demo; minutes the first time, seconds
# after), first. `kubemind serve` still runs the same services as plain processes.
serve: install
	$(VENV)/bin/kubemind features apply && $(VENV)/bin/kubemind features materialize
	$(VENV)/bin/kubemind models demo
	$(VENV)/bin/kubemind up

# `kubemind up` of the local overlay without registering anything first.
up: install
	$(VENV)/bin/kubemind up

lint: install
	$(VENV)/bin/ruff check kubemind predictors transformers registry workers tests benchmarks
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks

# Regenerates the committed protobuf modules; tests/unit/test_generated_protos.py fails on a diff.
protos: install
	$(PY) -m kubemind.protocol.protos

# Regenerates the SLO rules, PrometheusRules and Grafana dashboards from observability/slos/;
# tests/unit/test_slo_generation.py fails on a diff (docs/slos.md).
observability: install
	$(VENV)/bin/kubemind observability generate

# Builds every overlay and checks it against the CRDs shipped in the package
# (kubemind/manifests/crds, a copy of ../shared/crds) and KServe's admission rules.
validate: install
	$(VENV)/bin/kubemind validate inferenceservices knative istio --allow-refs external-objects.yaml

# Builds the container images in images/ on this machine, no registry or Docker engine needed
# (debootstrap base, chroot, buildah; see tools/build_images.py, which apt-installs the two when
# missing). Needs root. All images by
# default, a subset with IMAGES=core,storage-initializer. Writes build/images/NAME-VERSION.tar.
images:
	python3 tools/build_images.py

# Mounts the built images and runs their entry points under chroot (builds the light ones first
# if missing). Slow, root only, and deselected from `make test` by the `images` marker.
test-images: install
	$(PY) -m pytest -m images tests/images $(PYTEST_ARGS)

# The async-jobs kill storm: 1000 jobs while a random worker is SIGKILLed every 1-2 s
# (real RabbitMQ, Postgres, Redis, Triton). Minutes long, so deselected from `make test`.
test-storm: install
	$(PY) -m pytest -m storm tests/component/test_jobs.py $(PYTEST_ARGS)

# The extended schemathesis runs: the OIP spec against `simple` and OpenAI's spec against the
# vLLM predictor (tiny Llama), KUBEMIND_FUZZ_EXAMPLES cases per operation (`make test` runs the
# same tests with a few each). No response may be a 5xx and the servers must stay up. About
# 10-15 minutes at the default; --hypothesis-show-statistics prints the cases run per operation.
test-fuzz: install
	$(PY) -m pytest -m fuzz --hypothesis-show-statistics tests/component/test_schemathesis.py \
		tests/component/test_hardening_llm.py $(PYTEST_ARGS)
