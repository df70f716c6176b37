package coverage

import (
	"context"
	"fmt"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// Latest are a scenario's newest drill that ran and its newest passed drill; nil: none.
type Latest struct {
	Drill, Passed *Drill
}

// History says when scenarios last drilled.
type History interface {
	// Latest returns the newest drills of each scenario named that has any.
	Latest(ctx context.Context, scenarios []string) (map[string]Latest, error)
}

// ranResults are the results of drills that were carried out; skipped and missed runs did not
// drill anything.
var ranResults = []drill.Result{drill.Passed, drill.Failed, drill.Error, drill.Aborted}

// Lister is what StoreHistory reads: drill/history's Store.
type Lister interface {
	List(ctx context.Context, f history.Filter) ([]drill.Record, error)
}

// StoreHistory reads the history through its indexed List: per scenario the newest run of each
// result that drilled, so that its cost grows with the number of scenarios, not of runs.
type StoreHistory struct{ Runs Lister }

var _ History = StoreHistory{}

// Latest implements History.
func (h StoreHistory) Latest(ctx context.Context, scenarios []string) (map[string]Latest, error) {
	out := make(map[string]Latest, len(scenarios))
	for _, name := range scenarios {
		var l Latest
		for _, res := range ranResults {
			recs, err := h.Runs.List(ctx, history.Filter{Scenario: name, Result: res, Limit: 1})
			if err != nil {
				return nil, fmt.Errorf("newest %s drill of %s: %w", res, name, err)
			}
			if len(recs) == 0 {
				continue
			}
			d := &Drill{ID: recs[0].ID, Scenario: name, Result: res, At: recs[0].StartedAt.UTC()}
			l.Drill = newer(l.Drill, d)
			if res == drill.Passed {
				l.Passed = d
			}
		}
		if l.Drill != nil {
			out[name] = l
		}
	}
	return out, nil
}

// Runs collects the newest drills of every scenario from records read one at a time: a
// report's single pass over the history feeds it.
type Runs struct {
	// Before, when set, leaves out runs that started at or after it (the end of a report's period).
	Before time.Time
	latest map[string]*Latest
}

var _ History = (*Runs)(nil)

// Add notes one run; runs that did not drill (skipped, missed, running) are ignored.
func (r *Runs) Add(id, scenario string, result drill.Result, startedAt time.Time) {
	switch result {
	case drill.Passed, drill.Failed, drill.Error, drill.Aborted:
	default:
		return
	}
	if !r.Before.IsZero() && !startedAt.Before(r.Before) {
		return
	}
	if r.latest == nil {
		r.latest = map[string]*Latest{}
	}
	l := r.latest[scenario]
	if l == nil {
		l = &Latest{}
		r.latest[scenario] = l
	}
	// Most runs are older than what is kept already only in a history out of order; a Drill
	// is made only for a newer one, since a report feeds every run of the history.
	if !isNewer(l.Drill, startedAt, id) && (result != drill.Passed || !isNewer(l.Passed, startedAt, id)) {
		return
	}
	d := &Drill{ID: id, Scenario: scenario, Result: result, At: startedAt.UTC()}
	l.Drill = newer(l.Drill, d)
	if result == drill.Passed {
		l.Passed = newer(l.Passed, d)
	}
}

// Latest implements History.
func (r *Runs) Latest(_ context.Context, scenarios []string) (map[string]Latest, error) {
	out := make(map[string]Latest, len(scenarios))
	for _, name := range scenarios {
		if l := r.latest[name]; l != nil {
			out[name] = *l
		}
	}
	return out, nil
}

// Measure is Discover, the history's Latest and Join in one: what `firedrill coverage` and
// serve's refresh do.
func Measure(ctx context.Context, scs []*scenarios.Scenario, h History, d DiscoverOptions, j JoinOptions) (*Result, error) {
	inv := Discover(ctx, scs, d)
	latest, err := h.Latest(ctx, inv.Scenarios())
	if err != nil {
		return nil, fmt.Errorf("read the history: %w", err)
	}
	return Join(inv, latest, j), nil
}
