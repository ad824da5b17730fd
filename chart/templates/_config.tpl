{{/*
The YAML files given to `--config`, keyed by flag name as `runway` reads them.
Secrets (URLs with passwords, the token) never go here: they are env vars
from Secrets. The chart's own keys are disjoint from `settings` (the schema
rejects a setting the chart manages), so the merge cannot hide one.
*/}}

{{- define "runway.configDir" -}}/etc/runway/config{{- end -}}
{{- define "runway.tlsDir" -}}/etc/runway/tls{{- end -}}
{{- define "runway.tokenDir" -}}/etc/runway/token{{- end -}}

{{- define "runway.launcherConfig" -}}
{{- $l := .Values.launcher -}}
{{- $cfg := dict "listen" (printf "0.0.0.0:%d" (int $l.grpcPort)) "http-listen" (printf "0.0.0.0:%d" (int $l.httpPort)) "namespace" (include "runway.jobNamespaces" . | fromJsonArray) "log-format" .Values.logFormat "shutdown-grace-secs" (int $l.shutdownGraceSecs) -}}
{{- with .Values.otlpEndpoint -}}
{{- $_ := set $cfg "otlp-endpoint" . -}}
{{- end -}}
{{- if $l.tls.enabled -}}
{{- $_ := set $cfg "tls-cert" (printf "%s/tls.crt" (include "runway.tlsDir" .)) -}}
{{- $_ := set $cfg "tls-key" (printf "%s/tls.key" (include "runway.tlsDir" .)) -}}
{{- if $l.tls.requireClientCert -}}
{{- $_ := set $cfg "tls-client-ca" (printf "%s/ca.crt" (include "runway.tlsDir" .)) -}}
{{- end -}}
{{- end -}}
{{- if include "runway.authEnabled" . -}}
{{- $_ := set $cfg "token-file" (printf "%s/token" (include "runway.tokenDir" .)) -}}
{{- end -}}
{{- toYaml (merge $cfg (deepCopy ($l.settings | default dict))) -}}
{{- end -}}

{{/*
One queue's effective values, as JSON: the pool's, overridden by the entry's.
(dict "ctx" $ "queue" entry)
*/}}
{{- define "runway.queueValues" -}}
{{- $w := .ctx.Values.worker -}}
{{- $q := .queue -}}
{{- $out := dict "name" $q.name "replicaCount" 1 -}}
{{- range $k := list "replicaCount" "concurrency" "prefetch" "dagsterVersion" "resources" "nodeSelector" "affinity" "tolerations" "priorityClassName" -}}
{{- if hasKey $q $k -}}
{{- $_ := set $out $k (index $q $k) -}}
{{- else if hasKey $w $k -}}
{{- $_ := set $out $k (index $w $k) -}}
{{- end -}}
{{- end -}}
{{- range $k := list "labels" "annotations" "podAnnotations" "settings" "autoscaling" -}}
{{- $_ := set $out $k (merge (deepCopy (index $q $k | default dict)) (deepCopy (index $w $k | default dict))) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* A worker's config file: (dict "ctx" $ "q" queueValues). */}}
{{- define "runway.workerConfig" -}}
{{- $ctx := .ctx -}}
{{- $w := $ctx.Values.worker -}}
{{- $q := .q -}}
{{- $cfg := dict "queues" (list $q.name) "concurrency" (int $q.concurrency) "http-listen" (printf "0.0.0.0:%d" (int $w.httpPort)) "namespace" (include "runway.jobNamespaces" $ctx | fromJsonArray) "log-format" $ctx.Values.logFormat "shutdown-grace-secs" (int $w.shutdownGraceSecs) "result-expires-secs" (int $ctx.Values.celery.resultExpiresSecs) "task-events" $ctx.Values.celery.taskEvents -}}
{{- if not (kindIs "invalid" $q.prefetch) -}}
{{- $_ := set $cfg "prefetch" (int $q.prefetch) -}}
{{- end -}}
{{- with $ctx.Values.otlpEndpoint -}}
{{- $_ := set $cfg "otlp-endpoint" . -}}
{{- end -}}
{{- with $q.dagsterVersion -}}
{{- $_ := set $cfg "dagster-version" (toString .) -}}
{{- end -}}
{{- toYaml (merge $cfg (deepCopy ($q.settings | default dict))) -}}
{{- end -}}

{{/* The effective queues, checked: JSON list of queueValues with "slug". */}}
{{- define "runway.queues" -}}
{{- $ctx := . -}}
{{- $seen := dict -}}
{{- $out := list -}}
{{- range $entry := .Values.worker.workerQueues -}}
{{- $q := include "runway.queueValues" (dict "ctx" $ctx "queue" $entry) | fromJson -}}
{{- $slug := include "runway.queueSlug" $q.name -}}
{{- if not $slug -}}
{{- fail (printf "worker.workerQueues: queue %q has no letter or digit to name its Deployment by" $q.name) -}}
{{- end -}}
{{- if hasKey $seen $slug -}}
{{- fail (printf "worker.workerQueues: queues %q and %q would both be deployed as %q; rename one" (index $seen $slug) $q.name (printf "worker-%s" $slug)) -}}
{{- end -}}
{{- $_ := set $seen $slug $q.name -}}
{{- $_ := set $q "slug" $slug -}}
{{- if $q.autoscaling.enabled -}}
{{- if lt (int $q.autoscaling.maxReplicas) (int $q.autoscaling.minReplicas) -}}
{{- fail (printf "worker.workerQueues[%s].autoscaling: maxReplicas (%d) is below minReplicas (%d)" $q.name (int $q.autoscaling.maxReplicas) (int $q.autoscaling.minReplicas)) -}}
{{- end -}}
{{- end -}}
{{- $out = append $out $q -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
