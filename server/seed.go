package server

import (
	"context"
	"log/slog"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
)

// seedWindow is how many of a scenario's newest runs SeedFromHistory reads first.
const seedWindow = 10

// SeedFromHistory reads what a restarted process needs to know about the runs before it, for
// the scenarios named: per scenario the newest record of each result among its latest runs, and
// the newest passed one even when older, for Metrics.Seed; and the last result that says
// something about the backup (not skipped, not aborted), for the notifier's Seed. A scenario
// whose runs can't be read is logged and left out: its gauges start empty.
func SeedFromHistory(ctx context.Context, runs Runs, scenarios []string, log *slog.Logger) ([]drill.Record, map[string]drill.Result) {
	var recs []drill.Record
	last := map[string]drill.Result{}
	seen := map[string]bool{}
	for _, name := range scenarios {
		if seen[name] {
			continue
		}
		seen[name] = true
		latest, err := runs.List(ctx, history.Filter{Scenario: name, Limit: seedWindow})
		if err != nil {
			log.Warn("could not read the history to seed metrics; last-run gauges start empty", "scenario", name, "err", err)
			continue
		}
		newest := map[drill.Result]bool{}
		for _, r := range latest {
			if r.Result == drill.Running || newest[r.Result] {
				continue
			}
			newest[r.Result] = true
			recs = append(recs, r)
			// Notifications judge a recovery against the last result that says something
			// about the backup: skipped and aborted runs say nothing.
			if _, ok := last[name]; !ok && r.Result != drill.Skipped && r.Result != drill.Aborted {
				last[name] = r.Result
			}
		}
		if len(latest) < seedWindow {
			continue
		}
		// The window held only some results (a long run of skipped ones, say): look further
		// back for the last pass, and for the last meaningful result when none was seen.
		_, known := last[name]
		var older drill.Record
		for _, res := range []drill.Result{drill.Passed, drill.Failed, drill.Error, drill.Aborted, drill.Missed} {
			if newest[res] || (known && res != drill.Passed) {
				continue
			}
			p, err := runs.List(ctx, history.Filter{Scenario: name, Result: res, Limit: 1})
			if err != nil || len(p) == 0 {
				continue
			}
			recs = append(recs, p[0])
			if res == drill.Aborted {
				continue
			}
			if older.ID == "" || p[0].StartedAt.After(older.StartedAt) {
				older = p[0]
			}
		}
		if !known && older.ID != "" {
			last[name] = older.Result
		}
	}
	return recs, last
}
