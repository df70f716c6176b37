package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// drillEnv is the environment of a user running drills: a private history, temp dir and bin dir.
func drillEnv(t *testing.T, sb *sandbox.Sandbox) (env []string, tmp string) {
	t.Helper()
	tmp = t.TempDir()
	return []string{"FIREDRILL_HISTORY=" + filepath.Join(t.TempDir(), "history.db"), "TMPDIR=" + tmp, "FIREDRILL_BIN_DIR=" + sb.BinDir()}, tmp
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func takeScenario(name string, endpoints []string) string {
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s}
spec:
  objectives: {rto: 10m, rpo: 1h}
  backup:
    etcd:
      take: {endpoints: [%s], dialTimeout: 2s}
  restore:
    scratchEtcd:
      apiServer: {}
  checks:
    - {name: snapshot integrity, etcdIntegrity: {}}
    - {name: every object decodes, etcdObjectsDecode: {}}
    - {name: namespaces present, etcdKeys: {prefix: /registry/namespaces/, min: 4}}
    - {name: api serves objects, objectsServed: {namespaces: [default]}}
    - {name: data is fresh, canary: {}}
`, name, strings.Join(endpoints, ", "))
}

func TestRunPlanHistoryShow(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{})
	env, tmp := drillEnv(t, sb)
	file := writeFile(t, t.TempDir(), "drill.yaml", takeScenario("e2e-take", sb.EtcdEndpoints()))

	plan := firedrill(t, env, "plan", file)
	if plan.code != 0 || !strings.Contains(plan.stdout, "Preflight: ok") || !strings.Contains(plan.stdout, "canary key /firedrill/canary/e2e-take") {
		t.Fatalf("plan: exit %d\n%s%s", plan.code, plan.stdout, plan.stderr)
	}

	run := firedrill(t, env, "run", file, "-o", "json")
	if run.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", run.code, run.stdout, run.stderr)
	}
	// The record's JSON is a documented interface (docs/history.md): check the fields it promises.
	var rec map[string]any
	if err := json.Unmarshal([]byte(run.stdout), &rec); err != nil {
		t.Fatalf("run -o json: %v\n%s", err, run.stdout)
	}
	for _, k := range []string{"id", "scenario", "trigger", "operator", "result", "startedAt", "finishedAt", "rtoSeconds", "rpoSeconds", "objectives", "backup", "steps", "checks", "prevHash", "hash"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("run record lacks %q", k)
		}
	}
	if rec["result"] != "passed" || rec["scenario"] != "e2e-take" || rec["trigger"] != "manual" {
		t.Errorf("record %v %v %v", rec["result"], rec["scenario"], rec["trigger"])
	}
	checks, _ := rec["checks"].([]any)
	if len(checks) != 5 {
		t.Fatalf("%d checks", len(checks))
	}
	for _, c := range checks {
		c := c.(map[string]any)
		for _, k := range []string{"name", "type", "result", "message", "evidence"} {
			if _, ok := c[k]; !ok {
				t.Errorf("check record lacks %q: %v", k, c)
			}
		}
	}
	for _, s := range rec["steps"].([]any) {
		s := s.(map[string]any)
		for _, k := range []string{"name", "result", "startedAt", "finishedAt"} {
			if _, ok := s[k]; !ok {
				t.Errorf("step record lacks %q: %v", k, s)
			}
		}
	}
	if !strings.Contains(run.stderr, "step restore") || !strings.Contains(run.stderr, "step verify") {
		t.Errorf("no progress lines on stderr:\n%s", run.stderr)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("run left files in TMPDIR: %v", entries)
	}

	id := rec["id"].(string)
	hist := firedrill(t, env, "history", "--scenario", "e2e-take", "--since", "1h")
	if hist.code != 0 || !strings.Contains(hist.stdout, id) || !strings.Contains(hist.stdout, "passed") {
		t.Errorf("history: exit %d\n%s%s", hist.code, hist.stdout, hist.stderr)
	}
	if r := firedrill(t, env, "history", "--result", "failed", "-o", "json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("history --result failed: %d %q", r.code, r.stdout)
	}
	show := firedrill(t, env, "show", id[:len(id)-3])
	if show.code != 0 || !strings.Contains(show.stdout, "PASSED") || !strings.Contains(show.stdout, "every object decodes") || !strings.Contains(show.stdout, "evidence of") {
		t.Errorf("show: exit %d\n%s%s", show.code, show.stdout, show.stderr)
	}
	if r := firedrill(t, env, "show", "19990101"); r.code != exitUsage || !strings.Contains(r.stderr, "no such run") {
		t.Errorf("show unknown: %d %q", r.code, r.stderr)
	}
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{})
	env, _ := drillEnv(t, sb)
	dir := t.TempDir()

	// A snapshot with one flipped byte: the drill ran and the backup is bad → 1.
	snaps := t.TempDir()
	s, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: sb.EtcdEndpoints(), Path: filepath.Join(snaps, "etcd.db")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(s.Path)
	b[len(b)/2] ^= 1
	os.WriteFile(s.Path, b, 0o644)
	corrupt := writeFile(t, dir, "corrupt.yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: corrupt}
spec:
  backup: {etcd: {latestFrom: {dir: %s}}}
  restore: {scratchEtcd: {}}
  checks: [{name: snapshot integrity, etcdIntegrity: {}}]
`, snaps))
	if r := firedrill(t, env, "run", corrupt); r.code != exitFailed || !strings.Contains(r.stdout, "snapshot integrity check failed") || !strings.Contains(r.stdout, "✗ snapshot integrity") {
		t.Errorf("corrupt snapshot: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Nothing answers → the drill could not be carried out → 3, endpoints named.
	unreachable := writeFile(t, dir, "unreachable.yaml", takeScenario("unreachable", []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}))
	if r := firedrill(t, env, "run", unreachable); r.code != exitError || !strings.Contains(r.stdout, "127.0.0.1:1") || !strings.Contains(r.stdout, "127.0.0.1:2") {
		t.Errorf("unreachable: exit %d, want 3\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A malformed scenario → 2, with file:line, and nothing runs.
	bad := writeFile(t, dir, "bad.yaml", "apiVersion: firedrill.dev/v1alpha1\nkind: Scenario\nmetadata: {name: bad}\nspec:\n  bakup: {}\n")
	if r := firedrill(t, env, "run", bad); r.code != exitUsage || !strings.Contains(r.stderr, "bad.yaml:5") {
		t.Errorf("bad scenario: exit %d, want 2\n%s", r.code, r.stderr)
	}
	if r := firedrill(t, env, "run", "no-such-scenario"); r.code != exitUsage || !strings.Contains(r.stderr, "--scenarios") {
		t.Errorf("unknown name: exit %d %q", r.code, r.stderr)
	}
	// Both good runs and bad ones are in the history.
	h := firedrill(t, env, "history", "-o", "json")
	var runs []map[string]any
	if err := json.Unmarshal([]byte(h.stdout), &runs); err != nil || len(runs) != 2 {
		t.Errorf("history after two runs: %v %d\n%s", err, len(runs), h.stdout)
	}
}

// slowProxy forwards TCP to target, delivering the server's bytes at about rate bytes per second,
// like a congested link; it makes a snapshot take long enough to interrupt.
func slowProxy(t *testing.T, target string, rate int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				defer s.Close()
				go io.Copy(s, c)
				buf := make([]byte, rate/10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

func TestRunInterruptedDuringSnapshotLeavesNothing(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Start(t, sandbox.Options{})
	env, tmp := drillEnv(t, sb)
	// 4 MiB of data behind a 512 KiB/s link: the snapshot takes about 8 s.
	c, err := etcd.NewClient(sb.EtcdEndpoints(), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := c.Put(context.Background(), fmt.Sprintf("/e2e/blob-%02d", i), strings.Repeat("x", 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	proxy := slowProxy(t, strings.TrimPrefix(sb.EtcdEndpoints()[0], "http://"), 512<<10)
	keep := t.TempDir()
	file := writeFile(t, t.TempDir(), "drill.yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: slow}
spec:
  backup: {etcd: {take: {endpoints: [%s], dir: %s}}}
  restore: {scratchEtcd: {}}
  checks: [{etcdIntegrity: {}}, {canary: {}}]
`, proxy, keep))

	cmd := exec.Command(firedrillBin, "run", file)
	cmd.Env = append(os.Environ(), env...)
	var stdout bytes.Buffer
	stderr := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), "taking a snapshot") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the snapshot never started:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // well into the stream
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("interrupted run: %v, want exit 130\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "ABORTED") {
		t.Errorf("no aborted summary:\n%s", stdout.String())
	}
	if entries, _ := os.ReadDir(keep); len(entries) != 0 {
		t.Errorf("interrupted snapshot left files: %v", entries)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("interrupted run left files in TMPDIR: %v", entries)
	}
	h := firedrill(t, env, "history", "-o", "json")
	if !strings.Contains(h.stdout, `"result": "aborted"`) {
		t.Errorf("history does not show the aborted run:\n%s", h.stdout)
	}
	// The canary written before the snapshot is removed even though the run was interrupted.
	c, _ = etcd.NewClient(sb.EtcdEndpoints(), nil, 5*time.Second)
	defer c.Close()
	if r, err := c.Get(context.Background(), "/firedrill/canary/slow"); err != nil || r.Count != 0 {
		t.Errorf("canary left behind: %v %v", r, err)
	}
}

func TestSnapshotAndRestoreEtcdCommands(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{})
	dir := t.TempDir()
	out := filepath.Join(dir, "etcd.db")
	ep := strings.Join(sb.EtcdEndpoints(), ",")
	r := firedrill(t, nil, "snapshot", "etcd", "--endpoints", ep, "--out", out)
	if r.code != 0 || !strings.Contains(r.stdout, "sha256:") || !strings.Contains(r.stdout, "revision:") {
		t.Fatalf("snapshot etcd: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := firedrill(t, nil, "snapshot", "etcd", "--endpoints", ep, "--out", out); r.code != exitUsage || !strings.Contains(r.stderr, "--force") {
		t.Errorf("snapshot over an existing file: exit %d %q", r.code, r.stderr)
	}
	if r := firedrill(t, []string{"FIREDRILL_ETCD_ENDPOINTS=" + ep}, "snapshot", "etcd", "--out", out, "--force", "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"sha256"`) {
		t.Errorf("snapshot --force with endpoints from the env: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	data := filepath.Join(dir, "restored")
	r = firedrill(t, nil, "restore", "etcd", out, "--data-dir", data, "--bump-revision", "1000000000", "--mark-compacted")
	if r.code != 0 || !strings.Contains(r.stdout, "Next steps of etcd's recovery procedure") {
		t.Fatalf("restore etcd: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "member", "snap", "db")); err != nil {
		t.Errorf("restored data dir incomplete: %v", err)
	}
	if r := firedrill(t, nil, "restore", "etcd", out, "--data-dir", data); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("restore over a non-empty dir: exit %d %q", r.code, r.stderr)
	}
	if r := firedrill(t, nil, "restore", "etcd", out, "--data-dir", filepath.Join(dir, "x"), "--bump-revision", "5"); r.code != exitUsage {
		t.Errorf("bump without mark-compacted: exit %d", r.code)
	}
	b, _ := os.ReadFile(out)
	b[len(b)/2] ^= 1
	corrupt := filepath.Join(dir, "corrupt.db")
	os.WriteFile(corrupt, b, 0o644)
	if r := firedrill(t, nil, "restore", "etcd", corrupt, "--data-dir", filepath.Join(dir, "c")); r.code != exitFailed || !strings.Contains(r.stderr, "corrupt") {
		t.Errorf("restore corrupt: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); !os.IsNotExist(err) {
		t.Errorf("a refused restore created its data dir: %v", err)
	}
}

func TestDemoScenarioValidates(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../hack/demo/etcd-drill.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, t.TempDir(), "demo.yaml", strings.ReplaceAll(string(b), "@ETCD_ENDPOINT@", "http://127.0.0.1:2379"))
	if r := inProcess("scenario", "validate", file); r.code != 0 {
		t.Errorf("the demo's scenario does not validate:\n%s%s", r.stdout, r.stderr)
	}
}

func TestDemoVeleroScenarioValidates(t *testing.T) {
	t.Parallel()
	if r := inProcess("scenario", "validate", "../../hack/demo/velero-drill.yaml"); r.code != 0 {
		t.Errorf("the demo's Velero scenario does not validate:\n%s%s", r.stdout, r.stderr)
	}
}
