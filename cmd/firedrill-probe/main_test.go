package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// probe runs the command line and decodes its one JSON document.
func probeCLI(t *testing.T, args ...string) (map[string]any, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	var m map[string]any
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("%v: output is not one JSON document: %v\n%s", args, err, out.String())
		}
	}
	return m, code
}

func TestProbes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"count":42}`) }))
	defer srv.Close()

	if m, code := probeCLI(t, "http", srv.URL, "--expect-body", `"count":42`); code != 0 || m["status"] != float64(200) || m["attempts"] != float64(1) {
		t.Errorf("http: exit %d, %v", code, m)
	}
	// Flags before the argument work too.
	if m, code := probeCLI(t, "http", "-timeout", "2s", srv.URL); code != 0 || m["status"] != float64(200) {
		t.Errorf("http, flags first: exit %d, %v", code, m)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	// A refused connection is a result: the probe ran.
	if m, code := probeCLI(t, "tcp", closed); code != 0 || m["connected"] != false {
		t.Errorf("tcp to a closed port: exit %d, %v", code, m)
	}
	if m, code := probeCLI(t, "isolation", srv.Listener.Addr().String(), "--blocked", closed); code != 0 || m["allowed"].(map[string]any)["connected"] != true {
		t.Errorf("isolation: exit %d, %v", code, m)
	}

	dir := t.TempDir()
	filled, code := probeCLI(t, "fill", "--files", "3", "--size", "4096", "--seed", "42", dir)
	if code != 0 || len(filled["files"].([]any)) != 3 || filled["totalBytes"] != float64(3*4096) {
		t.Fatalf("fill: exit %d, %v", code, filled)
	}
	// What fill wrote, manifest reads back; a restore marker is left out when asked.
	os.MkdirAll(filepath.Join(dir, ".velero"), 0o755)
	os.WriteFile(filepath.Join(dir, ".velero", "uid"), nil, 0o644)
	if m, _ := probeCLI(t, "manifest", "-exclude", ".velero", dir); m["digest"] != filled["digest"] {
		t.Errorf("manifest after fill: digest %v, want %v", m["digest"], filled["digest"])
	}
	if m, _ := probeCLI(t, "manifest", dir); m["digest"] == filled["digest"] {
		t.Error("the marker should count when not excluded")
	}
	// The same seed writes the same bytes.
	again, _ := probeCLI(t, "fill", "--files", "3", "--size", "4096", "--seed", "42", t.TempDir())
	if again["digest"] != filled["digest"] {
		t.Error("fill is not deterministic")
	}
	if m, code := probeCLI(t, "manifest", filepath.Join(dir, "missing")); code != 1 || m != nil {
		t.Errorf("manifest of a missing directory: exit %d, %v", code, m)
	}

	if m, code := probeCLI(t, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"); code != 0 || m["exitCode"] != float64(3) ||
		strings.TrimSpace(m["stdout"].(string)) != "out" || strings.TrimSpace(m["stderr"].(string)) != "err" {
		t.Errorf("run: exit %d, %v", code, m)
	}
	if _, code := probeCLI(t, "sleep", "10ms"); code != 0 {
		t.Errorf("sleep: exit %d", code)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"nope", "x"}, {"http"}, {"http", "a", "b"}, {"http", "http://x", "--expect-body", "("},
		{"isolation", "127.0.0.1:1"}, {"run"}, {"sleep", "soon"}, {"serve", "extra"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q: want a usage error", args, code, strings.TrimSpace(errb.String()))
		}
	}
}
