package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
)

// hit is one request a test receiver got.
type hit struct {
	method, path, query string
	body                []byte
	at                  time.Time
}

// testReceiver is a real HTTP server that records requests and answers as answer says
// (default 200). answer gets the 1-based number of the request.
type testReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	hits   []hit
	answer func(n int, w http.ResponseWriter, r *http.Request)
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *testReceiver {
	t.Helper()
	tr := &testReceiver{answer: answer}
	tr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		tr.mu.Lock()
		tr.hits = append(tr.hits, hit{r.Method, r.URL.Path, r.URL.RawQuery, body, time.Now()})
		n := len(tr.hits)
		tr.mu.Unlock()
		if tr.answer != nil {
			tr.answer(n, w, r)
		}
	}))
	t.Cleanup(tr.Close)
	return tr
}

func (tr *testReceiver) got() []hit {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]hit(nil), tr.hits...)
}

func (tr *testReceiver) events(t *testing.T) []Event {
	t.Helper()
	var evs []Event
	for _, h := range tr.got() {
		var ev Event
		if err := json.Unmarshal(h.body, &ev); err != nil {
			t.Fatalf("receiver got a body that is not an Event: %v: %s", err, h.body)
		}
		evs = append(evs, ev)
	}
	return evs
}

// newNotifier returns a Notifier with a tiny backoff and a log captured at debug level.
func newNotifier(t *testing.T, opts Options) (*Notifier, *testkit.Buffer) {
	t.Helper()
	logs := &testkit.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Backoff == 0 {
		opts.Backoff = time.Millisecond
	}
	n, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	return n, logs
}

func closeNotifier(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

var t0 = time.Date(2026, 11, 27, 3, 30, 0, 0, time.UTC)

func record(scenario string, i int, res drill.Result, msg string) *drill.Record {
	start := t0.Add(time.Duration(i) * time.Hour)
	end := start.Add(4 * time.Minute)
	rto, rpo := 250.0, 3600.0
	return &drill.Record{
		ID: fmt.Sprintf("run-%s-%d", scenario, i), Scenario: scenario, Result: res, Message: msg,
		StartedAt: start, FinishedAt: &end, RTOSeconds: &rto, RPOSeconds: &rpo,
		Objectives: []drill.ObjectiveRecord{{Name: "rto", TargetSeconds: 600, ActualSeconds: &rto, Met: true}},
	}
}

func TestFailureThenRecovery(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL + "/hook"}}, DashboardURL: "https://drills.example.com/"})

	n.Observe(record("shop-etcd", 1, drill.Passed, ""))                // nothing: no failure before
	n.Observe(record("shop-etcd", 2, drill.Failed, "check x: 0 keys")) // failure
	n.Observe(record("shop-etcd", 3, drill.Error, "etcd unreachable")) // failure again
	n.Observe(record("shop-etcd", 4, drill.Passed, ""))                // recovery
	n.Observe(record("shop-etcd", 5, drill.Passed, ""))                // nothing
	closeNotifier(t, n)

	evs := rcv.events(t)
	want := []struct {
		event, run   string
		result, prev drill.Result
		message      string
	}{
		{EventFailure, "run-shop-etcd-2", drill.Failed, drill.Passed, "check x: 0 keys"},
		{EventFailure, "run-shop-etcd-3", drill.Error, drill.Failed, "etcd unreachable"},
		{EventRecovery, "run-shop-etcd-4", drill.Passed, drill.Error, ""},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, w := range want {
		ev := evs[i]
		if ev.Event != w.event || ev.RunID != w.run || ev.Result != w.result || ev.PreviousResult != w.prev || ev.Message != w.message {
			t.Errorf("event %d = %s %s %s prev %s %q, want %+v", i, ev.Event, ev.RunID, ev.Result, ev.PreviousResult, ev.Message, w)
		}
		if ev.Scenario != "shop-etcd" || ev.URL != "https://drills.example.com/runs/"+w.run {
			t.Errorf("event %d: scenario %q url %q", i, ev.Scenario, ev.URL)
		}
		if ev.RTOSeconds == nil || *ev.RTOSeconds != 250 || ev.RPOSeconds == nil || *ev.RPOSeconds != 3600 ||
			ev.FinishedAt == nil || len(ev.Objectives) != 1 || ev.Objectives[0].Name != "rto" {
			t.Errorf("event %d lacks the run's figures: %+v", i, ev)
		}
	}
	for _, h := range rcv.got() {
		if h.method != http.MethodPost || h.path != "/hook" {
			t.Errorf("request %s %s, want POST /hook", h.method, h.path)
		}
	}
	// The documented field names are the interface receivers parse.
	var raw map[string]any
	if err := json.Unmarshal(rcv.got()[0].body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"event", "scenario", "runId", "result", "message", "startedAt", "finishedAt", "rtoSeconds", "rpoSeconds", "objectives", "url", "previousResult"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("generic body has no %q: %s", k, rcv.got()[0].body)
		}
	}
}

