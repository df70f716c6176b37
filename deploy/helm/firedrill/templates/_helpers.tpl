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
{{- if and .Values.admissionPolicy.enabled (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "admissionPolicy needs Kubernetes 1.30 or later (ValidatingAdmissionPolicy v1), not %s: upgrade, or set admissionPolicy.enabled=false and read deploy/RBAC.md for what RBAC alone allows" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}
