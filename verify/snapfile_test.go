package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// fileTarget reads r's snapshot file, as the snapshot driver reports an intact one.
func fileTarget(r *restored) *EtcdTarget {
	return &EtcdTarget{Snapshot: etcdsnap.Report{Path: r.Snapshot, Revision: r.Status.Revision, TotalKeys: r.Status.TotalKey, HasHash: true, HashMatches: true, Readable: true}}
}

// assertSameOutcome fails unless decoding the snapshot file found what decoding the restored etcd
// found: the same status, message and evidence but for where it was read.
func assertSameOutcome(t *testing.T, fromEtcd, fromFile Outcome, snapshotRev int64) {
	t.Helper()
	if fromFile.Status != fromEtcd.Status || fromFile.Message != fromEtcd.Message {
		t.Errorf("file: %s: %s\netcd: %s: %s", fromFile.Status, fromFile.Message, fromEtcd.Status, fromEtcd.Message)
	}
	if fromFile.Evidence["source"] != sourceSnapshotFile || fromEtcd.Evidence["source"] != sourceEtcd {
		t.Errorf("source: file %v, etcd %v", fromFile.Evidence["source"], fromEtcd.Evidence["source"])
	}
	if fromFile.Evidence["revision"] != snapshotRev || fromFile.Evidence["revisionFrom"] != "snapshot" {
		t.Errorf("file read at revision %v (%v), want the snapshot's %d", fromFile.Evidence["revision"], fromFile.Evidence["revisionFrom"], snapshotRev)
	}
	ef, ee := evidenceJSON(t, fromFile), evidenceJSON(t, fromEtcd)
	for _, k := range []string{"source", "revision", "revisionFrom"} {
		delete(ef, k)
		delete(ee, k)
	}
	if !reflect.DeepEqual(ef, ee) {
		f, _ := json.Marshal(ef)
		e, _ := json.Marshal(ee)
		t.Errorf("evidence differs:\nfile: %s\netcd: %s", f, e)
	}
}

// The snapshot file holds every revision since the last compaction; decoding it sees what the
// restored etcd serves: each key's latest value, deleted keys not at all. Outcomes are the same as
// reading the restored etcd, to the byte.
func TestObjectsDecodeSnapshotFile(t *testing.T) {
	ctx := context.Background()
	src := newEtcd(t)
	cod, err := newCodec()
	must(t, err)
	cm := func(ns, name string) string {
		return encodeProtobuf(t, cod, &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Data:       map[string]string{"k": "v"},
		})
	}
	put := func(k, v string) {
		t.Helper()
		_, err := src.Put(ctx, k, v)
		must(t, err)
	}
	del := func(k string) {
		t.Helper()
		_, err := src.Delete(ctx, k)
		must(t, err)
	}
	const h = "/registry/configmaps/h/"
	put(h+"overwritten-good", "garbage")
	put(h+"overwritten-bad", cm("h", "overwritten-bad"))
	put(h+"deleted", cm("h", "deleted"))
	put(h+"deleted-bad", "garbage")
	put(h+"recreated", "garbage")
	for i := range 20 {
		put(h+"many", cm("h", fmt.Sprintf("many-%d", i)))
	}
	// Compacted away: only the latest revision of what was written so far stays in the file.
	resp, err := src.Get(ctx, "\x00", clientv3.WithCountOnly())
	must(t, err)
	_, err = src.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	must(t, err)
	put(h+"overwritten-good", cm("h", "overwritten-good"))
	put(h+"overwritten-bad", "garbage")
	del(h + "deleted")
	del(h + "deleted-bad")
	del(h + "recreated")
	put(h+"recreated", cm("h", "recreated"))
	// More damaged values than a result lists, written so that the newest revision is not the
	// first key: the keys listed are the first in key order, whatever order the file has them in.
	for i := 14; i >= 0; i-- {
		put(fmt.Sprintf("/registry/configmaps/z/bad-%02d", i), "garbage")
	}
	put("/registry/configmaps/a/bad", "garbage")
	put("/registry/secrets/z/encrypted", "k8s:enc:aescbc:v1:key1:\x01\x02")
	// Several keys at one revision.
	_, err = src.Txn(ctx).Then(
		clientv3.OpPut("/registry/configmaps/t/one", cm("t", "one")),
		clientv3.OpPut("/registry/configmaps/t/two", "garbage"),
		clientv3.OpDelete("/registry/configmaps/z/bad-14"),
	).Commit()
	must(t, err)
	put("/registry/configmaps/t/empty", "")
	put("compact_rev_key", "12")
	put("/firedrill/canary/x", "canary")
	put("/registry/firedrill-canary", "a custom canary")
	put("/registry/configmaps/y/after-canary", cm("y", "after-canary"))
	r := restoreCopy(t, src.Endpoints())
	etcdTarget := &EtcdTarget{Restored: r.Client, Snapshot: etcdsnap.Report{Revision: r.Status.Revision}}
	file := fileTarget(r)

	for _, tc := range []struct {
		name, prefix string
		allow        bool
		canary       string
	}{
		{"whole keyspace", "", false, "/registry/firedrill-canary"},
		{"registry", "/registry/", true, ""},
		{"history", h, false, ""},
		{"nothing there", "/registry/nothing/", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{AllowEncrypted: tc.allow})
			c.prefix = tc.prefix
			et, ft := *etcdTarget, *file
			if tc.canary != "" {
				et.Canary, ft.Canary = &Canary{Key: tc.canary}, &Canary{Key: tc.canary}
			}
			fromEtcd, fromFile := c.Run(ctx, &et), c.Run(ctx, &ft)
			t.Logf("%s: %s", fromFile.Status, fromFile.Message)
			assertSameOutcome(t, fromEtcd, fromFile, r.Status.Revision)
			if tc.prefix == h {
				ev := fromFile.Evidence
				if ev["keys"] != int64(4) || ev["decoded"] != int64(3) || ev["undecodable"] != int64(1) || !strings.Contains(fromFile.Message, h+"overwritten-bad (") {
					t.Errorf("want the latest values of 4 keys, 1 bad: %v: %s", ev, fromFile.Message)
				}
			}
			if tc.prefix == "" {
				bad := fromFile.Evidence["firstUndecodable"].([]badKey)
				if len(bad) != maxListed || bad[0].Key != "/registry/configmaps/a/bad" || bad[maxListed-1].Key != "/registry/configmaps/z/bad-05" {
					t.Errorf("want the first %d bad keys in key order, got %v", maxListed, bad)
				}
			}
		})
	}

	t.Run("raw db", func(t *testing.T) {
		raw := copyFile(t, r.Snapshot, func(b []byte) []byte { return b[:len(b)-32] }) // without etcd's hash
		c := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{AllowEncrypted: true})
		ft := *file
		ft.Snapshot.Path, ft.Snapshot.HasHash, ft.Snapshot.HashMatches = raw, false, false
		assertSameOutcome(t, c.Run(ctx, etcdTarget), c.Run(ctx, &ft), r.Status.Revision)
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		o := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{}).Run(ctx, file)
		if o.Status != StatusError || !strings.Contains(o.Message, "context canceled") || strings.Contains(o.Message, "bbolt") {
			t.Errorf("want error for the interruption, got %s: %s", o.Status, o.Message)
		}
	})

	t.Run("replaced file", func(t *testing.T) {
		ft := *file
		ft.Snapshot.Revision--
		o := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{}).Run(ctx, &ft)
		if o.Status != StatusError || !strings.Contains(o.Message, "replaced or damaged since") {
			t.Errorf("want error, got %s: %s", o.Status, o.Message)
		}
	})
}

