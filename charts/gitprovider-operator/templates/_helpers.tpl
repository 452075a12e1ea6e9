{{/* Chart name, at most 63 characters. */}}
{{- define "gitprovider-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources. Truncated to 55 characters so that the Service names
derived from it (<fullname>-webhook, <fullname>-metrics) stay valid 63-character DNS labels.
*/}}
{{- define "gitprovider-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gitprovider-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gitprovider-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitprovider-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gitprovider-operator.labels" -}}
helm.sh/chart: {{ include "gitprovider-operator.chart" . }}
{{ include "gitprovider-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: gitprovider-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gitprovider-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gitprovider-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gitprovider-operator.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag must not be \"latest\": pin a version" }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* The webhook Service. */}}
{{- define "gitprovider-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "gitprovider-operator.fullname" .) }}
{{- end }}

{{/* The metrics Service. */}}
{{- define "gitprovider-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "gitprovider-operator.fullname" .) }}
{{- end }}

{{/* The Secret holding the webhook serving certificate (both certificate modes). */}}
{{- define "gitprovider-operator.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "gitprovider-operator.fullname" .) }}
{{- end }}

{{/* The cert-manager Certificate. */}}
{{- define "gitprovider-operator.certificateName" -}}
{{- printf "%s-webhook" (include "gitprovider-operator.fullname" .) }}
{{- end }}

{{/* The self-signed cert-manager Issuer. */}}
{{- define "gitprovider-operator.issuerName" -}}
{{- printf "%s-webhook-selfsigned" (include "gitprovider-operator.fullname" .) }}
{{- end }}

{{/* The ValidatingWebhookConfiguration. */}}
{{- define "gitprovider-operator.webhookConfigurationName" -}}
{{- include "gitprovider-operator.fullname" . }}
{{- end }}

{{/* The RBAC rules for connections, their Secrets and ConfigMaps, and events. */}}
{{- define "gitprovider-operator.watchRules" -}}
- apiGroups: ["gitprovider.dev"]
  resources: ["gitproviderconnections"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["gitprovider.dev"]
  resources: ["gitproviderconnections/status"]
  verbs: ["update", "patch"]
# Tokens and CA bundles are read, never written.
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
A volume named .volume holding the key .ref.key of the ConfigMap or Secret .ref.name (.ref.kind)
as the file ca.crt: PEM certificates the operator reads.
*/}}
{{- define "gitprovider-operator.caVolume" -}}
- name: {{ .volume }}
  {{- if eq .ref.kind "Secret" }}
  secret:
    secretName: {{ .ref.name }}
  {{- else }}
  configMap:
    name: {{ .ref.name }}
  {{- end }}
    items:
      - key: {{ .ref.key | quote }}
        path: ca.crt
    defaultMode: 0444
{{- end }}
