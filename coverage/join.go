package coverage

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// JoinOptions say what "covered" means.
type JoinOptions struct {
	// Now is when the coverage is judged: the end of a report's period, else the present.
	Now time.Time
	// Within is the window of items that name none (WindowAnnotation); default DefaultWindow.
	Within time.Duration
	// Since, when set, is where every item's window starts instead of Now minus its window: a
	// report's period, whose question is whether a drill passed in it.
	Since time.Time
}

// Result is the coverage of every item: `firedrill coverage -o json`, the reports' section and
// serve's metrics are made from it.
type Result struct {
	At            time.Time          `json:"at"`
	Since         *time.Time         `json:"since,omitempty"`
	DefaultWindow scenarios.Duration `json:"defaultWindow"`
	// Items: not covered first, then covered, then excluded; within each by kind and key.
	Items      []Item `json:"items"`
	Covered    int    `json:"covered"`
	NotCovered int    `json:"notCovered"`
	Excluded   int    `json:"excluded"`
	// Ratio is covered ÷ items not excluded; null when there is none.
	Ratio    *float64 `json:"ratio"`
	Problems []string `json:"problems,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

// NotCoveredItems returns the items not covered, in Items' order.
func (r *Result) NotCoveredItems() []Item { return r.only(NotCovered) }

// ExcludedItems returns the excluded items, in Items' order.
func (r *Result) ExcludedItems() []Item { return r.only(Excluded) }

func (r *Result) only(s Status) []Item {
	var out []Item
	for _, it := range r.Items {
		if it.Status == s {
			out = append(out, it)
		}
	}
	return out
}

// Join decides every item's coverage from the newest drills of its scenarios (latest, by
// scenario name, as History.Latest returns them): an item is covered when one of them passed
// within its window, whatever came after (a failing drill pages on its own, as
// FiredrillDrillFailing). The inventory is not changed.
func Join(inv *Inventory, latest map[string]Latest, o JoinOptions) *Result {
	if o.Within <= 0 {
		o.Within = DefaultWindow
	}
	res := &Result{At: o.Now.UTC(), DefaultWindow: scenarios.Duration{Duration: o.Within}, Items: make([]Item, len(inv.Items)),
		Problems: slices.Clone(inv.Problems), Notes: slices.Clone(inv.Notes)}
	if !o.Since.IsZero() {
		s := o.Since.UTC()
		res.Since = &s
	}
	for i := range inv.Items {
		it := inv.Items[i]
		it.Scenarios = slices.Clone(it.Scenarios)
		judge(&it, latest, o)
		res.Items[i] = it
		switch it.Status {
		case Covered:
			res.Covered++
		case NotCovered:
			res.NotCovered++
		case Excluded:
			res.Excluded++
		}
	}
	slices.SortStableFunc(res.Items, func(a, b Item) int { return compareItems(&a, &b) })
	if n := res.Covered + res.NotCovered; n > 0 {
		r := float64(res.Covered) / float64(n)
		res.Ratio = &r
	}
	return res
}

// judge sets an item's window, newest drills, status and reason.
func judge(it *Item, latest map[string]Latest, o JoinOptions) {
	w := it.window
	if w == 0 {
		w, it.WindowFrom = o.Within, "default (--within)"
	}
	it.Window = scenarios.Duration{Duration: w}
	for _, name := range it.Scenarios {
		l := latest[name]
		it.LastPassed, it.LastDrill = newer(it.LastPassed, l.Passed), newer(it.LastDrill, l.Drill)
	}
	start, period := o.Now.Add(-w), "within "+it.Window.String()
	if !o.Since.IsZero() {
		start, period = o.Since, "in the period"
	}
	switch {
	case it.Excluded != "":
		it.Status = Excluded
		return
	case it.LastPassed != nil && !it.LastPassed.At.Before(start):
		it.Status = Covered
		return
	}
	it.Status = NotCovered
	switch {
	case len(it.Scenarios) == 0:
		it.Reason = "no scenario drills it"
	case it.LastDrill == nil:
		it.Reason = "never drilled: no run of its scenarios (" + strings.Join(it.Scenarios, ", ") + ") ran"
	case it.LastPassed == nil:
		it.Reason = fmt.Sprintf("never passed: its newest drill %s", describe(it.LastDrill))
	default:
		it.Reason = fmt.Sprintf("no drill passed %s: the last pass was %s", period, describe(it.LastPassed))
		if it.LastDrill.Result != drill.Passed {
			it.Reason += fmt.Sprintf("; the newest drill %s", describe(it.LastDrill))
		}
	}
}

func describe(d *Drill) string {
	return fmt.Sprintf("%s (%s of %s) %s", d.ID, d.At.UTC().Format("2006-01-02 15:04Z"), d.Scenario, d.Result)
}
