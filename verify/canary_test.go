package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// The canary written to the live etcd before the snapshot is found after the restore; another
// value, or none, fails.
func TestCanary(t *testing.T) {
	sb := sharedSandbox(t)
	ctx := context.Background()
	live := etcdClient(t, sb.EtcdEndpoints())
	key := scenarios.CanaryKeyPrefix + "verify-canary"
	value := `{"runID":"` + randomHex(t) + `"}`
	_, err := live.Put(ctx, key, value)
	must(t, err)
	written := time.Now().UTC()
	r := restoreCopy(t, sb.EtcdEndpoints())
	_, err = live.Put(ctx, key, "a newer run's canary") // after the snapshot: not in it
	must(t, err)

	check := NewCanaryCheck("", "verify-canary", scenarios.CanaryCheck{})
	target := func(c *Canary) *EtcdTarget {
		return &EtcdTarget{Restored: r.Client, Live: live, Snapshot: etcdsnap.Report{Revision: r.Status.Revision}, Canary: c}
	}
	o := check.Run(ctx, target(&Canary{Key: key, Value: value, WrittenAt: written}))
	if o.Status != StatusPassed || o.Evidence["found"] != true || o.Evidence["key"] != key || o.Evidence["writtenAt"] != written {
		t.Fatalf("want passed, got %s: %s %v", o.Status, o.Message, o.Evidence)
	}
	o = check.Run(ctx, target(&Canary{Key: key, Value: "a newer run's canary", WrittenAt: written}))
	if o.Status != StatusFailed || o.Evidence["found"] != true || !strings.Contains(o.Message, "another value") {
		t.Fatalf("want failed for another value, got %s: %s", o.Status, o.Message)
	}
	o = check.Run(ctx, target(&Canary{Key: key + "-never-written", Value: value, WrittenAt: written}))
	if o.Status != StatusFailed || o.Evidence["found"] != false || !strings.Contains(o.Message, "is not in the restored data") {
		t.Fatalf("want failed for a missing canary, got %s: %s", o.Status, o.Message)
	}
	o = check.Run(ctx, target(nil))
	if o.Status != StatusError || !strings.Contains(o.Message, "canary needs backup.etcd.take") {
		t.Fatalf("want error without a canary, got %s: %s", o.Status, o.Message)
	}
}