// A file bbolt cannot read is an error of the check, not a verdict on the data (etcdIntegrity
// gives that), and never brings the process down. A file the snapshot driver found damaged is not
// opened at all.
func TestObjectsDecodeUnreadableSnapshotFile(t *testing.T) {
	ctx := context.Background()
	src := newEtcd(t)
	cod, err := newCodec()
	must(t, err)
	for i := range 300 {
		name := fmt.Sprintf("%03d", i)
		_, err := src.Put(ctx, "/registry/configmaps/x/"+name, encodeProtobuf(t, cod, &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "x"},
			Data:       map[string]string{"k": strings.Repeat("v", 2000)},
		}))
		must(t, err)
	}
	r := restoreCopy(t, src.Endpoints())
	dir := t.TempDir()
	notSnapshot := filepath.Join(dir, "notes.txt")
	must(t, os.WriteFile(notSnapshot, []byte(strings.Repeat("not an etcd snapshot\n", 1000)), 0o600))
	empty := filepath.Join(dir, "empty.db")
	must(t, os.WriteFile(empty, nil, 0o600))
	report := fileTarget(r).Snapshot

	for _, tc := range []struct {
		name   string
		report func(etcdsnap.Report) etcdsnap.Report
		want   string
	}{
		{"missing", func(s etcdsnap.Report) etcdsnap.Report { s.Path = filepath.Join(dir, "gone.db"); return s }, "no such file"},
		{"not a snapshot", func(s etcdsnap.Report) etcdsnap.Report { s.Path, s.HasHash = notSnapshot, false; return s }, "cannot be read with bbolt"},
		{"empty", func(s etcdsnap.Report) etcdsnap.Report { s.Path, s.HasHash = empty, false; return s }, "cannot be read with bbolt: the file is empty"},
		{"directory", func(s etcdsnap.Report) etcdsnap.Report { s.Path, s.HasHash = dir, false; return s }, "cannot be read with bbolt: not a regular file"},
		{"truncated", func(s etcdsnap.Report) etcdsnap.Report {
			s.Path = copyFile(t, r.Snapshot, func(b []byte) []byte { return b[:len(b)/2] })
			s.HasHash = false
			return s
		}, "cannot be read with bbolt"},
		{"pages zeroed", func(s etcdsnap.Report) etcdsnap.Report {
			s.Path = copyFile(t, r.Snapshot, func(b []byte) []byte {
				clear(b[len(b)/3 : len(b)*2/3])
				return b
			})
			return s
		}, "cannot be read with bbolt"},
		{"hash mismatch", func(s etcdsnap.Report) etcdsnap.Report { s.HashMatches = false; return s }, "is not read: its appended hash does not match its data"},
		{"judged unreadable", func(s etcdsnap.Report) etcdsnap.Report { s.Readable, s.ReadError = false, "invalid database"; return s }, "is not read: etcd cannot read it: invalid database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{}).Run(ctx, &EtcdTarget{Snapshot: tc.report(report)})
			t.Logf("%s: %s", o.Status, o.Message)
			if o.Status != StatusError || !strings.Contains(o.Message, tc.want) || !strings.Contains(o.Message, "etcdIntegrity") {
				t.Errorf("want error with %q naming etcdIntegrity, got %s: %s", tc.want, o.Status, o.Message)
			}
			if o.Evidence["source"] != sourceSnapshotFile {
				t.Errorf("source: %v", o.Evidence["source"])
			}
		})
	}
}

