package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The CustomResourceDefinitions (Scenario, DrillRun) are generated from api/v1alpha1 (`make
// generate`) and committed twice: in the kustomize base and in the chart's crds/ (Helm reads
// nothing outside the chart).
var crdFiles = map[string]string{ // file: the CRD's name
	"firedrill.dev_scenarios.yaml": "scenarios.firedrill.dev",
	"firedrill.dev_drillruns.yaml": "drillruns.firedrill.dev",
}

const (
	kustomizeCRDs = "kustomize/base/crds/"
	chartCRDs     = "helm/firedrill/crds/"
)

// TestCRDIsFresh regenerates the CRDs with the pinned controller-gen, through the Makefile's own
// target, and fails when a committed copy differs: a change to scenarios/types.go or
// api/v1alpha1 needs `make generate`.
func TestCRDIsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds controller-gen")
	}
	t.Parallel()
	tmp := t.TempDir()
	kdir, hdir := filepath.Join(tmp, "kustomize"), filepath.Join(tmp, "helm")
	for _, d := range []string{kdir, hdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, nil, "make", "-s", "-C", "..", "generate", "BIN="+tmp, "CRD_DIR="+kdir, "CHART_CRD_DIR="+hdir)
	generated, err := os.ReadDir(kdir)
	if err != nil {
		t.Fatal(err)
	}
	if len(generated) != len(crdFiles) {
		t.Errorf("controller-gen wrote %d CRDs, deploy/ ships %d: add the new one to crdFiles, the Makefile's CRDS and the kustomization", len(generated), len(crdFiles))
	}
	for file := range crdFiles {
		for committed, fresh := range map[string]string{kustomizeCRDs + file: filepath.Join(kdir, file), chartCRDs + file: filepath.Join(hdir, file)} {
			if !bytes.Equal(readFile(t, committed), readFile(t, fresh)) {
				t.Errorf("%s is stale: run `make generate` and commit the result", committed)
			}
		}
	}
}

// TestHelmAndKustomizeCRDAgree: both renderings install the generated CRDs, the same ones.
func TestHelmAndKustomizeCRDAgree(t *testing.T) {
	t.Parallel()
	crdsOf := func(objs []map[string]any) map[string]map[string]any {
		found := map[string]map[string]any{}
		for _, o := range objs {
			if kindOf(o) == "CustomResourceDefinition" {
				name := fmt.Sprint(get(o, "metadata", "name"))
				if found[name] != nil {
					t.Fatalf("CRD %s rendered twice", name)
				}
				found[name] = o
			}
		}
		return found
	}
	k := crdsOf(kustomize(t, "kustomize/base").objs)
	out := run(t, nil, tool(t, "helm", "make sandbox-bin builds it from hack/tools/helm"),
		"template", "firedrill", "helm/firedrill", "--namespace", "firedrill-system", "--include-crds",
		"--values", "helm/firedrill/ci/default-values.yaml")
	h := crdsOf(splitYAML(t, out))
	if len(k) != len(crdFiles) || len(h) != len(crdFiles) {
		t.Errorf("kustomize renders %d CRDs, helm %d; want %d", len(k), len(h), len(crdFiles))
	}
	for file, name := range crdFiles {
		wants := crdsOf(splitYAML(t, readFile(t, kustomizeCRDs+file)))
		want := wants[name]
		if len(wants) != 1 || want == nil || get(want, "spec", "scope") != "Namespaced" {
			t.Errorf("%s: want the one CRD %s, namespaced; got %d CRDs", file, name, len(wants))
			continue
		}
		if !reflect.DeepEqual(k[name]["spec"], want["spec"]) || !reflect.DeepEqual(h[name]["spec"], want["spec"]) {
			t.Errorf("the CRD %s rendered by kustomize or helm differs from %s", name, kustomizeCRDs+file)
		}
		if !bytes.Equal(readFile(t, kustomizeCRDs+file), readFile(t, chartCRDs+file)) {
			t.Errorf("%s and %s differ: run `make generate`", kustomizeCRDs+file, chartCRDs+file)
		}
	}
}
