package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
)

// serveProc is one `firedrill serve` process started by a test.
type serveProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *testkit.Buffer
	base   string // http://127.0.0.1:PORT
	done   chan struct{}
	err    error // of Wait, once done is closed
}

var servingAddr = regexp.MustCompile(`msg="serving HTTP" addr=(\S+)`)

// startServe starts the built binary's serve command with --listen 127.0.0.1:0 and waits until
// it logs the address it serves on. The process is killed at the end of the test if still up.
func startServe(t *testing.T, env []string, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(firedrillBin, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &serveProc{t: t, cmd: cmd, stderr: &testkit.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("serve (pid %d) log:\n%s", cmd.Process.Pid, p.stderr.String())
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if m := servingAddr.FindStringSubmatch(p.stderr.String()); m != nil {
			p.base = "http://" + m[1]
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("serve exited before serving: %v\n%s", p.err, p.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start serving within 2m:\n%s", p.stderr.String())
		}
	}
}

// waitLog waits until the log holds a line matching re and returns its submatches.
func (p *serveProc) waitLog(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no log line matching %s within %s", re, timeout)
		}
		select {
		case <-p.done:
			p.t.Fatalf("serve exited (%v) before logging %s", p.err, re)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop sends sig and returns the exit code once the process is gone.
func (p *serveProc) stop(sig os.Signal, timeout time.Duration) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("serve did not exit within %s of %v", timeout, sig)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}

func (p *serveProc) request(method, path, token string) (int, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.base+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *serveProc) getJSON(path string, v any) {
	p.t.Helper()
	code, b := p.request("GET", path, "")
	if code != http.StatusOK {
		p.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		p.t.Fatalf("GET %s: %v\n%s", path, err, b)
	}
}

type runsPage struct {
	Runs []drill.Record `json:"runs"`
	Next string         `json:"next"`
}

// runs returns every run of scenario the API lists, following the pages.
func (p *serveProc) runs(scenario string) []drill.Record {
	p.t.Helper()
	var out []drill.Record
	path := "/api/v1/runs?scenario=" + scenario
	for range 1000 {
		var page runsPage
		p.getJSON(path, &page)
		out = append(out, page.Runs...)
		if page.Next == "" {
			return out
		}
		path = "/api/v1/runs?scenario=" + scenario + "&cursor=" + url.QueryEscape(page.Next)
	}
	p.t.Fatal("more than 1000 pages of runs")
	return nil
}

type scenarioStatus struct {
	Name       string            `json:"name"`
	Schedule   string            `json:"schedule"`
	Error      string            `json:"error"`
	Labels     map[string]string `json:"labels"`
	LastResult string            `json:"lastResult"`
}

func (p *serveProc) scenario(name string) scenarioStatus {
	p.t.Helper()
	var body struct {
		Scenarios []scenarioStatus `json:"scenarios"`
	}
	p.getJSON("/api/v1/scenarios", &body)
	for _, s := range body.Scenarios {
		if s.Name == name {
			return s
		}
	}
	p.t.Fatalf("GET /api/v1/scenarios has no scenario %q: %+v", name, body.Scenarios)
	return scenarioStatus{}
}

// etcdScenario is a quick etcd drill of the sandbox: a snapshot restored into a scratch etcd,
// checked; apiServer adds a scratch kube-apiserver (a child process) and a check through it.
func etcdScenario(name, schedule string, endpoints []string, labels string, apiServer bool) string {
	sched := ""
	if schedule != "" {
		sched = fmt.Sprintf("  schedule: %q\n", schedule)
	}
	restore, served := "  restore: {scratchEtcd: {}}\n", ""
	if apiServer {
		restore = "  restore: {scratchEtcd: {apiServer: {}}}\n"
		served = "    - {name: api serves objects, objectsServed: {namespaces: [default]}}\n"
	}
	if labels == "" {
		labels = "{}"
	}
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s, labels: %s}
spec:
%s  timeout: 5m
  objectives: {rto: 10m, rpo: 1h}
  backup: {etcd: {take: {endpoints: [%s], dialTimeout: 2s}}}
%s  checks:
    - {name: snapshot integrity, etcdIntegrity: {}}
    - {name: every object decodes, etcdObjectsDecode: {}}
    - {name: namespaces present, etcdKeys: {prefix: /registry/namespaces/, min: 4}}
%s`, name, labels, sched, strings.Join(endpoints, ", "), restore, served)
}
