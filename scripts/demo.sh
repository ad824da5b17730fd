#!/usr/bin/env bash
# The demo, until `runway serve` lands: render the seed deployment's run Job
# (the Dagster Helm values of shared/seed, in dagster.yaml form, plus a run tag
# config) and a celery-k8s step Job, check both against the Kubernetes schema,
# and show what Runway would submit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cargo build --quiet --release --bin runway
bin=target/release/runway
cases=tests/fixtures/cases

echo
echo "== The seed deployment's run launcher config, as dagster.yaml carries it =="
.venv/bin/python - "$cases/seed_k8s_run_tags.json" <<'PY'
import json, sys, yaml
case = json.load(open(sys.argv[1]))
print(yaml.safe_dump({"run_launcher": {"module": "dagster_k8s", "class": case["launcher_class"],
                                       "config": case["launcher"]}}, sort_keys=False))
print("run tags:", json.dumps(case["run"]["tags"], indent=2))
PY

for name in seed_k8s_run_tags step_basic; do
    echo
    echo "== runway render --case $cases/$name.json --output yaml =="
    "$bin" render --case "$cases/$name.json" --output yaml | tee "target/demo-$name.yaml"
    .venv/bin/python - "target/demo-$name.yaml" <<'PY'
import sys, yaml, kubernetes_validate
job = yaml.safe_load(open(sys.argv[1]))
kubernetes_validate.validate(job, "1.36.0", strict=True)
print(f"-> {job['metadata']['name']}: valid batch/v1 Job for Kubernetes 1.36 (strict schema)")
PY
done

echo
echo "== A bad tag config gets an error that names the field =="
bad=$(mktemp)
.venv/bin/python - "$cases/seed_k8s_run_tags.json" "$bad" <<'PY'
import json, sys
case = json.load(open(sys.argv[1]))
case["run"]["tags"]["dagster-k8s/config"] = json.dumps({"container_config": {"resourcez": {}}})
json.dump(case, open(sys.argv[2], "w"))
PY
"$bin" render --case "$bad" || echo "(exit status $?)"
rm -f "$bad"
