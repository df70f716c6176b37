package server

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
)

func newRegistry() *prometheus.Registry { return prometheus.NewPedanticRegistry() }

// series gathers reg into "name{k=v,...}" → value; a histogram gives name_count and name_sum.
func series(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := func(name string) string {
				if len(labels) == 0 {
					return name
				}
				return name + "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key(f.GetName())] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(f.GetName())] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key(f.GetName()+"_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key(f.GetName()+"_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// expect checks the given series and, for each prefix in absent, that no series starts with it.
func expect(t *testing.T, step string, got map[string]float64, want map[string]float64, absent ...string) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: %s missing", step, k)
		} else if g != v {
			t.Errorf("%s: %s = %v, want %v", step, k, g, v)
		}
	}
	for _, prefix := range absent {
		for k := range got {
			if strings.HasPrefix(k, prefix) {
				t.Errorf("%s: %s = %v should be gone", step, k, got[k])
			}
		}
	}
}

func TestMetricsObserve(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	m := NewMetrics(reg)

	passed := record("r1", "shop", drill.Passed, 0) // rto 30, rpo 600, both met, took 90s
	m.Observe(passed)
	expect(t, "after a pass", series(t, reg), map[string]float64{
		"firedrill_runs_total{result=passed,scenario=shop}":                 1,
		"firedrill_last_run_timestamp_seconds{result=passed,scenario=shop}": unix(*passed.FinishedAt),
		"firedrill_last_success_timestamp_seconds{scenario=shop}":           unix(*passed.FinishedAt),
		"firedrill_run_duration_seconds_count{scenario=shop}":               1,
		"firedrill_run_duration_seconds_sum{scenario=shop}":                 90,
		"firedrill_rto_seconds{scenario=shop}":                              30,
		"firedrill_rpo_seconds{scenario=shop}":                              600,
		"firedrill_objective_met{objective=rto,scenario=shop}":              1,
		"firedrill_objective_met{objective=rpo,scenario=shop}":              1,
		"firedrill_scratch_namespaces":                                      0,
		"firedrill_history_spooled_records":                                 0,
	})

	// A later failure: RTO not measured, RPO measured and over its target.
	failed := record("r2", "shop", drill.Failed, time.Hour)
	rpo := 7200.0
	failed.RPOSeconds = &rpo
	failed.Objectives = []drill.ObjectiveRecord{
		{Name: "rto", TargetSeconds: 300, Met: false},
		{Name: "rpo", TargetSeconds: 3600, ActualSeconds: &rpo, Met: false},
	}
	m.Observe(failed)
	expect(t, "after a failure", series(t, reg), map[string]float64{
		"firedrill_runs_total{result=passed,scenario=shop}":                 1,
		"firedrill_runs_total{result=failed,scenario=shop}":                 1,
		"firedrill_last_run_timestamp_seconds{result=failed,scenario=shop}": unix(*failed.FinishedAt),
		"firedrill_last_success_timestamp_seconds{scenario=shop}":           unix(*passed.FinishedAt),
		"firedrill_run_duration_seconds_count{scenario=shop}":               2,
		"firedrill_rto_seconds{scenario=shop}":                              30, // last measured
		"firedrill_rpo_seconds{scenario=shop}":                              7200,
		"firedrill_objective_met{objective=rto,scenario=shop}":              1, // unmeasured: unchanged
		"firedrill_objective_met{objective=rpo,scenario=shop}":              0,
	}, "firedrill_last_run_timestamp_seconds{result=passed")

	// Skipped and missed runs count, but are not drills: the last run stays the failure.
	for i, res := range []drill.Result{drill.Skipped, drill.Missed} {
		r := record("s"+string(res), "shop", res, 2*time.Hour+time.Duration(i)*time.Hour)
		r.Steps, r.Checks, r.Objectives, r.Backup = nil, nil, nil, drill.BackupRecord{}
		m.Observe(r)
	}
	// A record that arrives late (older than what the gauges show) only counts.
	m.Observe(record("r0", "shop", drill.Passed, -time.Hour))
	// A running record is not final: ignored.
	m.Observe(&drill.Record{ID: "x", Scenario: "shop", Result: drill.Running, StartedAt: t0})
	expect(t, "after skipped, missed and a late pass", series(t, reg), map[string]float64{
		"firedrill_runs_total{result=skipped,scenario=shop}":                1,
		"firedrill_runs_total{result=missed,scenario=shop}":                 1,
		"firedrill_runs_total{result=passed,scenario=shop}":                 2,
		"firedrill_last_run_timestamp_seconds{result=failed,scenario=shop}": unix(*failed.FinishedAt),
		"firedrill_last_success_timestamp_seconds{scenario=shop}":           unix(*passed.FinishedAt),
		"firedrill_run_duration_seconds_count{scenario=shop}":               3,
		"firedrill_rto_seconds{scenario=shop}":                              30,
		"firedrill_rpo_seconds{scenario=shop}":                              7200,
	}, "firedrill_last_run_timestamp_seconds{result=passed", "firedrill_last_run_timestamp_seconds{result=skipped",
		"firedrill_last_run_timestamp_seconds{result=missed", "firedrill_runs_total{result=running")

	m.SetScratchNamespaces(2)
	m.SetSpooled(5)
	expect(t, "gauges", series(t, reg), map[string]float64{"firedrill_scratch_namespaces": 2, "firedrill_history_spooled_records": 5})
}

