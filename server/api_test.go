package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
)

// fixture stores nine runs of two scenarios, one a day apart from t0, and returns them newest
// first (the order the API lists them in).
func fixture(t *testing.T, h *history.Store) []*drill.Record {
	t.Helper()
	plan := []struct {
		scenario string
		result   drill.Result
	}{
		{"shop-etcd", drill.Passed}, {"shop-velero", drill.Passed}, {"shop-etcd", drill.Failed},
		{"shop-etcd", drill.Passed}, {"shop-velero", drill.Error}, {"shop-etcd", drill.Passed},
		{"shop-velero", drill.Passed}, {"shop-etcd", drill.Aborted}, {"shop-etcd", drill.Passed},
	}
	var recs []*drill.Record
	for i, p := range plan {
		r := record(fmt.Sprintf("20261120-1000%02d-%06x", i, i), p.scenario, p.result, time.Duration(i)*24*time.Hour)
		store(t, h, r)
		recs = append(recs, r)
	}
	slices.Reverse(recs)
	return recs
}

func ids[T any](recs []T, id func(T) string) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, id(r))
	}
	return out
}

func recID(r *drill.Record) string { return r.ID }
func jsonID(r drill.Record) string { return r.ID }

func TestAPIRunsFilters(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	all := fixture(t, h)
	now := t0.Add(8*24*time.Hour + time.Hour) // one hour after the newest run started
	srv := serve(t, Options{Runs: h, Scheduler: &fakeScheduler{}, Now: func() time.Time { return now }})

	want := func(keep func(*drill.Record) bool) []string {
		var out []string
		for _, r := range all {
			if keep(r) {
				out = append(out, r.ID)
			}
		}
		return out
	}
	cases := []struct {
		query string
		want  []string
	}{
		{"", ids(all, recID)},
		{"scenario=shop-velero", want(func(r *drill.Record) bool { return r.Scenario == "shop-velero" })},
		{"result=passed", want(func(r *drill.Record) bool { return r.Result == drill.Passed })},
		{"scenario=shop-etcd&result=failed", want(func(r *drill.Record) bool { return r.Scenario == "shop-etcd" && r.Result == drill.Failed })},
		// 2d12h before now: the runs of the last three days (days 6, 7 and 8).
		{"since=2d12h", want(func(r *drill.Record) bool { return !r.StartedAt.Before(now.Add(-60 * time.Hour)) })},
		{"since=3d", want(func(r *drill.Record) bool { return !r.StartedAt.Before(now.Add(-72 * time.Hour)) })},
		{"since=" + url.QueryEscape(t0.Add(5*24*time.Hour).Format(time.RFC3339)), want(func(r *drill.Record) bool { return !r.StartedAt.Before(t0.Add(5 * 24 * time.Hour)) })},
		{"scenario=no-such-scenario", nil},
		{"limit=3", ids(all[:3], recID)},
		{"limit=3&offset=7", ids(all[7:], recID)},
	}
	for _, c := range cases {
		var got RunsJSON
		getJSON(t, srv.URL+"/api/v1/runs?"+c.query, http.StatusOK, &got)
		if g := ids(got.Runs, jsonID); !slices.Equal(g, c.want) && !(len(g) == 0 && len(c.want) == 0) {
			t.Errorf("?%s: got %v, want %v", c.query, g, c.want)
		}
		if got.Runs == nil {
			t.Errorf("?%s: runs is null, want a list", c.query)
		}
	}

	// A whole record comes back as stored, evidence included.
	var one RunsJSON
	getJSON(t, srv.URL+"/api/v1/runs?limit=1", http.StatusOK, &one)
	if r := one.Runs[0]; r.Checks[0].Evidence["keys"] != float64(12) || r.Backup.Revision != 42 || len(r.Steps) != 2 {
		t.Errorf("record does not round-trip: %+v", r)
	}

	for _, bad := range []string{"limit=0", "limit=501", "limit=x", "offset=-1", "result=great", "since=yesterday", "since=-3h", "cursor=bm9wZQ", "offset=1&cursor=" + encodeCursor(1)} {
		var e ErrorJSON
		getJSON(t, srv.URL+"/api/v1/runs?"+bad, http.StatusBadRequest, &e)
		if e.Error == "" || !strings.Contains(e.Error, "want") && !strings.Contains(e.Error, "not both") && !strings.Contains(e.Error, "pass the") {
			t.Errorf("?%s: error %q does not say what to give", bad, e.Error)
		}
	}
}

