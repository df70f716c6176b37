{{- define "firedrill.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "firedrill.labels" -}}
app.kubernetes.io/name: firedrill
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: firedrill
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "firedrill.selector" -}}
app.kubernetes.io/name: firedrill
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: serve
{{- end -}}

{{- define "firedrill.tokenSecret" -}}
{{- default (printf "%s-token" (include "firedrill.name" .)) .Values.token.existingSecret -}}
{{- end -}}

{{- define "firedrill.replicas" -}}
{{- if .Values.leaderElection.enabled }}{{ .Values.leaderElection.replicas }}{{ else }}1{{ end -}}
{{- end -}}

{{- define "firedrill.validate" -}}
{{- if not (has .Values.history.store (list "sqlite" "postgres")) -}}
{{- fail (printf "history.store must be sqlite or postgres, not %q" .Values.history.store) -}}
{{- end -}}
{{- if and (gt (int (include "firedrill.replicas" .)) 1) (eq .Values.history.store "sqlite") -}}
{{- fail "leaderElection with more than one replica needs history.store=postgres: SQLite on a ReadWriteOnce volume has one writer" -}}
{{- end -}}
{{- end -}}
