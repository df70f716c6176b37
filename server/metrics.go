package server

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/schedule"
)

// Metrics are firedrill's Prometheus metrics:
//
//	firedrill_runs_total{scenario,result}                       counter
//	firedrill_last_run_timestamp_seconds{scenario,result}       gauge
//	firedrill_last_success_timestamp_seconds{scenario}          gauge
//	firedrill_run_duration_seconds{scenario}                    histogram
//	firedrill_rto_seconds{scenario}                             gauge (last measured)
//	firedrill_rpo_seconds{scenario}                             gauge (last measured)
//	firedrill_objective_met{scenario,objective}                 gauge 1/0
//	firedrill_scenario_errors{scenario}                         gauge 1 while the file is invalid
//	firedrill_scenario_interval_seconds{scenario}               gauge (for the dead-man's switch)
//	firedrill_scratch_namespaces                                gauge
//	firedrill_history_spooled_records                           gauge
//	firedrill_coverage_ratio                                    gauge (covered ÷ items not excluded)
//	firedrill_coverage_items{status}                            gauge
//	firedrill_backup_last_drill_timestamp_seconds{item labels}  gauge (newest passed drill; 0: none)
//	firedrill_backup_coverage_window_seconds{item labels}       gauge
//
// The item labels are kind, cluster, velero_namespace and name (coverage.Key); excluded items
// have no per-item series.
//
// last_run_timestamp_seconds has one series per scenario, labelled with the result of its
// newest drill that ran (passed, failed, error or aborted): skipped and missed runs did not
// drill and only count in runs_total. Safe for concurrent use.
type Metrics struct {
	runs        *prometheus.CounterVec
	lastRun     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	rto, rpo    *prometheus.GaugeVec
	objective   *prometheus.GaugeVec
	scErrors    *prometheus.GaugeVec
	interval    *prometheus.GaugeVec
	scratch     prometheus.Gauge
	spooled     prometheus.Gauge

	coverageRatio *prometheus.GaugeVec // no labels: a vector, so that it can be absent
	coverageItems *prometheus.GaugeVec
	itemPassed    *prometheus.GaugeVec
	itemWindow    *prometheus.GaugeVec
	// items are the per-item series SetCoverage set last, to delete those of items gone.
	items map[coverage.Key]bool

	mu sync.Mutex
	// state holds every scenario with a series, and the time of what its gauges show (so that
	// an older record never overwrites a newer fact).
	state map[string]*scenarioState
}

// scenarioState is the time of the fact each gauge of a scenario shows.
type scenarioState struct {
	lastRun     time.Time
	lastResult  drill.Result
	lastSuccess time.Time
	rto, rpo    time.Time
	objective   map[string]time.Time
}

