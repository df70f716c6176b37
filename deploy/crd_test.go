package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The Scenario CustomResourceDefinition is generated from api/v1alpha1 (`make generate`) and
// committed twice: in the kustomize base and in the chart's crds/ (Helm reads nothing outside
// the chart).
const (
	crdFile      = "firedrill.dev_scenarios.yaml"
	kustomizeCRD = "kustomize/base/crds/" + crdFile
	chartCRD     = "helm/firedrill/crds/" + crdFile
)

// TestCRDIsFresh regenerates the CRD with the pinned controller-gen, through the Makefile's own
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
	for committed, fresh := range map[string]string{kustomizeCRD: filepath.Join(kdir, crdFile), chartCRD: filepath.Join(hdir, crdFile)} {
		if !bytes.Equal(readFile(t, committed), readFile(t, fresh)) {
			t.Errorf("%s is stale: run `make generate` and commit the result", committed)
		}
	}
}

// TestHelmAndKustomizeCRDAgree: both renderings install the generated CRD, the same one.
func TestHelmAndKustomizeCRDAgree(t *testing.T) {
	t.Parallel()
	crdOf := func(objs []map[string]any) map[string]any {
		var found map[string]any
		for _, o := range objs {
			if kindOf(o) == "CustomResourceDefinition" {
				if found != nil {
					t.Fatalf("two CRDs rendered: %v and %v", get(found, "metadata", "name"), get(o, "metadata", "name"))
				}
				found = o
			}
		}
		if found == nil {
			t.Fatal("no CRD rendered")
		}
		return found
	}
	want := crdOf(splitYAML(t, readFile(t, kustomizeCRD)))
	k := crdOf(kustomize(t, "kustomize/base").objs)
	out := run(t, nil, tool(t, "helm", "make sandbox-bin builds it from hack/tools/helm"),
		"template", "firedrill", "helm/firedrill", "--namespace", "firedrill-system", "--include-crds",
		"--values", "helm/firedrill/ci/default-values.yaml")
	h := crdOf(splitYAML(t, out))
	if get(want, "metadata", "name") != "scenarios.firedrill.dev" || get(want, "spec", "scope") != "Namespaced" {
		t.Errorf("the generated CRD is %v, scope %v", get(want, "metadata", "name"), get(want, "spec", "scope"))
	}
	if !reflect.DeepEqual(k["spec"], want["spec"]) || !reflect.DeepEqual(h["spec"], want["spec"]) {
		t.Errorf("the CRD rendered by kustomize or helm differs from %s", kustomizeCRD)
	}
	if !bytes.Equal(readFile(t, kustomizeCRD), readFile(t, chartCRD)) {
		t.Errorf("%s and %s differ: run `make generate`", kustomizeCRD, chartCRD)
	}
}
