#!/usr/bin/env bash
# Writes N plain manifests (40% ConfigMaps, 30% headless Services, 30% one-replica
# Deployments), one object per file and no namespace, into <dir>.
#   bench/gen-objects.sh <dir> [N]
set -euo pipefail
dir=${1:?usage: gen-objects.sh <dir> [N]}
n=${2:-1000}
ncm=$((n * 4 / 10))
nsvc=$((n * 3 / 10))
ndep=$((n - ncm - nsvc))
mkdir -p "$dir"
for ((i = 0; i < ncm; i++)); do
  printf -v name 'cm-%04d' "$i"
  cat >"$dir/$name.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: $name
  labels: {bench: ferry, tier: config}
data:
  index: "$i"
  greeting: hello from $name
  settings.ini: |
    [main]
    id = $i
    log_level = info
YAML
done
for ((i = 0; i < nsvc; i++)); do
  printf -v name 'svc-%04d' "$i"
  # Headless: the test bed's service CIDR is a /24, too small for 300 cluster IPs.
  cat >"$dir/$name.yaml" <<YAML
apiVersion: v1
kind: Service
metadata:
  name: $name
  labels: {bench: ferry, tier: web}
spec:
  clusterIP: None
  selector: {app: dep-$(printf '%04d' "$i")}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
YAML
done
for ((i = 0; i < ndep; i++)); do
  printf -v name 'dep-%04d' "$i"
  cat >"$dir/$name.yaml" <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $name
  labels: {bench: ferry, tier: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: $name}
  template:
    metadata:
      labels: {app: $name, bench: ferry}
    spec:
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
        ports:
        - {containerPort: 8080, name: http}
        resources:
          requests: {cpu: 1m, memory: 4Mi}
YAML
done
