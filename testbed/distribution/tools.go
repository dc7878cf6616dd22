//go:build tools

// Package tools pins the OCI registry (CNCF distribution) the test bed runs.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
