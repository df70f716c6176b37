package etcd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// A snapshot of the sandbox's etcd holds the keys just written: its hash is the file's, etcd's
// appended hash matches, bbolt reads it, and its key count is the live store's at its revision.
func TestTakeFromSandbox(t *testing.T) {
	sb, cli := sandboxEtcd(t)
	prefix := "/firedrill-test/take/" + filepath.Base(t.TempDir()) + "/"
	_, lastRev := putKeys(t, cli, prefix, 200, 300)

	dir := t.TempDir()
	path := filepath.Join(dir, "etcd.db")
	var progress atomic.Int64
	before := time.Now()
	snap, err := etcd.Take(context.Background(), etcd.TakeOptions{
		Endpoints: sb.EtcdEndpoints(),
		Path:      path,
		Progress:  func(n int64) { progress.Store(n) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256File(t, path); snap.SHA256 != got {
		t.Errorf("SHA256 = %s, file hashes to %s", snap.SHA256, got)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if snap.SizeBytes != st.Size() || progress.Load() != st.Size() {
		t.Errorf("SizeBytes %d, last progress %d, file %d bytes", snap.SizeBytes, progress.Load(), st.Size())
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600: snapshots hold Secrets", st.Mode().Perm())
	}
	if snap.Source != "take" || snap.Location != sb.EtcdEndpoints()[0] || snap.Name != "etcd.db" || snap.SelectedBy != "" || snap.Path != path {
		t.Errorf("snapshot described as %+v", snap)
	}
	if snap.CreatedAt.Before(before) || snap.CreatedAt.After(time.Now()) {
		t.Errorf("CreatedAt %v not within the call", snap.CreatedAt)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only etcd.db", names)
	}

	r, err := etcd.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasHash || !r.HashMatches || !r.Readable || r.Err() != nil {
		t.Fatalf("report %+v, err %v", r, r.Err())
	}
	if r.SHA256 != snap.SHA256 || r.SizeBytes != snap.SizeBytes {
		t.Errorf("Inspect says %s/%d, Take said %s/%d", r.SHA256, r.SizeBytes, snap.SHA256, snap.SizeBytes)
	}
	if r.Revision < lastRev {
		t.Errorf("snapshot revision %d < revision of the last put %d", r.Revision, lastRev)
	}
	if r.Version == "" {
		t.Error("no storage version reported for an etcd 3.6 snapshot")
	}
	if snap.Revision != r.Revision || snap.Version != r.Version {
		t.Errorf("Take says revision %d version %q, Inspect %d %q", snap.Revision, snap.Version, r.Revision, r.Version)
	}
	// kube-apiserver writes all the time; the live store at the snapshot's revision is the truth.
	ctx := context.Background()
	all, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly(), clientv3.WithRev(r.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if int64(r.TotalKeys) != all.Count {
		t.Errorf("TotalKeys %d, live store had %d keys at revision %d", r.TotalKeys, all.Count, r.Revision)
	}
}

// The first endpoint refuses connections: the second delivers and is named as the source.
func TestTakeFallsBackToNextEndpoint(t *testing.T) {
	sb, _ := sandboxEtcd(t)
	dead := deadEndpoint(t)
	path := filepath.Join(t.TempDir(), "etcd.db")
	snap, err := etcd.Take(context.Background(), etcd.TakeOptions{
		Endpoints:   []string{dead, sb.EtcdEndpoints()[0]},
		Path:        path,
		DialTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Location != sb.EtcdEndpoints()[0] {
		t.Errorf("Location = %s, want the second endpoint %s", snap.Location, sb.EtcdEndpoints()[0])
	}
	if r, err := etcd.Inspect(path); err != nil || r.Err() != nil {
		t.Fatalf("inspect: %v, %v", err, r.Err())
	}
}

// No endpoint answers: an *EndpointsError names each with its reason, and no file is left.
func TestTakeAllEndpointsDead(t *testing.T) {
	dead1, dead2 := deadEndpoint(t), deadEndpoint(t)
	dir := t.TempDir()
	start := time.Now()
	_, err := etcd.Take(context.Background(), etcd.TakeOptions{
		Endpoints:   []string{dead1, dead2},
		Path:        filepath.Join(dir, "etcd.db"),
		DialTimeout: time.Second,
	})
	var eerr *etcd.EndpointsError
	if !errors.As(err, &eerr) || !errors.Is(err, etcd.ErrUnreachable) {
		t.Fatalf("err = %v, want an *EndpointsError wrapping ErrUnreachable", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("an endpoint's dial deadline leaks out as the caller's context.DeadlineExceeded")
	}
	if len(eerr.Errs) != 2 || len(eerr.Endpoints) != 2 {
		t.Errorf("EndpointsError %+v, want two endpoints and two errors", eerr)
	}
	msg := err.Error()
	for _, want := range []string{dead1, dead2, "connection refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not contain %q", msg, want)
		}
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("failed take left %v", names)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v for two dead endpoints with a 1s dial timeout", took)
	}
	t.Log(msg)
}

// An output directory that does not exist is a local problem, reported as such, not as every
// endpoint failing.
func TestTakeMissingDirectory(t *testing.T) {
	_, err := etcd.Take(context.Background(), etcd.TakeOptions{
		Endpoints: []string{deadEndpoint(t)},
		Path:      filepath.Join(t.TempDir(), "missing", "etcd.db"),
	})
	if err == nil || errors.Is(err, etcd.ErrUnreachable) || !strings.Contains(err.Error(), "create it first") {
		t.Fatalf("err = %v", err)
	}
}

// The member streaming the snapshot goes away part-way: the attempt leaves no file, the error
// says where the stream broke, and a second endpoint, when there is one, delivers a whole
// snapshot. "shutdown" closes the embedded etcd (gRPC's graceful stop, then a hard one after
// etcd's request timeout); "reset" cuts the connection as a killed process or a dropped link does.
func TestTakeEndpointKilledMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("fills an etcd with 64 MiB")
	}
	// Every victim starts from the same 64 MiB, restored rather than written again.
	big := bigSnapshot(t, 64)
	for _, tc := range []struct {
		name   string
		reset  bool
		second bool
	}{
		{"shutdown/alone", false, false},
		{"shutdown/with-second-endpoint", false, true},
		{"reset/with-second-endpoint", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			victim := restoreScratch(t, big)
			endpoint, kill := victim.Endpoints()[0], func() { victim.Close() }
			if tc.reset {
				p := startProxy(t, endpoint)
				endpoint, kill = p.endpoint, p.cut
			}
			endpoints := []string{endpoint}
			var other *testEtcd
			if tc.second {
				other = startTestEtcd(t, nil)
				putKeys(t, testClient(t, other.endpoint), "/other/", 10, 10)
				endpoints = append(endpoints, other.endpoint)
			}

			dir := t.TempDir()
			var once sync.Once
			killed := make(chan struct{})
			snap, err := etcd.Take(context.Background(), etcd.TakeOptions{
				Endpoints: endpoints,
				Path:      filepath.Join(dir, "etcd.db"),
				Progress: func(n int64) {
					if n < 1<<20 || n > 1<<40 {
						return
					}
					once.Do(func() { go func() { kill(); close(killed) }() })
					select {
					case <-killed:
					default:
						// Read slowly until the member is gone, so that the stream cannot
						// finish first: Progress comes every 256 KiB, and a graceful stop
						// waits for the stream up to etcd's request timeout before it cuts
						// it, so 64 MiB must take longer than that (256 × 40 ms ≈ 10 s).
						time.Sleep(40 * time.Millisecond)
					}
				},
			})
			<-killed
			if !tc.second {
				var eerr *etcd.EndpointsError
				if !errors.As(err, &eerr) {
					t.Fatalf("err = %v, want an *EndpointsError", err)
				}
				if !strings.Contains(err.Error(), "snapshot stream broke after") {
					t.Errorf("message %q does not say the stream broke", err)
				}
				if names := dirNames(t, dir); len(names) != 0 {
					t.Errorf("broken stream left %v", names)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if snap.Location != other.endpoint {
				t.Errorf("Location %s, want the second endpoint %s", snap.Location, other.endpoint)
			}
			if names := dirNames(t, dir); len(names) != 1 || names[0] != "etcd.db" {
				t.Errorf("directory holds %v, want only etcd.db", names)
			}
			r, err := etcd.Inspect(snap.Path)
			if err != nil || r.Err() != nil || r.TotalKeys != 10 {
				t.Fatalf("second endpoint's snapshot: %v, %v, %+v", err, r.Err(), r)
			}
		})
	}
}

// Ctrl-C during a snapshot: Take returns the context's error at once, tries no other endpoint
// and leaves no file.
func TestTakeInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("fills an etcd with 64 MiB")
	}
	src := restoreScratch(t, bigSnapshot(t, 64))
	other := startTestEtcd(t, nil)

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := etcd.Take(ctx, etcd.TakeOptions{
		Endpoints: append(src.Endpoints(), other.endpoint),
		Path:      filepath.Join(dir, "etcd.db"),
		Progress: func(n int64) {
			if n > 1<<20 {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, etcd.ErrUnreachable) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("interrupted take left %v", names)
	}
	t.Log(err)
}

// A link that stops delivering without closing (no RST, no FIN) ends the attempt after
// StallTimeout, with no file left, instead of hanging until the drill's deadline.
func TestTakeStalled(t *testing.T) {
	src := startTestEtcd(t, nil)
	fill(t, testClient(t, src.endpoint), "/big/", 16)
	p := startProxy(t, src.endpoint)
	dir := t.TempDir()
	start := time.Now()
	_, err := etcd.Take(context.Background(), etcd.TakeOptions{
		Endpoints:    []string{p.endpoint},
		Path:         filepath.Join(dir, "etcd.db"),
		StallTimeout: 500 * time.Millisecond,
		Progress: func(n int64) {
			if n > 1<<20 {
				p.frozen.Store(true)
			}
		},
	})
	if !errors.Is(err, etcd.ErrUnreachable) || !strings.Contains(err.Error(), "stalled: no data for 500ms") {
		t.Fatalf("err = %v, want the attempt to end as stalled", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v with a 500ms stall timeout", took)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("stalled take left %v", names)
	}
	t.Log(err)
}

// Take reads the snapshot's revision from the file it wrote, as etcdutl's status does, whether
// etcd's "key" bucket is empty, inline in its parent, or a tree of its own ending in a large value.
func TestTakeRevisionMatchesStatus(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 3000} {
		src := startTestEtcd(t, nil)
		cli := testClient(t, src.endpoint)
		putKeys(t, cli, "/rev/", n, 100)
		if n > 1 {
			putKeys(t, cli, "/rev/big/", 1, 20000)
		}
		path := filepath.Join(t.TempDir(), "rev.db")
		snap, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: []string{src.endpoint}, Path: path})
		if err != nil {
			t.Fatal(err)
		}
		r, err := etcd.Inspect(path)
		if err != nil || r.Err() != nil {
			t.Fatal(err, r.Err())
		}
		if snap.Revision != r.Revision || snap.Version != r.Version {
			t.Errorf("%d keys: Take says revision %d version %q, Inspect %d %q", n, snap.Revision, snap.Version, r.Revision, r.Version)
		}
		t.Logf("%d keys: revision %d, version %s", n, snap.Revision, snap.Version)
		src.stop()
	}
}
