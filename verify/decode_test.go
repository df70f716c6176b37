package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// A real snapshot of a cluster with built-in objects (protobuf), APIServices and a custom
// resource (JSON) decodes completely, read at the revision the restore left.
func TestObjectsDecodeRealCluster(t *testing.T) {
	sb := sharedSandbox(t)
	f := makeObjects(t, sb.RESTConfig(), "verify-decode")
	r := restoreCopy(t, sb.EtcdEndpoints())
	target := &EtcdTarget{Restored: r.Client, Snapshot: etcdsnap.Report{Revision: r.Status.Revision}}

	o := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{}).Run(context.Background(), target)
	if o.Status != StatusPassed {
		t.Fatalf("want passed, got %s: %s", o.Status, o.Message)
	}
	ev := evidenceJSON(t, o)
	t.Logf("%s\nevidence: %v", o.Message, ev)
	if ev["undecodable"].(float64) != 0 || ev["keys"].(float64) < 100 || ev["decoded"] != ev["keys"] {
		t.Errorf("want every key decoded, got keys %v decoded %v undecodable %v", ev["keys"], ev["decoded"], ev["undecodable"])
	}
	if n := len(ev["perResource"].(map[string]any)); n != topResources || ev["resources"].(float64) <= topResources {
		t.Errorf("want the top %d of more resources, got %d of %v", topResources, n, ev["resources"])
	}
	// Each encoding on its own: protobuf (built-in types), JSON (custom resources, APIServices).
	for dir, want := range map[string]int{
		"configmaps/" + f.Namespace + "/":                            len(f.ConfigMaps) + 1, // and kube-root-ca.crt
		"secrets/" + f.Namespace + "/":                               1,
		"deployments/" + f.Namespace + "/":                           1,
		"replicasets/" + f.Namespace + "/":                           1,
		"pods/" + f.Namespace + "/":                                  2,
		"verify.firedrill.dev/widgets/" + f.Namespace + "/":          1,
		"apiextensions.k8s.io/customresourcedefinitions/":            1,
		"apiregistration.k8s.io/apiservices/v1.verify.firedrill.dev": 1,
	} {
		o := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{Prefix: "/registry/" + dir}).Run(context.Background(), target)
		if got := o.Evidence["decoded"]; o.Status != StatusPassed || got != int64(want) {
			t.Errorf("/registry/%s: want %d decoded, got %v: %s", dir, want, got, o.Message)
		}
	}
	if got, want := int64(ev["revision"].(float64)), r.Status.Revision+testBump; got != want || ev["revisionFrom"] != "compaction" {
		t.Errorf("read at revision %d (%v), want the restored revision %d", got, ev["revisionFrom"], want)
	}
	assertNoSecret(t, o, f.SecretValue)

	// The snapshot file holds the same.
	fromFile := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{}).Run(context.Background(), fileTarget(r))
	assertSameOutcome(t, o, fromFile, r.Status.Revision)
	assertNoSecret(t, fromFile, f.SecretValue)
}

// What a scratch kube-apiserver writes after starting on the restored etcd is not read: the
// check reads at the revision the restore left.
func TestObjectsDecodeIgnoresWritesAfterRestore(t *testing.T) {
	sb := sharedSandbox(t)
	r := restoreCopy(t, sb.EtcdEndpoints())
	ctx := context.Background()
	if _, err := r.Client.Put(ctx, "/registry/configmaps/late/garbage", "written after the restore"); err != nil {
		t.Fatal(err)
	}
	o := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{}).Run(ctx, &EtcdTarget{Restored: r.Client, Snapshot: etcdsnap.Report{Revision: r.Status.Revision}})
	if o.Status != StatusPassed {
		t.Fatalf("want passed, got %s: %s", o.Status, o.Message)
	}
}

