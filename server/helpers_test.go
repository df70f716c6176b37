package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func ptr[T any](v T) *T { return &v }

// openHistory opens a real SQLite history in a temporary directory.
func openHistory(t testing.TB) *history.Store {
	t.Helper()
	s, err := history.Open(context.Background(), filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// t0 is a fixed time the fixtures count from (whole seconds: the store keeps what it is given).
var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// record returns a final record of scenario started at t0+at, that took 90s.
func record(id, scenario string, result drill.Result, at time.Duration) *drill.Record {
	start := t0.Add(at)
	end := start.Add(90 * time.Second)
	r := &drill.Record{
		ID: id, Scenario: scenario, Trigger: "schedule", Operator: "", Result: result,
		StartedAt: start, FinishedAt: &end,
		Backup: drill.BackupRecord{Kind: "etcd-snapshot", Source: "take", SHA256: strings.Repeat("ab", 32), SizeBytes: 4096, Revision: 42},
		Steps: []drill.StepRecord{
			{Name: drill.StepPreflight, Result: drill.Passed, StartedAt: start, FinishedAt: ptr(start.Add(time.Second))},
			{Name: drill.StepRestore, Result: result, StartedAt: start.Add(time.Second), FinishedAt: &end},
		},
		Checks:     []drill.CheckRecord{{Name: "keys", Type: "etcdKeys", Result: result, Message: "12 keys", Evidence: map[string]any{"keys": 12}, Seconds: 0.5}},
		Objectives: []drill.ObjectiveRecord{},
		Runner:     drill.RunnerInfo{Host: "test", PID: 1},
	}
	if result == drill.Passed {
		rto, rpo := 30.0+at.Hours()/24, 600.0 // a second more per day
		r.RTOSeconds, r.RPOSeconds = &rto, &rpo
		r.Objectives = []drill.ObjectiveRecord{
			{Name: "rto", TargetSeconds: 300, ActualSeconds: &rto, Met: true},
			{Name: "rpo", TargetSeconds: 3600, ActualSeconds: &rpo, Met: true},
		}
	} else {
		r.Message = "check keys: " + string(result)
	}
	return r
}

// store writes recs through Begin and Finish, as a drill does.
func store(t testing.TB, h *history.Store, recs ...*drill.Record) {
	t.Helper()
	ctx := context.Background()
	for _, r := range recs {
		begun := *r
		begun.Result, begun.FinishedAt = drill.Running, nil
		if err := h.Begin(ctx, &begun); err != nil {
			t.Fatal(err)
		}
		if err := h.Finish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeScheduler is a Scheduler for pure handler logic: its statuses are given and Trigger
// answers as told.
type fakeScheduler struct {
	mu        sync.Mutex
	status    []schedule.Status
	trigger   func(name, operator string) (string, error)
	triggered []string // "name by operator"
}

func (f *fakeScheduler) Scenarios() []schedule.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]schedule.Status(nil), f.status...)
}

func (f *fakeScheduler) Trigger(_ context.Context, name, operator string) (string, error) {
	f.mu.Lock()
	f.triggered = append(f.triggered, name+" by "+operator)
	fn := f.trigger
	f.mu.Unlock()
	if fn == nil {
		return "", schedule.ErrUnknownScenario
	}
	return fn(name, operator)
}

// serve starts the handler on a real listener.
func serve(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	srv := httptest.NewServer(New(opts))
	t.Cleanup(srv.Close)
	return srv
}

// testWriter sends the handler's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// call does one request and returns the status, headers and body.
func call(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// getJSON GETs url, wants status, and decodes the body into v.
func getJSON(t *testing.T, url string, status int, v any) {
	t.Helper()
	code, h, body := call(t, http.MethodGet, url, "", "")
	if code != status {
		t.Fatalf("GET %s: status %d, want %d; body %s", url, code, status, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: content type %q", url, ct)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}
