{{/*
TLS to the stores: each CA certificate named in .Values.storeTLS comes from
a Secret, is mounted read-only under /etc/runway/store-ca/<store>/ca.crt and
is passed to runway as its option's env var (RUNWAY_<STORE>_CA_FILE). The
URLs themselves choose TLS (amqps://, rediss://, the instance's sslmode).
Called with (dict "ctx" $ "stores" (list "broker" "redis" ...)).
*/}}

{{- define "runway.storeCAs" -}}
{{- $out := list -}}
{{- range $store := .stores -}}
{{- $ca := index $.ctx.Values.storeTLS (printf "%sCA" $store) -}}
{{- if and $ca $ca.secretName -}}
{{- $out = append $out (dict "store" $store "secretName" $ca.secretName "key" ($ca.key | default "ca.crt")) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "runway.storeCAEnv" -}}
{{- range $ca := include "runway.storeCAs" . | fromJsonArray }}
- name: RUNWAY_{{ upper $ca.store }}_CA_FILE
  value: /etc/runway/store-ca/{{ $ca.store }}/ca.crt
{{- end }}
{{- end -}}

{{- define "runway.storeCAMounts" -}}
{{- range $ca := include "runway.storeCAs" . | fromJsonArray }}
- name: store-ca-{{ $ca.store }}
  mountPath: /etc/runway/store-ca/{{ $ca.store }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "runway.storeCAVolumes" -}}
{{- range $ca := include "runway.storeCAs" . | fromJsonArray }}
- name: store-ca-{{ $ca.store }}
  secret:
    secretName: {{ $ca.secretName }}
    defaultMode: 0444
    items:
      - key: {{ $ca.key }}
        path: ca.crt
{{- end }}
{{- end -}}
