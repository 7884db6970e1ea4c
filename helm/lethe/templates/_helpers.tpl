{{/* Names, labels and the pod pieces shared by the Deployments, the hook Job and the CronJob. */}}

{{- define "lethe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lethe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lethe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lethe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lethe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lethe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lethe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "lethe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lethe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lethe.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "lethe.secretName" -}}
{{- default (include "lethe.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "lethe.manifestsConfigMap" -}}
{{- default (printf "%s-manifests" (include "lethe.fullname" .)) .Values.manifests.existingConfigMap }}
{{- end }}

{{- define "lethe.hasManifests" -}}
{{- if or .Values.manifests.files .Values.manifests.existingConfigMap }}true{{ end }}
{{- end }}

{{/* Lethe secrets read from files: values key -> LETHE_<NAME> (each also accepts _FILE). */}}
{{- define "lethe.secretFiles" -}}
databaseUrl: LETHE_DATABASE_URL
jwtSecret: LETHE_JWT_SECRET
auditKey: LETHE_AUDIT_KEY
auditSigningKey: LETHE_AUDIT_SIGNING_KEY
auditChainKey: LETHE_AUDIT_CHAIN_KEY
artifactKey: LETHE_ARTIFACT_KEY
artifactS3AccessKeyId: LETHE_ARTIFACT_S3_ACCESS_KEY_ID
artifactS3SecretAccessKey: LETHE_ARTIFACT_S3_SECRET_ACCESS_KEY
{{- end }}

{{/* Non-secret settings as a LETHE_* map (the ConfigMap's data; inlined in the hook Job). */}}
{{- define "lethe.settings" -}}
LETHE_JWT_AUDIENCE: {{ .Values.config.jwtAudience | quote }}
LETHE_JWT_ISSUER: {{ .Values.config.jwtIssuer | quote }}
LETHE_JWT_ALGORITHMS: {{ .Values.config.jwtAlgorithms | quote }}
{{- with .Values.config.jwksUrl }}
LETHE_JWKS_URL: {{ . | quote }}
{{- end }}
LETHE_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
LETHE_APPROVAL_REQUIRED: {{ .Values.config.approvalRequired | quote }}
LETHE_ARTIFACT_TTL_DAYS: {{ .Values.config.artifactTtlDays | quote }}
LETHE_ARTIFACTS_DIR: {{ printf "%s/artifacts" .Values.persistence.mountPath | quote }}
LETHE_ARTIFACT_STORAGE: {{ .Values.artifacts.storage | quote }}
{{- if eq .Values.artifacts.storage "s3" }}
LETHE_ARTIFACT_S3_BUCKET: {{ .Values.artifacts.s3.bucket | quote }}
LETHE_ARTIFACT_S3_PREFIX: {{ .Values.artifacts.s3.prefix | quote }}
{{- with .Values.artifacts.s3.endpointUrl }}
LETHE_ARTIFACT_S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- with .Values.artifacts.s3.region }}
LETHE_ARTIFACT_S3_REGION: {{ . | quote }}
{{- end }}
{{- end }}
{{- if include "lethe.hasManifests" . }}
LETHE_MANIFESTS_DIR: {{ .Values.manifests.mountPath | quote }}
{{- end }}
{{- range $name, $value := .Values.config.extra }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Environment of every Lethe container; "workers" is the LETHE_WORKERS_ENABLED value, "keys"
     the Secret keys to mount (secrets.keys, or the hook's with the migration role's URL). */}}
{{- define "lethe.env" -}}
{{- $root := .root -}}
{{- $keys := .keys | default $root.Values.secrets.keys -}}
- name: LETHE_WORKERS_ENABLED
  value: {{ .workers | quote }}
{{- range $key, $env := include "lethe.secretFiles" $root | fromYaml }}
{{- if index $keys $key }}
- name: {{ $env }}_FILE
  value: {{ printf "/etc/lethe/secrets/%s" (trimPrefix "LETHE_" $env | lower) | quote }}
{{- end }}
{{- end }}
{{- with $root.Values.secrets.keys.jwtPublicKey }}
- name: LETHE_JWT_PUBLIC_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "lethe.secretName" $root }}
      key: {{ . }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The read-only secret files, only the keys the values name (a missing key stops the pod).
     Takes the root context, or a dict of root and keys (the hook's keys). */}}
{{- define "lethe.secretVolume" -}}
{{- $root := .root | default . -}}
{{- $keys := .keys | default $root.Values.secrets.keys -}}
- name: secrets
  secret:
    secretName: {{ include "lethe.secretName" $root }}
    defaultMode: 288 # 0440: readable by the pod's fsGroup, nobody else
    items:
    {{- range $key, $env := include "lethe.secretFiles" $root | fromYaml }}
    {{- with index $keys $key }}
      - key: {{ . }}
        path: {{ trimPrefix "LETHE_" $env | lower }}
    {{- end }}
    {{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $root.Values.tmpSizeLimit }}
{{- end }}

{{/* Secret keys of the migration hook: the migration role's database URL when one is named. */}}
{{- define "lethe.migrationKeys" -}}
{{- $keys := deepCopy .Values.secrets.keys }}
{{- with .Values.secrets.keys.migrationDatabaseUrl }}
{{- $_ := set $keys "databaseUrl" . }}
{{- end }}
{{- toYaml $keys }}
{{- end }}

{{/* Pod-level settings every Lethe pod shares: no service links (they would inject LETHE_* env
     vars for a Service called "lethe"), priority class. */}}
{{- define "lethe.podCommon" -}}
enableServiceLinks: false
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* Export artifacts (and the embedded store when no database URL is set). */}}
{{- define "lethe.dataVolume" -}}
- name: data
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-data" (include "lethe.fullname" .)) .Values.persistence.existingClaim }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}

