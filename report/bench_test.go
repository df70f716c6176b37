package report

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/historytest"
)

// benchRuns is the history size of the report benchmarks (issue 6 asks for 100,000 runs).
const benchRuns = 100_000

var (
	benchOnce  sync.Once
	benchPath  string
	benchStore *history.Store
	benchErr   error
)

// benchHistory opens an SQLite history of benchRuns runs of the fixture's three scenarios,
// made once per process.
func benchHistory(b *testing.B) *history.Store {
	b.Helper()
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "firedrill-report-bench-")
		if err != nil {
			benchErr = err
			return
		}
		benchPath = filepath.Join(dir, "history.db")
		historytest.Seed(b, benchPath, benchRuns, fixtureRecord, nil)
		benchStore, benchErr = history.Open(context.Background(), benchPath)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchStore
}

// floors times what the history itself takes to hand out the same records: walking them
// decoded (Store.Walk) and listing them (Store.List, newest first, all at once).
func floors(b *testing.B, st *history.Store) (walk, list time.Duration) {
	b.Helper()
	ctx := context.Background()
	t0 := time.Now()
	n := 0
	if err := st.Walk(ctx, func(drill.Record) error { n++; return nil }); err != nil || n != benchRuns {
		b.Fatal(err, n)
	}
	walk = time.Since(t0)
	t0 = time.Now()
	if recs, err := st.List(ctx, history.Filter{}); err != nil || len(recs) != benchRuns {
		b.Fatal(err, len(recs))
	}
	return walk, time.Since(t0)
}

// peakHeap samples the live heap while fn runs and returns its peak in bytes.
func peakHeap(fn func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak {
			peak = v
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				read()
			}
		}
	}()
	fn()
	close(done)
	<-stopped
	read()
	return peak
}

// countingWriter counts what a report writes without keeping it.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkReport100k makes a report of a 100,000-run SQLite history — the summary pass that
// also verifies the whole history, and the rendering — in each format. Besides the time it
// reports the peak live heap, the report's size and the time against the history's own Walk
// and List of the same records (x-walk, x-list; the target for HTML is below 1).
func BenchmarkReport100k(b *testing.B) {
	st := benchHistory(b)
	for _, format := range []string{"html", "json", "csv", "junit", "markdown"} {
		b.Run(format, func(b *testing.B) {
			walk, list := floors(b, st)
			var size int64
			var peak uint64
			for b.Loop() {
				p := peakHeap(func() {
					r, err := New(context.Background(), st, Options{VerifyCommand: "firedrill history verify"})
					if err != nil {
						b.Fatal(err)
					}
					if !r.Summary.Integrity.Intact || r.Summary.Runs != benchRuns {
						b.Fatalf("summary: %d runs, %+v", r.Summary.Runs, r.Summary.Integrity)
					}
					var w countingWriter
					if err := r.Write(context.Background(), format, &w); err != nil {
						b.Fatal(err)
					}
					size = w.n
				})
				peak = max(peak, p)
			}
			perOp := float64(b.Elapsed()) / float64(b.N)
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(size)/(1<<20), "report-MiB")
			b.ReportMetric(perOp/float64(walk), "x-walk")
			b.ReportMetric(perOp/float64(list), "x-list")
		})
	}
}

// BenchmarkHistory100k is the floor under BenchmarkReport100k: what the history takes to hand
// out its 100,000 records as stored (WalkRaw), decoded (Walk), listed (List), and verified.
func BenchmarkHistory100k(b *testing.B) {
	st := benchHistory(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		run  func() (int, error)
	}{
		{"walk-raw", func() (n int, err error) { err = st.WalkRaw(ctx, func([]byte) error { n++; return nil }); return }},
		{"walk", func() (n int, err error) { err = st.Walk(ctx, func(drill.Record) error { n++; return nil }); return }},
		{"list", func() (int, error) { recs, err := st.List(ctx, history.Filter{}); return len(recs), err }},
		{"verify", func() (int, error) { v, err := st.Verify(ctx, history.VerifyOptions{}); return v.Records, err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if n, err := bc.run(); err != nil || n != benchRuns {
					b.Fatal(err, n)
				}
			}
		})
	}
}

var _ io.Writer = (*countingWriter)(nil)

// TestMain removes the benchmarks' shared history (benchHistory makes it once per process, for
// every benchmark to read), which would otherwise stay behind in TMPDIR.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchStore != nil {
		benchStore.Close()
	}
	if benchPath != "" {
		os.RemoveAll(filepath.Dir(benchPath))
	}
	os.Exit(code)
}
