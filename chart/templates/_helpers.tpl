{{/* Names ---------------------------------------------------------------- */}}

{{- define "runway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "runway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<suffix>, kept within 63 characters. */}}
{{- define "runway.componentName" -}}
{{- $full := include "runway.fullname" .ctx -}}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len .suffix)))) .suffix | trimSuffix "-" -}}
{{- end -}}

{{- define "runway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "runway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "runway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: give the existing ServiceAccount to run as when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "runway.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
A queue name as a DNS label part: lower case, runs of other characters as "-".
*/}}
{{- define "runway.queueSlug" -}}
{{- regexReplaceAll "[^a-z0-9-]+" (lower .) "-" | trimAll "-" | trunc 30 | trimSuffix "-" -}}
{{- end -}}

{{/* A queue name as a label value. */}}
{{- define "runway.queueLabel" -}}
{{- regexReplaceAll "[^A-Za-z0-9_.-]+" (toString .) "-" | trunc 63 | trimAll "-_." -}}
{{- end -}}

{{/* Labels ---------------------------------------------------------------- */}}

{{- define "runway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels of an object: commonLabels, then `extra`, then the chart's own labels
(which win, so a selector can never be broken by a user label).
Call with (dict "ctx" $ "component" "launcher" "extra" map "queue" name).
*/}}
{{- define "runway.labels" -}}
{{- $ctx := .ctx -}}
{{- $own := fromYaml (include "runway.selectorLabels" $ctx) -}}
{{- $_ := set $own "helm.sh/chart" (include "runway.chart" $ctx) -}}
{{- $_ := set $own "app.kubernetes.io/managed-by" $ctx.Release.Service -}}
{{- $_ := set $own "app.kubernetes.io/part-of" "runway" -}}
{{- if $ctx.Chart.AppVersion -}}
{{- $_ := set $own "app.kubernetes.io/version" ($ctx.Chart.AppVersion | toString) -}}
{{- end -}}
{{- with .component -}}
{{- $_ := set $own "app.kubernetes.io/component" . -}}
{{- end -}}
{{- with .queue -}}
{{- $_ := set $own "runway/queue" (include "runway.queueLabel" .) -}}
{{- end -}}
{{- $labels := merge $own (deepCopy (.extra | default dict)) (deepCopy ($ctx.Values.commonLabels | default dict)) -}}
{{- toYaml $labels -}}
{{- end -}}

{{/* The selector of a component's pods. */}}
{{- define "runway.componentSelector" -}}
{{- $sel := fromYaml (include "runway.selectorLabels" .ctx) -}}
{{- $_ := set $sel "app.kubernetes.io/component" .component -}}
{{- with .queue -}}
{{- $_ := set $sel "runway/queue" (include "runway.queueLabel" .) -}}
{{- end -}}
{{- toYaml $sel -}}
{{- end -}}

{{/* commonAnnotations merged under `extra`; renders nothing when empty. */}}
{{- define "runway.annotations" -}}
{{- $a := merge (deepCopy (.extra | default dict)) (deepCopy (.ctx.Values.commonAnnotations | default dict)) -}}
{{- if $a -}}
annotations:
  {{- toYaml $a | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* Object metadata: name, namespace, labels, annotations. */}}
{{- define "runway.metadata" -}}
name: {{ .name }}
namespace: {{ .namespace | default .ctx.Release.Namespace }}
labels:
  {{- include "runway.labels" . | nindent 2 }}
{{- with include "runway.annotations" (dict "ctx" .ctx "extra" .annotations) }}
{{ . }}
{{- end }}
{{- end -}}

{{/* Namespaces and endpoints ---------------------------------------------- */}}

{{/* The job namespaces as a JSON list. */}}
{{- define "runway.jobNamespaces" -}}
{{- $ns := .Values.jobNamespaces | default (list .Release.Namespace) | uniq -}}
{{- toJson $ns -}}
{{- end -}}

{{/* A service host of the Dagster release: (dict "ctx" $ "service" "rabbitmq"). */}}
{{- define "runway.dagsterHost" -}}
{{- $d := .ctx.Values.dagster -}}
{{- if $d.namespace -}}
{{- printf "%s-%s.%s.svc" $d.releaseName .service $d.namespace -}}
{{- else -}}
{{- printf "%s-%s" $d.releaseName .service -}}
{{- end -}}
{{- end -}}

{{/* Userinfo escaping: query-escape, but a space is %20 there, not "+". */}}
{{- define "runway.escape" -}}
{{- . | toString | urlquery | replace "+" "%20" -}}
{{- end -}}

{{- define "runway.brokerUrl" -}}
{{- $b := .Values.celery.broker -}}
{{- if $b.url -}}
{{- $b.url -}}
{{- else -}}
{{- $host := $b.host | default (include "runway.dagsterHost" (dict "ctx" . "service" "rabbitmq")) -}}
{{- $auth := "" -}}
{{- if $b.username -}}
{{- $auth = printf "%s:%s@" (include "runway.escape" $b.username) (include "runway.escape" ($b.password | default "")) -}}
{{- end -}}
{{- $vhost := ternary "/" (include "runway.escape" $b.vhost) (eq $b.vhost "/") -}}
{{- printf "amqp://%s%s:%d/%s" $auth $host (int $b.port) $vhost -}}
{{- end -}}
{{- end -}}

