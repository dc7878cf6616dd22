//go:build tools

// Package tools pins promtool, which checks ferry's Prometheus alerting rules.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
