#!/usr/bin/env bash
# Regenerates the wrapper Go modules (go.mod + go.sum) from the pins in versions.env.
# The k8s.io/kubernetes module replaces its staging modules with ./staging paths; the
# replace list here is derived from that version's own go.mod, mapping each to v0.X.Y.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
export GOFLAGS=-mod=mod

gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
staging="v0.${K8S_VERSION#v1.}"
{
  echo "module ferry.dev/testbed/k8s"
  echo
  echo "go 1.24.0"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > "$here/k8s/go.mod"
cat > "$here/k8s/tools.go" <<'GO'
//go:build tools

// Package tools pins the Kubernetes control-plane commands the test bed builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
(cd "$here/k8s" && go mod tidy)

cat > "$here/etcd/go.mod" <<MOD
module ferry.dev/testbed/etcd

go 1.24.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
(cd "$here/etcd" && go mod tidy)

cat > "$here/kwok/go.mod" <<MOD
module ferry.dev/testbed/kwok

go 1.24.0

require sigs.k8s.io/kwok $KWOK_VERSION
MOD
cat > "$here/kwok/tools.go" <<'GO'
//go:build tools

// Package tools pins the kwok command the test bed builds.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
GO
(cd "$here/kwok" && go mod tidy)

cat > "$here/tools/go.mod" <<MOD
module ferry.dev/testbed/tools

go 1.24.0

require (
	helm.sh/helm/v3 $HELM_VERSION
	sigs.k8s.io/kustomize/kustomize/v5 $KUSTOMIZE_VERSION
)
MOD
cat > "$here/tools/tools.go" <<'GO'
//go:build tools

// Package tools pins the helm and kustomize commands ferry renders with.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
	_ "sigs.k8s.io/kustomize/kustomize/v5"
)
GO
(cd "$here/tools" && go mod tidy)

cat > "$here/distribution/go.mod" <<MOD
module ferry.dev/testbed/distribution

go 1.24.0

require github.com/distribution/distribution/v3 $REGISTRY_VERSION
MOD
cat > "$here/distribution/tools.go" <<'GO'
//go:build tools

// Package tools pins the OCI registry (CNCF distribution) the test bed runs.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
GO
(cd "$here/distribution" && go mod tidy)

cat > "$here/actionlint/go.mod" <<MOD
module ferry.dev/testbed/actionlint

go 1.24.0

require github.com/rhysd/actionlint $ACTIONLINT_VERSION
MOD
cat > "$here/actionlint/tools.go" <<'GO'
//go:build tools

// Package tools pins actionlint, which checks the GitHub Actions workflows and action.yml.
package tools

import _ "github.com/rhysd/actionlint/cmd/actionlint"
GO
(cd "$here/actionlint" && go mod tidy)

cat > "$here/promtool/go.mod" <<MOD
module ferry.dev/testbed/promtool

go 1.24.0

require github.com/prometheus/prometheus $PROMETHEUS_VERSION
MOD
cat > "$here/promtool/tools.go" <<'GO'
//go:build tools

// Package tools pins promtool, which checks ferry's Prometheus alerting rules.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
GO
(cd "$here/promtool" && go mod tidy)
