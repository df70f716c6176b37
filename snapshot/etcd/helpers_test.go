package etcd_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// sandboxOpts are the options of every shared sandbox in this package, so that one starts.
var sandboxOpts = sandbox.Options{Velero: true}

func sandboxEtcd(t testing.TB) (*sandbox.Sandbox, *clientv3.Client) {
	t.Helper()
	sb := sandboxtest.Shared(t, sandboxOpts)
	cli, err := etcd.NewClient(sb.EtcdEndpoints(), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return sb, cli
}

// testEtcd is an embedded etcd a test owns, to stop or break at will.
type testEtcd struct {
	e        *embed.Etcd
	endpoint string
	once     sync.Once
}

// stop closes the etcd; embed.Etcd.Close panics when called twice.
func (te *testEtcd) stop() { te.once.Do(te.e.Close) }

// startTestEtcd starts an embedded etcd in a temporary directory; mutate may change its config
// (TLS). It is stopped when the test ends, if the test has not stopped it.
func startTestEtcd(t testing.TB, mutate func(cfg *embed.Config)) *testEtcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(t.TempDir(), "etcd")
	ports := freePorts(t, 2)
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	if mutate != nil {
		mutate(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("test etcd not ready in 30s")
	}
	te := &testEtcd{e: e, endpoint: cfg.AdvertiseClientUrls[0].String()}
	t.Cleanup(te.stop)
	return te
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// deadEndpoint is the URL of a loopback port nothing listens on.
func deadEndpoint(t testing.TB) string {
	return fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)[0])
}

func testClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := etcd.NewClient([]string{endpoint}, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// putKeys writes n keys under prefix with random values of size bytes and returns them and the
// revision of the last put.
func putKeys(t testing.TB, cli *clientv3.Client, prefix string, n, size int) (map[string]string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kv := make(map[string]string, n)
	var rev int64
	buf := make([]byte, size/2+1)
	for i := range n {
		rand.Read(buf)
		k, v := fmt.Sprintf("%s%06d", prefix, i), hex.EncodeToString(buf)[:size]
		resp, err := cli.Put(ctx, k, v)
		if err != nil {
			t.Fatal(err)
		}
		kv[k], rev = v, resp.Header.Revision
	}
	return kv, rev
}

// fill writes about mb megabytes of incompressible values under prefix, 8 puts at a time.
func fill(t testing.TB, cli *clientv3.Client, prefix string, mb int) {
	t.Helper()
	const valueSize = 512 << 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := mb << 20 / valueSize
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			v := make([]byte, valueSize)
			rand.Read(v)
			_, err := cli.Put(ctx, fmt.Sprintf("%s%08d", prefix, i), string(v))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// dirNames lists a directory's entries, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// fixture is a snapshot taken from a fresh embedded etcd holding keys.
type fixture struct {
	path string
	keys map[string]string
	rev  int64
}

// takeFixture snapshots an embedded etcd holding n small keys under /fixture/.
func takeFixture(t testing.TB, n int) fixture {
	t.Helper()
	src := startTestEtcd(t, nil)
	keys, rev := putKeys(t, testClient(t, src.endpoint), "/fixture/", n, 100)
	path := filepath.Join(t.TempDir(), "fixture.db")
	if _, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: []string{src.endpoint}, Path: path}); err != nil {
		t.Fatal(err)
	}
	return fixture{path: path, keys: keys, rev: rev}
}

func writeFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cutProxy forwards a loopback port to an endpoint until cut, which resets every connection the
// way the kernel does when the process behind them is killed.
type cutProxy struct {
	l        net.Listener
	endpoint string
	frozen   atomic.Bool // forward nothing, close nothing: a link that silently drops packets
	mu       sync.Mutex
	conns    []net.Conn
}

func startProxy(t testing.TB, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, endpoint: "http://" + l.Addr().String()}
	addr := strings.TrimPrefix(target, "http://")
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { p.copy(out, in); out.Close() }()
			go func() { p.copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() { p.frozen.Store(false); p.cut() })
	return p
}

func (p *cutProxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cutProxy) cut() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN
		}
		c.Close()
	}
}

// bigSnapshot is a snapshot of an etcd holding about mb megabytes of values under /big/.
func bigSnapshot(t testing.TB, mb int) string {
	t.Helper()
	src := startTestEtcd(t, nil)
	fill(t, testClient(t, src.endpoint), "/big/", mb)
	path := filepath.Join(t.TempDir(), "big.db")
	if _, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: []string{src.endpoint}, Path: path}); err != nil {
		t.Fatal(err)
	}
	src.stop()
	return path
}

// restoreScratch restores a snapshot into a temporary directory and serves it until the test ends.
func restoreScratch(t testing.TB, snapshot string) *etcd.Scratch {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: snapshot, DataDir: dataDir}); err != nil {
		t.Fatal(err)
	}
	s, err := etcd.StartScratch(context.Background(), dataDir, "default")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
