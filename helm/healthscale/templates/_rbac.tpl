{{- /*
The RBAC rule lists shared by templates/rbac.yaml's ClusterRole and Roles. Every rule says who
needs it: "the operator" (its Kubernetes client calls in healthscale/adapters/) or "Kopf" (the
framework). tests/chart/test_rbac_least_privilege.py derives the same set from the code.
*/ -}}

{{- /* Wherever ClinicalSLOs are served: each watched namespace, or the whole cluster. */ -}}
{{- define "healthscale.rbac.servingRules" -}}
# The operator: read the target workload; residency writes the region requirement into its pod
# template (a strategic-merge patch of one field).
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, patch]
# The operator: scale the workload through the scale subresource.
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale]
  verbs: [patch]
# The operator: find an HPA targeting the workload and move its minReplicas.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, patch]
# The operator: list the workload's pods (residency audit, scale-down order) and set their
# pod-deletion-cost before a scale-down.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
{{- if .Values.residency.evict }}
# The operator (residency.evict): evict pods running outside their allowed regions. The Eviction
# API honours PodDisruptionBudgets.
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
{{- end }}
# Kopf: watch the custom resources, store its finalizer and progress annotations on them.
- apiGroups: [healthscale.io]
  resources: [clinicalslos, surgeschedules]
  verbs: [list, watch, patch]
# Kopf: write status (both CRDs have a status subresource).
- apiGroups: [healthscale.io]
  resources: [clinicalslos/status, surgeschedules/status]
  verbs: [patch]
# Kopf: post Events (ScaledUp, ResidencyViolation, ...) on the ClinicalSLOs.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{- /* Cluster-scoped objects, needed in every mode. */ -}}
{{- define "healthscale.rbac.clusterRules" -}}
# The operator: residency audits which region each pod's node is in (node labels).
- apiGroups: [""]
  resources: [nodes]
  verbs: [{{ if .Values.webhook.enabled }}get, {{ end }}list]
{{- if .Values.webhook.enabled }}
# The operator's admission webhook: read the pod's namespace (opt-in label, allowed regions).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
# The operator's admission webhook: fill in its ValidatingWebhookConfiguration (created empty by
# this chart, so that the operator needs no right to create webhook configurations).
- apiGroups: [admissionregistration.k8s.io]
  resources: [validatingwebhookconfigurations]
  resourceNames: [{{ include "healthscale.webhook.configurationName" . | quote }}]
  verbs: [patch]
{{- end }}
{{- end }}

{{- /* Kopf's observation of the cluster (read-only); optional when watching listed namespaces. */ -}}
{{- define "healthscale.rbac.crdRules" -}}
# Kopf: notice CRDs being added or upgraded while running.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{- define "healthscale.rbac.peeringRules" -}}
# Kopf peering: see the other replicas, and keep this one's heartbeat in our peering object.
- apiGroups: [kopf.dev]
  resources: [{{ .resource }}]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ .resource }}]
  resourceNames: [{{ .name | quote }}]
  verbs: [patch]
{{- end }}

{{- /* The uninstall hook's `healthscale release` (templates/release-hook.yaml), wherever
ClinicalSLOs are served. */ -}}
{{- define "healthscale.rbac.releaseRules" -}}
# healthscale release: list the ClinicalSLOs, and remove healthscale's finalizer (a JSON patch).
- apiGroups: [healthscale.io]
  resources: [clinicalslos]
  verbs: [list, patch]
# healthscale release: clear the records in status once everything is restored.
- apiGroups: [healthscale.io]
  resources: [clinicalslos/status]
  verbs: [patch]
# healthscale release: put back replicas (scale subresource) and HPA floors.
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale]
  verbs: [patch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [patch]
# healthscale release: say on each ClinicalSLO what was restored and what was left.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
