package velerocrds

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	crdsv1 "github.com/vmware-tanzu/velero/config/crd/v1/crds"
	crdsv2 "github.com/vmware-tanzu/velero/config/crd/v2alpha1/crds"
)

// The embedded copy is exactly what Velero's packages decode, so a Velero upgrade without
// `go generate ./internal/velerocrds` fails here.
func TestMatchesVelero(t *testing.T) {
	t.Parallel()
	got, err := All()
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(crdsv1.CRDs, crdsv2.CRDs)
	if len(got) != len(want) {
		t.Fatalf("%d CRDs embedded, Velero has %d: run go generate ./internal/velerocrds", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			g, _ := json.Marshal(got[i])
			w, _ := json.Marshal(want[i])
			t.Errorf("CRD %d (%s) differs from Velero's %s (%d vs %d bytes of JSON): run go generate ./internal/velerocrds", i, got[i].Name, want[i].Name, len(g), len(w))
		}
	}
	if got[0].Spec.Group != "velero.io" || len(got[0].Spec.Versions) == 0 || got[0].Spec.Versions[0].Schema == nil {
		t.Errorf("first CRD decoded without its group or schema: %s", got[0].Name)
	}
}

// Each call returns objects of its own: callers modify them (server-side defaults, labels).
func TestAllReturnsNewObjects(t *testing.T) {
	t.Parallel()
	a, err := All()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := All()
	a[0].Labels = map[string]string{"changed": "yes"}
	if b[0].Labels["changed"] != "" {
		t.Error("two calls share objects")
	}
}
