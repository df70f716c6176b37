package verify

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// sharedSandbox is the package's cluster: real etcd full of objects a real kube-apiserver wrote.
func sharedSandbox(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	return sandboxtest.Shared(t, sandbox.Options{})
}

func etcdClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// restored is a real restore of a live etcd: a snapshot taken with etcd's Maintenance API,
// restored by etcdutl's library with --bump-revision --mark-compacted (as drills restore), and
// served by an etcd of its own.
type restored struct {
	Client   *clientv3.Client
	Snapshot string
	Status   snapshot.Status
}

const testBump = 1_000_000_000

func restoreCopy(t testing.TB, endpoints []string) *restored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	snap := filepath.Join(dir, "snapshot.db")
	lg := zap.NewNop()
	mgr := snapshot.NewV3(lg)
	if _, err := mgr.Save(ctx, clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: lg}, snap); err != nil {
		t.Fatalf("take snapshot: %v", err)
	}
	st, err := mgr.Status(snap)
	if err != nil {
		t.Fatalf("snapshot status: %v", err)
	}
	peer := "http://" + freeAddr(t)
	data := filepath.Join(dir, "data")
	if err := mgr.Restore(snapshot.RestoreConfig{
		SnapshotPath: snap, Name: "restored", OutputDataDir: data,
		PeerURLs: []string{peer}, InitialCluster: "restored=" + peer, InitialClusterToken: "firedrill-test",
		RevisionBump: testBump, MarkCompacted: true,
	}); err != nil {
		t.Fatalf("restore snapshot: %v", err)
	}
	client := startEtcd(t, data, "restored", peer)
	return &restored{Client: etcdClient(t, []string{client}), Snapshot: snap, Status: st}
}

// newEtcd starts an empty etcd of its own.
func newEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	peer := "http://" + freeAddr(t)
	return etcdClient(t, []string{startEtcd(t, filepath.Join(t.TempDir(), "data"), "scratch", peer)})
}

// startEtcd runs an embedded etcd (the real server, in this process) on dataDir until t ends,
// and returns its client URL.
func startEtcd(t testing.TB, dataDir, name, peer string) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, dataDir
	client := "http://" + freeAddr(t)
	cu, pu := mustURL(t, client), mustURL(t, peer)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = name + "=" + peer
	cfg.InitialClusterToken = "firedrill-test"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.QuotaBackendBytes = 4 << 30
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("etcd not ready after a minute")
	}
	return client
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(fmt.Errorf("parse %s: %w", s, err))
	}
	return u
}
