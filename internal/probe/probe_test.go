package probe

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestManifest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, "orders.db", "orders")
	write(t, dir, "sub/b.txt", "b")
	write(t, dir, "sub/a.txt", "")
	write(t, dir, "cache/x.tmp", "ignored")
	if err := os.Symlink("orders.db", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	m, err := Manifest(dir, []string{"cache"})
	if err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := []File{{Path: "link", SHA256: sum("orders.db"), Link: "orders.db"}, {Path: "orders.db", Size: 6, SHA256: sum("orders"), Mode: "0644"},
		{Path: "sub/a.txt", SHA256: sum(""), Mode: "0644"}, {Path: "sub/b.txt", Size: 1, SHA256: sum("b"), Mode: "0644"}}
	if fmt.Sprint(m.Files) != fmt.Sprint(want) || m.TotalBytes != 7 || len(m.Skipped) != 0 {
		t.Fatalf("manifest %+v", m)
	}
	// A changed mode or link target changes the digest too.
	os.Chmod(filepath.Join(dir, "orders.db"), 0o600)
	if m3, _ := Manifest(dir, []string{"cache"}); m3.Digest == m.Digest {
		t.Error("a changed mode did not change the digest")
	}
	os.Chmod(filepath.Join(dir, "orders.db"), 0o644)
	// The digest covers paths, sizes and contents: any change shows.
	write(t, dir, "sub/b.txt", "c")
	m2, _ := Manifest(dir, []string{"cache"})
	if m2.Digest == m.Digest || len(m.Digest) != 64 {
		t.Errorf("digest %s did not change with a file: %s", m.Digest, m2.Digest)
	}
	if _, err := Manifest(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("a missing directory hashed without error")
	}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/away" {
			http.Redirect(w, r, "https://production.example/", http.StatusFound)
			return
		}
		fmt.Fprint(w, strings.Repeat("x", 5000))
	}))
	defer srv.Close()
	r := HTTP(srv.URL+"/count", time.Second)
	if r.Status != 200 || r.BodyBytes != 5000 || len(r.Body) != 4096 || r.Remote == "" || r.Error != "" || len(r.BodySHA256) != 64 {
		t.Errorf("%+v", r)
	}
	if r := HTTP(srv.URL+"/away", time.Second); r.Status != http.StatusFound {
		t.Errorf("followed a redirect: %+v", r)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if r := HTTP("http://"+addr+"/", time.Second); r.Status != 0 || !strings.Contains(r.Error, "refused") {
		t.Errorf("closed port: %+v", r)
	}
}

func TestTCP(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if r := TCP(l.Addr().String(), time.Second); !r.Connected || r.Remote != l.Addr().String() {
		t.Errorf("%+v", r)
	}
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l2.Addr().String()
	l2.Close()
	if r := TCP(closed, time.Second); r.Connected || r.TimedOut || r.Error == "" {
		t.Errorf("refused: %+v", r)
	}
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	r := Isolation(open.Addr().String(), closed, time.Second, time.Second)
	if !r.Allowed.Connected || len(r.Blocked) != 3 || r.Blocked[0].Connected {
		t.Errorf("isolated: %+v %+v", r.Allowed, r.Blocked)
	}
	// Both answering is what a cluster without NetworkPolicy enforcement gives.
	r = Isolation(open.Addr().String(), open.Addr().String(), time.Second, time.Second)
	if !r.Blocked[0].Connected {
		t.Errorf("not isolated, but the probe says blocked: %+v", r.Blocked)
	}
}

func TestUntilRetries(t *testing.T) {
	t.Parallel()
	n := 0
	got, attempts := Until(5*time.Second, func() int { n++; return n }, func(v int) bool { return v == 2 })
	if got != 2 || attempts != 2 {
		t.Errorf("got %d after %d attempts", got, attempts)
	}
	_, attempts = Until(0, func() int { return 0 }, func(int) bool { return false })
	if attempts != 1 {
		t.Errorf("without a window it tries once, not %d times", attempts)
	}
}
