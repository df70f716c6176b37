package verify

import (
	"context"
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// Restored data equals the live store at the snapshot's revision, even after the live store moved
// on; once that revision is compacted, current data is compared and the drift judged.
func TestMatchesLive(t *testing.T) {
	sb := sharedSandbox(t)
	ctx := context.Background()
	f := makeObjects(t, sb.RESTConfig(), "verify-live")
	live := etcdClient(t, sb.EtcdEndpoints())
	r := restoreCopy(t, sb.EtcdEndpoints())
	prefixes := []string{"/registry/configmaps/" + f.Namespace + "/", "/registry/secrets/" + f.Namespace + "/", "/registry/deployments/" + f.Namespace + "/"}
	target := &EtcdTarget{Restored: r.Client, Live: live, Snapshot: etcdsnap.Report{Revision: r.Status.Revision}}
	check := func(maxDrift *float64) *MatchesLiveCheck {
		c, err := NewMatchesLiveCheck("", scenarios.EtcdMatchesLiveCheck{Prefixes: prefixes, MaxDrift: maxDrift})
		must(t, err)
		return c
	}
	result := func(o Outcome, prefix string) *prefixDiff {
		return o.Evidence["results"].(map[string]*prefixDiff)[prefix]
	}

	o := check(nil).Run(ctx, target)
	if o.Status != StatusPassed || !strings.Contains(o.Message, "identical at revision") {
		t.Fatalf("want identical at the snapshot's revision, got %s: %s", o.Status, o.Message)
	}
	assertNoSecret(t, o, f.SecretValue)

	// The live cluster moves on: one changed, one added configmap.
	cs := kubernetes.NewForConfigOrDie(sb.RESTConfig())
	cm, err := cs.CoreV1().ConfigMaps(f.Namespace).Get(ctx, "app-config", metav1.GetOptions{})
	must(t, err)
	cm.Data["mode"] = "maintenance"
	_, err = cs.CoreV1().ConfigMaps(f.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	must(t, err)
	_, err = cs.CoreV1().ConfigMaps(f.Namespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "added-later"}}, metav1.CreateOptions{})
	must(t, err)

	o = check(nil).Run(ctx, target)
	if o.Status != StatusPassed || result(o, prefixes[0]).Mode != modeAtRevision {
		t.Fatalf("later writes must not matter at the snapshot's revision, got %s: %s", o.Status, o.Message)
	}
	d := result(o, prefixes[0])
	if d.RestoredDigest != d.LiveDigest || d.Total != int64(len(f.ConfigMaps)+1) {
		t.Errorf("want equal digests over %d keys, got %+v", len(f.ConfigMaps)+1, d)
	}

	// Compaction past the snapshot's revision: now only current data can be compared.
	resp, err := live.Get(ctx, "compact-probe")
	must(t, err)
	_, err = live.Compact(ctx, resp.Header.Revision)
	must(t, err)

	o = check(nil).Run(ctx, target) // default maxDrift 5%: 2 of 5 configmaps differ
	d = result(o, prefixes[0])
	if o.Status != StatusFailed || d.Mode != modeCurrent || d.Changed != 1 || d.OnlyLive != 1 || d.OnlyRestored != 0 || d.Total != 5 {
		t.Fatalf("want failed with 1 changed and 1 only live of 5, got %s: %s (%+v)", o.Status, o.Message, d)
	}
	for _, want := range []string{"drifted 40.0%", "more than maxDrift 5.0%", "app-config (value differs)", "added-later (only live)"} {
		if !strings.Contains(o.Message, want) {
			t.Errorf("message lacks %q: %s", want, o.Message)
		}
	}
	if other := result(o, prefixes[1]); other.Mode != modeCurrent || other.Total != 1 || other.differing() != 0 {
		t.Errorf("unchanged secrets: want no drift, got %+v", other)
	}
	assertNoSecret(t, o, f.SecretValue)

	half := 0.5
	o = check(&half).Run(ctx, target)
	if o.Status != StatusPassed || !strings.Contains(o.Message, "drift 40.0% within 50.0%") {
		t.Fatalf("want passed within maxDrift 50%%, got %s: %s", o.Status, o.Message)
	}

	o = check(nil).Run(ctx, &EtcdTarget{Restored: r.Client, Snapshot: target.Snapshot})
	if o.Status != StatusError || !strings.Contains(o.Message, "needs the live etcd") {
		t.Fatalf("want error asking for the live endpoints, got %s: %s", o.Status, o.Message)
	}
}

// A live store that never reached the snapshot's revision is not the snapshot's cluster.
func TestMatchesLiveFutureRevision(t *testing.T) {
	live := newEtcd(t)
	restored := newEtcd(t)
	c, err := NewMatchesLiveCheck("", scenarios.EtcdMatchesLiveCheck{Prefixes: []string{"/registry/"}})
	must(t, err)
	o := c.Run(context.Background(), &EtcdTarget{Restored: restored, Live: live, Snapshot: etcdsnap.Report{Revision: 1}})
	if o.Status != StatusPassed {
		t.Fatalf("two empty stores at revision 1: want passed, got %s: %s", o.Status, o.Message)
	}
	o = c.Run(context.Background(), &EtcdTarget{Restored: restored, Live: live, Snapshot: etcdsnap.Report{Revision: 1_000_000}})
	if o.Status != StatusError || !strings.Contains(o.Message, "has not reached the snapshot's revision") {
		t.Fatalf("want error for a live store behind the snapshot, got %s: %s", o.Status, o.Message)
	}
}

// The merge of two stores counts every difference exactly, across pages.
func TestComparePrefixCounts(t *testing.T) {
	ctx := context.Background()
	a, b := newEtcd(t), newEtcd(t)
	var opsA, opsB []clientv3.Op
	put := func(cli *clientv3.Client, k, v string) {
		op := clientv3.OpPut(k, v)
		if cli == a {
			opsA = append(opsA, op)
		} else {
			opsB = append(opsB, op)
		}
	}
	value := strings.Repeat("x", 4096)
	for i := range 1500 {
		k := fmt.Sprintf("/registry/configmaps/ns/%04d", i)
		switch {
		case i%100 == 1: // only restored
			put(a, k, value)
		case i%100 == 2: // only live
			put(b, k, value)
		case i%100 == 3: // changed
			put(a, k, value)
			put(b, k, value+"!")
		default:
			put(a, k, value)
			put(b, k, value)
		}
	}
	for cli, ops := range map[*clientv3.Client][]clientv3.Op{a: opsA, b: opsB} {
		for i := 0; i < len(ops); i += 100 {
			_, err := cli.Txn(ctx).Then(ops[i:min(i+100, len(ops))]...).Commit()
			must(t, err)
		}
	}
	d, err := comparePrefix(ctx, a, 0, b, 0, "/registry/configmaps/")
	must(t, err)
	if d.Mode != modeCurrent || d.OnlyRestored != 15 || d.OnlyLive != 15 || d.Changed != 15 || d.Total != 1500 || d.RestoredKeys != 1485 || d.LiveKeys != 1485 {
		t.Fatalf("got %+v", d)
	}
	if len(d.FirstDifferences) != maxListed || d.FirstDifferences[0] != "/registry/configmaps/ns/0001 (only restored)" || d.FirstDifferences[2] != "/registry/configmaps/ns/0003 (value differs)" {
		t.Errorf("first differences: %v", d.FirstDifferences)
	}
	if d.RestoredDigest == d.LiveDigest {
		t.Error("different stores, equal digests")
	}
}
