package report

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
)

// ControlsKey names the audit controls a scenario evidences, comma-separated, in its
// metadata.annotations (or, for a single control, its labels): "SOC2-A1.3,ISO27001-A.5.30".
const ControlsKey = "firedrill.dev/controls"

// Scope selects the runs a report covers. Zero fields select everything.
type Scope struct {
	From, To time.Time // runs started in [From, To)
	Scenario string
	Labels   labels.Selector // nil: any
}

// Match reports whether r is in the scope.
func (s Scope) Match(r *drill.Record) bool {
	switch {
	case !s.From.IsZero() && r.StartedAt.Before(s.From):
		return false
	case !s.To.IsZero() && !r.StartedAt.Before(s.To):
		return false
	case s.Scenario != "" && r.Scenario != s.Scenario:
		return false
	case s.Labels != nil && !s.Labels.Matches(labels.Set(r.Labels)):
		return false
	}
	return true
}

// String describes the scope in words.
func (s Scope) String() string {
	var parts []string
	switch {
	case !s.From.IsZero() && !s.To.IsZero():
		parts = append(parts, "runs started from "+stamp(s.From)+" to "+stamp(s.To))
	case !s.From.IsZero():
		parts = append(parts, "runs started since "+stamp(s.From))
	case !s.To.IsZero():
		parts = append(parts, "runs started before "+stamp(s.To))
	default:
		parts = append(parts, "all runs")
	}
	if s.Scenario != "" {
		parts = append(parts, "of scenario "+s.Scenario)
	}
	if s.Labels != nil && !s.Labels.Empty() {
		parts = append(parts, "with labels "+s.Labels.String())
	}
	return strings.Join(parts, " ")
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// ScenarioInfo is what a scenario file says about itself, for scenarios that may not have run.
type ScenarioInfo struct {
	Name     string
	Labels   map[string]string
	Controls []string
}

// Options say what a report covers and how to describe its integrity.
type Options struct {
	Scope Scope
	// Scenarios, when known (--scenarios), lets the report list scenarios and controls that
	// had no run at all in the period.
	Scenarios []ScenarioInfo
	// PublicKey, when set, makes the integrity check verify every signature.
	PublicKey ed25519.PublicKey
	// VerifyCommand is the command line that re-verifies the history, for the integrity statement.
	VerifyCommand string
	// Now stamps the report; default time.Now.
	Now func() time.Time
	// Coverage, when set, adds the section "not restore-tested in the period": what there is to
	// drill (coverage.Discover's inventory) joined with the history up to the period's end. With
	// a start of the period an item is covered when a drill of it passed in the period; without
	// one, within its window (CoverageWithin for items that name none).
	Coverage       *coverage.Inventory
	CoverageWithin time.Duration
}

// Summary is what a report says about its period before it lists runs. It is small whatever
// the number of runs: trends are downsampled, failures capped.
type Summary struct {
	GeneratedAt time.Time          `json:"generatedAt"`
	Scope       string             `json:"scope"`
	From        *time.Time         `json:"from,omitempty"`
	To          *time.Time         `json:"to,omitempty"`
	Runs        int                `json:"runs"`
	Counts      map[string]int     `json:"counts"` // by result
	PassRate    *float64           `json:"passRate"`
	Scenarios   []*ScenarioSummary `json:"scenarios"`
	Controls    []*ControlSummary  `json:"controls"`
	// Failures are the runs in scope that did not pass (failed, error, aborted, missed),
	// newest last; at most MaxFailures, FailuresOmitted says how many more there were.
	Failures        []Failure `json:"failures"`
	FailuresOmitted int       `json:"failuresOmitted,omitempty"`
	Integrity       Integrity `json:"integrity"`
	// Segment is the stretch of the hash chain that holds the runs in scope.
	Segment Segment `json:"chainSegment"`
	// Coverage is what there is to drill and whether a drill of it passed in the period
	// (Options.Coverage); absent when not asked for.
	Coverage *coverage.Result `json:"coverage,omitempty"`
}

// Segment locates a report's runs in the chain: positions First to Last (1-based, in chain
// order; 0 when no run is in scope), the prevHash the stretch starts after and its last hash.
// A bundle's records.jsonl is this stretch, which docs/history.md's script verifies.
type Segment struct {
	First     int    `json:"first"`
	Last      int    `json:"last"`
	AfterHash string `json:"afterHash"`
	LastHash  string `json:"lastHash"`
}

// MaxFailures caps Summary.Failures (and so the failed runs the HTML lists in full); every run,
// failed or not, is still listed in JSON, Markdown, CSV and JUnit.
const MaxFailures = 500

// ScenarioSummary is one scenario's runs in the period.
type ScenarioSummary struct {
	Name        string         `json:"name"`
	Controls    []string       `json:"controls,omitempty"`
	Runs        int            `json:"runs"`
	Counts      map[string]int `json:"counts"`
	PassRate    *float64       `json:"passRate"` // passed / runs that ran (passed, failed, error, aborted)
	LastRun     *time.Time     `json:"lastRun,omitempty"`
	LastResult  drill.Result   `json:"lastResult,omitempty"`
	LastSuccess *time.Time     `json:"lastSuccess,omitempty"`
	// LastSuccessRun is the id of the run that last passed in the period.
	LastSuccessRun string  `json:"lastSuccessRun,omitempty"`
	RTO            Measure `json:"rto"`
	RPO            Measure `json:"rpo"`
	// Trend is RTO and RPO over the period, oldest first, downsampled to at most MaxTrend points.
	Trend []TrendPoint `json:"trend"`
	// Checks counts check results, for JUnit's suite totals.
	Checks map[string]int `json:"checks"`
}

// Measure summarises RTO or RPO against its objective.
type Measure struct {
	TargetSeconds *float64 `json:"targetSeconds,omitempty"` // the latest run's objective
	Measured      int      `json:"measured"`
	Met           int      `json:"met"`
	NotMet        int      `json:"notMet"`
	MinSeconds    *float64 `json:"minSeconds,omitempty"`
	MaxSeconds    *float64 `json:"maxSeconds,omitempty"`
	MeanSeconds   *float64 `json:"meanSeconds,omitempty"`
	LastSeconds   *float64 `json:"lastSeconds,omitempty"`
	sum           float64
}

// TrendPoint is one point of a trend: the mean of the runs it stands for.
type TrendPoint struct {
	At         time.Time `json:"at"`
	RTOSeconds *float64  `json:"rtoSeconds"`
	RPOSeconds *float64  `json:"rpoSeconds"`
	Runs       int       `json:"runs"`
	Failed     int       `json:"failed"`
	rtoN, rpoN int
}

// MaxTrend caps a trend's points; more runs are averaged in pairs.
const MaxTrend = 240

// ControlSummary is the evidence for one control in the period.
type ControlSummary struct {
	Control   string   `json:"control"`
	Scenarios []string `json:"scenarios"`
	Runs      int      `json:"runs"` // runs that ran
	Passed    int      `json:"passed"`
	// Status: "passed" (every run passed), "failed" (a run did not pass), "not run" (no run
	// of its scenarios ran in the period).
	Status      string     `json:"status"`
	LastSuccess *time.Time `json:"lastSuccess,omitempty"`
	// LastSuccessRun is the run that last evidenced the control: the newest passed run of its
	// scenarios in the period.
	LastSuccessRun string `json:"lastSuccessRun,omitempty"`
	// FailedRuns are the ids of its scenarios' runs that did not pass (at most MaxFailures).
	FailedRuns []string `json:"failedRuns,omitempty"`
}

// Failure is a run that did not pass, with its reason.
type Failure struct {
	ID       string       `json:"id"`
	Scenario string       `json:"scenario"`
	Result   drill.Result `json:"result"`
	At       time.Time    `json:"startedAt"`
	Reason   string       `json:"reason"`
}

// Integrity is what verifying the whole history found when the report was made: drill/history's
// Verify, the check `firedrill history verify` makes, with a statement of it for auditors.
type Integrity struct {
	history.Verification
	Statement     string `json:"statement"`
	VerifyCommand string `json:"verifyCommand"`
}

// decodeRecord reads a stored record; numbers in evidence stay json.Number.
func decodeRecord(raw []byte, r *drill.Record) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(r)
}

