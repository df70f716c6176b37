package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// Restore with a revision bump and compaction mark, as for a scratch kube-apiserver: every key
// comes back with its value, the revision is past the bump, old revisions read as compacted, and
// Close frees the ports.
func TestRestoreBumpAndServe(t *testing.T) {
	fx := takeFixture(t, 300)
	dataDir := filepath.Join(t.TempDir(), "nested", "data")
	err := etcd.Restore(context.Background(), etcd.RestoreOptions{
		SnapshotPath: fx.path, DataDir: dataDir, Name: "drill", BumpRevision: 1e9, MarkCompacted: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	s, err := etcd.StartScratch(context.Background(), dataDir, "drill")
	if err != nil {
		t.Fatal(err)
	}
	ports := endpointPorts(t, s.Endpoints())
	resp := assertKeys(t, s, "/fixture/", fx.keys)
	if resp.Header.Revision <= 1e9 {
		t.Errorf("scratch revision %d, want > 1e9", resp.Header.Revision)
	}
	_, err = s.Client().Get(context.Background(), "/fixture/000001", clientv3.WithRev(fx.rev))
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("read at the snapshot's revision %d: %v, want ErrCompacted (MarkCompacted)", fx.rev, err)
	}
	if _, err := s.Client().Put(context.Background(), "/scratch/write", "ok"); err != nil {
		t.Errorf("scratch etcd does not take writes: %v", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("port %d still taken after Close: %v", p, err)
			continue
		}
		l.Close()
	}
	if _, err := os.Stat(filepath.Join(dataDir, "member", "snap", "db")); err != nil {
		t.Errorf("Close removed the data directory: %v", err)
	}
	// etcd's goroutines wind down shortly after Close returns.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before StartScratch:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// A data directory with anything in it is refused and left exactly as it was; so is a file.
func TestRestoreRefusesExistingData(t *testing.T) {
	fx := takeFixture(t, 10)
	dataDir := t.TempDir()
	keep := writeFile(t, filepath.Join(dataDir, "member-of-a-live-cluster"), []byte("precious"))
	err := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: fx.path, DataDir: dataDir})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v, want a refusal naming the non-empty directory", err)
	}
	if names := dirNames(t, dataDir); len(names) != 1 {
		t.Errorf("data dir now holds %v", names)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "precious" {
		t.Errorf("existing file changed: %q, %v", b, err)
	}
	err = etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: fx.path, DataDir: keep})
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as data dir: %v", err)
	}

	// An empty directory is fine, and stays (empty) when the restore fails.
	empty := t.TempDir()
	bad := writeFile(t, filepath.Join(t.TempDir(), "bad.db"), []byte("not-a-snapshot"))
	if err := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: bad, DataDir: empty}); !errors.Is(err, etcd.ErrCorrupt) {
		t.Errorf("err = %v", err)
	}
	if err := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: fx.path, DataDir: empty}); err != nil {
		t.Errorf("restore into an empty directory: %v", err)
	}
}

// BumpRevision without MarkCompacted would be ignored by etcd's library: refused instead.
func TestRestoreBumpNeedsCompaction(t *testing.T) {
	for _, opts := range []etcd.RestoreOptions{{BumpRevision: 10}, {MarkCompacted: true}} {
		opts.SnapshotPath, opts.DataDir = "x.db", filepath.Join(t.TempDir(), "data")
		if err := etcd.Restore(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "go together") {
			t.Errorf("%+v: err = %v", opts, err)
		}
	}
}

// Ctrl-C during a restore, while the hash is checked and while etcd's library writes: the error
// is the context's and no data directory (nor the parent Restore created) is left.
func TestRestoreInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("fills an etcd with 64 MiB")
	}
	big := bigSnapshot(t, 64)
	for _, when := range []string{"before", "while writing"} {
		t.Run(when, func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "parent")
			dataDir := filepath.Join(parent, "data")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if when == "before" {
				cancel()
			} else {
				go func() {
					for ctx.Err() == nil {
						if _, err := os.Stat(filepath.Join(dataDir, "member")); err == nil {
							cancel()
							return
						}
						time.Sleep(time.Millisecond)
					}
				}()
			}
			err := etcd.Restore(ctx, etcd.RestoreOptions{SnapshotPath: big, DataDir: dataDir, BumpRevision: 1e9, MarkCompacted: true})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if _, err := os.Stat(parent); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("interrupted restore left %s", parent)
			}
			t.Log(err)
		})
	}
}

// assertKeys reads every key under prefix from s and compares them with want.
func assertKeys(t *testing.T, s *etcd.Scratch, prefix string, want map[string]string) *clientv3.GetResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := s.Client().Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != len(want) {
		t.Errorf("%d keys under %s, want %d", len(resp.Kvs), prefix, len(want))
	}
	for _, kv := range resp.Kvs {
		if w, ok := want[string(kv.Key)]; !ok || w != string(kv.Value) {
			t.Errorf("key %s: value of %d bytes, want %d (present: %v)", kv.Key, len(kv.Value), len(w), ok)
		}
	}
	return resp
}

func endpointPorts(t *testing.T, endpoints []string) []int {
	t.Helper()
	var ports []int
	for _, ep := range endpoints {
		_, port, err := net.SplitHostPort(strings.TrimPrefix(ep, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		var p int
		fmt.Sscan(port, &p)
		ports = append(ports, p)
	}
	return ports
}

// The drill's order: Inspect, then Restore told so, which then reads the file for its hash and
// structure no second time.
func TestRestoreAfterInspect(t *testing.T) {
	fx := takeFixture(t, 50)
	r, err := etcd.Inspect(fx.path)
	if err != nil || r.Err() != nil {
		t.Fatal(err, r.Err())
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: fx.path, DataDir: dataDir, Inspected: true}); err != nil {
		t.Fatal(err)
	}
	s, err := etcd.StartScratch(context.Background(), dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	assertKeys(t, s, "/fixture/", fx.keys)
	if len(s.LogTail(5)) == 0 {
		t.Error("the scratch etcd logged nothing")
	}
}
