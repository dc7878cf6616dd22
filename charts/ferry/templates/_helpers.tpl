{{/* The agent's selector labels. */}}
{{- define "ferry.selector" -}}
app.kubernetes.io/name: ferry-agent
{{- end -}}

{{/* metadata.labels of an object: the selector labels when `selector` is true, and commonLabels. */}}
{{- define "ferry.labels" -}}
{{- $labels := dict -}}
{{- if .selector -}}{{- $labels = include "ferry.selector" . | fromYaml -}}{{- end -}}
{{- $labels = merge $labels (.root.Values.commonLabels | default dict) -}}
{{- if $labels -}}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default "ferry-agent" -}}
{{- end -}}

{{- define "ferry.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
