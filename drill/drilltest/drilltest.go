// Package drilltest is the contract every drill driver meets, in the manner of a storage
// backend's test suite: one set of tests, run by each driver's own tests against real servers
// with a Harness that knows how to make that driver's scenarios. A new driver gets the suite by
// writing a Harness.
package drilltest

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// Harness is what the suite needs to know of one driver.
type Harness struct {
	Driver drill.Driver
	// Good returns a scenario whose drill passes, with at least one check.
	Good func(t *testing.T) *scenarios.Scenario
	// Corrupt returns a scenario whose backup is damaged: the drill must fail, never error.
	Corrupt func(t *testing.T) *scenarios.Scenario
	// Unreachable returns a scenario whose server cannot be reached: the drill must error, never
	// fail, because nothing was learnt about the backup.
	Unreachable func(t *testing.T) *scenarios.Scenario
	// Leftovers lists what a finished run left of what it created (namespaces, objects, keys);
	// the suite itself looks for files in the work root and processes started under it.
	Leftovers func(t *testing.T, rec *drill.Record) []string
	// AssertGood and AssertUnreachable check what the driver itself records in those cases:
	// its own evidence, the words an operator needs. Optional.
	AssertGood, AssertUnreachable func(t *testing.T, rec *drill.Record)
	// InterruptAfter is how long after the restore step starts the interrupt comes: long enough
	// to be inside the driver's restore. Default 1s.
	InterruptAfter time.Duration
}

// Run runs the contract. Each case is a real drill; they run one after another because a
// driver's servers (Velero restores one backup at a time) would only queue them.
func Run(t *testing.T, h Harness) {
	t.Run("passes on a good backup", func(t *testing.T) {
		rec := run(t, h, context.Background(), h.Good(t), nil)
		if rec.Result != drill.Passed {
			t.Fatalf("result %s: %s\nsteps %+v\nchecks %+v", rec.Result, rec.Message, rec.Steps, rec.Checks)
		}
		for _, s := range rec.Steps {
			if s.Result != drill.Passed {
				t.Errorf("step %s: %s %s", s.Name, s.Result, s.Message)
			}
		}
		if len(rec.Checks) == 0 {
			t.Fatal("no checks recorded")
		}
		for _, c := range rec.Checks {
			if c.Result != drill.Passed || c.Type == "" || len(c.Evidence) == 0 || c.Seconds < 0 {
				t.Errorf("check %s (%s): %s %q, evidence %v, %.3fs", c.Name, c.Type, c.Result, c.Message, c.Evidence, c.Seconds)
			}
		}
		if rec.RTOSeconds == nil || rec.RPOSeconds == nil {
			t.Errorf("RTO %v, RPO %v: a pass measures both", rec.RTOSeconds, rec.RPOSeconds)
		}
		assertEvidenceKeys(t, rec, true)
		if h.AssertGood != nil {
			h.AssertGood(t, rec)
		}
	})

	t.Run("a corrupt backup fails and never errors", func(t *testing.T) {
		rec := run(t, h, context.Background(), h.Corrupt(t), nil)
		if rec.Result != drill.Failed {
			t.Fatalf("result %s %q, want failed: a damaged backup is a finding about the backup", rec.Result, rec.Message)
		}
		if rec.RTOSeconds != nil {
			t.Errorf("RTO %v measured for a failed drill", *rec.RTOSeconds)
		}
		if !slices.ContainsFunc(rec.Checks, func(c drill.CheckRecord) bool { return c.Result == drill.Failed }) &&
			!slices.ContainsFunc(rec.Steps, func(s drill.StepRecord) bool { return s.Result == drill.Failed }) {
			t.Errorf("no failed check or step says why: steps %+v checks %+v", rec.Steps, rec.Checks)
		}
		assertEvidenceKeys(t, rec, false)
	})

	t.Run("an unreachable server errors and never fails", func(t *testing.T) {
		rec := run(t, h, context.Background(), h.Unreachable(t), nil)
		if rec.Result != drill.Error {
			t.Fatalf("result %s %q, want error: an unreachable server says nothing about the backup", rec.Result, rec.Message)
		}
		if rec.Message == "" {
			t.Error("an error without a message")
		}
		for _, c := range rec.Checks {
			if c.Result == drill.Failed {
				t.Errorf("check %s failed although nothing was restored", c.Name)
			}
		}
		if h.AssertUnreachable != nil {
			h.AssertUnreachable(t, rec)
		}
	})

	t.Run("cleans up after an interrupt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		after := h.InterruptAfter
		if after <= 0 {
			after = time.Second
		}
		p := &stepWatch{on: func(step string) {
			if step == drill.StepRestore {
				time.AfterFunc(after, cancel)
			}
		}}
		rec := run(t, h, ctx, h.Good(t), p)
		if rec.Result != drill.Aborted {
			t.Fatalf("result %s %q, want aborted", rec.Result, rec.Message)
		}
		var cleanup *drill.StepRecord
		for i := range rec.Steps {
			if rec.Steps[i].Name == drill.StepCleanup {
				cleanup = &rec.Steps[i]
			}
		}
		if cleanup == nil || cleanup.Result != drill.Passed {
			t.Errorf("cleanup after the interrupt: %+v", cleanup)
		}
	})

	t.Run("plans without touching anything", func(t *testing.T) {
		sc := h.Good(t)
		r, err := h.Driver.NewRun(sc, &drill.RunContext{ID: "plan", Scenario: sc, Progress: drill.NopProgress{}})
		if err != nil {
			t.Fatal(err)
		}
		p := drill.PlanOf(sc, r)
		if len(p.Backup) == 0 || len(p.Restore) == 0 || len(p.Isolation) == 0 || len(p.Cleanup) < 2 {
			t.Errorf("plan lacks lines: %+v", p)
		}
		if len(p.Checks) != len(sc.Spec.Checks) {
			t.Fatalf("plan has %d checks, the scenario %d", len(p.Checks), len(sc.Spec.Checks))
		}
		for _, c := range p.Checks {
			if c.Name == "" || c.Type == "" || c.Description == "" {
				t.Errorf("plan check %+v: every check is named and described", c)
			}
		}
	})
}

