package service

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/pgtest"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/notify"
)

// One service in-process: the API and dashboard answer on the address it reports, scheduled and
// triggered drills are recorded, failures are notified, Reload reads what the watch can't see,
// and Shutdown gives the drill in flight the grace it is handed, with /readyz saying so.
func TestServiceSchedulesServesAndShutsDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "sched.yaml", scenario("sched", "@every 1s", "pass"))
	writeFile(t, dir, "failing.yaml", scenario("failing", "", "fail"))
	writeFile(t, dir, "gated.yaml", scenario("gated", "", "gated"))
	writeFile(t, dir, "nodriver.yaml", scenario("nodriver", "", "broken"))
	writeFile(t, dir, "broken.yaml", "apiVersion: firedrill.dev/v1alpha1\nkind: Scenario\n")
	// A file reached through a symlink whose target lives elsewhere: changing the target makes
	// no event in the watched directory, so only Reload picks it up.
	hupTarget := writeFile(t, t.TempDir(), "hup.yaml", scenario("hup", "", "pass"))
	if err := os.Symlink(hupTarget, filepath.Join(dir, "hup.yaml")); err != nil {
		t.Fatal(err)
	}
	events := make(chan notify.Event, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e notify.Event
		if err := json.NewDecoder(r.Body).Decode(&e); err == nil {
			events <- e
		}
	}))
	defer hook.Close()

	hooks := newHooks()
	store := openSQLite(t)
	var log testkit.Buffer
	cfg := testConfig(t, store, dir, hooks, &log)
	cfg.Token = "s3cret"
	cfg.Webhooks = []string{hook.URL}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := start(context.Background(), t, svc)

	if code, _ := r.request("GET", "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := r.request("GET", "/readyz", ""); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	var list struct {
		Scenarios []struct{ Name, Error string }
	}
	if _, body := r.request("GET", "/api/v1/scenarios", ""); json.Unmarshal([]byte(body), &list) != nil {
		t.Fatalf("/api/v1/scenarios: %s", body)
	}
	got := map[string]string{}
	for _, s := range list.Scenarios {
		got[s.Name] = s.Error
	}
	for _, name := range []string{"sched", "failing", "gated", "nodriver", "hup"} {
		if e, ok := got[name]; !ok || e != "" {
			t.Errorf("scenario %s: listed %v, error %q", name, ok, e)
		}
	}
	if got["broken.yaml"] == "" {
		t.Errorf("the invalid file is not listed with its error: %v", got)
	}

	testkit.EventuallyTrue(t, time.Minute, "a scheduled run of sched passes", func() bool {
		var page struct{ Runs []drill.Record }
		_, body := r.request("GET", "/api/v1/runs?scenario=sched", "")
		json.Unmarshal([]byte(body), &page)
		for _, rec := range page.Runs {
			if rec.Trigger == "schedule" && rec.Result == drill.Passed && rec.ScheduledFor != nil {
				return true
			}
		}
		return false
	})
	testkit.EventuallyTrue(t, 10*time.Second, "the pass counted in /metrics", func() bool {
		return r.metric(`firedrill_runs_total{result="passed",scenario="sched"}`)
	})

	if code, body := r.request("POST", "/api/v1/scenarios/failing/runs", ""); code != http.StatusUnauthorized {
		t.Errorf("POST without the token: %d %s, want 401", code, body)
	}
	id := r.trigger("failing", "s3cret")
	if rec := r.finished(id); rec.Result != drill.Failed || rec.Trigger != "api" {
		t.Errorf("run %s of failing: %s by %s (%s), want failed by api", id, rec.Result, rec.Trigger, rec.Message)
	}
	select {
	case e := <-events:
		if e.Event != notify.EventFailure || e.Scenario != "failing" || e.RunID != id {
			t.Errorf("notification %+v, want the failure of run %s", e, id)
		}
	case <-time.After(30 * time.Second):
		t.Error("no notification of the failed drill within 30s")
	}
	id = r.trigger("nodriver", "s3cret")
	if rec := r.finished(id); rec.Result != drill.Error || !strings.Contains(rec.Message, "no driver for this scenario") {
		t.Errorf("a run whose driver can't be built: %s (%s), want error with the reason", rec.Result, rec.Message)
	}

	if err := os.WriteFile(hupTarget+".new", []byte(scenario("hup", "", "fail")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(hupTarget+".new", hupTarget); err != nil {
		t.Fatal(err)
	}
	svc.Reload()
	testkit.EventuallyTrue(t, 30*time.Second, "hup reloaded", func() bool {
		var body struct {
			Scenarios []struct {
				Name   string
				Labels map[string]string
			}
		}
		_, b := r.request("GET", "/api/v1/scenarios", "")
		json.Unmarshal([]byte(b), &body)
		for _, s := range body.Scenarios {
			if s.Name == "hup" {
				return s.Labels["drill"] == "fail"
			}
		}
		return false
	})

	id = r.trigger("gated", "s3cret")
	waitRestoring(t, hooks, id)
	grace, endGrace := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Shutdown(grace) }()
	testkit.EventuallyTrue(t, 30*time.Second, "/readyz says shutting down", func() bool {
		code, body := r.request("GET", "/readyz", "")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	})
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) before its grace ended, with a drill in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	endGrace()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Shutdown did not return within 1m of its grace")
	}
	if err := r.wait(time.Second); err != nil {
		t.Errorf("Run: %v", err)
	}
	assertAbortedAndCleaned(t, store, id)
	if _, err := http.Get(r.base + "/healthz"); err == nil {
		t.Error("the HTTP server still answers after Shutdown")
	}
	for _, want := range []string{`msg="serving HTTP" addr=` + svc.Addr().String(), `msg=stopped`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// The end of Run's context (SIGTERM for `firedrill serve`) lets a drill in flight finish within
// Config.ShutdownGrace, and aborts it, with its cleanup, after that.
func TestServiceShutdownGrace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grace time.Duration
		want  drill.Result
	}{
		{"finishes within the grace", time.Minute, drill.Passed},
		{"aborted after the grace", 50 * time.Millisecond, drill.Aborted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, dir, "gated.yaml", scenario("gated", "", "gated"))
			hooks := newHooks()
			store := openSQLite(t)
			cfg := testConfig(t, store, dir, hooks, &testkit.Buffer{})
			cfg.Token, cfg.ShutdownGrace = "s3cret", tc.grace
			svc, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, terminate := context.WithCancel(context.Background())
			r := start(ctx, t, svc)
			id := r.trigger("gated", "s3cret")
			waitRestoring(t, hooks, id)
			terminate()
			if tc.want == drill.Passed {
				testkit.EventuallyTrue(t, 30*time.Second, "/readyz says shutting down", func() bool {
					code, _ := r.request("GET", "/readyz", "")
					return code == http.StatusServiceUnavailable
				})
				close(hooks.gate)
			}
			if err := r.wait(time.Minute); err != nil {
				t.Errorf("Run: %v", err)
			}
			rec, err := store.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Result != tc.want {
				t.Errorf("the drill in flight: %s (%s), want %s", rec.Result, rec.Message, tc.want)
			}
			if hooks.cleanups.Load() != 1 {
				t.Errorf("cleanup ran %d times, want once", hooks.cleanups.Load())
			}
		})
	}
}