func TestAPIRunsPaging(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	all := fixture(t, h)
	srv := serve(t, Options{Runs: h, Scheduler: &fakeScheduler{}})

	for _, query := range []string{"limit=2", "limit=4&scenario=shop-etcd", "limit=9", "limit=1&result=passed"} {
		var got []string
		next, pages := "", 0
		for {
			var page RunsJSON
			u := srv.URL + "/api/v1/runs?" + query
			if next != "" {
				u += "&cursor=" + url.QueryEscape(next)
			}
			getJSON(t, u, http.StatusOK, &page)
			pages++
			got = append(got, ids(page.Runs, jsonID)...)
			if next = page.Next; next == "" {
				break
			}
			if pages > 20 {
				t.Fatalf("?%s: more than 20 pages", query)
			}
		}
		var whole RunsJSON
		q, _ := url.ParseQuery(query)
		q.Set("limit", "500")
		getJSON(t, srv.URL+"/api/v1/runs?"+q.Encode(), http.StatusOK, &whole)
		if want := ids(whole.Runs, jsonID); !slices.Equal(got, want) {
			t.Errorf("?%s: pages give %v, want %v", query, got, want)
		}
		if len(whole.Runs) == 0 || len(whole.Runs) > len(all) {
			t.Errorf("?%s: %d runs in all", query, len(whole.Runs))
		}
	}
}

func TestAPIRunByID(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	all := fixture(t, h)
	srv := serve(t, Options{Runs: h, Scheduler: &fakeScheduler{}})

	var got drill.Record
	getJSON(t, srv.URL+"/api/v1/runs/"+all[3].ID, http.StatusOK, &got)
	if got.ID != all[3].ID || got.Scenario != all[3].Scenario || got.Result != all[3].Result || len(got.Steps) != 2 {
		t.Errorf("got %+v, want run %s", got, all[3].ID)
	}
	// A unique prefix is enough, as on the command line.
	getJSON(t, srv.URL+"/api/v1/runs/"+all[3].ID[:len("20261120-100005")], http.StatusOK, &got)
	if got.ID != all[3].ID {
		t.Errorf("prefix found %s, want %s", got.ID, all[3].ID)
	}

	var e ErrorJSON
	getJSON(t, srv.URL+"/api/v1/runs/20991231-000000-abcdef", http.StatusNotFound, &e)
	if !strings.Contains(e.Error, "no such run") || !strings.Contains(e.Error, "/api/v1/runs") {
		t.Errorf("404 says %q", e.Error)
	}
	getJSON(t, srv.URL+"/api/v1/runs/20261120-1000", http.StatusConflict, &e)
	if !strings.Contains(e.Error, "ambiguous") || !strings.Contains(e.Error, all[0].ID) {
		t.Errorf("409 says %q", e.Error)
	}
	getJSON(t, srv.URL+"/api/v1/nothing-here", http.StatusNotFound, &e)
	if !strings.Contains(e.Error, "GET /api/v1/runs") {
		t.Errorf("unknown route says %q", e.Error)
	}
}

func TestAPIScenarios(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	all := fixture(t, h)
	next := time.Date(2026, 11, 29, 3, 30, 0, 0, time.UTC)
	sched := &fakeScheduler{status: []schedule.Status{
		{Name: "never-ran", File: "/s/never.yaml", Err: "spec.backup: required"},
		{Name: "shop-etcd", File: "/s/etcd.yaml", Schedule: "30 3 * * *", TimeZone: "Europe/Berlin", Interval: 24 * time.Hour,
			NextRun: next, Running: "20261127-000000-aaaaaa", Queued: 1, Labels: map[string]string{"team": "shop"}},
		{Name: "shop-velero", File: "/s/velero.yaml"},
	}}
	srv := serve(t, Options{Runs: h, Scheduler: sched, Leader: func() bool { return false }})

	var got ScenariosJSON
	getJSON(t, srv.URL+"/api/v1/scenarios", http.StatusOK, &got)
	if got.Leader {
		t.Error("leader is true on a follower")
	}
	if len(got.Scenarios) != 3 {
		t.Fatalf("got %d scenarios: %+v", len(got.Scenarios), got)
	}
	newest := func(name string) *drill.Record {
		for _, r := range all {
			if r.Scenario == name {
				return r
			}
		}
		return nil
	}
	nr, etcd, velero := got.Scenarios[0], got.Scenarios[1], got.Scenarios[2]
	if nr.Name != "never-ran" || nr.Error != "spec.backup: required" || nr.LastResult != "" || nr.LastRunAt != nil || nr.NextRun != nil {
		t.Errorf("never-ran: %+v", nr)
	}
	if etcd.Schedule != "30 3 * * *" || etcd.TimeZone != "Europe/Berlin" || etcd.IntervalSeconds != 86400 ||
		etcd.NextRun == nil || !etcd.NextRun.Equal(next) || etcd.Running != "20261127-000000-aaaaaa" || etcd.Queued != 1 ||
		etcd.Labels["team"] != "shop" || etcd.File != "/s/etcd.yaml" {
		t.Errorf("shop-etcd status: %+v", etcd)
	}
	for _, sc := range []ScenarioJSON{etcd, velero} {
		want := newest(sc.Name)
		if sc.LastRunID != want.ID || sc.LastResult != want.Result || sc.LastRunAt == nil || !sc.LastRunAt.Equal(want.StartedAt) {
			t.Errorf("%s: last run %s %s %v, want %s %s %v", sc.Name, sc.LastRunID, sc.LastResult, sc.LastRunAt, want.ID, want.Result, want.StartedAt)
		}
	}
}

