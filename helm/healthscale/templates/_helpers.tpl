{{/*
Names and labels shared by every template.
*/}}

{{- define "healthscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name. A release called "healthscale" (or "healthscale-prod") is used as is;
any other release name gets the chart name appended, so two releases never share cluster-scoped
names (ClusterRoles, the ClusterKopfPeering).
*/}}
{{- define "healthscale.fullname" -}}
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

{{- define "healthscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "healthscale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "healthscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "healthscale.labels" -}}
helm.sh/chart: {{ include "healthscale.chart" . }}
{{ include "healthscale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: healthscale
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "healthscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "healthscale.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "healthscale.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Kopf peering. The operator runs standalone with one replica; with more, the replicas must agree on
which one is active, which Kopf does through a peering object (ClusterKopfPeering when watching the
whole cluster, a KopfPeering in each watched namespace otherwise). Returns "true" or "".
*/}}
{{- define "healthscale.peering.enabled" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.peering.enabled (include "healthscale.webhook.enabled" .) }}true{{ end }}
{{- end }}

{{- define "healthscale.peering.name" -}}
{{- default (include "healthscale.fullname" .) .Values.peering.name }}
{{- end }}

{{/* "true" when the operator watches the whole cluster (no namespaces listed). */}}
{{- define "healthscale.clusterwide" -}}
{{- if not .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
The residency webhook: "true" or "". webhook.enabled auto follows residency.enabled.
*/}}
{{- define "healthscale.webhook.enabled" -}}
{{- $enabled := .Values.webhook.enabled }}
{{- if eq (toString $enabled) "auto" }}{{ $enabled = .Values.residency.enabled }}{{ end }}
{{- if $enabled }}true{{ end }}
{{- end }}

{{/*
The ValidatingWebhookConfiguration the operator fills in (--webhook-configuration): one per
release, healthscale-residency for a release called healthscale.
*/}}
{{- define "healthscale.webhook.configurationName" -}}
{{- printf "%s-residency" (include "healthscale.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "healthscale.webhook.secretName" -}}
{{- default (printf "%s-webhook-cert" (include "healthscale.fullname" .)) .Values.webhook.certificate.secretName }}
{{- end }}

{{- define "healthscale.webhook.serviceName" -}}
{{- printf "%s-webhook" (include "healthscale.fullname" .) }}
{{- end }}

{{/* The placeholder pods' PriorityClass (nodeWarmup): <fullname>-placeholder unless named. */}}
{{- define "healthscale.nodeWarmup.priorityClassName" -}}
{{- default (printf "%s-placeholder" (include "healthscale.fullname" .)) .Values.nodeWarmup.priorityClass.name }}
{{- end }}

{{/* Paths inside the container for mounted secrets (the root filesystem is read-only). */}}
{{- define "healthscale.prometheusTokenPath" -}}/var/run/secrets/healthscale/prometheus-token/{{ .Values.prometheus.auth.bearerTokenSecret.key }}{{- end }}
{{- define "healthscale.prometheusCAPath" -}}/var/run/secrets/healthscale/prometheus-ca/{{ .Values.prometheus.auth.caSecret.key }}{{- end }}

{{/* The uninstall hook's annotations (templates/release-hook.yaml): RBAC first, by weight. */}}
{{- define "healthscale.releaseHook.annotations" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}
