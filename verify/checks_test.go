package verify

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

func TestNewEtcdChecks(t *testing.T) {
	t.Parallel()
	checks, err := NewEtcdChecks("shop", []scenarios.Check{
		{Name: "snapshot integrity", EtcdIntegrity: &scenarios.EtcdIntegrityCheck{}},
		{EtcdObjectsDecode: &scenarios.EtcdObjectsDecodeCheck{}},
		{EtcdKeys: &scenarios.EtcdKeysCheck{Prefix: "/registry/deployments/", Min: ptr.To(1)}},
		{EtcdMatchesLive: &scenarios.EtcdMatchesLiveCheck{Prefixes: []string{"/registry/configmaps/"}}},
		{ObjectsServed: &scenarios.ObjectsServedCheck{Namespaces: []string{"shop"}}},
		{Canary: &scenarios.CanaryCheck{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range checks {
		got = append(got, c.Name()+"="+c.Type())
	}
	want := "snapshot integrity=etcdIntegrity etcdObjectsDecode=etcdObjectsDecode etcdKeys=etcdKeys etcdMatchesLive=etcdMatchesLive objectsServed=objectsServed canary=canary"
	if strings.Join(got, " ") != want {
		t.Errorf("got %s\nwant %s", strings.Join(got, " "), want)
	}
	// Zero values get the loader's defaults.
	if d := checks[1].(*ObjectsDecodeCheck); d.prefix != "/registry/" {
		t.Errorf("decode prefix default: %q", d.prefix)
	}
	if m := checks[3].(*MatchesLiveCheck); m.maxDrift != 0.05 {
		t.Errorf("maxDrift default: %v", m.maxDrift)
	}
	if c := checks[5].(*CanaryCheck); c.key != "/firedrill/canary/shop" {
		t.Errorf("canary key default: %q", c.key)
	}
}

func TestNewEtcdChecksRejects(t *testing.T) {
	t.Parallel()
	_, err := NewEtcdChecks("shop", []scenarios.Check{
		{Name: "nothing"},
		{Name: "two", EtcdIntegrity: &scenarios.EtcdIntegrityCheck{}, Canary: &scenarios.CanaryCheck{}},
		{EtcdKeys: &scenarios.EtcdKeysCheck{}},
		{EtcdKeys: &scenarios.EtcdKeysCheck{Prefix: "/registry/", Min: ptr.To(5), Max: ptr.To(1)}},
		{EtcdMatchesLive: &scenarios.EtcdMatchesLiveCheck{}},
		{EtcdMatchesLive: &scenarios.EtcdMatchesLiveCheck{Prefixes: []string{"/"}, MaxDrift: ptr.To(1.5)}},
	})
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"check 1 (nothing): no check type set",
		"check 2 (two): several check types set",
		"check 3: etcdKeys needs a prefix",
		"check 4: etcdKeys: min 5 is greater than max 1",
		"check 5: etcdMatchesLive needs prefixes",
		"check 6: etcdMatchesLive: maxDrift 1.5 is not a share between 0 and 1",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestIntegrity(t *testing.T) {
	t.Parallel()
	good := etcdsnap.Report{Path: "/b/s.db", SizeBytes: 4096, SHA256: "ab12", HasHash: true, HashMatches: true, Readable: true, Revision: 42, TotalKeys: 7, Version: "3.6.0"}
	raw := good
	raw.HasHash, raw.HashMatches = false, false
	corrupt := good
	corrupt.HashMatches = false
	unreadable := good
	unreadable.Readable, unreadable.ReadError = false, "invalid database"
	for _, tc := range []struct {
		name    string
		snap    etcdsnap.Report
		allow   bool
		status  Status
		message string
	}{
		{"intact", good, false, StatusPassed, "integrity hash matches"},
		{"raw copy", raw, false, StatusFailed, "no integrity hash: this is a raw copy of member/snap/db, not a snapshot; take snapshots with `etcdctl snapshot save` or set allowMissingHash"},
		{"raw copy allowed", raw, true, StatusPassed, "allowed by allowMissingHash"},
		{"hash mismatch", corrupt, true, StatusFailed, "does not match its data: the file is corrupt"},
		{"unreadable", unreadable, false, StatusFailed, "etcd cannot read the snapshot (invalid database)"},
		{"no snapshot", etcdsnap.Report{}, false, StatusError, "no snapshot to check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewIntegrityCheck("", scenarios.EtcdIntegrityCheck{AllowMissingHash: tc.allow}).Run(context.Background(), &EtcdTarget{Snapshot: tc.snap})
			if o.Status != tc.status || !strings.Contains(o.Message, tc.message) {
				t.Fatalf("want %s with %q, got %s: %s", tc.status, tc.message, o.Status, o.Message)
			}
			for _, k := range []string{"sha256", "sizeBytes", "revision", "totalKeys", "hasHash", "version"} {
				if _, ok := o.Evidence[k]; !ok {
					t.Errorf("evidence lacks %s", k)
				}
			}
		})
	}
}

// Every check that reads the restored etcd says so when there is none, as an error: the check
// could not be carried out, the data is not known to be bad.
func TestChecksWithoutRestore(t *testing.T) {
	t.Parallel()
	keys, _ := NewKeysCheck("", scenarios.EtcdKeysCheck{Prefix: "/registry/"})
	live, _ := NewMatchesLiveCheck("", scenarios.EtcdMatchesLiveCheck{Prefixes: []string{"/registry/"}})
	target := &EtcdTarget{Canary: &Canary{Key: "/firedrill/canary/x"}, Live: nil}
	for _, c := range []EtcdCheck{NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{}), keys, NewCanaryCheck("", "x", scenarios.CanaryCheck{})} {
		o := c.Run(context.Background(), target)
		if o.Status != StatusError || !strings.Contains(o.Message, "no restored etcd") {
			t.Errorf("%s: want error, got %s: %s", c.Type(), o.Status, o.Message)
		}
		if _, err := json.Marshal(o.Evidence); err != nil {
			t.Errorf("%s: evidence does not marshal: %v", c.Type(), err)
		}
	}
	if o := live.Run(context.Background(), target); o.Status != StatusError || !strings.Contains(o.Message, "needs the live etcd") {
		t.Errorf("etcdMatchesLive: want error asking for the live etcd, got %s: %s", o.Status, o.Message)
	}
}

func TestStorageLayout(t *testing.T) {
	t.Parallel()
	cod, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key, dir string
		gr       schema.GroupResource
		ns, name string
		nsd      bool
	}{
		{"/registry/configmaps/default/app", "configmaps", schema.GroupResource{Resource: "configmaps"}, "default", "app", true},
		{"/registry/secrets/shop/db", "secrets", schema.GroupResource{Resource: "secrets"}, "shop", "db", true},
		{"/registry/deployments/shop/web", "deployments", schema.GroupResource{Group: "apps", Resource: "deployments"}, "shop", "web", true},
		{"/registry/services/specs/default/kubernetes", "services/specs", schema.GroupResource{Resource: "services"}, "default", "kubernetes", true},
		{"/registry/services/endpoints/default/kubernetes", "services/endpoints", schema.GroupResource{Resource: "endpoints"}, "default", "kubernetes", true},
		{"/registry/minions/node-1", "minions", schema.GroupResource{Resource: "nodes"}, "", "node-1", false},
		{"/registry/events/default/x.1", "events", schema.GroupResource{Resource: "events"}, "default", "x.1", true},
		{"/registry/ingress/shop/web", "ingress", schema.GroupResource{Group: "networking.k8s.io", Resource: "ingresses"}, "shop", "web", true},
		{"/registry/clusterroles/admin", "clusterroles", schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "clusterroles"}, "", "admin", false},
		{"/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com", "apiextensions.k8s.io/customresourcedefinitions", schema.GroupResource{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}, "", "widgets.example.com", false},
		{"/registry/example.com/widgets/shop/w1", "example.com/widgets", schema.GroupResource{Group: "example.com", Resource: "widgets"}, "shop", "w1", true},
		{"/kubernetes.io/secrets/shop/db", "secrets", schema.GroupResource{Resource: "secrets"}, "shop", "db", true},
	} {
		if got := storageDir(tc.key); got != tc.dir {
			t.Errorf("storageDir(%s) = %s, want %s", tc.key, got, tc.dir)
		}
		if got := storageResource(tc.key, cod.groups); got != tc.gr {
			t.Errorf("storageResource(%s) = %v, want %v", tc.key, got, tc.gr)
		}
		if ns, name := objectPath(tc.key, tc.nsd); ns != tc.ns || name != tc.name {
			t.Errorf("objectPath(%s) = %s/%s, want %s/%s", tc.key, ns, name, tc.ns, tc.name)
		}
	}
	for key, want := range map[string]bool{"compact_rev_key": true, "/firedrill/canary/shop": true, "/registry/configmaps/a/b": false, "/registry/masterleases/10.0.0.1": false} {
		if got := isNotObjectKey(key); got != want {
			t.Errorf("isNotObjectKey(%s) = %v", key, got)
		}
	}
}

func TestDecodeReasonQuotesNoData(t *testing.T) {
	t.Parallel()
	cod, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{`{"apiVersion":"v1","kind":"Secret","data":{"p":"c2VjcmV0"}` + "Z", `{"apiVersion":"v1","kind":"Secret","data":Zsecret}`, `{"apiVersion":"v1","kind":"Secret","data":{"p":42}}`} {
		d := cod.Decode(context.Background(), "/registry/secrets/a/b", []byte(v), decodeBuffer{})
		if d.Class != classUndecodable || strings.Contains(d.Reason, "Z") || strings.Contains(d.Reason, "secret") || strings.Contains(d.Reason, "42") {
			t.Errorf("%s: class %v, reason %q", v, d.Class, d.Reason)
		}
	}
	if got := decodeReason(errors.New(strings.Repeat("x", 500))); len(got) > 210 {
		t.Errorf("reason not bounded: %d bytes", len(got))
	}
}

func TestEncryptionProvider(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{
		"k8s:enc:aescbc:v1:key1:xxxx":    "aescbc",
		"k8s:enc:aesgcm:v1:key1:xxxx":    "aesgcm",
		"k8s:enc:secretbox:v1:key1:xxxx": "secretbox",
		"k8s:enc:kms:v2:plugin:xxxx":     "kms",
		"k8s:enc:":                       "unknown",
	} {
		if got := encryptionProvider([]byte(v)); got != want {
			t.Errorf("encryptionProvider(%s) = %s, want %s", v, got, want)
		}
	}
}

func TestTopN(t *testing.T) {
	t.Parallel()
	got := topN(map[string]int64{"a": 1, "b": 5, "c": 5, "d": 3}, 2)
	if len(got) != 2 || got["b"] != 5 || got["c"] != 5 {
		t.Errorf("topN = %v", got)
	}
}

func TestServedIgnoreRules(t *testing.T) {
	t.Parallel()
	lease := schema.GroupKind{Group: "coordination.k8s.io", Kind: "Lease"}
	for _, tc := range []struct {
		gk   schema.GroupKind
		ns   string
		want bool
	}{
		{schema.GroupKind{Kind: "Event"}, "shop", true},
		{schema.GroupKind{Group: "events.k8s.io", Kind: "Event"}, "shop", true},
		{lease, "kube-system", true},
		{lease, "kube-node-lease", false},
		{lease, "shop", false},
		{schema.GroupKind{Kind: "ComponentStatus"}, "", true},
		{schema.GroupKind{Kind: "ConfigMap"}, "kube-system", false},
	} {
		if got := ignoredBothWays(tc.gk, tc.ns); got != tc.want {
			t.Errorf("ignoredBothWays(%v, %s) = %v", tc.gk, tc.ns, got)
		}
	}
	if !ignoredExtra(schema.GroupKind{Group: "discovery.k8s.io", Kind: "EndpointSlice"}, "default", "kubernetes") ||
		ignoredExtra(schema.GroupKind{Kind: "Service"}, "shop", "kubernetes") || ignoredExtra(schema.GroupKind{Kind: "ConfigMap"}, "default", "kubernetes") {
		t.Error("ignoredExtra: only the kubernetes Service, Endpoints and EndpointSlice in default")
	}
}