func TestMissedIsFailureAndAbortedSkippedAreSilent(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}})

	n.Observe(record("a", 1, drill.Missed, "serve was down at 03:30"))
	n.Observe(record("a", 2, drill.Aborted, "interrupted"))
	n.Observe(record("a", 3, drill.Skipped, "previous run still in flight"))
	n.Observe(record("a", 4, drill.Passed, ""))
	closeNotifier(t, n)

	evs := rcv.events(t)
	if len(evs) != 2 {
		t.Fatalf("got %d events, want failure and recovery only: %+v", len(evs), evs)
	}
	if evs[0].Event != EventFailure || evs[0].Result != drill.Missed {
		t.Errorf("first event %s %s, want failure missed", evs[0].Event, evs[0].Result)
	}
	// Aborted and skipped neither notify nor hide the failure the pass recovers from.
	if evs[1].Event != EventRecovery || evs[1].PreviousResult != drill.Missed {
		t.Errorf("second event %s after %s, want recovery after missed", evs[1].Event, evs[1].PreviousResult)
	}
}

func TestPassAfterPassNotifiesNothing(t *testing.T) {
	t.Parallel()
	hook := newReceiver(t, nil)
	beat := newReceiver(t, nil)
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{{URL: hook.URL}}, HeartbeatURL: beat.URL})
	n.Observe(record("a", 1, drill.Passed, ""))
	n.Observe(record("a", 2, drill.Passed, ""))
	closeNotifier(t, n)
	if got := hook.got(); len(got) != 0 {
		t.Errorf("webhook got %d requests for two passes, want none: %s", len(got), got[0].body)
	}
	if got := len(beat.got()); got != 2 {
		t.Errorf("heartbeat got %d requests, want 2 (the passes were observed)", got)
	}
}

func TestSeedMakesFirstPassARecovery(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}})
	n.Seed(map[string]drill.Result{"was-failing": drill.Failed, "was-passing": drill.Passed, "was-aborted": drill.Aborted})
	n.Observe(record("was-failing", 1, drill.Passed, ""))
	n.Observe(record("was-passing", 1, drill.Passed, ""))
	n.Observe(record("was-aborted", 1, drill.Passed, ""))
	closeNotifier(t, n)
	evs := rcv.events(t)
	if len(evs) != 1 || evs[0].Event != EventRecovery || evs[0].Scenario != "was-failing" || evs[0].PreviousResult != drill.Failed {
		t.Fatalf("events %+v, want one recovery of was-failing after failed", evs)
	}
}

func TestHeartbeatOnlyOnPass(t *testing.T) {
	t.Parallel()
	beat := newReceiver(t, nil)
	n, _ := newNotifier(t, Options{HeartbeatURL: beat.URL + "/ping/abc-123?rid=1"})
	for i, res := range []drill.Result{drill.Passed, drill.Failed, drill.Error, drill.Missed, drill.Skipped, drill.Aborted, drill.Passed} {
		n.Observe(record("a", i, res, ""))
	}
	closeNotifier(t, n)
	got := beat.got()
	if len(got) != 2 {
		t.Fatalf("heartbeat got %d requests, want 2 (one per pass)", len(got))
	}
	for _, h := range got {
		if h.method != http.MethodGet || h.path != "/ping/abc-123" || h.query != "rid=1" || len(h.body) != 0 {
			t.Errorf("heartbeat request %s %s?%s body %q, want GET /ping/abc-123?rid=1", h.method, h.path, h.query, h.body)
		}
	}
}