// Run writes the records an earlier process spooled before it marks that process's runs
// aborted (a spooled final record is the truth about its run), then seeds the metrics from the
// history, before it serves.
func TestServiceReplaysSpoolThenMarksAbandonedThenSeeds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "history.db")
	store, err := history.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	dead := history.CurrentRunner()
	dead.StartTicks++ // this pid, another start time: a process that is gone
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	begun := func(id string) *drill.Record {
		r := &drill.Record{ID: id, Scenario: "seeded", Trigger: "manual", Result: drill.Running, StartedAt: at, Runner: dead,
			Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{}, Checks: []drill.CheckRecord{}}
		if err := store.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	spooled, left := begun("spooled-run"), begun("left-running")
	// The dead process finished spooled-run while the history was down: its record is in the spool.
	down, err := history.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	down.Close()
	spoolDir := t.TempDir()
	sp, err := history.NewSpool(down, spoolDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	end := at.Add(time.Minute)
	spooled.Result, spooled.FinishedAt = drill.Passed, &end
	if err := sp.Finish(ctx, spooled); err != nil || sp.Pending() != 1 {
		t.Fatalf("spool the final record: %v, %d pending", err, sp.Pending())
	}

	dir := t.TempDir()
	writeFile(t, dir, "seeded.yaml", scenario("seeded", "", "pass"))
	var log testkit.Buffer
	cfg := testConfig(t, store, dir, newHooks(), &log)
	cfg.SpoolDir = spoolDir
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := start(ctx, t, svc)
	testkit.EventuallyTrue(t, 30*time.Second, "serving", func() bool {
		_, err := net.DialTimeout("tcp", svc.Addr().String(), time.Second)
		return err == nil
	})
	for id, want := range map[string]drill.Result{spooled.ID: drill.Passed, left.ID: drill.Aborted} {
		if rec, ok := r.run(id); !ok || rec.Result != want {
			t.Errorf("run %s: %s (%s), want %s", id, rec.Result, rec.Message, want)
		}
	}
	if !r.metric(`firedrill_last_success_timestamp_seconds{scenario="seeded"}`) {
		t.Error("the last success is not seeded from the history")
	}
	if !r.metric("firedrill_history_spooled_records 0") {
		t.Error("firedrill_history_spooled_records is not 0 after the replay")
	}
	if !strings.Contains(log.String(), `msg="replayed spooled records" written=1 left=0`) {
		t.Errorf("the replay is not logged:\n%s", log.String())
	}
}

// New refuses what a flag can fix with a *ConfigError, and gives back the address it bound.
func TestNewRefuses(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	dir := t.TempDir()
	file := writeFile(t, t.TempDir(), "file", "x")
	for _, tc := range []struct {
		name   string
		change func(*Config)
		config bool // a *ConfigError
		want   string
	}{
		{"scenario directory", func(c *Config) { c.ScenariosDir = filepath.Join(dir, "missing") }, true, "scenarios: "},
		{"webhook", func(c *Config) { c.Webhooks = []string{"not a url"} }, true, "notifications: "},
		{"notifications file", func(c *Config) { c.NotifyFile = file }, true, "notifications: --notify-config " + file},
		{"half a key pair", func(c *Config) { c.TLSCertFile = file }, true, "--tls-cert-file and --tls-key-file go together"},
		{"key pair", func(c *Config) { c.TLSCertFile, c.TLSKeyFile = file, file }, true, "TLS key pair"},
		{"no cluster for the Lease", func(c *Config) { c.LeaderElection = &LeaderElection{Namespace: "default"} }, true, "--leader-elect"},
		{"no cluster for Scenarios", func(c *Config) { c.ScenariosDir, c.ClusterScenarios = "", &ClusterScenarios{} }, true, "--scenarios-from cluster: no Kubernetes configuration"},
		{"no scenarios at all", func(c *Config) { c.ScenariosDir = "" }, false, "ScenariosDir or ClusterScenarios"},
		{"spool", func(c *Config) { c.SpoolDir = filepath.Join(file, "spool") }, false, "choose a writable --spool-dir"},
		{"no drivers", func(c *Config) { c.Drivers = nil }, false, "Drivers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, store, dir, newHooks(), &testkit.Buffer{})
			cfg.Listener = ln
			tc.change(&cfg)
			_, err = New(cfg)
			var ce *ConfigError
			if err == nil || errors.As(err, &ce) != tc.config || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want %q, a *ConfigError: %v", err, tc.want, tc.config)
			}
			if ce != nil && tc.name == "scenario directory" && !strings.Contains(ce.Hint, "--scenarios") {
				t.Errorf("hint %q does not name --scenarios", ce.Hint)
			}
			assertClosed(t, ln)
		})
	}
}

