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

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

// ControlsKey names the audit controls a scenario evidences, comma-separated, in its
// metadata.annotations (or, for a single control, its labels): "SOC2-A1.3,ISO27001-A.5.30".
const ControlsKey = "firedrill.dev/controls"

// Source calls fn with every finished record of the history in chain order, as the JSON the
// history stores; history.Store.WalkRaw is one. Reports call it more than once (a summary
// pass, then a pass per section that lists runs), so that no report holds every record.
type Source func(ctx context.Context, fn func(raw []byte) error) error

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

// MaxFailures caps Summary.Failures; every run, failed or not, is still listed in full.
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

// Integrity is what verifying the whole history's chain found when the report was made.
type Integrity struct {
	Intact            bool   `json:"intact"`
	Records           int    `json:"records"`
	Unprotected       int    `json:"unprotected,omitempty"`
	ChainHead         string `json:"chainHead"`
	Signed            int    `json:"signed"`
	SignaturesChecked bool   `json:"signaturesChecked"`
	KeyFingerprint    string `json:"keyFingerprint,omitempty"`
	Statement         string `json:"statement"`
	Problem           string `json:"problem,omitempty"`
	VerifyCommand     string `json:"verifyCommand"`
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

// Summarize reads the history once: it verifies the whole chain and summarises the runs in
// scope. Memory stays bounded by the number of scenarios and controls, not runs.
func Summarize(ctx context.Context, src Source, o Options) (*Summary, error) {
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
	var pub ed25519.PublicKey
	if len(o.PublicKey) > 0 {
		pub = o.PublicKey
	}
	v := chain.NewVerifier(pub)
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
	pos := 0
	err := src(ctx, func(raw []byte) error {
		pos++
		v.Add(raw)
		var r drill.Record
		if err := decodeRecord(raw, &r); err != nil {
			return fmt.Errorf("stored record: %w", err)
		}
		if inScopeName(r.Scenario, r.Labels) {
			if cs := ControlsOf(r.Annotations, r.Labels); len(cs) > 0 {
				scenario(r.Scenario).Controls = cs // the newest record's say wins
				learn(r.Scenario, cs)
			} else if byName[r.Scenario] == nil {
				scenario(r.Scenario) // known, even if it did not run in the period
			}
		}
		if !o.Scope.Match(&r) {
			return nil
		}
		if s.Segment.First == 0 {
			s.Segment.First, s.Segment.AfterHash = pos, r.PrevHash
		}
		s.Segment.Last, s.Segment.LastHash = pos, r.Hash
		s.add(scenario(r.Scenario), &r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := v.Result()
	s.Integrity = integrity(res, o.VerifyCommand)

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
	return s, nil
}

func integrity(res chain.Result, cmd string) Integrity {
	in := Integrity{
		Intact: res.OK(), Records: res.Records, Unprotected: res.Unprotected, ChainHead: res.Head,
		Signed: res.Signed, SignaturesChecked: res.SignaturesChecked, KeyFingerprint: res.KeyFingerprint,
		VerifyCommand: cmd,
	}
	if res.Break != nil {
		in.Problem = res.Break.Error()
		in.Statement = "The history's hash chain is BROKEN: " + res.Break.Error() + ". Records from that point on cannot be trusted."
		return in
	}
	head := res.Head
	if head == "" {
		head = "(empty: no chained records)"
	}
	sig := fmt.Sprintf("Signatures were not checked (%d of %d records are signed; give the public key to check them).", res.Signed, res.Records-res.Unprotected)
	if res.SignaturesChecked {
		sig = fmt.Sprintf("Every record's ed25519 signature verified with key %s.", res.KeyFingerprint)
	}
	in.Statement = fmt.Sprintf("When this report was generated, the hash chain over all %d records of the history was intact; its head is %s. %s", res.Records, head, sig)
	if res.Unprotected > 0 {
		in.Statement += fmt.Sprintf(" The first %d records predate the hash chain and are not protected by it.", res.Unprotected)
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

// eachInScope calls fn with every record of src in scope, in chain order, with its stored JSON.
func eachInScope(ctx context.Context, src Source, scope Scope, fn func(r *drill.Record, raw []byte) error) error {
	return src(ctx, func(raw []byte) error {
		var r drill.Record
		if err := decodeRecord(raw, &r); err != nil {
			return fmt.Errorf("stored record: %w", err)
		}
		if !scope.Match(&r) {
			return nil
		}
		return fn(&r, raw)
	})
}
