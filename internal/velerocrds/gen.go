//go:build ignore

// gen writes crds.json.gz from the CRDs of the Velero module in go.mod: run `go generate
// ./internal/velerocrds` after changing Velero's version (TestMatchesVelero says when).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"log"
	"os"
	"slices"

	crdsv1 "github.com/vmware-tanzu/velero/config/crd/v1/crds"
	crdsv2 "github.com/vmware-tanzu/velero/config/crd/v2alpha1/crds"
)

func main() {
	js, err := json.Marshal(slices.Concat(crdsv1.CRDs, crdsv2.CRDs))
	if err != nil {
		log.Fatal(err)
	}
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if _, err := zw.Write(js); err != nil {
		log.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("crds.json.gz", b.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
