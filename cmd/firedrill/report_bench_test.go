package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/historytest"
)

// bigHistory writes an SQLite history of n sealed runs of 8 scenarios in one transaction
// (Finish would fsync each) and returns its path.
func bigHistory(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "history.db")
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	historytest.Seed(b, path, n, func(i int) *drill.Record {
		s := t0.Add(time.Duration(i) * 5 * time.Minute)
		e := s.Add(time.Minute)
		rto, rpo := 40+float64(i%13), 3600+float64(i%7)*60
		res := drill.Passed
		if i%17 == 3 {
			res = drill.Failed
		}
		steps := []drill.StepRecord{}
		for _, name := range []string{"preflight", "backup", "restore", "verify", "cleanup", "record"} {
			steps = append(steps, drill.StepRecord{Name: name, Result: drill.Passed, StartedAt: s, FinishedAt: &e})
		}
		return &drill.Record{ID: fmt.Sprintf("%s-%06x", s.Format("20060102-150405"), i), Scenario: fmt.Sprintf("scenario-%d", i%8),
			Labels: map[string]string{"team": fmt.Sprintf("t%d", i%4)}, Annotations: map[string]string{"firedrill.dev/controls": "SOC2-A1.3"},
			Trigger: "schedule", Operator: "serve@h", Result: res, StartedAt: s, FinishedAt: &e, RTOSeconds: &rto, RPOSeconds: &rpo,
			Objectives: []drill.ObjectiveRecord{{Name: "rto", TargetSeconds: 50, ActualSeconds: &rto, Met: rto <= 50}},
			Backup:     drill.BackupRecord{Kind: "velero-backup", Name: fmt.Sprintf("nightly-%d", i), Items: 120},
			Steps:      steps,
			Checks: []drill.CheckRecord{
				{Name: "every object restored", Type: "objectsRestored", Result: drill.Passed, Message: "120 of 120", Evidence: map[string]any{"restored": 120}},
				{Name: "config identical", Type: "objectsMatch", Result: res, Message: "12 objects match", Evidence: map[string]any{"digest": fmt.Sprintf("%064x", i)}}},
			Runner: drill.RunnerInfo{Host: "h", PID: 1}}
	}, nil)
	return path
}

// peakHeapDuring samples the live heap while fn runs.
func peakHeapDuring(fn func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(done)
	<-stopped
	return peak
}

// BenchmarkReportCommand100k is `firedrill report` and `history verify` end to end on a
// 100,000-run SQLite history: reading the database, verifying it, rendering to a file. It
// reports each against the history's own Walk of the same records (x-walk; the target for
// `report --format html` is below 1, and under 2 s).
func BenchmarkReportCommand100k(b *testing.B) {
	path := bigHistory(b, 100_000)
	st, err := history.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for _, args := range [][]string{
		{"history", "verify"},
		{"report", "--format", "html"},
		{"report", "--format", "json"},
	} {
		b.Run(args[len(args)-1], func(b *testing.B) {
			t0 := time.Now()
			if err := st.Walk(context.Background(), func(drill.Record) error { return nil }); err != nil {
				b.Fatal(err)
			}
			walk := time.Since(t0)
			out := filepath.Join(b.TempDir(), "out")
			full := append(append([]string{}, args...), "--history", path)
			if args[0] == "report" {
				full = append(full, "--out", out)
			}
			var peak uint64
			for b.Loop() {
				peak = max(peak, peakHeapDuring(func() {
					if res := inProcess(full...); res.code != 0 {
						b.Fatalf("%v: exit %d\n%s", full, res.code, res.stderr)
					}
				}))
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(walk), "x-walk")
			if fi, err := os.Stat(out); err == nil {
				b.ReportMetric(float64(fi.Size())/(1<<20), "report-MiB")
			}
		})
	}
}
