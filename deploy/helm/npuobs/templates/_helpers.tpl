{{/*
Labels. The selector labels are the subset a DaemonSet's selector uses, which Kubernetes never
lets change after creation, so they hold nothing that changes on upgrade (no version).
app.kubernetes.io/name is fixed to "npuobs": the ServiceMonitor uses it as the Prometheus job
name, which the generated alerts expect (fleet.exporter_job in alerts/slo.yaml).
*/}}
{{- define "npuobs.selectorLabels" -}}
app.kubernetes.io/name: npuobs
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "npuobs.labels" -}}
{{ include "npuobs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: npuobs
{{- end }}