func TestRetriesAfterServerErrors(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n <= 2 {
			http.Error(w, "try later", http.StatusInternalServerError)
		}
	})
	n, logs := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}})
	n.Observe(record("a", 1, drill.Failed, "boom"))
	closeNotifier(t, n)
	got := rcv.got()
	if len(got) != 3 {
		t.Fatalf("receiver got %d attempts, want 3 (500, 500, 200)", len(got))
	}
	for _, h := range got[1:] {
		if !bytes.Equal(h.body, got[0].body) {
			t.Errorf("a retry sent a different body: %s vs %s", h.body, got[0].body)
		}
	}
	if !strings.Contains(logs.String(), "retrying") || strings.Contains(logs.String(), "giving up") {
		t.Errorf("log should show retries and no give-up:\n%s", logs)
	}
}

func TestRetryNetworkError(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 { // the connection breaks before an answer
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}
	})
	n, logs := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}})
	n.Observe(record("a", 1, drill.Failed, "boom"))
	closeNotifier(t, n)
	if got := len(rcv.got()); got != 2 {
		t.Fatalf("receiver got %d attempts, want 2 (broken connection, then 200)\n%s", got, logs)
	}
}

func TestHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}, Backoff: time.Millisecond})
	n.Observe(record("a", 1, drill.Failed, "boom"))
	closeNotifier(t, n)
	got := rcv.got()
	if len(got) != 2 {
		t.Fatalf("receiver got %d attempts, want 2 (429, then 200)", len(got))
	}
	// A lower bound only: the backoff alone would have retried after about a millisecond.
	if gap := got[1].at.Sub(got[0].at); gap < 900*time.Millisecond {
		t.Errorf("retried %v after a 429 with Retry-After: 1, want at least 1s", gap)
	}
}

func TestNoRetryOnClientError(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
	})
	n, logs := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}})
	n.Observe(record("a", 1, drill.Failed, "boom"))
	closeNotifier(t, n)
	if got := len(rcv.got()); got != 1 {
		t.Fatalf("receiver got %d attempts after a 400, want 1", got)
	}
	if l := logs.String(); !strings.Contains(l, "not retried") || !strings.Contains(l, "HTTP 400") || !strings.Contains(l, "invalid_payload") {
		t.Errorf("log should say the receiver rejected it with 400 and why:\n%s", l)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	n, logs := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}, MaxAttempts: 3})
	n.Observe(record("a", 1, drill.Failed, "boom"))
	closeNotifier(t, n)
	if got := len(rcv.got()); got != 3 {
		t.Fatalf("receiver got %d attempts, want MaxAttempts=3", got)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "giving up") || !strings.Contains(l, "attempts=3") || !strings.Contains(l, "HTTP 503") {
		t.Errorf("log should have an error giving up after 3 attempts with the status:\n%s", l)
	}
}

