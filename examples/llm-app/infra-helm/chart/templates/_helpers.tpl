{{/* The chart name. */}}
{{- define "llm-app.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name, suffixed with the chart name unless it contains it. */}}
{{- define "llm-app.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "llm-app.labels" -}}
{{ include "llm-app.selectorLabels" . }}
app.kubernetes.io/part-of: llm-app
app.kubernetes.io/version: {{ include "llm-app.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.environment }}
app.kubernetes.io/environment: {{ . }}
{{- end }}
{{- end }}

{{/* Labels that select the pods. */}}
{{- define "llm-app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "llm-app.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "llm-app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-app.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