func TestShutdownBeforeRun(t *testing.T) {
	t.Parallel()
	svc, err := New(testConfig(t, openSQLite(t), t.TempDir(), newHooks(), &testkit.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, svc.ln)
	if err := svc.Run(context.Background()); err == nil {
		t.Error("Run after Shutdown: no error")
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "localhost:80": true, "[::1]:8080": true, ":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.1:80": false} {
		if isLoopback(addr) != want {
			t.Errorf("isLoopback(%q) = %v", addr, !want)
		}
	}
}

// assertClosed fails unless ln was closed.
func assertClosed(t *testing.T, ln net.Listener) {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		ln.Close()
		t.Errorf("the listener on %s is still open (Accept: %v)", ln.Addr(), err)
	}
}

func waitRestoring(t *testing.T, hooks *driverHooks, id string) {
	t.Helper()
	select {
	case got := <-hooks.restoring:
		if got != id {
			t.Fatalf("restoring run %s, want %s", got, id)
		}
	case <-time.After(time.Minute):
		t.Fatalf("run %s did not reach its restore within 1m", id)
	}
}

func assertAbortedAndCleaned(t *testing.T, store *history.Store, id string) {
	t.Helper()
	rec, err := store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Result != drill.Aborted {
		t.Errorf("the drill in flight when the grace ended: %s (%s), want aborted", rec.Result, rec.Message)
	}
	cleaned := false
	for _, s := range rec.Steps {
		cleaned = cleaned || s.Name == drill.StepCleanup && s.Result == drill.Passed
	}
	if !cleaned {
		t.Errorf("the aborted drill did not clean up: %+v", rec.Steps)
	}
}

