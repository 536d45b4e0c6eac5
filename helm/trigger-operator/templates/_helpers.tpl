{{/* Names, cut to 63 characters as Kubernetes names must be. */}}
{{- define "trigger-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trigger-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "trigger-operator.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "trigger-operator.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trigger-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "trigger-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "trigger-operator.labels" -}}
app.kubernetes.io/name: {{ include "trigger-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "trigger-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trigger-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The namespaced rules, the same in the ClusterRole (cluster-wide) or in each watched namespace's Role. */}}
{{- define "trigger-operator.namespacedRules" -}}
# Triggers: read them; write their status. `patch` only for metadata.finalizers: the finalizer
# trigger-operator.io/notify holds a deleted Trigger with spec.notifications until trigger.deleted
# is delivered (or a bounded grace passes), so a restart or an outage does not lose it
# (docs/notifications.md); the operator writes nothing else of a Trigger.
- apiGroups: [trigger-operator.io]
  resources: [triggers]
  verbs: [get, list, watch, patch]
- apiGroups: [trigger-operator.io]
  resources: [triggers/status]
  verbs: [get, patch]
# Jobs: create runs, read them, delete pruned and replaced ones, patch to remove our finalizer.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete, patch]
# Pods of failed Jobs: their containers' messages go into lastExecutionError.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Events on Triggers (JobCreated, JobFailed, ...).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# ConfigMaps: the configMap condition source.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
# Services: a notification sink's `ref` (its cluster IP; ExternalName and headless ones are refused).
- apiGroups: [""]
  resources: [services]
  verbs: [get]
{{- if .Values.rbac.readSecrets }}
# Secrets: only the tokenSecret of an http condition source (rbac.readSecrets).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
{{- with .Values.rbac.objectSources }}
# Objects read by `object` condition sources (rbac.objectSources).
{{- range . }}
- apiGroups: {{ toJson .apiGroups }}
  resources: {{ toJson .resources }}
  verbs: [get]
{{- end }}
{{- end }}
{{- end -}}
