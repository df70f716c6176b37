package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// testDriver stands in for a backup kind's driver. The service reaches drivers only through
// Config.Drivers and knows nothing of what they do; everything else in these tests (history,
// spool, scheduler, HTTP API, metrics, notifications, PostgreSQL) is real. A scenario labelled
// drill: fail fails its check; one labelled drill: gated waits in restore until the test opens
// the gate or the drill is aborted; one labelled drill: broken cannot be drilled.
type testDriver struct {
	hooks *driverHooks
}

// driverHooks are what a test sees of, and does to, the drills of one service.
type driverHooks struct {
	restoring chan string   // a gated drill's run id, when its restore starts
	gate      chan struct{} // closed: gated restores go on
	cleanups  atomic.Int32
}

func newHooks() *driverHooks {
	return &driverHooks{restoring: make(chan string, 16), gate: make(chan struct{})}
}

func (h *driverHooks) drivers() *drill.Registry { return drill.NewRegistry(testDriver{hooks: h}) }

func (d testDriver) Kind() string { return "etcd" }

func (d testDriver) NewRun(sc *scenarios.Scenario, rc *drill.RunContext) (drill.Run, error) {
	if sc.Metadata.Labels["drill"] == "broken" {
		return nil, errors.New("no driver for this scenario")
	}
	return &testRun{sc: sc, rc: rc, hooks: d.hooks}, nil
}

type testRun struct {
	sc    *scenarios.Scenario
	rc    *drill.RunContext
	hooks *driverHooks
}

func (r *testRun) Preflight(context.Context) error { return nil }
func (r *testRun) Backup(context.Context) (drill.BackupRecord, error) {
	created := time.Now().UTC()
	b := drill.BackupRecord{Kind: "test", Source: "take", CreatedAt: &created}
	if r.rc.Seed != nil { // as a driver that chooses at random records a given seed
		b.Selection = &drill.SelectionRecord{Method: "random", Seed: r.rc.Seed, SeedGiven: true, Candidates: []drill.SelectionCandidate{}}
	}
	return b, nil
}
func (r *testRun) Restore(ctx context.Context) error {
	if r.sc.Metadata.Labels["drill"] != "gated" {
		return nil
	}
	r.hooks.restoring <- r.rc.ID
	select {
	case <-r.hooks.gate:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
func (r *testRun) Checks(restored bool) []drill.Check {
	c := drill.Check{Name: "keys", Type: "etcdKeys"}
	if restored {
		c.Run = func(context.Context) drill.CheckOutcome {
			if r.sc.Metadata.Labels["drill"] == "fail" {
				return drill.CheckOutcome{Result: drill.Failed, Message: "the backup is not good enough", Evidence: map[string]any{}}
			}
			return drill.CheckOutcome{Result: drill.Passed, Message: "fine", Evidence: map[string]any{}}
		}
	}
	return []drill.Check{c}
}
func (r *testRun) Target() *drill.TargetRecord { return nil }
func (r *testRun) Cleanup(context.Context, bool) error {
	r.hooks.cleanups.Add(1)
	return nil
}
func (r *testRun) Plan(*drill.Plan) {}

var _ drill.Driver = testDriver{}

// scenario is a valid scenario file; kind is the test driver's label (pass, fail, gated, broken).
func scenario(name, schedule, kind string) string {
	sched := ""
	if schedule != "" {
		sched = fmt.Sprintf("  schedule: %q\n", schedule)
	}
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s, labels: {drill: %s}}
spec:
%s  timeout: 5m
  backup: {etcd: {take: {endpoints: ["http://127.0.0.1:1"]}}}
  restore: {scratchEtcd: {}}
  checks:
    - {name: keys, etcdKeys: {prefix: /registry/, min: 1}}
`, name, kind, sched)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// openSQLite opens a history file in a temporary directory.
func openSQLite(t *testing.T) *history.Store {
	t.Helper()
	s, err := history.Open(t.Context(), filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testConfig is a Config for a service on a free loopback port over store and the scenarios
// of dir, with its log in log.
func testConfig(t *testing.T, store *history.Store, dir string, hooks *driverHooks, log io.Writer) Config {
	return Config{
		Listen: "127.0.0.1:0", Store: store, SpoolDir: t.TempDir(), SpoolFlushInterval: 100 * time.Millisecond,
		ScenariosDir: dir, Drivers: hooks.drivers(), MaxConcurrent: 2, StartingDeadline: time.Hour,
		ShutdownGrace: time.Minute, Runner: drill.RunnerInfo{Host: "test", PID: os.Getpid(), Version: "test"},
		Operator: "tester@test", Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// running is a service whose Run goes on in the background.
type running struct {
	t    *testing.T
	svc  *Service
	base string
	err  chan error // Run's result
}

// start runs svc until the test ends (or the test stops it) and returns it.
func start(ctx context.Context, t *testing.T, svc *Service) *running {
	t.Helper()
	r := &running{t: t, svc: svc, base: "http://" + svc.Addr().String(), err: make(chan error, 1)}
	go func() { r.err <- svc.Run(ctx) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		svc.Shutdown(ctx)
	})
	return r
}

// wait returns Run's result.
func (r *running) wait(timeout time.Duration) error {
	r.t.Helper()
	select {
	case err := <-r.err:
		return err
	case <-time.After(timeout):
		r.t.Fatalf("Run did not return within %s", timeout)
		return nil
	}
}

func (r *running) request(method, path, token string) (int, string) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+path, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// trigger starts a run through the API and returns its id.
func (r *running) trigger(scenario, token string) string {
	r.t.Helper()
	code, body := r.request("POST", "/api/v1/scenarios/"+scenario+"/runs", token)
	var v struct{ ID string }
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &v) != nil || v.ID == "" {
		r.t.Fatalf("trigger %s: %d %s", scenario, code, body)
	}
	return v.ID
}

// run returns the run as the API has it; ok is false until it is there.
func (r *running) run(id string) (rec drill.Record, ok bool) {
	r.t.Helper()
	code, body := r.request("GET", "/api/v1/runs/"+id, "")
	if code == http.StatusNotFound {
		return rec, false
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rec) != nil {
		r.t.Fatalf("GET /api/v1/runs/%s: %d %s", id, code, body)
	}
	return rec, true
}

// finished waits until the run is final and returns it.
func (r *running) finished(id string) drill.Record {
	r.t.Helper()
	var rec drill.Record
	testkit.EventuallyTrue(r.t, time.Minute, "run "+id+" finishes", func() bool {
		var ok bool
		rec, ok = r.run(id)
		return ok && rec.Result != drill.Running
	})
	return rec
}

// metric reports whether /metrics has a line starting with line.
func (r *running) metric(line string) bool {
	_, m := r.request("GET", "/metrics", "")
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, line) {
			return true
		}
	}
	return false
}
