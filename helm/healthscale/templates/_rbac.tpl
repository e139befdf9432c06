{{- /*
The RBAC rule lists shared by templates/rbac.yaml's ClusterRole and Roles. Every rule says who
needs it: "the operator" (its Kubernetes client calls in healthscale/adapters/) or "Kopf" (the
framework). tests/chart/test_rbac_least_privilege.py derives the same set from the code.
*/ -}}

{{- /* Wherever ClinicalSLOs are served: each watched namespace, or the whole cluster. */ -}}
{{- define "healthscale.rbac.servingRules" -}}
{{- $residency := .Values.residency.enabled }}
{{- $deletionCost := .Values.podDeletionCost.enabled -}}
# The operator: read the target workload.
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get]
{{- if $residency }}
# The operator (residency.enabled): write the region requirement into the target's pod template
# (a strategic-merge patch of its required node affinity). Only residency patches a workload
# itself; scaling goes through the scale subresource below.
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [patch]
{{- end }}
# The operator: scale the workload through the scale subresource.
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale]
  verbs: [patch]
# The operator: find an HPA targeting the workload and move its minReplicas.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, patch]
{{- if .Values.keda.enabled }}
# The operator (keda.enabled): find a KEDA ScaledObject scaling the workload and move its
# minReplicaCount (never KEDA's own HPA, which KEDA reconciles back).
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [list, patch]
{{- end }}
{{- if .Values.deferral.enabled }}
# The operator (deferral.enabled): find what a SurgeSchedule's spec.defer selects (by label) and
# shrink or suspend it during a surge, then put it back: one field per write, test-and-set on its
# uid and resourceVersion ({{ if .Values.keda.enabled }}ScaledObjects: the rule above{{ else }}ScaledObjects only with keda.enabled{{ end }}).
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [list, patch]
- apiGroups: [batch]
  resources: [cronjobs, jobs]
  verbs: [list, patch]
{{- end }}
{{- if or $residency $deletionCost }}
# The operator: list pods ({{ if $residency }}residency.enabled: the audit of targets and of every pod in enforced
# namespaces{{ end }}{{ if and $residency $deletionCost }}; {{ end }}{{ if $deletionCost }}podDeletionCost.enabled: the pods a scale-down costs{{ end }}).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end }}
{{- if $deletionCost }}
# The operator (podDeletionCost.enabled): set each pod's pod-deletion-cost before a scale-down.
- apiGroups: [""]
  resources: [pods]
  verbs: [patch]
{{- end }}
{{- if .Values.prometheusRules.enabled }}
# The operator (prometheusRules.enabled): keep one PrometheusRule per ClinicalSLO, in its
# namespace (create, then server-side apply), and delete it when the ClinicalSLO measures nothing.
- apiGroups: [monitoring.coreos.com]
  resources: [prometheusrules]
  verbs: [create, patch, delete]
{{- end }}
{{- if .Values.nodeWarmup.enabled }}
# The operator (nodeWarmup.enabled): keep one placeholder Deployment per ClinicalSLO, in its
# namespace (server-side apply, created when missing), and delete it once it is to hold no room
# (Preview, nodeProvisioningSeconds removed, the ClinicalSLO deleted). Residency's rule above may
# grant patch as well: each feature lists all it needs.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [create, patch, delete]
{{- end }}
{{- if and $residency .Values.residency.evict }}
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
# Kopf and the operator: post Events (ScaledUp, ... on ClinicalSLOs; ResidencyViolation on pods).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{- /* Cluster-scoped objects, by feature. */ -}}
{{- define "healthscale.rbac.clusterRules" -}}
{{- if .Values.residency.enabled -}}
# The operator (residency.enabled): which region each pod's node is in (node labels), and which
# namespaces enforce residency (label selector) and allow which regions (annotations).
- apiGroups: [""]
  resources: [nodes]
  verbs: [list]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list]
{{- end }}
{{- if include "healthscale.webhook.enabled" . }}
# The operator's admission webhook: keep every node's labels (its region) and every namespace's
# labels and annotations (opt-in, allowed regions, default data class) in watch-fed caches, so
# that it answers without calling the API server.
- apiGroups: [""]
  resources: [nodes, namespaces]
  verbs: [list, watch]
# The operator's admission webhook: fill in its ValidatingWebhookConfiguration (created empty by
# this chart, so that the operator needs no right to create webhook configurations), and only it.
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
{{- if .Values.keda.enabled }}
# healthscale release (keda.enabled): put back KEDA ScaledObjects' minReplicaCount.
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [patch]
{{- end }}
{{- if .Values.deferral.enabled }}
# healthscale release (deferral.enabled): put back what SurgeSchedules deferred (each object read by
# a list by name, then one field patched) and remove their finalizer; clear the records in status.
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [list, patch]
- apiGroups: [batch]
  resources: [cronjobs, jobs]
  verbs: [list, patch]
# ... and whether an autoscaler now sets a restored workload's replicas (then it is left to it).
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list]
{{- if .Values.keda.enabled }}
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [list]
{{- end }}
- apiGroups: [healthscale.io]
  resources: [surgeschedules]
  verbs: [list, patch]
- apiGroups: [healthscale.io]
  resources: [surgeschedules/status]
  verbs: [patch]
{{- end }}
# healthscale release: say on each ClinicalSLO what was restored and what was left.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
