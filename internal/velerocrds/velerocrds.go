// Package velerocrds holds the CustomResourceDefinitions of the Velero version firedrill is built
// with, for installing Velero into a cluster (the sandbox, a kind target).
//
// They are a gzip-compressed copy made by gen.go from Velero's own config/crd packages, decoded
// only when asked for: importing Velero's packages instead would decode every CRD in every
// firedrill process at start-up (15–20 ms and 4 MB of allocations), whatever the command.
package velerocrds

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

//go:generate go run gen.go

// crdsJSON is a JSON array of the CRDs of Velero's config/crd/v1 and config/crd/v2alpha1, in that
// order, gzip-compressed.
//
//go:embed crds.json.gz
var crdsJSON []byte

// All returns Velero's CRDs, new objects on each call, in the order Velero lists them.
func All() ([]*apiextv1.CustomResourceDefinition, error) {
	zr, err := gzip.NewReader(bytes.NewReader(crdsJSON))
	if err != nil {
		return nil, fmt.Errorf("velero CRDs: %w", err)
	}
	var crds []*apiextv1.CustomResourceDefinition
	if err := json.NewDecoder(zr).Decode(&crds); err != nil {
		return nil, fmt.Errorf("velero CRDs: %w", err)
	}
	return crds, nil
}
