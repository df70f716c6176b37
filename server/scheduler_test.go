package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// TestAPIWithRealScheduler drives the API against the real drill/schedule.Scheduler and a real
// history: a trigger starts a run the scheduler tracks (busy while it runs), its record lands in
// the history, the scheduler's OnFinish feeds the metrics, and a file that never validated
// shows as an error. The drill itself is a stand-in that writes its record and waits to be
// released (real drills run in TestBrowserRunNow).
func TestAPIWithRealScheduler(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	reg := newRegistry()
	m := NewMetrics(reg)

	dir := t.TempDir()
	file := filepath.Join(dir, "nightly.yaml")
	if err := os.WriteFile(file, []byte(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: nightly, labels: {team: storage}}
spec:
  schedule: "@every 6h"
  backup:
    etcd:
      take: {endpoints: [http://127.0.0.1:2379]}
  restore:
    scratchEtcd: {}
  checks:
    - {name: snapshot integrity, etcdIntegrity: {}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := scenarios.Load(file)
	if err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	started := make(chan string, 1)
	run := func(ctx context.Context, sc *scenarios.Scenario, tr schedule.Trigger) (*drill.Record, error) {
		r := &drill.Record{ID: tr.ID, Scenario: sc.Metadata.Name, Labels: sc.Metadata.Labels, Trigger: tr.Kind, Operator: tr.Operator,
			Result: drill.Running, StartedAt: time.Now().UTC(), Runner: drill.RunnerInfo{Host: "test", PID: os.Getpid()}}
		if err := h.Begin(ctx, r); err != nil {
			return nil, err
		}
		started <- tr.ID
		<-release
		end := time.Now().UTC()
		rto := 12.5
		r.Result, r.FinishedAt, r.RTOSeconds = drill.Passed, &end, &rto
		r.Objectives = []drill.ObjectiveRecord{{Name: "rto", TargetSeconds: 60, ActualSeconds: &rto, Met: true}}
		return r, h.Finish(ctx, r)
	}
	finished := make(chan *drill.Record, 1)
	sched := schedule.New(schedule.Options{Run: run, History: h,
		OnFinish: func(r *drill.Record) { m.Observe(r); finished <- r }})
	sched.Update([]schedule.Entry{
		{File: file, Scenario: sc, LoadedAt: time.Now()},
		{File: filepath.Join(dir, "broken.yaml"), Err: errors.New("spec.restore: required")},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sched.Shutdown(ctx)
	})
	m.SetScenarios(sched.Scenarios())
	const token = "real-scheduler-token"
	srv := serve(t, Options{Runs: h, Scheduler: sched, Token: token, Gatherer: reg})

	var list ScenariosJSON
	getJSON(t, srv.URL+"/api/v1/scenarios", http.StatusOK, &list)
	if len(list.Scenarios) != 2 || list.Scenarios[0].Name != "broken.yaml" || list.Scenarios[0].Error == "" ||
		list.Scenarios[1].Name != "nightly" || list.Scenarios[1].Schedule != "@every 6h" || list.Scenarios[1].IntervalSeconds != 6*3600 {
		t.Fatalf("scenarios: %+v", list.Scenarios)
	}

	code, _, body := call(t, http.MethodPost, srv.URL+"/api/v1/scenarios/nightly/runs", token, `{"operator": "bob"}`)
	if code != http.StatusAccepted {
		t.Fatalf("trigger: %d %s", code, body)
	}
	var id string
	select {
	case id = <-started:
	case <-time.After(time.Minute):
		t.Fatal("the scheduler did not start the triggered run")
	}
	if !strings.Contains(body, id) {
		t.Errorf("the API answered %s, the scheduler started %s", body, id)
	}
	// While it runs: a second trigger is refused, and the scenario and run show it.
	if code, _, body := call(t, http.MethodPost, srv.URL+"/api/v1/scenarios/nightly/runs", token, ""); code != http.StatusConflict {
		t.Errorf("trigger while running: %d %s", code, body)
	}
	if code, _, body := call(t, http.MethodPost, srv.URL+"/api/v1/scenarios/nope/runs", token, ""); code != http.StatusNotFound {
		t.Errorf("trigger of an unknown scenario: %d %s", code, body)
	}
	getJSON(t, srv.URL+"/api/v1/scenarios", http.StatusOK, &list)
	if n := list.Scenarios[1]; n.Running != id || n.LastRunID != id || n.LastResult != drill.Running {
		t.Errorf("while running: %+v", n)
	}
	if page := getPage(t, srv.URL+"/", http.StatusOK); !strings.Contains(page, `http-equiv="refresh"`) || !strings.Contains(page, "running") {
		t.Error("the dashboard neither shows the run in flight nor refreshes itself")
	}

	close(release)
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("the run never finished")
	}
	var rec drill.Record
	getJSON(t, srv.URL+"/api/v1/runs/"+id, http.StatusOK, &rec)
	if rec.Result != drill.Passed || rec.Trigger != "api" || rec.Operator != "bob@127.0.0.1" {
		t.Errorf("the run's record: %s by %q (%s)", rec.Result, rec.Operator, rec.Trigger)
	}
	runs, err := h.List(context.Background(), history.Filter{Scenario: "nightly"})
	if err != nil || len(runs) != 1 {
		t.Errorf("history holds %d runs (%v), want the one", len(runs), err)
	}
	expect(t, "metrics after the run", series(t, reg), map[string]float64{
		"firedrill_runs_total{result=passed,scenario=nightly}":                 1,
		"firedrill_rto_seconds{scenario=nightly}":                              12.5,
		"firedrill_objective_met{objective=rto,scenario=nightly}":              1,
		"firedrill_scenario_interval_seconds{scenario=nightly}":                6 * 3600,
		"firedrill_scenario_errors{scenario=broken.yaml}":                      1,
		"firedrill_last_success_timestamp_seconds{scenario=nightly}":           unix(*rec.FinishedAt),
		"firedrill_last_run_timestamp_seconds{result=passed,scenario=nightly}": unix(*rec.FinishedAt),
	})
	_, _, metrics := call(t, http.MethodGet, srv.URL+"/metrics", "", "")
	if !strings.Contains(metrics, `firedrill_runs_total{result="passed",scenario="nightly"} 1`) {
		t.Errorf("/metrics does not serve the run:\n%s", metrics)
	}
}
