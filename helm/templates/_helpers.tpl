{{/* Names and labels, as `helm create` makes them. */}}
{{- define "availability.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "availability.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "availability.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "availability.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "availability.selectorLabels" -}}
app.kubernetes.io/name: {{ include "availability.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "availability.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "availability.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "availability.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{- define "availability.secretName" -}}
{{- default (printf "%s-secrets" (include "availability.fullname" .)) .Values.secret.existingSecret }}
{{- end }}

{{- define "availability.rulesFile" -}}
{{- .Values.settings.AVAIL_RULES_FILE | default "" | toString }}
{{- end }}

{{/*
Checks the values once, so both workloads fail with the same message.
*/}}
{{- define "availability.validate" -}}
{{- range $name, $value := .Values.settings }}
{{- if not (hasPrefix "AVAIL_" $name) }}
{{- fail (printf "settings.%s: every setting is an AVAIL_* variable (see the README's settings table)" $name) }}
{{- end }}
{{- if kindIs "map" $value }}
{{- fail (printf "settings.%s must be a string, not a map" $name) }}
{{- end }}
{{- end }}
{{- range $name := .Values.secretSettings }}
{{- if not (hasKey $.Values.settings $name) }}
{{- fail (printf "secretSettings names %s, which is not under settings" $name) }}
{{- end }}
{{- end }}
{{- $host := toString .Values.settings.AVAIL_HOST }}
{{- if or (hasPrefix "127." $host) (eq $host "localhost") (eq $host "::1") }}
{{- fail (printf "settings.AVAIL_HOST=%s: a pod bound to loopback is unreachable by its Service and by Prometheus; use 0.0.0.0" $host) }}
{{- end }}
{{- if not (has "AVAIL_API_KEYS" .Values.secretSettings) }}
{{- fail "secretSettings must list AVAIL_API_KEYS: API keys are never written into a pod spec" }}
{{- end }}
{{- if and (include "availability.rulesFile" .) (not .Values.rules.document) }}
{{- fail "settings.AVAIL_RULES_FILE names a file but rules.document is empty: give the rules, or set AVAIL_RULES_FILE to \"\" to manage them with PUT /v1/rules" }}
{{- end }}
{{- $standby := int .Values.settings.AVAIL_STANDBY_REPLICAS }}
{{- if and (gt $standby 0) (le (int .Values.worker.replicas) $standby) }}
{{- fail (printf "worker.replicas=%d cannot hold AVAIL_STANDBY_REPLICAS=%d standby copies: use at least %d workers" (int .Values.worker.replicas) $standby (add1 $standby)) }}
{{- end }}
{{- end }}

{{/*
Every setting as an environment variable: the secret ones by reference to the Secret.
Called with (dict "root" $ "component" "api"|"worker"): a worker serves no API, so it is
not given the API keys.
*/}}
{{- define "availability.env" -}}
{{- $component := .component }}
{{- $ := .root }}
{{- $secret := include "availability.secretName" $ }}
{{- range $name, $value := $.Values.settings }}
{{- if not (and (eq $component "worker") (eq $name "AVAIL_API_KEYS")) }}
- name: {{ $name }}
{{- if has $name $.Values.secretSettings }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $name }}
{{- else }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Roll the pods when the rules or the chart-made Secret change. */}}
{{- define "availability.checksums" -}}
checksum/rules: {{ include (print $.Template.BasePath "/rules-configmap.yaml") . | sha256sum }}
{{- if not .Values.secret.existingSecret }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{- define "availability.podSecurity" -}}
serviceAccountName: {{ include "availability.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}