// perScenario lists every vector with a scenario label, for deleting a scenario's series.
func (m *Metrics) perScenario() []interface {
	DeletePartialMatch(prometheus.Labels) int
} {
	return []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.runs, m.lastRun, m.lastSuccess, m.duration, m.rto, m.rpo, m.objective, m.scErrors, m.interval}
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	sc := []string{"scenario"}
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firedrill_runs_total",
			Help: "Runs recorded by this process, by final result (skipped and missed included).",
		}, []string{"scenario", "result"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_last_run_timestamp_seconds",
			Help: "When the newest drill that ran finished (Unix time); result is its result. One series per scenario.",
		}, []string{"scenario", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_last_success_timestamp_seconds",
			Help: "When the newest passed drill finished (Unix time); absent when none passed.",
		}, sc),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "firedrill_run_duration_seconds",
			Help:    "How long drills took, from start to record.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400},
		}, sc),
		rto: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_rto_seconds",
			Help: "The newest measured recovery time: restore start until every check passed.",
		}, sc),
		rpo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_rpo_seconds",
			Help: "The newest measured recovery point: age of the restored data when the restore started.",
		}, sc),
		objective: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_objective_met",
			Help: "1 when the newest measurement met the objective (rto, rpo), 0 when it did not. Unmeasured runs leave it unchanged.",
		}, []string{"scenario", "objective"}),
		scErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_scenario_errors",
			Help: "1 while the scenario's file does not load or validate (its last good version stays scheduled).",
		}, sc),
		interval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_scenario_interval_seconds",
			Help: "Time between two scheduled runs of the scenario; absent without a schedule.",
		}, sc),
		scratch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firedrill_scratch_namespaces",
			Help: "Scratch namespaces the janitor saw on its last pass.",
		}),
		spooled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firedrill_history_spooled_records",
			Help: "Final records waiting in the local spool because the history store could not be written.",
		}),
		coverageRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_coverage_ratio",
			Help: "Items (Velero schedules, backups, namespaces, etcd sources) with a passed drill within their window, as a share of those not excluded; absent when there are none or coverage is off.",
		}, nil),
		coverageItems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_coverage_items",
			Help: "Items there are to drill, by coverage status: covered, not covered, excluded.",
		}, []string{"status"}),
		itemPassed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_backup_last_drill_timestamp_seconds",
			Help: "When the newest passed drill of the item started (Unix time); 0 when none passed. Excluded items have none.",
		}, itemLabels),
		itemWindow: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "firedrill_backup_coverage_window_seconds",
			Help: "How recent a passed drill of the item must be for it to count as covered.",
		}, itemLabels),
		items: map[coverage.Key]bool{},
		state: map[string]*scenarioState{},
	}
	reg.MustRegister(m.runs, m.lastRun, m.lastSuccess, m.duration, m.rto, m.rpo, m.objective,
		m.scErrors, m.interval, m.scratch, m.spooled, m.coverageRatio, m.coverageItems, m.itemPassed, m.itemWindow)
	return m
}

