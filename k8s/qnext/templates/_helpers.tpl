{{- define "qnext.name" -}}{{ .Release.Name }}-qnext{{- end -}}
{{- define "qnext.labels" -}}
app.kubernetes.io/name: qnext
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