// run carries out one drill with a fresh work root and checks that nothing of it is left.
func run(t *testing.T, h Harness, ctx context.Context, sc *scenarios.Scenario, p drill.Progress) *drill.Record {
	t.Helper()
	work := t.TempDir()
	rec, err := (&drill.Runner{Progress: p, WorkRoot: work}).Run(ctx, sc, h.Driver)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if rec.Target != nil && rec.Target.Kept {
		t.Fatal("the suite's scenarios must use cleanup policy Always")
	}
	if entries, _ := os.ReadDir(work); len(entries) > 0 {
		t.Errorf("work root not empty after the run: %v", entries)
	}
	if procs := testkit.ProcessesUnder(work); len(procs) > 0 {
		t.Errorf("processes started under the work root still run: %v", procs)
	}
	if h.Leftovers != nil {
		if left := h.Leftovers(t, rec); len(left) > 0 {
			t.Errorf("left behind by run %s: %v", rec.ID, left)
		}
	}
	return rec
}

// assertEvidenceKeys checks that the record carries the fields every driver fills, so that
// reports and auditors read the same keys whatever the backup kind.
func assertEvidenceKeys(t *testing.T, rec *drill.Record, restored bool) {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Backup map[string]any `json:"backup"`
		Target map[string]any `json:"target"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"kind", "source", "name", "createdAt"} {
		if v, ok := m.Backup[k]; !ok || v == "" {
			t.Errorf("record's backup lacks %q: %v", k, m.Backup)
		}
	}
	if restored {
		if rec.RPOSeconds == nil {
			t.Error("record lacks the RPO: the backup's age at the restore")
		}
		if k, _ := m.Target["kind"].(string); k == "" {
			t.Errorf("record's target lacks its kind: %v", m.Target)
		}
	}
}

// stepWatch calls on when a step starts.
type stepWatch struct {
	mu sync.Mutex
	on func(step string)
}

func (s *stepWatch) Step(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on != nil {
		s.on(name)
	}
}
func (s *stepWatch) Bytes(int64, int64) {}
func (s *stepWatch) Note(string)        {}
