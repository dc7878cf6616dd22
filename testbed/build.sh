#!/usr/bin/env bash
# Builds the pinned test-bed binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok, helm, kustomize, CNCF distribution's OCI `registry`, and the
# checkers actionlint and promtool) into the cache, skipping those present.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "$TESTBED_BIN"

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"

build() { # build <name> <module dir> <package> [ldflags] [build tags]
  local name=$1 dir=$2 package=$3 flags=${4:-"-s -w"} tags=${5:-}
  if [ -x "$TESTBED_BIN/$name" ]; then return 0; fi
  log "building $name ($package)"
  local start=$SECONDS
  if ! (cd "$TESTBED_DIR/$dir" && go build -trimpath -tags "$tags" -ldflags "$flags" -o "$TESTBED_BIN/$name.tmp" "$package") \
      >"$TESTBED_BIN/$name.build.log" 2>&1; then
    tail -n 20 "$TESTBED_BIN/$name.build.log" >&2
    die "build of $name failed; full log: $TESTBED_BIN/$name.build.log"
  fi
  mv "$TESTBED_BIN/$name.tmp" "$TESTBED_BIN/$name"
  log "built $name in $((SECONDS - start)) s"
}

build etcd etcd . 
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
build kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build kube-controller-manager k8s k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"
build kube-scheduler k8s k8s.io/kubernetes/cmd/kube-scheduler "$ldflags"
# helm's official releases set its default Kubernetes version (used offline, without
# --kube-version) to that of its client-go (v0.34 -> 1.34); a plain go build leaves it at 1.20.
helm_pkg=helm.sh/helm/v3/pkg
helm_flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for var in chartutil.k8sVersion lint/rules.k8sVersion; do
  helm_flags+=" -X $helm_pkg/${var}Major=1 -X $helm_pkg/${var}Minor=34"
done
build helm tools helm.sh/helm/v3/cmd/helm "$helm_flags"
build kustomize tools sigs.k8s.io/kustomize/kustomize/v5 "-s -w"
build registry distribution github.com/distribution/distribution/v3/cmd/registry \
  "-s -w -X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION"
build actionlint actionlint github.com/rhysd/actionlint/cmd/actionlint \
  "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
# Prometheus 3.X.Y is the Go module version v0.3XX.Y.
prom=github.com/prometheus/common/version
prom_minor=${PROMETHEUS_VERSION#v0.3}
prom_version=3.$((10#${prom_minor%%.*})).${prom_minor#*.}
# Without the service-discovery plugins (cloud SDKs): checking rules needs none of them.
build promtool promtool github.com/prometheus/prometheus/cmd/promtool \
  "-s -w -X $prom.Version=$prom_version -X $prom.Branch=HEAD" remove_all_sd
echo "$TESTBED_BIN"