{{- define "lethe.secretMounts" -}}
- name: secrets
  mountPath: /etc/lethe/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Pod template of the API and worker Deployments: dict root, component, workers, spec. */}}
{{- define "lethe.podTemplate" -}}
{{- $root := .root }}
{{- $spec := .spec -}}
metadata:
  labels:
    {{- include "lethe.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $spec.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secret-keys: {{ toYaml $root.Values.secrets | sha256sum }}
    {{- with $spec.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "lethe.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- include "lethe.podCommon" $root | nindent 2 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $spec.terminationGracePeriodSeconds }}
  {{- with $root.Values.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: lethe
      image: {{ include "lethe.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: ["lethe"]
      args: ["run", "--host", "0.0.0.0", "--port", "8000"]
      ports:
        - name: http
          containerPort: 8000
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "lethe.fullname" $root }}
        {{- with $root.Values.extraEnvFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        {{- include "lethe.env" (dict "root" $root "workers" .workers) | nindent 8 }}
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml $root.Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      lifecycle:
        preStop:
          # Endpoints drop the pod while it still serves; then SIGTERM starts the drain.
          exec:
            command: ["sleep", {{ $root.Values.preStopSeconds | quote }}]
      resources:
        {{- toYaml $spec.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "lethe.secretMounts" $root | nindent 8 }}
        - name: data
          mountPath: {{ $root.Values.persistence.mountPath }}
        {{- if include "lethe.hasManifests" $root }}
        - name: manifests
          mountPath: {{ $root.Values.manifests.mountPath }}
          readOnly: true
        {{- end }}
        {{- with $root.Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- with $root.Values.sidecars }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    {{- include "lethe.secretVolume" $root | nindent 4 }}
    {{- include "lethe.dataVolume" $root | nindent 4 }}
    {{- if include "lethe.hasManifests" $root }}
    - name: manifests
      configMap:
        name: {{ include "lethe.manifestsConfigMap" $root }}
    {{- end }}
    {{- with $root.Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $spec.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $spec.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $spec.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $spec.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Refuse value combinations that deploy but cannot work. */}}
{{- define "lethe.validate" -}}
{{- if not (or .Values.api.workersEnabled .Values.worker.enabled) }}
{{- fail "no pod would execute requests: set api.workersEnabled=true or worker.enabled=true" }}
{{- end }}
{{- $pods := or .Values.worker.enabled .Values.api.autoscaling.enabled (gt (int .Values.api.replicaCount) 1) }}
{{- $shared := or .Values.persistence.existingClaim (has "ReadWriteMany" .Values.persistence.accessModes) }}
{{- if and $pods (eq .Values.artifacts.storage "filesystem") (not (and .Values.persistence.enabled $shared)) }}
{{- fail "more than one pod needs artifacts.storage=s3, or persistence.enabled=true with a ReadWriteMany volume: exports written by one pod are served by another" }}
{{- end }}
{{- if and (eq .Values.artifacts.storage "s3") (not .Values.artifacts.s3.bucket) }}
{{- fail "artifacts.storage=s3 needs artifacts.s3.bucket" }}
{{- end }}
{{- if ne (not .Values.secrets.keys.artifactS3AccessKeyId) (not .Values.secrets.keys.artifactS3SecretAccessKey) }}
{{- fail "set both secrets.keys.artifactS3AccessKeyId and artifactS3SecretAccessKey, or neither (web identity)" }}
{{- end }}
{{- $lease := int (index .Values.config.extra "LETHE_WORKER_LEASE_SECONDS" | default 60) }}
{{- $drain := add $lease .Values.preStopSeconds 5 }}
{{- range $name, $spec := dict "api" (and .Values.api.workersEnabled .Values.api) "worker" (and .Values.worker.enabled .Values.worker) }}
{{- if and $spec (lt (int $spec.terminationGracePeriodSeconds) (int $drain)) }}
{{- fail (printf "%s.terminationGracePeriodSeconds must be at least %d: preStopSeconds, then up to LETHE_WORKER_LEASE_SECONDS (%d) for running requests to drain" $name $drain $lease) }}
{{- end }}
{{- end }}
{{- $policy := .Values.networkPolicy }}
{{- if and $policy.enabled (not (or $policy.allowSameNamespace $policy.ingressNamespaces $policy.ingressFrom)) }}
{{- fail "networkPolicy admits nobody: set allowSameNamespace, ingressNamespaces or ingressFrom (an empty rule would admit everyone)" }}
{{- end }}
{{- if not (or .Values.secrets.keys.jwtSecret .Values.secrets.keys.jwtPublicKey .Values.config.jwksUrl) }}
{{- fail "set secrets.keys.jwtSecret, secrets.keys.jwtPublicKey or config.jwksUrl: tokens cannot be verified otherwise" }}
{{- end }}
{{- end }}
