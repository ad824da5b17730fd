#!/usr/bin/env bash
# The demo: render the seed deployment's run Job (the Dagster Helm values of
# shared/seed, in dagster.yaml form, plus a run tag config) and a celery-k8s
# step Job, check both against the Kubernetes schema, then launch the run
# through `runway serve` on a local dev cluster and follow it to the end.
# (The full Dagster demo arrives with the dagster-runway package.)
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

echo
echo "== runway serve on a local dev cluster (simulated kubelet) =="
work=$(mktemp -d -t runway-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
wait_line() { # file pattern
    for _ in $(seq 1 100); do
        grep -m1 "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2; return 1
}
"$bin" dev-cluster --listen 127.0.0.1:0 --kubeconfig "$work/kubeconfig" --kubelet simulated \
    >"$work/dev.out" 2>"$work/dev.err" &
pids+=($!)
wait_line "$work/dev.out" "listening on" >/dev/null
export KUBECONFIG="$work/kubeconfig"
# What the seed's Job refers to: its namespace, service account, config maps and secret.
kubectl create --validate=false -f - >/dev/null <<'YAML'
{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dagster-system"}},
 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "dagster-dagster-user-deployments-user-deployments", "namespace": "dagster-system"}},
 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dagster-pipeline-env", "namespace": "dagster-system"}},
 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dagster-dagster-user-deployments-k8s-example-user-code-1-user-env", "namespace": "dagster-system"}},
 {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dagster-postgresql-secret", "namespace": "dagster-system"}, "stringData": {"postgresql-password": "demo"}}
]}
YAML
"$bin" serve --kubeconfig "$work/kubeconfig" --namespace dagster-system --listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --log-format text >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
line=$(wait_line "$work/serve.out" "runway serve listening")
echo "$line"
grpc=$(echo "$line" | sed -E 's/.*listening on ([0-9.:]+) \(gRPC\).*/\1/')
http=$(echo "$line" | sed -E 's/.* and (http:[^ ]+) .*/\1/')
export RUNWAY_ENDPOINT="http://$grpc"
until curl -fs "$http/ready" >/dev/null; do sleep 0.1; done
run=5e5d2c4a-0000-4a6b-9f4e-00000000d3e0
"$bin" client watch --run-id "$run" --until-final >"$work/watch.out" &
watcher=$!
sleep 0.3
echo "-> LaunchRun: $("$bin" client launch --case "$cases/seed_k8s_run.json" --run-id "$run")"
echo "-> launching it again is idempotent: $("$bin" client launch --case "$cases/seed_k8s_run.json" --run-id "$run")"
wait "$watcher"
echo "-> WatchRuns transitions:"
sed 's/^/   /' "$work/watch.out"
echo "-> CheckRunWorkerHealth (answered from the watch index): $("$bin" client health --run-id "$run" --run-status SUCCESS)"
echo "-> the Job in the cluster:"
kubectl -n dagster-system get jobs
echo "-> a few of its metrics ($http/metrics):"
curl -fs "$http/metrics" | grep -E '^runway_(launch_duration_seconds_count|kube_requests_total|index_runs|transitions_total)' | sed 's/^/   /'