// ControlsOf returns the controls named by a scenario's annotations or labels.
func ControlsOf(annotations, lbls map[string]string) []string {
	v := annotations[ControlsKey]
	if v == "" {
		v = lbls[ControlsKey]
	}
	var out []string
	for c := range strings.SplitSeq(v, ",") {
		if c = strings.TrimSpace(c); c != "" && !contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// ran reports whether a result is of a drill that was carried out (as opposed to skipped or missed).
func ran(r drill.Result) bool {
	return r == drill.Passed || r == drill.Failed || r == drill.Error || r == drill.Aborted
}

// summarize reads the history once, through Source.Verify: it verifies the whole history,
// summarises the runs in scope and keeps the few that the HTML lists in full. Memory stays
// bounded by the number of scenarios and controls, besides a bit per run (inScope).
func (r *Report) summarize(ctx context.Context) error {
	o := r.opts
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	s := &Summary{GeneratedAt: now().UTC(), Scope: o.Scope.String(), Counts: map[string]int{}, Failures: []Failure{}}
	if !o.Scope.From.IsZero() {
		f := o.Scope.From.UTC()
		s.From = &f
	}
	if !o.Scope.To.IsZero() {
		t := o.Scope.To.UTC()
		s.To = &t
	}
	byName := map[string]*ScenarioSummary{}
	scenario := func(name string) *ScenarioSummary {
		sc := byName[name]
		if sc == nil {
			sc = &ScenarioSummary{Name: name, Counts: map[string]int{}, Checks: map[string]int{}, Trend: []TrendPoint{}}
			byName[name] = sc
		}
		return sc
	}
	// Controls are learned from every record, in the period or not, and from scenario files:
	// a control whose drills stopped running is exactly what the report must show.
	controls := map[string]map[string]bool{} // control -> scenarios
	learn := func(scenarioName string, cs []string) {
		for _, c := range cs {
			if controls[c] == nil {
				controls[c] = map[string]bool{}
			}
			controls[c][scenarioName] = true
		}
	}
	inScopeName := func(name string, lbls map[string]string) bool {
		return (o.Scope.Scenario == "" || name == o.Scope.Scenario) &&
			(o.Scope.Labels == nil || o.Scope.Labels.Matches(labels.Set(lbls)))
	}
	for _, si := range o.Scenarios {
		if inScopeName(si.Name, si.Labels) {
			scenario(si.Name).Controls = si.Controls
			learn(si.Name, si.Controls)
		}
	}
	r.listed = map[string]*kept{}
	reader := runReader{metas: map[string]*runMeta{}}
	// Coverage counts every run up to the period's end, in scope or not: an item's scenarios
	// are the inventory's, not the report's selection.
	runs := coverage.Runs{Before: o.Scope.To}
	pos := 0
	verification, err := r.src.Verify(ctx, history.VerifyOptions{PublicKey: o.PublicKey, Each: func(raw []byte, f *chain.Fields) error {
		pos++
		if kind, _ := f.Text("kind"); string(kind) == chain.KindCheckpoint {
			return nil // it stands for pruned runs, and is none: the integrity statement names it
		}
		var rec drill.Record
		meta, err := reader.head(raw, f, &rec)
		if err != nil {
			return fmt.Errorf("stored record %d of the chain: %w", pos, err)
		}
		runs.Add(rec.ID, rec.Scenario, rec.Result, rec.StartedAt)
		if meta.fresh && inScopeName(rec.Scenario, rec.Labels) {
			// Runs of a scenario mostly repeat its labels and annotations: this is the first
			// of its runs with these, and the newest record's say wins.
			if cs := ControlsOf(rec.Annotations, rec.Labels); len(cs) > 0 {
				scenario(rec.Scenario).Controls = cs
				learn(rec.Scenario, cs)
			} else if byName[rec.Scenario] == nil {
				scenario(rec.Scenario) // known, even if it did not run in the period
			}
		}
		if !o.Scope.Match(&rec) {
			return nil
		}
		if err := reader.rest(f, &rec); err != nil {
			return fmt.Errorf("stored record %d of the chain: %w", pos, err)
		}
		r.inScope.add(pos)
		if s.Segment.First == 0 {
			s.Segment.First, s.Segment.AfterHash = pos, rec.PrevHash
		}
		s.Segment.Last, s.Segment.LastHash = pos, rec.Hash
		sc := scenario(rec.Scenario)
		failures, success := len(s.Failures), sc.LastSuccessRun
		s.add(sc, &rec)
		k := r.listed[rec.Scenario]
		if k == nil {
			k = &kept{}
			r.listed[rec.Scenario] = k
		}
		k.keep(pos, raw, len(s.Failures) > failures, sc.LastSuccessRun != success)
		return nil
	}})
	if err != nil {
		return err
	}
	s.Integrity = integrity(verification, o.VerifyCommand)

	for _, sc := range byName {
		sc.finish()
		s.Scenarios = append(s.Scenarios, sc)
	}
	sort.Slice(s.Scenarios, func(i, j int) bool { return s.Scenarios[i].Name < s.Scenarios[j].Name })
	if s.Scenarios == nil {
		s.Scenarios = []*ScenarioSummary{}
	}
	s.PassRate = passRate(s.Counts)
	s.Controls = []*ControlSummary{}
	for c, scs := range controls {
		cs := &ControlSummary{Control: c, Status: "not run"}
		for name := range scs {
			cs.Scenarios = append(cs.Scenarios, name)
			sc := byName[name]
			cs.Runs += sc.Counts[string(drill.Passed)] + sc.Counts[string(drill.Failed)] + sc.Counts[string(drill.Error)] + sc.Counts[string(drill.Aborted)]
			cs.Passed += sc.Counts[string(drill.Passed)]
			if sc.LastSuccess != nil && (cs.LastSuccess == nil || sc.LastSuccess.After(*cs.LastSuccess)) {
				cs.LastSuccess, cs.LastSuccessRun = sc.LastSuccess, sc.LastSuccessRun
			}
		}
		for _, f := range s.Failures {
			if scs[f.Scenario] && ran(f.Result) {
				cs.FailedRuns = append(cs.FailedRuns, f.ID)
			}
		}
		sort.Strings(cs.Scenarios)
		switch {
		case cs.Runs == 0:
			cs.Status = "not run"
		case cs.Passed < cs.Runs:
			cs.Status = "failed"
		default:
			cs.Status = "passed"
		}
		s.Controls = append(s.Controls, cs)
	}
	sort.Slice(s.Controls, func(i, j int) bool { return s.Controls[i].Control < s.Controls[j].Control })
	if o.Coverage != nil {
		latest, _ := runs.Latest(ctx, o.Coverage.Scenarios()) // Runs never fails
		at := s.GeneratedAt
		if s.To != nil && s.To.Before(at) {
			at = *s.To
		}
		s.Coverage = coverage.Join(o.Coverage, latest, coverage.JoinOptions{Now: at, Within: o.CoverageWithin, Since: o.Scope.From})
	}
	r.Summary = s
	return nil
}

func integrity(v history.Verification, cmd string) Integrity {
	in := Integrity{Verification: v, VerifyCommand: cmd}
	if v.Break != nil {
		in.Statement = "The history is not intact: " + v.Problem + ". Nothing from that record on can be trusted."
		return in
	}
	head := v.ChainHead
	if head == "" {
		head = "(empty: no chained records)"
	}
	sig := fmt.Sprintf("Signatures were not checked (%d of %d records are signed; give the public key to check them).", v.Signed, v.Records-v.Unprotected)
	if v.SignaturesChecked {
		sig = fmt.Sprintf("Every record's ed25519 signature verified with key %s.", v.KeyFingerprint)
	}
	records := fmt.Sprintf("all %d records of the history", v.Records)
	if c := v.Checkpoint; c != nil {
		records += fmt.Sprintf(" (the first a checkpoint, %s, that stands for %d earlier runs moved into an archive by a prune; 'firedrill history verify --archive FILE' checks the archive)", c.ID, c.Runs)
	}
	in.Statement = fmt.Sprintf("When this report was generated, the hash chain over %s was intact; its head is %s. The history's query columns agreed with every record. %s", records, head, sig)
	if v.Unprotected > 0 {
		in.Statement += fmt.Sprintf(" The first %d records predate the hash chain and are not protected by it.", v.Unprotected)
	}
	return in
}

func (s *Summary) add(sc *ScenarioSummary, r *drill.Record) {
	s.Runs++
	s.Counts[string(r.Result)]++
	sc.Runs++
	sc.Counts[string(r.Result)]++
	for _, c := range r.Checks {
		sc.Checks[string(c.Result)]++
	}
	at := r.StartedAt.UTC()
	if sc.LastRun == nil || !at.Before(*sc.LastRun) {
		sc.LastRun, sc.LastResult = &at, r.Result
	}
	if r.Result == drill.Passed && (sc.LastSuccess == nil || at.After(*sc.LastSuccess)) {
		sc.LastSuccess, sc.LastSuccessRun = &at, r.ID
	}
	for _, ob := range r.Objectives {
		m := &sc.RTO
		if ob.Name == "rpo" {
			m = &sc.RPO
		} else if ob.Name != "rto" {
			continue
		}
		t := ob.TargetSeconds
		m.TargetSeconds = &t
		if ob.ActualSeconds != nil {
			if ob.Met {
				m.Met++
			} else {
				m.NotMet++
			}
		}
	}
	sc.RTO.observe(r.RTOSeconds)
	sc.RPO.observe(r.RPOSeconds)
	if r.Result != drill.Passed && r.Result != drill.Skipped && r.Result != drill.Running {
		if len(s.Failures) < MaxFailures {
			s.Failures = append(s.Failures, Failure{ID: r.ID, Scenario: r.Scenario, Result: r.Result, At: at, Reason: reason(r)})
		} else {
			s.FailuresOmitted++
		}
	}
	if ran(r.Result) {
		p := TrendPoint{At: at, RTOSeconds: copyPtr(r.RTOSeconds), RPOSeconds: copyPtr(r.RPOSeconds), Runs: 1}
		if r.Result != drill.Passed {
			p.Failed = 1
		}
		sc.addTrend(p)
	}
}

// reason is why a run did not pass, in one line.
func reason(r *drill.Record) string {
	if r.Message != "" {
		return oneLine(r.Message)
	}
	for _, c := range r.Checks {
		if c.Result == drill.Failed || c.Result == drill.Error {
			return fmt.Sprintf("check %q %s: %s", c.Name, c.Result, oneLine(c.Message))
		}
	}
	return string(r.Result)
}

func copyPtr(f *float64) *float64 {
	if f == nil {
		return nil
	}
	v := *f
	return &v
}

func (m *Measure) observe(v *float64) {
	if v == nil {
		return
	}
	x := *v
	m.Measured++
	m.sum += x
	m.LastSeconds = &x
	if m.MinSeconds == nil || x < *m.MinSeconds {
		m.MinSeconds = copyPtr(&x)
	}
	if m.MaxSeconds == nil || x > *m.MaxSeconds {
		m.MaxSeconds = copyPtr(&x)
	}
}

func (sc *ScenarioSummary) addTrend(p TrendPoint) {
	if p.RTOSeconds != nil {
		p.rtoN = 1
	}
	if p.RPOSeconds != nil {
		p.rpoN = 1
	}
	sc.Trend = append(sc.Trend, p)
	if len(sc.Trend) < 2*MaxTrend {
		return
	}
	// Halve the resolution: each pair becomes its mean, which keeps memory bounded for any
	// number of runs while the chart keeps its shape.
	out := sc.Trend[:0]
	for i := 0; i+1 < len(sc.Trend); i += 2 {
		out = append(out, merge(sc.Trend[i], sc.Trend[i+1]))
	}
	sc.Trend = out
}

func merge(a, b TrendPoint) TrendPoint {
	mean := func(x *float64, xn int, y *float64, yn int) (*float64, int) {
		switch {
		case xn == 0:
			return y, yn
		case yn == 0:
			return x, xn
		}
		v := (*x*float64(xn) + *y*float64(yn)) / float64(xn+yn)
		return &v, xn + yn
	}
	m := TrendPoint{At: a.At.Add(b.At.Sub(a.At) / 2), Runs: a.Runs + b.Runs, Failed: a.Failed + b.Failed}
	m.RTOSeconds, m.rtoN = mean(a.RTOSeconds, a.rtoN, b.RTOSeconds, b.rtoN)
	m.RPOSeconds, m.rpoN = mean(a.RPOSeconds, a.rpoN, b.RPOSeconds, b.rpoN)
	return m
}

func (sc *ScenarioSummary) finish() {
	sc.PassRate = passRate(sc.Counts)
	for _, m := range []*Measure{&sc.RTO, &sc.RPO} {
		if m.Measured > 0 {
			mean := m.sum / float64(m.Measured)
			m.MeanSeconds = &mean
		}
	}
	// Records come in the order runs finished; the chart wants start time.
	sort.SliceStable(sc.Trend, func(i, j int) bool { return sc.Trend[i].At.Before(sc.Trend[j].At) })
}

func passRate(counts map[string]int) *float64 {
	n := counts[string(drill.Passed)] + counts[string(drill.Failed)] + counts[string(drill.Error)] + counts[string(drill.Aborted)]
	if n == 0 {
		return nil
	}
	r := float64(counts[string(drill.Passed)]) / float64(n)
	return &r
}

// Percent renders a pass rate, "-" when nothing ran.
func Percent(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", *r*100)
}
