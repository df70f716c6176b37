//go:build tools

// Package tools pins controller-gen, so that `go build sigs.k8s.io/controller-tools/cmd/controller-gen`
// in this directory builds the pinned version.
package tools

import _ "sigs.k8s.io/controller-tools/cmd/controller-gen"
