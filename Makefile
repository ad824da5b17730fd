# The targets CI runs. `make test` is the one command that sets up and runs everything.
CARGO ?= cargo
PY := .venv/bin/python

.PHONY: test demo queue-latency bootstrap fmt clippy rust-test parity python-test chart bench fixtures fields

test: bootstrap fmt clippy rust-test python-test

demo:
	@scripts/demo.sh $(DEMO_ARGS)

bootstrap:
	@scripts/bootstrap.sh

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

rust-test:
	$(CARGO) build --bin runway --tests
	@if command -v cargo-nextest >/dev/null; then $(CARGO) nextest run --no-fail-fast; \
	else $(CARGO) test --no-fail-fast; fi

# Python-side tests: the generated field table against the Kubernetes client,
# and parity of `runway render` with the real dagster-k8s on the generated corpus.
python-test:
	RUNWAY_BIN=target/debug/runway $(PY) -m pytest -q tests/python tests/parity

parity:
	RUNWAY_BIN=target/debug/runway $(PY) -m pytest -q tests/parity

# The Helm chart alone (also part of python-test): real Helm engine, strict lint,
# Kubernetes 1.36 schemas, and the rendered pods run as real processes.
chart:
	RUNWAY_BIN=target/debug/runway $(PY) -m pytest -q tests/python/test_chart.py

# Speed of rendering, side by side with the Python path in the same run.
bench:
	$(CARGO) build --release --bin runway
	$(PY) benches/compare_render.py --runway target/release/runway
	$(CARGO) bench --bench render
	$(CARGO) bench --bench devcluster
	target/release/runway bench index --runs 100000
	target/release/runway bench launch --python .venv/bin/python
	target/release/runway bench publish --python .venv/bin/python
	target/release/runway bench worker --python .venv/bin/python

# The issue's 200 queued Dagster runs through Runway and through the stock K8sRunLauncher
# (the test command queues 40): STARTING to Job created, p50/p99, in target/e2e-queue-latency.json.
queue-latency:
	RUNWAY_BIN=target/debug/runway RUNWAY_E2E_QUEUED_RUNS=200 $(PY) -m pytest -q -s \
		tests/python/test_dagster_e2e.py -k queued_runs

# Regenerate committed artefacts (never edited by hand).
fixtures:
	$(PY) tests/parity/make_fixtures.py

fields:
	$(PY) tools/gen_k8s_fields.py
