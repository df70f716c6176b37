package verify

import (
	"context"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// Keys are counted in the restored data, as restored, against min, max and equals.
func TestKeys(t *testing.T) {
	sb := sharedSandbox(t)
	ctx := context.Background()
	f := makeObjects(t, sb.RESTConfig(), "verify-keys")
	r := restoreCopy(t, sb.EtcdEndpoints())
	// Written after the restore, as a scratch apiserver would: not counted.
	_, err := r.Client.Put(ctx, "/registry/configmaps/"+f.Namespace+"/late", "x")
	must(t, err)
	target := &EtcdTarget{Restored: r.Client, Snapshot: etcdsnap.Report{Revision: r.Status.Revision}}
	prefix := "/registry/configmaps/" + f.Namespace + "/"
	want := len(f.ConfigMaps) + 1 // and kube-root-ca.crt

	for _, tc := range []struct {
		name             string
		min, max, equals *int
		status           Status
		message          string
	}{
		{name: "equals", equals: ptr.To(want), status: StatusPassed, message: "exactly 4"},
		{name: "no bound means at least one", status: StatusPassed, message: "at least 1"},
		{name: "range", min: ptr.To(1), max: ptr.To(10), status: StatusPassed},
		{name: "too few", min: ptr.To(want + 1), status: StatusFailed, message: "4 keys under " + prefix + " in the restored etcd, want at least 5"},
		{name: "too many", max: ptr.To(2), status: StatusFailed, message: "want at most 2"},
		{name: "not equal", equals: ptr.To(7), status: StatusFailed, message: "want exactly 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewKeysCheck("", scenarios.EtcdKeysCheck{Prefix: prefix, Min: tc.min, Max: tc.max, Equals: tc.equals})
			must(t, err)
			o := c.Run(ctx, target)
			if o.Status != tc.status || !strings.Contains(o.Message, tc.message) {
				t.Fatalf("want %s with %q, got %s: %s", tc.status, tc.message, o.Status, o.Message)
			}
			if o.Evidence["count"] != int64(want) || o.Evidence["prefix"] != prefix {
				t.Errorf("evidence: %v", o.Evidence)
			}
		})
	}
}
