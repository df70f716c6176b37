package coverage

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/historytest"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// The size issue 13 asks `firedrill coverage` to answer in under 2 s: 10,000 backups and
// 100,000 history records.
const (
	benchBackups   = 10_000
	benchRecords   = 100_000
	benchSchedules = 200 // 50 backups each; half of them drilled by a scenario
	benchScenarios = benchSchedules / 2
)

// BenchmarkMeasure times what `firedrill coverage` does after loading scenarios: discovery
// over a cluster of benchSchedules Schedules, benchBackups backups and 500 namespaces, the
// history's newest drills of each scenario from an SQLite history of benchRecords runs, and the
// join. It reports the ratio to listing the same history (Store.List, all at once), the floor
// of anything that reads every record.
func BenchmarkMeasure(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "history.db")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	historytest.Seed(b, path, benchRecords, func(i int) *drill.Record {
		at := start.Add(time.Duration(i) * time.Minute)
		end := at.Add(time.Minute)
		res := drill.Passed
		if i%7 == 3 {
			res = drill.Failed
		}
		return &drill.Record{ID: fmt.Sprintf("run-%06d", i), Scenario: fmt.Sprintf("schedule-%03d", i%benchScenarios),
			Trigger: "schedule", Result: res, StartedAt: at, FinishedAt: &end}
	}, nil)
	st, err := history.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	v := &fakeVelero{}
	for i := range 500 {
		v.namespaces = append(v.namespaces, Namespace{Name: fmt.Sprintf("ns-%03d", i)})
	}
	var scs []*scenarios.Scenario
	for i := range benchSchedules {
		name := fmt.Sprintf("schedule-%03d", i)
		v.schedules = append(v.schedules, Schedule{Name: name, IncludedNamespaces: []string{fmt.Sprintf("ns-%03d", i), fmt.Sprintf("ns-%03d", i+benchSchedules)}})
		if i < benchScenarios {
			scs = append(scs, latestFrom(name, name))
		}
	}
	for i := range benchBackups {
		sched := fmt.Sprintf("schedule-%03d", i%benchSchedules)
		v.backups = append(v.backups, Backup{Name: fmt.Sprintf("%s-%05d", sched, i), Schedule: sched, Phase: "Completed", Started: start.Add(time.Duration(i) * time.Hour)})
	}
	opts := DiscoverOptions{Connect: connectTo(v), Default: Source{VeleroNamespace: "velero"}}
	now := start.Add(benchRecords * time.Minute)

	t0 := time.Now()
	if recs, err := st.List(ctx, history.Filter{}); err != nil || len(recs) != benchRecords {
		b.Fatal(err, len(recs))
	}
	list := time.Since(t0)

	b.ResetTimer()
	for b.Loop() {
		res, err := Measure(ctx, scs, StoreHistory{Runs: st}, opts, JoinOptions{Now: now, Within: 30 * 24 * time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		if res.Covered != benchScenarios*3 || res.NotCovered != len(res.Items)-res.Covered {
			b.Fatalf("covered %d, not %d of %d", res.Covered, res.NotCovered, len(res.Items))
		}
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(per.Seconds()/list.Seconds(), "x-list")
	b.ReportMetric(list.Seconds(), "list-s")
}
