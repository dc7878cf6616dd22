//go:build tools

// Package tools pins the helm and kustomize commands ferry renders with.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
	_ "sigs.k8s.io/kustomize/kustomize/v5"
)
