{{- define "hubspot-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end }}
{{- end }}

{{- define "hubspot-operator.leaseName" -}}
{{- default (include "hubspot-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "hubspot-operator.serviceAccountName" -}}
{{- default (include "hubspot-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "hubspot-operator.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "hubspot-operator.labels" -}}
app.kubernetes.io/name: hubspot-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "hubspot-operator.selectorLabels" -}}
app.kubernetes.io/name: hubspot-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- /*
The metadata block of each CRD in files/crds.yaml (which is `hubspot-operator crd` verbatim,
where metadata holds only the name), with the chart's labels and, unless crds.keep is off, the
annotation that keeps the CRDs on `helm uninstall`.
*/}}
{{- define "hubspot-operator.crdMetadata" -}}
metadata:
{{- if .Values.crds.keep }}
  annotations:
    helm.sh/resource-policy: keep
{{- end }}
  labels:
    {{- include "hubspot-operator.labels" . | nindent 4 }}
{{ end }}