func TestSlackBody(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL, Format: FormatSlack}}, DashboardURL: "https://drills.example.com"})
	n.Observe(record("shop-etcd", 1, drill.Failed, "check deployments present: 0 keys <want 1>"))
	n.Observe(record("shop-etcd", 2, drill.Passed, ""))
	closeNotifier(t, n)

	got := rcv.got()
	if len(got) != 2 {
		t.Fatalf("receiver got %d messages, want 2", len(got))
	}
	var msgs [2]struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string `json:"type"`
			Text     *struct{ Type, Text string }
			Elements []struct{ Type, Text string }
		} `json:"blocks"`
	}
	for i := range msgs {
		if err := json.Unmarshal(got[i].body, &msgs[i]); err != nil {
			t.Fatalf("slack body %d: %v: %s", i, err, got[i].body)
		}
	}
	if want := ":red_circle: drill shop-etcd failed: check deployments present: 0 keys &lt;want 1&gt;"; msgs[0].Text != want {
		t.Errorf("failure text %q, want %q", msgs[0].Text, want)
	}
	if want := ":large_green_circle: drill shop-etcd passed again (after failed)"; msgs[1].Text != want {
		t.Errorf("recovery text %q, want %q", msgs[1].Text, want)
	}
	for i, m := range msgs {
		if len(m.Blocks) != 2 || m.Blocks[0].Type != "section" || m.Blocks[0].Text == nil || m.Blocks[0].Text.Type != "mrkdwn" ||
			m.Blocks[1].Type != "context" || len(m.Blocks[1].Elements) != 1 {
			t.Fatalf("message %d blocks %s, want a mrkdwn section and a context", i, got[i].body)
		}
		sec, ctx := m.Blocks[0].Text.Text, m.Blocks[1].Elements[0].Text
		run := fmt.Sprintf("run-shop-etcd-%d", i+1)
		if !strings.Contains(sec, "*shop-etcd*") || !strings.Contains(sec, "<https://drills.example.com/runs/"+run+"|view run>") {
			t.Errorf("message %d section %q lacks the bold scenario or the run link", i, sec)
		}
		if !strings.Contains(ctx, "run `"+run+"`") || !strings.Contains(ctx, "RTO 4m10s (target 10m0s, met)") {
			t.Errorf("message %d context %q lacks the run id or the RTO", i, ctx)
		}
	}
}

func TestSecretsNotInLogs(t *testing.T) {
	t.Parallel()
	const secretPath, secretQuery = "/services/T0001/B0002/XsecretPathX", "token=XsecretQueryX"
	failing := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})
	rejecting := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	})
	gone := newReceiver(t, nil)
	gone.Close() // connection refused: client errors quote the URL unless scrubbed

	n, logs := newNotifier(t, Options{MaxAttempts: 2, Webhooks: []Webhook{
		{URL: failing.URL + secretPath + "?" + secretQuery},
		{URL: rejecting.URL + secretPath + "?" + secretQuery, Format: FormatSlack},
		{URL: gone.URL + secretPath + "?" + secretQuery},
	}, HeartbeatURL: gone.URL + secretPath + "?" + secretQuery})
	n.Observe(record("a", 1, drill.Failed, "boom"))
	n.Observe(record("a", 2, drill.Passed, ""))
	closeNotifier(t, n)

	l := logs.String()
	if strings.Contains(l, "secretPath") || strings.Contains(l, "secretQuery") {
		t.Fatalf("a webhook URL's secret made it into the log:\n%s", l)
	}
	for _, host := range []string{failing.URL, rejecting.URL, gone.URL} {
		if !strings.Contains(l, "receiver="+host+" ") {
			t.Errorf("log should name receiver %s by scheme and host:\n%s", host, l)
		}
	}
	if !strings.Contains(l, "connection refused") {
		t.Errorf("log should keep the network error's reason:\n%s", l)
	}

	_, err := New(Options{Webhooks: []Webhook{{URL: failing.URL + secretPath + "?" + secretQuery, Format: "teams"}}})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("New with a bad format: %v, want an error without the URL's secret", err)
	}
}

func TestCloseDrains(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond) // a receiver slower than Observe
		if n%3 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}})
	const count = 20
	for i := range count {
		n.Observe(record("a", i, drill.Failed, "boom"))
	}
	closeNotifier(t, n)
	delivered := map[string]bool{}
	for _, ev := range rcv.events(t) {
		delivered[ev.RunID] = true
	}
	if len(delivered) != count {
		t.Fatalf("Close returned with %d of %d notifications delivered", len(delivered), count)
	}
	// In order: each receiver has one worker.
	evs := rcv.events(t)
	last := -1
	for _, ev := range evs {
		var i int
		fmt.Sscanf(ev.RunID, "run-a-%d", &i)
		if i < last {
			t.Fatalf("delivered out of order: %s after run-a-%d", ev.RunID, last)
		}
		last = i
	}
}

