package verify

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// The whole etcd drill's verify step on real parts: a snapshot of the sandbox restored into an
// etcd of its own with a fresh kube-apiserver started on it, which writes its own bookkeeping
// before the checks run. Every etcd check passes: what the scratch apiserver wrote is not taken
// for restored data, and what it serves is what the snapshot holds.
func TestChecksOnScratchAPIServer(t *testing.T) {
	sb := sharedSandbox(t)
	ctx := context.Background()
	f := makeObjects(t, sb.RESTConfig(), "verify-scratch")
	live := etcdClient(t, sb.EtcdEndpoints())
	key := scenarios.CanaryKeyPrefix + "scratch"
	_, err := live.Put(ctx, key, "canary-"+f.SecretValue[:4])
	must(t, err)
	r := restoreCopy(t, sb.EtcdEndpoints())
	api, err := sandbox.StartAPIServer(ctx, sandbox.APIServerOptions{
		Dir: filepath.Join(t.TempDir(), "kube-apiserver"), EtcdEndpoints: r.Client.Endpoints(),
	})
	if err != nil {
		t.Fatalf("start scratch kube-apiserver: %v", err)
	}
	t.Cleanup(func() { _ = api.Stop() })

	checks, err := NewEtcdChecks("scratch", []scenarios.Check{
		{EtcdObjectsDecode: &scenarios.EtcdObjectsDecodeCheck{}},
		{EtcdKeys: &scenarios.EtcdKeysCheck{Prefix: "/registry/configmaps/" + f.Namespace + "/"}},
		{EtcdMatchesLive: &scenarios.EtcdMatchesLiveCheck{Prefixes: []string{"/registry/configmaps/", "/registry/secrets/"}, MaxDrift: new(0.0)}},
		{ObjectsServed: &scenarios.ObjectsServedCheck{}},
		{Canary: &scenarios.CanaryCheck{Key: key}},
	})
	must(t, err)
	target := &EtcdTarget{
		Restored: r.Client, Live: live, APIServer: api.RESTConfig(),
		Snapshot: etcdsnap.Report{Revision: r.Status.Revision},
		Canary:   &Canary{Key: key, Value: "canary-" + f.SecretValue[:4]},
	}
	// What the scratch apiserver wrote on start, which no check may take for restored data.
	restoredRev := r.Status.Revision + testBump
	var written []string
	scan := newRangeScan(r.Client, "/registry/", 0, true)
	for {
		page, err := scan.Page(ctx)
		must(t, err)
		if len(page) == 0 {
			break
		}
		for _, kv := range page {
			if kv.ModRevision > restoredRev {
				written = append(written, string(kv.Key))
			}
		}
	}
	t.Logf("written by the scratch apiserver: %v", written)
	if len(written) == 0 {
		t.Fatal("the scratch apiserver wrote nothing: this test proves nothing")
	}

	for _, c := range checks {
		o := c.Run(ctx, target)
		t.Logf("%s: %s: %s", c.Name(), o.Status, o.Message)
		if o.Status != StatusPassed {
			t.Errorf("%s: want passed, got %s: %s", c.Name(), o.Status, o.Message)
		}
		assertNoSecret(t, o, f.SecretValue)
	}
}
