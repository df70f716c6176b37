package verify

import (
	"context"
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// A scan sees every key under its prefix once, in order, across windows and pages, at the
// revision of its first request whatever is written meanwhile.
func TestRangeScan(t *testing.T) {
	cli := newEtcd(t)
	ctx := context.Background()
	var want []string
	var ops []clientv3.Op
	for i := range 1234 {
		k := fmt.Sprintf("/registry/things/ns/%05d", i)
		// Values from a byte to 64 KiB, so the page limit adapts up and down.
		ops = append(ops, clientv3.OpPut(k, strings.Repeat("v", 1+(i*i)%(64<<10))))
		want = append(want, k)
	}
	for i := 0; i < len(ops); i += 20 { // under the 1.5 MiB request limit
		_, err := cli.Txn(ctx).Then(ops[i:min(i+20, len(ops))]...).Commit()
		must(t, err)
	}
	for _, k := range []string{"/registry/thing", "/registry/thingst", "/registry/thingsz/x"} {
		_, err := cli.Put(ctx, k, "outside the prefix")
		must(t, err)
	}

	for _, tc := range []struct {
		name     string
		window   int64
		keysOnly bool
	}{{"one window", windowKeys, false}, {"many windows", 100, false}, {"keys only", 100, true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRangeScan(cli, "/registry/things/", 0, tc.keysOnly)
			s.windowKeys = tc.window
			var got []string
			pages := 0
			for {
				page, err := s.Page(ctx)
				must(t, err)
				if len(page) == 0 {
					break
				}
				pages++
				for _, kv := range page {
					got = append(got, string(kv.Key))
					if !tc.keysOnly && len(kv.Value) == 0 {
						t.Fatalf("%s: no value", kv.Key)
					}
				}
				if pages == 1 {
					// Written after the scan started: not seen.
					_, err := cli.Put(ctx, "/registry/things/ns/00000-late", "x")
					must(t, err)
					t.Cleanup(func() { _, _ = cli.Delete(ctx, "/registry/things/ns/00000-late") })
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("got %d keys, want %d in order", len(got), len(want))
			}
			if pages < 3 {
				t.Errorf("want several pages, got %d", pages)
			}
		})
	}

	t.Run("iterator", func(t *testing.T) {
		s := newRangeScan(cli, "/registry/things/", 0, false)
		s.windowKeys = 100
		it := &rangeIter{scan: s}
		n := 0
		for {
			kv, err := it.Next(ctx)
			must(t, err)
			if kv == nil {
				break
			}
			if string(kv.Key) != want[n] {
				t.Fatalf("key %d: got %s, want %s", n, kv.Key, want[n])
			}
			n++
		}
		if n != len(want) {
			t.Fatalf("got %d keys, want %d", n, len(want))
		}
	})

	t.Run("whole keyspace", func(t *testing.T) {
		s := newRangeScan(cli, "", 0, true)
		n := 0
		for {
			page, err := s.Page(ctx)
			must(t, err)
			if len(page) == 0 {
				break
			}
			n += len(page)
		}
		if n != len(want)+3 {
			t.Fatalf("got %d keys, want %d", n, len(want)+3)
		}
		c, err := countKeys(ctx, cli, "", 0)
		must(t, err)
		if c != int64(n) {
			t.Fatalf("countKeys = %d, want %d", c, n)
		}
	})
}

// The revision the drill says the restore left pins every read of the restored etcd; without it,
// the checks find the revision the restore marked compacted.
func TestRestoredRevisionPinsReads(t *testing.T) {
	ctx := context.Background()
	src := newEtcd(t)
	_, err := src.Put(ctx, "/registry/configmaps/x/a", "a")
	must(t, err)
	_, err = src.Put(ctx, scenarios.CanaryKeyPrefix+"pin", "canary")
	must(t, err)
	r := restoreCopy(t, src.Endpoints())
	restoredRev := r.Status.Revision + testBump
	late, err := r.Client.Put(ctx, "/registry/configmaps/x/late", "written after the restore")
	must(t, err)

	keys, err := NewKeysCheck("", scenarios.EtcdKeysCheck{Prefix: "/registry/configmaps/x/"})
	must(t, err)
	live, err := NewMatchesLiveCheck("", scenarios.EtcdMatchesLiveCheck{Prefixes: []string{"/registry/configmaps/x/"}})
	must(t, err)
	canary := NewCanaryCheck("", "pin", scenarios.CanaryCheck{})
	for _, tc := range []struct {
		name   string
		pinned int64
		rev    int64
		from   string
		count  int64
	}{
		{"discovered", 0, restoredRev, "compaction", 1},
		{"pinned", restoredRev, restoredRev, "restore", 1},
		// Pinned later than the restore (which a drill never does): the late key is read, so the
		// pin, not the discovery, decided.
		{"pinned later", late.Header.Revision, late.Header.Revision, "restore", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := &EtcdTarget{Restored: r.Client, Live: src, RestoredRevision: tc.pinned, Snapshot: etcdsnap.Report{Revision: r.Status.Revision},
				Canary: &Canary{Key: scenarios.CanaryKeyPrefix + "pin", Value: "canary"}}
			rr, err := restoredRevision(ctx, target)
			must(t, err)
			if rr.Rev != tc.rev || rr.From != tc.from {
				t.Errorf("restoredRevision = %+v, want %d from %s", rr, tc.rev, tc.from)
			}
			o := keys.Run(ctx, target)
			if o.Evidence["count"] != tc.count || o.Evidence["revision"] != tc.rev {
				t.Errorf("etcdKeys: %s: %v", o.Message, o.Evidence)
			}
			o = canary.Run(ctx, target)
			if o.Status != StatusPassed || o.Evidence["revision"] != tc.rev {
				t.Errorf("canary: %s: %v", o.Message, o.Evidence)
			}
			o = NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{Prefix: "/registry/configmaps/x/"}).Run(ctx, target)
			if o.Evidence["keys"] != tc.count || o.Evidence["revision"] != tc.rev || o.Evidence["revisionFrom"] != tc.from {
				t.Errorf("etcdObjectsDecode: %s: %v", o.Message, o.Evidence)
			}
			o = live.Run(ctx, target)
			if d := o.Evidence["results"].(map[string]*prefixDiff)["/registry/configmaps/x/"]; d.RestoredRevision != tc.rev || d.RestoredKeys != tc.count {
				t.Errorf("etcdMatchesLive: %s: %+v", o.Message, d)
			}
		})
	}
}