// Damaged values fail the check, which names their keys and why, never their bytes; keys that
// hold no object by design (compaction bookkeeping, firedrill's canary) do not count.
func TestObjectsDecodeDamagedValues(t *testing.T) {
	sb := sharedSandbox(t)
	ctx := context.Background()
	src := newEtcd(t)
	copyKeys(t, etcdClient(t, sb.EtcdEndpoints()), src, "/registry/")

	cod, err := newCodec()
	must(t, err)
	good := encodeProtobuf(t, cod, &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "fine", Namespace: "x"},
		Data:       map[string]string{"k": "v"},
	})
	secretish := "hunter2-" + randomHex(t)
	put := map[string]string{
		"/registry/configmaps/x/fine":      good,
		"/registry/configmaps/x/bad":       "garbage " + secretish,
		"/registry/configmaps/x/truncated": good[:len(good)/2],
		"/registry/configmaps/x/nokind":    `{"metadata":{"name":"nokind"},"data":{"p":"` + secretish + `"}}`,
		"/registry/configmaps/x/badjson":   `{"apiVersion":"v1","kind":"ConfigMap",` + secretish,
		"/registry/configmaps/x/empty":     "",
		"compact_rev_key":                  "12345",
		"/firedrill/canary/test":           `{"runID":"r1"}`,
		"/registry/firedrill-canary":       "custom canary key",
	}
	for k, v := range put {
		if _, err := src.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	r := restoreCopy(t, src.Endpoints())
	target := &EtcdTarget{Restored: r.Client, Snapshot: etcdsnap.Report{Revision: r.Status.Revision}, Canary: &Canary{Key: "/registry/firedrill-canary"}}

	everything := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{})
	everything.prefix = "" // the whole keyspace, which no scenario can ask for
	o := everything.Run(ctx, target)
	t.Logf("%s", o.Message)
	if o.Status != StatusFailed {
		t.Fatalf("want failed, got %s: %s", o.Status, o.Message)
	}
	for _, k := range []string{"/registry/configmaps/x/bad", "/registry/configmaps/x/truncated", "/registry/configmaps/x/nokind", "/registry/configmaps/x/badjson", "/registry/configmaps/x/empty"} {
		if !strings.Contains(o.Message, k+" (") {
			t.Errorf("message does not name %s: %s", k, o.Message)
		}
	}
	for _, k := range []string{"/registry/configmaps/x/fine", "compact_rev_key", "/firedrill/canary/test", "/registry/firedrill-canary"} {
		if strings.Contains(o.Message, k+" (") {
			t.Errorf("message names %s, which is fine: %s", k, o.Message)
		}
	}
	ev := evidenceJSON(t, o)
	if ev["undecodable"].(float64) != 5 || ev["notObjects"].(float64) != 3 {
		t.Errorf("want 5 undecodable and 3 non-object keys, got %v and %v", ev["undecodable"], ev["notObjects"])
	}
	if bad := ev["firstUndecodable"].([]any); len(bad) != 5 {
		t.Errorf("want the 5 bad keys listed, got %v", bad)
	}
	assertNoSecret(t, o, secretish)

	// The default prefix does not even look at keys outside /registry/.
	o = NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{Prefix: "/registry/secrets/"}).Run(ctx, target)
	if o.Status != StatusPassed {
		t.Errorf("secrets alone: want passed, got %s: %s", o.Status, o.Message)
	}
}

// An empty prefix is a failed drill, not a pass: nothing was proven.
func TestObjectsDecodeNothingThere(t *testing.T) {
	cli := newEtcd(t)
	o := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{}).Run(context.Background(), &EtcdTarget{Restored: cli})
	if o.Status != StatusFailed || !strings.Contains(o.Message, "no keys under /registry/") {
		t.Fatalf("want failed for no keys, got %s: %s", o.Status, o.Message)
	}
}

// copyKeys copies every key under prefix, as it is now, from one etcd to another.
func copyKeys(t testing.TB, from, to *clientv3.Client, prefix string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	scan := newRangeScan(from, prefix, 0, false)
	n := 0
	for {
		page, err := scan.Page(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return n
		}
		for i := 0; i < len(page); i += 100 {
			var ops []clientv3.Op
			for _, kv := range page[i:min(i+100, len(page))] {
				ops = append(ops, clientv3.OpPut(string(kv.Key), string(kv.Value)))
			}
			if _, err := to.Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
			n += len(ops)
		}
	}
}