// Observe accounts one final record (called from the scheduler's OnFinish).
func (m *Metrics) Observe(r *drill.Record) {
	if r == nil || r.Scenario == "" || r.Result == drill.Running {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs.WithLabelValues(r.Scenario, string(r.Result)).Inc()
	if ran(r.Result) && r.FinishedAt != nil {
		m.duration.WithLabelValues(r.Scenario).Observe(r.FinishedAt.Sub(r.StartedAt).Seconds())
	}
	m.apply(r)
}

// Seed sets the last-run gauges from the history at start-up, so that a restart does not look
// like "never passed" to the dead-man's-switch alert. recs are the newest records per scenario.
//
// Any records will do, in any order: for each scenario the newest drill that ran sets the last
// run, the newest passed one the last success, the newest measurements RTO, RPO and the
// objectives. So pass more than the single newest record per scenario (say its last 20 runs,
// plus its newest passed run) when the newest may be skipped, missed or failed. Counters and
// the histogram are not seeded.
func (m *Metrics) Seed(recs []drill.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range recs {
		if recs[i].Scenario != "" && recs[i].Result != drill.Running {
			m.apply(&recs[i])
		}
	}
}

// ran says whether a final result is of a drill that was carried out.
func ran(r drill.Result) bool {
	switch r {
	case drill.Passed, drill.Failed, drill.Error, drill.Aborted:
		return true
	}
	return false
}

// scenario returns the state of a scenario, making it known (so SetScenarios can delete its
// series when it is gone). m.mu is held.
func (m *Metrics) scenario(name string) *scenarioState {
	st := m.state[name]
	if st == nil {
		st = &scenarioState{objective: map[string]time.Time{}}
		m.state[name] = st
	}
	return st
}

// apply sets the gauges r is newer for. m.mu is held.
func (m *Metrics) apply(r *drill.Record) {
	st := m.scenario(r.Scenario)
	at := r.StartedAt
	if r.FinishedAt != nil {
		at = *r.FinishedAt
	}
	if !ran(r.Result) {
		return
	}
	unix := float64(at.UnixNano()) / 1e9
	if at.After(st.lastRun) || st.lastRun.IsZero() {
		if st.lastResult != "" && st.lastResult != r.Result {
			m.lastRun.DeleteLabelValues(r.Scenario, string(st.lastResult))
		}
		st.lastRun, st.lastResult = at, r.Result
		m.lastRun.WithLabelValues(r.Scenario, string(r.Result)).Set(unix)
	}
	if r.Result == drill.Passed && (at.After(st.lastSuccess) || st.lastSuccess.IsZero()) {
		st.lastSuccess = at
		m.lastSuccess.WithLabelValues(r.Scenario).Set(unix)
	}
	if r.RTOSeconds != nil && (at.After(st.rto) || st.rto.IsZero()) {
		st.rto = at
		m.rto.WithLabelValues(r.Scenario).Set(*r.RTOSeconds)
	}
	if r.RPOSeconds != nil && (at.After(st.rpo) || st.rpo.IsZero()) {
		st.rpo = at
		m.rpo.WithLabelValues(r.Scenario).Set(*r.RPOSeconds)
	}
	for _, o := range r.Objectives {
		// An objective that could not be measured (the restore failed) is the failing-drill
		// alert's business; counting it as breached would page twice for one cause.
		if o.ActualSeconds == nil {
			continue
		}
		if prev, ok := st.objective[o.Name]; ok && !at.After(prev) {
			continue
		}
		st.objective[o.Name] = at
		met := 0.0
		if o.Met {
			met = 1
		}
		m.objective.WithLabelValues(r.Scenario, o.Name).Set(met)
	}
}

// SetScenarios updates the per-scenario gauges (errors, interval) from the scheduler's view.
// Every series of a scenario that is not in st (its file was deleted, or it was renamed) is
// deleted, so that alerts about it resolve.
func (m *Metrics) SetScenarios(st []schedule.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	present := make(map[string]bool, len(st))
	for _, s := range st {
		present[s.Name] = true
		m.scenario(s.Name)
		errs := 0.0
		if s.Err != "" {
			errs = 1
		}
		m.scErrors.WithLabelValues(s.Name).Set(errs)
		if s.Interval > 0 {
			m.interval.WithLabelValues(s.Name).Set(s.Interval.Seconds())
		} else {
			m.interval.DeleteLabelValues(s.Name)
		}
	}
	for name := range m.state {
		if present[name] {
			continue
		}
		for _, v := range m.perScenario() {
			v.DeletePartialMatch(prometheus.Labels{"scenario": name})
		}
		delete(m.state, name)
	}
}

// SetScratchNamespaces sets the number of scratch namespaces the janitor saw.
func (m *Metrics) SetScratchNamespaces(n int) { m.scratch.Set(float64(n)) }

// SetSpooled sets the number of records waiting in the spool.
func (m *Metrics) SetSpooled(n int) { m.spooled.Set(float64(n)) }

// itemLabels identify a coverage item; "velero_namespace", since a scrape's own "namespace"
// label would clash.
var itemLabels = []string{"kind", "cluster", "velero_namespace", "name"}

// SetCoverage shows a coverage measurement: the ratio, the counts, and per item not excluded
// its newest passed drill and its window. Series of items no longer there are deleted, so that
// their alerts resolve.
func (m *Metrics) SetCoverage(res *coverage.Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if res.Ratio != nil {
		m.coverageRatio.WithLabelValues().Set(*res.Ratio)
	} else {
		m.coverageRatio.Reset()
	}
	m.coverageItems.WithLabelValues(string(coverage.Covered)).Set(float64(res.Covered))
	m.coverageItems.WithLabelValues(string(coverage.NotCovered)).Set(float64(res.NotCovered))
	m.coverageItems.WithLabelValues(string(coverage.Excluded)).Set(float64(res.Excluded))
	seen := make(map[coverage.Key]bool, len(res.Items))
	for i := range res.Items {
		it := &res.Items[i]
		if it.Status == coverage.Excluded {
			continue
		}
		k := it.Key()
		seen[k] = true
		passed := 0.0
		if it.LastPassed != nil {
			passed = float64(it.LastPassed.At.UnixNano()) / 1e9
		}
		lv := []string{string(k.Kind), k.Cluster, k.Namespace, k.Name}
		m.itemPassed.WithLabelValues(lv...).Set(passed)
		m.itemWindow.WithLabelValues(lv...).Set(it.Window.Seconds())
	}
	for k := range m.items {
		if !seen[k] {
			m.itemPassed.DeleteLabelValues(string(k.Kind), k.Cluster, k.Namespace, k.Name)
			m.itemWindow.DeleteLabelValues(string(k.Kind), k.Cluster, k.Namespace, k.Name)
		}
	}
	m.items = seen
}
