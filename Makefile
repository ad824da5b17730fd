# The targets CI runs. `make test` is the one command that sets up and runs everything.
CARGO ?= cargo
PY := .venv/bin/python
PY119 := .venv-1.1.9/bin/python

.PHONY: test demo queue-latency bootstrap fmt clippy rust-test parity compat-sweep python-test python-test-1.1.9 chaos chart bench fixtures fields image dist

test: bootstrap fmt clippy rust-test python-test python-test-1.1.9 chaos

demo:
	@scripts/demo.sh $(DEMO_ARGS)

bootstrap:
	@scripts/bootstrap.sh

fmt:
	$(CARGO) fmt --all -- --check

# Twice: the workspace as the tests build it (the `dev-cluster` feature on),
# and the production build of `runway` (no dev cluster, no bench).
clippy:
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# One build of every target with every feature (the binary the Python tests
# run has `runway dev-cluster`), then every Rust test of the workspace.
rust-test:
	$(CARGO) build --workspace --all-targets --all-features
	@if command -v cargo-nextest >/dev/null; then $(CARGO) nextest run --workspace --all-features --no-fail-fast; \
	else $(CARGO) test --workspace --all-features --no-fail-fast; fi

# Python-side tests: the generated field table against the Kubernetes client,
# and parity of `runway render` with the real dagster-k8s on the generated corpus of
# each Dagster version: 1.13.27 (in .venv) and 1.1.9 (rendered by .venv-1.1.9).
python-test:
	RUNWAY_BIN=target/debug/runway $(PY) -m pytest -q tests/python tests/parity

# dagster-runway on the oldest Dagster it supports (1.1.9, in .venv-1.1.9 on Python 3.10):
# it loads from dagster.yaml and keeps the stock 0.17.9 launchers' bookkeeping, side by side
# with them on the dev cluster, with the requests it sends captured.
python-test-1.1.9:
	RUNWAY_BIN=target/debug/runway $(PY119) -m pytest -q tests/dagster-1.1.9

# The chaos suite (tests/chaos, about 5 minutes): two workers and a few hundred overlapping
# steps through SIGSTOP, SIGKILL, RabbitMQ, Redis, PostgreSQL and dev-cluster outages, then
# runway serve under memory attacks; per-fault and per-attack tables in target/chaos-report.json.
chaos:
	RUNWAY_BIN=target/debug/runway $(PY) -m pytest -q tests/chaos

# Parity alone, every version (PARITY_VERSIONS=1.1.9 for one; PARITY_COUNT, PARITY_SEED).
parity:
	RUNWAY_BIN=target/debug/runway $(PY) -m pytest -q tests/parity

# Runway against the real last patch of each Dagster minor line 1.1 .. 1.13: one venv
# per version under target/compat/ (reused), table in target/compat-sweep.md. Not part of
# `make test`. SWEEP_ARGS, e.g. "--count 100 --versions 1.1.21,1.13.27".
compat-sweep:
	RUNWAY_BIN=target/debug/runway $(PY) tools/compat_sweep.py $(SWEEP_ARGS)

# The Helm chart alone (also part of python-test): real Helm engine, strict lint,
# Kubernetes 1.36 schemas, and the rendered pods run as real processes.
chart:
	RUNWAY_BIN=target/debug/runway $(PY) -m pytest -q tests/python/test_chart_*.py

# Every figure beside its Python peer measured in the same run, then one summary table
# (figure, Runway, peer, ratio, goal, met) in target/bench/summary.md; each bench's JSON
# lines are kept beside it. Per-component CPU per operation comes from named threads.
bench:
	$(CARGO) build --release -p runway --features dev-cluster
	@mkdir -p target/bench
	$(PY) benches/compare_render.py --runway target/release/runway --callgrind --out target/bench/render.jsonl
	$(CARGO) bench -p runway-core --bench render
	$(CARGO) bench -p runway-devcluster --bench devcluster | tee target/bench/devcluster.jsonl
	target/release/runway bench index --runs 100000 | tee target/bench/index.jsonl
	target/release/runway bench launch --python .venv/bin/python | tee target/bench/launch.jsonl
	target/release/runway bench publish --python .venv/bin/python | tee target/bench/publish.jsonl
	target/release/runway bench worker --python .venv/bin/python | tee target/bench/worker.jsonl
	$(PY) benches/summary.py target/bench

# The issue's 200 queued Dagster runs through Runway and through the stock K8sRunLauncher
# (the test command queues 40): STARTING to Job created, p50/p99, in target/e2e-queue-latency.json.
queue-latency:
	RUNWAY_BIN=target/debug/runway RUNWAY_E2E_QUEUED_RUNS=200 $(PY) -m pytest -q -s \
		tests/python/test_dagster_e2e.py -k queued_runs

# What a Dagster user sees (not part of `make test`): chain_8 and fan_out_20 under
# celery_k8s_job_executor on the dev cluster, with stock Celery workers and with Runway
# workers at the same concurrency; wall time, per-step overhead, the workers' RSS and a
# timeline chart in target/compare/ (compare.json, compare.md, timeline.png). Uses the
# release binary when it has the dev cluster, else the debug one.
.PHONY: compare
compare:
	RUNWAY_BIN=$$(target/release/runway dev-cluster --help >/dev/null 2>&1 \
		&& echo target/release/runway || echo target/debug/runway) \
		$(PY) benches/compare_workers.py $(COMPARE_ARGS)

# The production image, built offline: a static runway (no dev cluster) in the
# Containerfile's final stage. IMAGE= names the tag (default
# localhost/runway:<crate version>); ENGINE=docker builds with docker buildx.
image:
	@scripts/image.sh

# dagster-runway's wheel and sdist, into dist/.
dist:
	@scripts/dist.sh

# Regenerate committed artefacts (never edited by hand).
fixtures:
	$(PY) tests/parity/make_fixtures.py

fields:
	$(PY) tools/gen_k8s_fields.py