func TestAPITriggerAuth(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	const token = "s3cret-token-with-enough-entropy"
	sched := &fakeScheduler{trigger: func(name, operator string) (string, error) {
		switch name {
		case "shop-etcd":
			return "20261127-120000-abcdef", nil
		case "busy":
			return "", schedule.ErrBusy
		case "broken":
			return "", errors.New("history is down")
		}
		return "", schedule.ErrUnknownScenario
	}}
	open := serve(t, Options{Runs: h, Scheduler: sched, Token: token})
	closed := serve(t, Options{Runs: h, Scheduler: sched})

	cases := []struct {
		name       string
		srv        string
		scenario   string
		token      string
		body       string
		status     int
		errSays    string
		challenged bool
	}{
		{"writes disabled", closed.URL, "shop-etcd", token, "", http.StatusForbidden, "--token-file or FIREDRILL_TOKEN", false},
		{"writes disabled without a token", closed.URL, "shop-etcd", "", "", http.StatusForbidden, "writes are disabled", false},
		{"no token", open.URL, "shop-etcd", "", "", http.StatusUnauthorized, "Authorization: Bearer", true},
		{"wrong token", open.URL, "shop-etcd", "guess", "", http.StatusUnauthorized, "wrong bearer token", true},
		{"token prefix", open.URL, "shop-etcd", token[:10], "", http.StatusUnauthorized, "wrong bearer token", true},
		{"right token", open.URL, "shop-etcd", token, "", http.StatusAccepted, "", false},
		{"right token with operator", open.URL, "shop-etcd", token, `{"operator": "alice"}`, http.StatusAccepted, "", false},
		{"unknown field", open.URL, "shop-etcd", token, `{"who": "alice"}`, http.StatusBadRequest, "want {\"operator\"", false},
		{"unknown scenario", open.URL, "nope", token, "", http.StatusNotFound, "GET /api/v1/scenarios", false},
		{"busy", open.URL, "busy", token, "", http.StatusConflict, "wait for it to finish", false},
		{"scheduler fails", open.URL, "broken", token, "", http.StatusInternalServerError, "history is down", false},
	}
	for _, c := range cases {
		code, hdr, body := call(t, http.MethodPost, c.srv+"/api/v1/scenarios/"+c.scenario+"/runs", c.token, c.body)
		if code != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, code, c.status, body)
			continue
		}
		if got := hdr.Get("WWW-Authenticate") != ""; got != c.challenged {
			t.Errorf("%s: WWW-Authenticate %q", c.name, hdr.Get("WWW-Authenticate"))
		}
		if c.status == http.StatusAccepted {
			var tr TriggeredJSON
			if err := json.Unmarshal([]byte(body), &tr); err != nil || tr.ID != "20261127-120000-abcdef" || tr.Scenario != "shop-etcd" ||
				hdr.Get("Location") != "/api/v1/runs/20261127-120000-abcdef" {
				t.Errorf("%s: body %s, Location %q", c.name, body, hdr.Get("Location"))
			}
			continue
		}
		var e ErrorJSON
		if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, c.errSays) {
			t.Errorf("%s: error body %s, want it to say %q", c.name, body, c.errSays)
		}
	}
	sched.mu.Lock()
	got := sched.triggered
	sched.mu.Unlock()
	want := []string{"shop-etcd by api@127.0.0.1", "shop-etcd by alice@127.0.0.1", "nope by api@127.0.0.1", "busy by api@127.0.0.1", "broken by api@127.0.0.1"}
	if !slices.Equal(got, want) {
		t.Errorf("the scheduler was asked %q, want %q (refused requests must not reach it)", got, want)
	}

	// A GET on the write route is not a way around the token.
	if code, _, _ := call(t, http.MethodGet, open.URL+"/api/v1/scenarios/shop-etcd/runs", "", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET on the trigger route: status %d, want 405", code)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	var notReady atomic.Pointer[error]
	reg := newRegistry()
	m := NewMetrics(reg)
	m.SetScratchNamespaces(3)
	srv := serve(t, Options{Runs: h, Scheduler: &fakeScheduler{}, Gatherer: reg,
		Ready: func(ctx context.Context) error {
			if e := notReady.Load(); e != nil {
				return *e
			}
			return nil
		}})

	if code, _, body := call(t, http.MethodGet, srv.URL+"/healthz", "", ""); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, _, body := call(t, http.MethodGet, srv.URL+"/readyz", "", ""); code != 200 {
		t.Errorf("readyz while ready: %d %q", code, body)
	}
	down := errors.New("history unreachable: connection refused")
	notReady.Store(&down)
	if code, _, body := call(t, http.MethodGet, srv.URL+"/readyz", "", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "connection refused") {
		t.Errorf("readyz while not ready: %d %q", code, body)
	}
	code, _, body := call(t, http.MethodGet, srv.URL+"/metrics", "", "")
	if code != 200 || !strings.Contains(body, "firedrill_scratch_namespaces 3") {
		t.Errorf("metrics: %d\n%s", code, body)
	}
}
