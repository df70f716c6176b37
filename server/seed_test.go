package server

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// Seeding reads the newest record of each result and finds the last pass behind a run of
// skipped records, from a real history.
func TestSeedFromHistory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := openHistory(t)
	base := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	n := 0
	add := func(scenario string, res drill.Result) {
		at := base.Add(time.Duration(n) * time.Minute)
		n++
		end := at.Add(30 * time.Second)
		r := &drill.Record{ID: fmt.Sprintf("seed-%03d", n), Scenario: scenario, Trigger: "manual", Result: res, StartedAt: at, FinishedAt: &end,
			Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{}, Checks: []drill.CheckRecord{}}
		if err := store.Finish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	add("mixed", drill.Passed)
	add("mixed", drill.Passed)
	add("mixed", drill.Failed)
	add("mixed", drill.Skipped)
	add("busy", drill.Passed)
	for range 12 {
		add("busy", drill.Skipped)
	}
	recs, last := SeedFromHistory(ctx, store, []string{"mixed", "busy", "never-ran", "mixed"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	got := map[string][]string{}
	for _, r := range recs {
		got[r.Scenario] = append(got[r.Scenario], r.ID+":"+string(r.Result))
	}
	want := map[string][]string{
		"mixed": {"seed-004:skipped", "seed-003:failed", "seed-002:passed"},
		"busy":  {"seed-017:skipped", "seed-005:passed"},
	}
	for name, w := range want {
		if !slices.Equal(got[name], w) {
			t.Errorf("seed records of %s: %v, want %v", name, got[name], w)
		}
	}
	if len(got) != 2 {
		t.Errorf("seed records for scenarios %v, want only mixed and busy", got)
	}
	if last["mixed"] != drill.Failed || last["busy"] != drill.Passed || len(last) != 2 {
		t.Errorf("last results %v, want mixed failed, busy passed (skipped runs say nothing)", last)
	}
}
