//go:build tools

// Package tools pins helm's CLI as a dependency of this module so `go build helm.sh/helm/v3/cmd/helm` resolves.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
