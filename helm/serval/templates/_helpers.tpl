{{/*
Shared helpers. Object names are fixed (serval-controller, serval-activator, ...): the
controller points each InferenceService's ExternalName Service at
serval-activator.<release namespace>.svc.cluster.local, so the names are part of the
contract and do not follow the release name.
*/}}

{{/* The one image every role runs: repository:tag, the tag defaulting to appVersion. */}}
{{- define "serval.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "serval.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: serval
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: serval
{{- end -}}

{{/* Selector labels of one role; call with (dict "root" $ "component" "activator"). */}}
{{- define "serval.selectorLabels" -}}
app.kubernetes.io/name: serval
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one role's objects; same argument as serval.selectorLabels. */}}
{{- define "serval.componentLabels" -}}
{{ include "serval.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod-level security context shared by every role (the image's user is 65532). */}}
{{- define "serval.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context shared by every role. */}}
{{- define "serval.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
policy/v1 PodDisruptionBudget where the API server serves it (1.21+), else policy/v1beta1.
The version check covers `helm template` without --api-versions, whose capabilities list
no kinds.
*/}}
{{- define "serval.pdb.apiVersion" -}}
{{- if or (.Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version) -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/* autoscaling/v2 HorizontalPodAutoscaler where served (1.23+), else autoscaling/v2beta2. */}}
{{- define "serval.hpa.apiVersion" -}}
{{- if or (.Capabilities.APIVersions.Has "autoscaling/v2/HorizontalPodAutoscaler") (semverCompare ">=1.23-0" .Capabilities.KubeVersion.Version) -}}
autoscaling/v2
{{- else -}}
autoscaling/v2beta2
{{- end -}}
{{- end -}}

{{/*
Scheduling fields of one role's pod; call with the role's values
(.Values.controller, ...) and the root as (dict "root" $ "role" .Values.controller).
*/}}
{{- define "serval.podScheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Subjects of a binding for the namespaced part of a role: a ClusterRoleBinding over all
namespaces, or a RoleBinding in .Values.watchNamespace when Serval watches one namespace.
*/}}
{{- define "serval.workloadBinding" -}}
{{- $root := .root -}}
{{- if $root.Values.watchNamespace }}
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .name }}
  namespace: {{ $root.Values.watchNamespace }}
  labels:
    {{- include "serval.componentLabels" (dict "root" $root "component" .component) | nindent 4 }}
{{- else }}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .name }}
  labels:
    {{- include "serval.componentLabels" (dict "root" $root "component" .component) | nindent 4 }}
{{- end }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ .serviceAccount }}
    namespace: {{ $root.Release.Namespace }}
{{- end -}}