func TestCloseGivesUpWhenCtxEnds(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rcv := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}, Timeout: time.Minute})
	n.Observe(record("a", 1, drill.Failed, "boom"))
	n.Observe(record("a", 2, drill.Failed, "boom"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := n.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "2 notifications not delivered") {
		t.Fatalf("Close with a receiver that never answers: %v, want 2 notifications not delivered", err)
	}
	n.Observe(record("a", 3, drill.Failed, "after close")) // must not panic or queue
}

func TestQueueFullDropsOldest(t *testing.T) {
	t.Parallel()
	inFlight, release := make(chan struct{}), make(chan struct{})
	rcv := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			close(inFlight)
			<-release
		}
	})
	n, logs := newNotifier(t, Options{Webhooks: []Webhook{{URL: rcv.URL}}, QueueSize: 2})
	n.Observe(record("a", 1, drill.Failed, "boom"))
	<-inFlight
	for i := 2; i <= 5; i++ {
		n.Observe(record("a", i, drill.Failed, "boom"))
	}
	close(release)
	closeNotifier(t, n)
	var runs []string
	for _, ev := range rcv.events(t) {
		runs = append(runs, ev.RunID)
	}
	if want := "run-a-1 run-a-4 run-a-5"; strings.Join(runs, " ") != want {
		t.Errorf("delivered %v, want %s (2 and 3 dropped as the oldest)", runs, want)
	}
	if got := strings.Count(logs.String(), "queue full"); got != 2 {
		t.Errorf("%d queue-full warnings, want 2:\n%s", got, logs)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"scheme", Options{Webhooks: []Webhook{{URL: "ftp://example.com/x"}}}, `webhook 1: scheme "ftp" is not supported`},
		{"no host", Options{Webhooks: []Webhook{{URL: "https:///hook"}}}, "webhook 1: URL has no host"},
		{"relative", Options{Webhooks: []Webhook{{URL: "hooks/slack"}}}, `webhook 1: scheme "" is not supported`},
		{"unparsable", Options{Webhooks: []Webhook{{URL: "https://exa mple.com/%zz"}}}, "webhook 1: not a valid URL"},
		{"format", Options{Webhooks: []Webhook{{URL: "https://example.com/a"}, {URL: "https://hooks.example.com/b", Format: "teams"}}}, `webhook 2 (https://hooks.example.com): format "teams" is unknown`},
		{"heartbeat", Options{HeartbeatURL: "hc-ping.com/uuid"}, "heartbeat URL:"},
		{"matched heartbeat", Options{Heartbeats: []Heartbeat{{URL: "https://hc-ping.com/uuid", Match: Match{Scenarios: []string{"["}}}}}, `heartbeat 1: scenario glob 1 "[" is not a glob`},
		{"glob", Options{Webhooks: []Webhook{{URL: "https://example.com/a", Match: Match{Scenarios: []string{"shop-*", ""}}}}}, `webhook 1 (https://example.com): scenario glob 2 "" is not a glob`},
		{"dashboard", Options{DashboardURL: "drills.example.com"}, "dashboard URL:"},
		{"attempts", Options{MaxAttempts: -1}, "MaxAttempts -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	n, err := New(Options{Webhooks: []Webhook{{URL: "https://hooks.slack.com/services/T/B/x", Format: "slack"}, {URL: "http://127.0.0.1:9/x"}}, HeartbeatURL: "https://hc-ping.com/uuid"})
	if err != nil {
		t.Fatalf("New with good URLs: %v", err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatalf("Close with nothing queued: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 120 ":                         2 * time.Minute,
		"-1":                            0,
		"soon":                          0,
		"Fri, 27 Nov 2026 12:00:30 GMT": 30 * time.Second,
		"Fri, 27 Nov 2026 11:00:00 GMT": 0, // in the past
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 7: MaxBackoff, 60: MaxBackoff} {
		if got := backoff(time.Second, attempt); got != want {
			t.Errorf("backoff(1s, %d) = %v, want %v", attempt, got, want)
		}
	}
	for range 1000 {
		if j := jitter(time.Second); j < 500*time.Millisecond || j > time.Second {
			t.Fatalf("jitter(1s) = %v, want within [500ms, 1s]", j)
		}
	}
}

// Receivers with matchers hear about the scenarios they select, by name glob and by labels;
// the global form hears about all of them.
func TestMatchRoutesFailuresAndRecoveries(t *testing.T) {
	t.Parallel()
	shop, payments, all := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	n, _ := newNotifier(t, Options{Webhooks: []Webhook{
		{URL: shop.URL, Match: Match{Scenarios: []string{"shop-*"}, Labels: map[string]string{"team": "shop"}}},
		{URL: payments.URL, Match: Match{Labels: map[string]string{"team": "payments"}}},
		{URL: all.URL},
	}})
	labelled := func(r *drill.Record, labels map[string]string) *drill.Record { r.Labels = labels; return r }
	shopLabels, payLabels := map[string]string{"team": "shop"}, map[string]string{"team": "payments", "tier": "1"}
	n.Observe(labelled(record("shop-etcd", 1, drill.Failed, "no keys"), shopLabels))
	n.Observe(labelled(record("shop-etcd", 2, drill.Passed, ""), shopLabels))
	n.Observe(labelled(record("shop-velero", 1, drill.Error, "unreachable"), nil))            // name matches, label does not
	n.Observe(labelled(record("orders-etcd", 1, drill.Failed, "no keys"), shopLabels))        // label matches, name does not
	n.Observe(labelled(record("billing-etcd", 1, drill.Missed, "serve was down"), payLabels)) // extra labels do not matter
	closeNotifier(t, n)

	got := func(rcv *testReceiver) []string {
		var out []string
		for _, ev := range rcv.events(t) {
			out = append(out, ev.Event+" "+ev.Scenario)
		}
		return out
	}
	for _, c := range []struct {
		name string
		rcv  *testReceiver
		want []string
	}{
		{"shop", shop, []string{"failure shop-etcd", "recovery shop-etcd"}},
		{"payments", payments, []string{"failure billing-etcd"}},
		{"global", all, []string{"failure shop-etcd", "recovery shop-etcd", "failure shop-velero", "failure orders-etcd", "failure billing-etcd"}},
	} {
		if g := got(c.rcv); strings.Join(g, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s receiver got %v, want %v", c.name, g, c.want)
		}
	}
}

// Heartbeats go out after passes only: the global one for every scenario, a matched one for the
// scenarios it selects, and a scenario's own URL for that scenario, once per URL.
func TestHeartbeatsPerScenario(t *testing.T) {
	t.Parallel()
	beats := newReceiver(t, nil)
	n, logs := newNotifier(t, Options{
		HeartbeatURL: beats.URL + "/global",
		Heartbeats:   []Heartbeat{{URL: beats.URL + "/shop", Match: Match{Labels: map[string]string{"team": "shop"}}, Name: "shop-switch"}},
	})
	n.SetScenarioHeartbeats(map[string]string{
		"shop-etcd":  beats.URL + "/own/shop-etcd-secret",
		"same":       beats.URL + "/global", // the global URL again: one request, not two
		"unusable":   "hc-ping.com/unusable-secret",
		"no-own-url": "",
	})
	shop := map[string]string{"team": "shop"}
	for i, res := range []drill.Result{drill.Failed, drill.Passed, drill.Error, drill.Skipped, drill.Aborted, drill.Passed} {
		r := record("shop-etcd", i, res, "")
		r.Labels = shop
		n.Observe(r)
	}
	n.Observe(record("same", 1, drill.Passed, ""))
	n.Observe(record("unusable", 1, drill.Passed, ""))
	n.Observe(record("other", 1, drill.Failed, "x"))
	// Replaced: shop-etcd no longer has its own URL.
	n.SetScenarioHeartbeats(map[string]string{"other": beats.URL + "/own/other"})
	n.Observe(record("other", 2, drill.Passed, ""))
	r := record("shop-etcd", 9, drill.Passed, "")
	r.Labels = shop
	n.Observe(r)
	closeNotifier(t, n)

	count := map[string]int{}
	for _, h := range beats.got() {
		if h.method != http.MethodGet {
			t.Errorf("heartbeat %s %s, want GET", h.method, h.path)
		}
		count[h.path]++
	}
	want := map[string]int{
		"/global":               6, // shop-etcd ×3, same, unusable, other
		"/shop":                 3, // shop-etcd's passes
		"/own/shop-etcd-secret": 2, // its passes before its URL was replaced
		"/own/other":            1,
	}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("heartbeats by path %v, want %v", count, want)
	}
	if !strings.Contains(logs.String(), "heartbeat URL is not used") || strings.Contains(logs.String(), "secret") {
		t.Errorf("the unusable URL is not logged, or a URL is logged:\n%s", logs)
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `apiVersion: firedrill.dev/v1alpha1
kind: Notifications
receivers:
  - name: shop-team
    slackWebhook: https://hooks.slack.com/services/T000/B000/secret
    matchScenarios: ["shop-*"]
    matchLabels: {team: shop}
  - webhook: https://alerts.example.com/firedrill?token=secret
  - heartbeatURL: https://hc-ping.com/secret
    matchLabels: {tier: critical}
`)
	got, err := LoadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	want := Receivers{
		Webhooks: []Webhook{
			{URL: "https://hooks.slack.com/services/T000/B000/secret", Format: FormatSlack, Name: "shop-team",
				Match: Match{Scenarios: []string{"shop-*"}, Labels: map[string]string{"team": "shop"}}},
			{URL: "https://alerts.example.com/firedrill?token=secret", Format: FormatJSON},
		},
		Heartbeats: []Heartbeat{{URL: "https://hc-ping.com/secret", Match: Match{Labels: map[string]string{"tier": "critical"}}}},
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("LoadFile:\n%+v\nwant\n%+v", got, want)
	}
	if _, err := New(Options{Webhooks: got.Webhooks, Heartbeats: got.Heartbeats}); err != nil {
		t.Errorf("New refuses what LoadFile accepted: %v", err)
	}

	for name, c := range map[string]struct{ content, want string }{
		"unknown field": {"apiVersion: firedrill.dev/v1alpha1\nkind: Notifications\nreceivers:\n  - webhook: https://a.example.com/secret\n    matchLabel: {team: shop}\n",
			"line 5: field matchLabel not found in a receiver (known: name, webhook"},
		"header": {"receivers: [{webhook: https://a.example.com/secret}]\n", `starts with apiVersion "" and kind ""`},
		"empty":  {"", "is empty"},
		"none":   {"apiVersion: firedrill.dev/v1alpha1\nkind: Notifications\n", "lists no receivers"},
		"every problem": {`apiVersion: firedrill.dev/v1alpha1
kind: Notifications
receivers:
  - {webhook: https://a.example.com/secret, heartbeatURL: https://b.example.com/secret}
  - {name: ops, slackWebhook: "hooks.slack.com/services/secret"}
  - {heartbeatURL: https://hc-ping.com/secret, matchScenarios: ["shop-[a"]}
  - {matchLabels: {team: shop}}
`, "receivers[0]: set exactly one of webhook, slackWebhook and heartbeatURL; " +
			`receivers[1] (ops).slackWebhook: scheme "" is not supported: want an http:// or https:// URL; ` +
			`receivers[2]: scenario glob 1 "shop-[a" is not a glob: use e.g. shop-* or *-etcd; ` +
			"receivers[3]: set exactly one of webhook, slackWebhook and heartbeatURL"},
	} {
		f := write(strings.ReplaceAll(name, " ", "-")+".yaml", c.content)
		_, err := LoadFile(f)
		if err == nil || !strings.HasPrefix(err.Error(), f+": ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %s: ...%s...", name, err, f, c.want)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error quotes a URL: %v", name, err)
		}
	}
	if _, err := LoadFile(dir + "/missing.yaml"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing file: %v", err)
	}
}