func TestMetricsSeed(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	m := NewMetrics(reg)
	passed := record("p", "shop", drill.Passed, 0)
	failed := record("f", "shop", drill.Failed, time.Hour)
	skipped := record("s", "shop", drill.Skipped, 2*time.Hour)
	other := record("o", "db", drill.Error, 0)
	// Newest first, as the history lists them; the newest of shop was skipped.
	m.Seed([]drill.Record{*skipped, *failed, *passed, *other})
	expect(t, "seeded", series(t, reg), map[string]float64{
		"firedrill_last_run_timestamp_seconds{result=failed,scenario=shop}": unix(*failed.FinishedAt),
		"firedrill_last_success_timestamp_seconds{scenario=shop}":           unix(*passed.FinishedAt),
		"firedrill_rto_seconds{scenario=shop}":                              30,
		"firedrill_objective_met{objective=rto,scenario=shop}":              1,
		"firedrill_last_run_timestamp_seconds{result=error,scenario=db}":    unix(*other.FinishedAt),
	}, "firedrill_runs_total", "firedrill_run_duration_seconds", "firedrill_last_success_timestamp_seconds{scenario=db}",
		"firedrill_last_run_timestamp_seconds{result=passed", "firedrill_last_run_timestamp_seconds{result=skipped")

	// A pass after start-up supersedes the seeded failure.
	later := record("l", "shop", drill.Passed, 3*time.Hour)
	m.Observe(later)
	expect(t, "observed after seeding", series(t, reg), map[string]float64{
		"firedrill_last_run_timestamp_seconds{result=passed,scenario=shop}": unix(*later.FinishedAt),
		"firedrill_last_success_timestamp_seconds{scenario=shop}":           unix(*later.FinishedAt),
		"firedrill_runs_total{result=passed,scenario=shop}":                 1,
	}, "firedrill_last_run_timestamp_seconds{result=failed")
}

