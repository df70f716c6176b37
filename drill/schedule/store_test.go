package schedule

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// gateDriver is a drill that passes once its gate opens.
type gateDriver struct{ gate chan struct{} }

func (d gateDriver) Kind() string { return "etcd" }
func (d gateDriver) NewRun(*scenarios.Scenario, *drill.RunContext) (drill.Run, error) {
	return d, nil
}
func (d gateDriver) Preflight(context.Context) error { return nil }
func (d gateDriver) Backup(context.Context) (drill.BackupRecord, error) {
	return drill.BackupRecord{Kind: "etcd-snapshot", Source: "take"}, nil
}
func (d gateDriver) Restore(ctx context.Context) error {
	select {
	case <-d.gate:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
func (d gateDriver) Checks(restored bool) []drill.Check {
	c := drill.Check{Name: "etcdIntegrity", Type: "etcdIntegrity"}
	if restored {
		c.Run = func(context.Context) drill.CheckOutcome {
			return drill.CheckOutcome{Result: drill.Passed, Message: "ok"}
		}
	}
	return []drill.Check{c}
}
func (d gateDriver) Target() *drill.TargetRecord         { return nil }
func (d gateDriver) Cleanup(context.Context, bool) error { return nil }
func (d gateDriver) Plan(*drill.Plan)                    {}

// TestReplicasOnSQLiteHistory runs two schedulers against one real history store and the
// real drill.Runner: the store's duplicate rule, as the runner reports it, must keep them
// from recording a gap twice or running one scheduled time twice.
func TestReplicasOnSQLiteHistory(t *testing.T) {
	ctx := context.Background()
	store, err := history.Open(ctx, filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	at := date("2026-03-02T07:00:00Z")
	end := at.Add(time.Minute)
	seed := &drill.Record{
		ID: drill.NewRunID(at), Scenario: "hourly", Trigger: "schedule", ScheduledFor: &at, Result: drill.Passed,
		StartedAt: at, FinishedAt: &end, Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{}, Checks: []drill.CheckRecord{},
	}
	if err := store.Finish(ctx, seed); err != nil {
		t.Fatal(err)
	}

	clock := newClock(date("2026-03-02T10:20:00Z"))
	gate := make(chan struct{})
	var started, finished atomic.Int32
	replica := func(host string) *Scheduler {
		info := drill.RunnerInfo{Host: host, PID: 1}
		s := New(Options{
			History: store, Now: clock.Now, Runner: info,
			Run: func(ctx context.Context, sc *scenarios.Scenario, tr Trigger) (*drill.Record, error) {
				started.Add(1)
				r := drill.Runner{Recorder: store, Trigger: tr.Kind, Operator: tr.Operator, ID: tr.ID, Runner: info, WorkRoot: t.TempDir()}
				if !tr.ScheduledFor.IsZero() {
					r.ScheduledFor = &tr.ScheduledFor
				}
				return r.Run(ctx, sc, gateDriver{gate})
			},
			OnFinish: func(*drill.Record) { finished.Add(1) },
		})
		s.timer = clock.timer
		s.Update([]Entry{entry(scenario("hourly", "0 * * * *", ""))})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(runCtx) }()
		t.Cleanup(func() {
			cancel()
			<-done
			aborted, stop := context.WithCancel(ctx)
			stop()
			_ = s.Shutdown(aborted)
		})
		return s
	}
	a, b := replica("a"), replica("b")
	testkit.EventuallyTrue(t, wait, "both replicas to catch up", func() bool { return clock.sleepers() == 2 })
	// A replica that lost the race has returned from its run; the winner waits at the gate.
	testkit.EventuallyTrue(t, wait, "one run of 10:00 in flight", func() bool {
		n := 0
		for _, s := range []*Scheduler{a, b} {
			if s.Scenarios()[0].Running != "" {
				n++
			}
		}
		return n == 1
	})
	close(gate)
	testkit.EventuallyTrue(t, wait, "the run to end", func() bool {
		return a.Scenarios()[0].Running == "" && b.Scenarios()[0].Running == ""
	})

	recs, err := store.List(ctx, history.Filter{Scenario: "hourly"})
	if err != nil {
		t.Fatal(err)
	}
	byResult := map[drill.Result][]drill.Record{}
	for _, r := range recs {
		byResult[r.Result] = append(byResult[r.Result], r)
	}
	if len(recs) != 3 || len(byResult[drill.Missed]) != 1 || len(byResult[drill.Passed]) != 2 {
		t.Fatalf("history = %+v, want the seed, one missed and one passed run", recs)
	}
	if m := byResult[drill.Missed][0]; !m.ScheduledFor.Equal(date("2026-03-02T09:00:00Z")) || m.Message == "" || m.Steps == nil {
		t.Errorf("missed record = %+v, want 09:00 with a message", m)
	}
	var ran *drill.Record
	for i, r := range byResult[drill.Passed] {
		if r.ID != seed.ID {
			ran = &byResult[drill.Passed][i]
		}
	}
	if ran == nil || !ran.ScheduledFor.Equal(date("2026-03-02T10:00:00Z")) || ran.Trigger != "schedule" {
		t.Errorf("run = %+v, want the 10:00 scheduled run", ran)
	}
	if n := finished.Load(); n != 2 {
		t.Errorf("OnFinish saw %d records across replicas, want 2 (missed, passed)", n)
	}
	if n := started.Load(); n < 1 || n > 2 {
		t.Errorf("RunFunc called %d times, want 1 or 2 (the loser stops at Begin)", n)
	}
	last, err := store.LastScheduled(ctx, "hourly")
	if err != nil || !last.Equal(date("2026-03-02T10:00:00Z")) {
		t.Errorf("LastScheduled = %v, %v; want 10:00", last, err)
	}
}

// TestRunnerDuplicateIsRecognised: drill.Runner reports its recorder's refusal with %v, which
// loses the error chain; the scheduler must still see another replica's run in it.
func TestRunnerDuplicateIsRecognised(t *testing.T) {
	ctx := context.Background()
	store, err := history.Open(ctx, filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	at := date("2026-03-02T10:00:00Z")
	gate := make(chan struct{})
	close(gate)
	sc := scenario("hourly", "0 * * * *", "")
	run := func() error {
		r := drill.Runner{Recorder: store, Trigger: "schedule", ScheduledFor: &at, WorkRoot: t.TempDir()}
		_, err := r.Run(ctx, sc, gateDriver{gate})
		return err
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	err = run()
	if err == nil || !isDuplicate(err) {
		t.Fatalf("second run of one scheduled time: %v, want a duplicate the scheduler recognises", err)
	}
	if isDuplicate(context.Canceled) {
		t.Error("isDuplicate(context.Canceled) = true")
	}
}