{{- define "runway.resultBackendUrl" -}}
{{- $r := .Values.celery.resultBackend -}}
{{- if $r.url -}}
{{- $r.url -}}
{{- else if eq $r.type "rpc" -}}
rpc://
{{- else -}}
{{- $host := $r.host | default (include "runway.dagsterHost" (dict "ctx" . "service" "redis-master")) -}}
{{- $auth := "" -}}
{{- if $r.password -}}
{{- $auth = printf ":%s@" (include "runway.escape" $r.password) -}}
{{- end -}}
{{- printf "redis://%s%s:%d/%d" $auth $host (int $r.port) (int $r.db) -}}
{{- end -}}
{{- end -}}

{{/* Secrets ------------------------------------------------------------------ */}}

{{- define "runway.connectionsSecretName" -}}
{{- include "runway.componentName" (dict "ctx" . "suffix" "connections") -}}
{{- end -}}

{{/* The chart's connections Secret data (only the keys no existing Secret gives). */}}
{{- define "runway.connectionsData" -}}
{{- $c := .Values.celery -}}
{{- $needsCelery := or .Values.worker.enabled (and .Values.launcher.enabled .Values.launcher.publishSteps) -}}
{{- if and $needsCelery (not $c.broker.existingSecret) }}
broker-url: {{ include "runway.brokerUrl" . | b64enc }}
{{- end }}
{{- if and $needsCelery (not $c.resultBackend.existingSecret) }}
result-backend: {{ include "runway.resultBackendUrl" . | b64enc }}
{{- end }}
{{- if and .Values.worker.enabled .Values.worker.postgresUrl.url (not .Values.worker.postgresUrl.existingSecret) }}
postgres-url: {{ .Values.worker.postgresUrl.url | b64enc }}
{{- end }}
{{- end -}}

{{/* An env var from a Secret key: (dict "name" "RUNWAY_X" "secret" s "key" k). */}}
{{- define "runway.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end -}}

{{- define "runway.brokerEnv" -}}
{{- $c := .Values.celery -}}
{{ include "runway.secretEnv" (dict "name" "RUNWAY_BROKER_URL" "secret" ($c.broker.existingSecret | default (include "runway.connectionsSecretName" .)) "key" (ternary $c.broker.existingSecretKey "broker-url" (ne $c.broker.existingSecret ""))) }}
{{ include "runway.secretEnv" (dict "name" "RUNWAY_RESULT_BACKEND" "secret" ($c.resultBackend.existingSecret | default (include "runway.connectionsSecretName" .)) "key" (ternary $c.resultBackend.existingSecretKey "result-backend" (ne $c.resultBackend.existingSecret ""))) }}
{{- end -}}

{{- define "runway.tlsSecretName" -}}
{{- .Values.launcher.tls.existingSecret | default (include "runway.componentName" (dict "ctx" . "suffix" "tls")) -}}
{{- end -}}

{{- define "runway.authEnabled" -}}
{{- if or .Values.launcher.auth.token .Values.launcher.auth.existingSecret }}true{{ end -}}
{{- end -}}

{{- define "runway.tokenSecretName" -}}
{{- .Values.launcher.auth.existingSecret | default (include "runway.componentName" (dict "ctx" . "suffix" "token")) -}}
{{- end -}}

{{- define "runway.tokenSecretKey" -}}
{{- ternary .Values.launcher.auth.existingSecretKey "token" (ne .Values.launcher.auth.existingSecret "") -}}
{{- end -}}

{{/* Checksum of the Secrets this chart renders (a change rolls the pods). */}}
{{- define "runway.secretsChecksum" -}}
{{- $parts := list (include "runway.connectionsData" .) -}}
{{- with .Values.launcher.tls -}}
{{- if and .enabled (not .existingSecret) -}}
{{- $parts = append $parts (printf "%s|%s|%s" .cert .key .clientCA) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.launcher.auth.existingSecret -}}
{{- $parts = append $parts .Values.launcher.auth.token -}}
{{- end -}}
{{- join "\n" $parts | sha256sum -}}
{{- end -}}

{{/* Pod pieces ------------------------------------------------------------- */}}

{{/*
Affinity: the user's, plus the anti-affinity preset unless the user gave one.
(dict "affinity" map "preset" "soft" "topologyKey" k "selector" map)
*/}}
{{- define "runway.affinity" -}}
{{- $aff := deepCopy (.affinity | default dict) -}}
{{- if and .preset (not (hasKey $aff "podAntiAffinity")) -}}
{{- $term := dict "labelSelector" (dict "matchLabels" .selector) "topologyKey" .topologyKey -}}
{{- if eq .preset "hard" -}}
{{- $_ := set $aff "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else -}}
{{- $_ := set $aff "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end -}}
{{- end -}}
{{- if $aff -}}
affinity:
  {{- toYaml $aff | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* httpGet probe on the "http" port: (dict "path" "/live" "p" probeValues). */}}
{{- define "runway.probe" -}}
httpGet:
  path: {{ .path }}
  port: http
{{- with .p }}
{{ toYaml . }}
{{- end }}
{{- end -}}