func TestMetricsSetScenarios(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	m := NewMetrics(reg)
	m.Observe(record("a1", "alpha", drill.Passed, 0))
	m.Observe(record("b1", "beta", drill.Failed, 0))
	m.Seed([]drill.Record{*record("g1", "gone-before-start", drill.Passed, 0)})
	m.SetScenarios([]schedule.Status{
		{Name: "alpha", Schedule: "@hourly", Interval: time.Hour},
		{Name: "beta", Err: "spec: unknown field", Schedule: "@daily", Interval: 24 * time.Hour},
		{Name: "manual"},
	})
	expect(t, "three scenarios", series(t, reg), map[string]float64{
		"firedrill_scenario_errors{scenario=alpha}":                         0,
		"firedrill_scenario_errors{scenario=beta}":                          1,
		"firedrill_scenario_errors{scenario=manual}":                        0,
		"firedrill_scenario_interval_seconds{scenario=alpha}":               3600,
		"firedrill_scenario_interval_seconds{scenario=beta}":                86400,
		"firedrill_runs_total{result=passed,scenario=alpha}":                1,
		"firedrill_last_run_timestamp_seconds{result=failed,scenario=beta}": unix(*record("b1", "beta", drill.Failed, 0).FinishedAt),
	}, "firedrill_scenario_interval_seconds{scenario=manual}",
		// Seeded from the history but no longer configured: its series go, or it would page forever.
		"firedrill_last_success_timestamp_seconds{scenario=gone-before-start}", "firedrill_last_run_timestamp_seconds{result=passed,scenario=gone-before-start}")

	// beta's file is deleted and alpha loses its schedule.
	m.SetScenarios([]schedule.Status{{Name: "alpha"}, {Name: "manual"}})
	got := series(t, reg)
	for k := range got {
		if strings.Contains(k, "scenario=beta") {
			t.Errorf("series of the deleted scenario beta remains: %s", k)
		}
	}
	expect(t, "beta gone", got, map[string]float64{
		"firedrill_runs_total{result=passed,scenario=alpha}":       1,
		"firedrill_last_success_timestamp_seconds{scenario=alpha}": unix(*record("a1", "alpha", drill.Passed, 0).FinishedAt),
		"firedrill_scenario_errors{scenario=alpha}":                0,
	}, "firedrill_scenario_interval_seconds{scenario=alpha}")

	// A scenario that comes back starts from scratch, without stale gauges.
	m.SetScenarios([]schedule.Status{{Name: "alpha"}, {Name: "beta", Interval: time.Hour}})
	expect(t, "beta back", series(t, reg), map[string]float64{"firedrill_scenario_interval_seconds{scenario=beta}": 3600},
		"firedrill_runs_total{result=failed,scenario=beta}", "firedrill_scenario_errors{scenario=manual}")
}

func TestMetricsSetCoverage(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	m := NewMetrics(reg)
	passed := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	month := scenarios.Duration{Duration: 30 * 24 * time.Hour}
	item := func(name string, st coverage.Status, last *coverage.Drill) coverage.Item {
		return coverage.Item{Kind: coverage.KindSchedule, Cluster: "prod", Namespace: "velero", Name: name, Status: st, LastPassed: last, Window: month}
	}
	ratio := 0.5
	m.SetCoverage(&coverage.Result{Ratio: &ratio, Covered: 1, NotCovered: 1, Excluded: 1, Items: []coverage.Item{
		item("never", coverage.NotCovered, nil),
		item("nightly", coverage.Covered, &coverage.Drill{ID: "r1", At: passed}),
		item("ci", coverage.Excluded, nil),
	}})
	s := series(t, reg)
	lbl := func(name string) string {
		return "{cluster=prod,kind=velero-schedule,name=" + name + ",velero_namespace=velero}"
	}
	want := map[string]float64{
		"firedrill_coverage_ratio":                                       0.5,
		`firedrill_coverage_items{status=not covered}`:                   1,
		"firedrill_coverage_items{status=excluded}":                      1,
		"firedrill_backup_last_drill_timestamp_seconds" + lbl("never"):   0,
		"firedrill_backup_last_drill_timestamp_seconds" + lbl("nightly"): float64(passed.Unix()),
		"firedrill_backup_coverage_window_seconds" + lbl("never"):        month.Seconds(),
	}
	for k, v := range want {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := s["firedrill_backup_last_drill_timestamp_seconds"+lbl("ci")]; ok {
		t.Error("an excluded item has a series: its alert could fire")
	}

	// The next measurement has no nightly (its Schedule was deleted) and no items at all to
	// judge: its series go, and so does the ratio.
	m.SetCoverage(&coverage.Result{Items: []coverage.Item{item("ci", coverage.Excluded, nil)}, Excluded: 1})
	s = series(t, reg)
	for k := range s {
		if strings.HasPrefix(k, "firedrill_backup_") || k == "firedrill_coverage_ratio" {
			t.Errorf("%s left behind", k)
		}
	}
}
