//go:build tools

// Package tools pins actionlint, which checks the GitHub Actions workflows and action.yml.
package tools

import _ "github.com/rhysd/actionlint/cmd/actionlint"
