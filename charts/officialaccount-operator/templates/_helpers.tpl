{{- define "oao.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "oao.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "oao.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oao.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "oao.labels" -}}
{{ include "oao.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "oao.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "oao.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "oao.eventNamespace" -}}
{{- default .Release.Namespace .Values.eventNamespace -}}
{{- end -}}

{{- define "oao.tokensSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else if .Values.auth.tokens -}}
{{- printf "%s-auth" (include "oao.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* SDKAppIDs as a comma-separated list; numbers from YAML arrive as floats, so they are
     printed as integers, never as 1.4e+09. */}}
{{- define "oao.sdkAppIDs" -}}
{{- $ids := list -}}
{{- range .Values.sdkAppIDs -}}
{{- if kindIs "string" . -}}
{{- $ids = append $ids . -}}
{{- else -}}
{{- $ids = append $ids (int64 . | toString) -}}
{{- end -}}
{{- end -}}
{{- join "," $ids -}}
{{- end -}}