// The history goes away while a drill runs: /readyz says so, the final record is spooled and
// counted, and it is written once when the history is back.
func TestServiceSpoolsWhileHistoryIsDown(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	pg := pgtest.Start(t)
	store, err := history.Open(ctx, pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	dir := t.TempDir()
	writeFile(t, dir, "gated.yaml", scenario("gated", "", "gated"))
	hooks := newHooks()
	cfg := testConfig(t, store, dir, hooks, &testkit.Buffer{})
	cfg.Token = "s3cret"
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := start(ctx, t, svc)
	id := r.trigger("gated", "s3cret")
	waitRestoring(t, hooks, id)
	pg.Stop(t)
	close(hooks.gate)
	testkit.EventuallyTrue(t, time.Minute, "the final record is spooled", func() bool {
		entries, _ := os.ReadDir(cfg.SpoolDir)
		return len(entries) == 1
	})
	if code, body := r.request("GET", "/readyz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the history down: %d %s, want 503", code, body)
	}
	testkit.EventuallyTrue(t, 10*time.Second, "firedrill_history_spooled_records 1", func() bool { return r.metric("firedrill_history_spooled_records 1") })

	pg.Restart(t)
	testkit.EventuallyTrue(t, time.Minute, "the spool is written and empty", func() bool {
		entries, _ := os.ReadDir(cfg.SpoolDir)
		return len(entries) == 0 && r.metric("firedrill_history_spooled_records 0")
	})
	if rec := r.finished(id); rec.Result != drill.Passed {
		t.Errorf("the spooled run: %s (%s), want passed", rec.Result, rec.Message)
	}
	runs, err := store.List(ctx, history.Filter{Scenario: "gated"})
	if err != nil || len(runs) != 1 {
		t.Errorf("the history has %d runs of gated (%v), want the one, once", len(runs), err)
	}
	if err := svc.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