// copyFile writes a copy of path, changed by edit, into a temporary directory of t.
func copyFile(t *testing.T, path string, edit func([]byte) []byte) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	must(t, os.WriteFile(out, edit(b), 0o600))
	return out
}

// parseKeyValue reads what mvccpb's Unmarshal reads, and fails where it fails.
func TestParseKeyValue(t *testing.T) {
	t.Parallel()
	for _, kv := range []*mvccpb.KeyValue{
		{Key: []byte("/registry/configmaps/a/b"), CreateRevision: 7, ModRevision: 1 << 40, Version: 3, Value: []byte("k8s\x00value"), Lease: 99},
		{Key: []byte("k"), Value: bytes.Repeat([]byte{0xff}, 70000)},
		{Key: []byte("k"), ModRevision: 5}, // empty value
		{Key: []byte("\x00\xff")},
	} {
		b, err := kv.Marshal()
		must(t, err)
		var want mvccpb.KeyValue
		must(t, want.Unmarshal(b))
		key, value, err := parseKeyValue(b)
		if err != nil || !bytes.Equal(key, want.Key) || !bytes.Equal(value, want.Value) {
			t.Errorf("%q: got key %q, %d value bytes, %v", kv.Key, key, len(value), err)
		}
		for n := range len(b) {
			var m mvccpb.KeyValue
			_, _, err := parseKeyValue(b[:n])
			if m.Unmarshal(b[:n]) != nil && err == nil {
				t.Errorf("%q cut at %d: mvccpb fails, parseKeyValue does not", kv.Key, n)
			}
		}
	}
	if _, _, err := parseKeyValue([]byte{0x30, 0x01}); err == nil { // a lease only: no key
		t.Error("want an error for a KeyValue without key")
	}
}

// storageDir splits keys as storagePath does, without allocating.
func TestStorageDir(t *testing.T) {
	reference := func(key string) string {
		p := storagePath(key)
		if len(p) >= 3 && (strings.Contains(p[0], ".") || p[0] == "services") {
			return p[0] + "/" + p[1]
		}
		return p[0]
	}
	keys := []string{"", "/", "//", "///", "compact_rev_key", "/registry/", "/registry/services", "/registry/services/specs",
		"/registry/services/specs/default/kubernetes", "/registry/example.com/widgets", "/registry/example.com/widgets/a",
		"/registry/example.com/widgets/a/b", "/registry/a.b", "/registry/configmaps/a/b", "/kubernetes.io/pods/a/b",
		"/other/example.com/x/y", "nolead/services/a/b", "/registry/services//x", "/registry//a/b"}
	for _, k := range keys {
		if got, want := storageDir(k), reference(k); got != want {
			t.Errorf("storageDir(%q) = %q, want %q", k, got, want)
		}
	}
	key := "/registry/example.com/widgets/ns/name"
	if n := testing.AllocsPerRun(100, func() { _ = storageDir(key) }); n != 0 {
		t.Errorf("storageDir allocates %v times", n)
	}
}

// Damaged values are listed by their first keys in key order, whatever order they were seen in.
func TestKeepFirst(t *testing.T) {
	t.Parallel()
	var keys []string
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("k%03d", i))
	}
	shuffled := slices.Clone(keys)
	slices.Reverse(shuffled)
	a, b := newDecodeStats(), newDecodeStats()
	for i, k := range shuffled {
		s := a
		if i%3 == 0 {
			s = b
		}
		s.add(k, 1, decodedValue{Class: classUndecodable, Reason: "x"})
	}
	a.merge(b)
	var got []string
	for _, k := range a.firstBad {
		got = append(got, k.Key)
	}
	if !slices.Equal(got, keys[:maxListed]) {
		t.Errorf("got %v", got)
	}
	if a.undecodable != 100 || len(a.perResource) != 100 {
		t.Errorf("counts: %d undecodable, %d resources", a.undecodable, len(a.perResource))
	}
}
