package report

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill/chain"
)

// benchRuns is the history size of the report benchmarks (issue 6 asks for 100,000 runs).
const benchRuns = 100_000

var (
	benchOnce sync.Once
	benchFile string
	benchErr  error
)

// benchHistory writes benchRuns sealed records as JSON lines once per process: the benchmark's
// source reads them back one at a time, as history.Store.WalkRaw does from the database.
func benchHistory(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "firedrill-report-bench-")
		if err != nil {
			benchErr = err
			return
		}
		benchFile = filepath.Join(dir, "records.jsonl")
		f, err := os.Create(benchFile)
		if err != nil {
			benchErr = err
			return
		}
		w := bufio.NewWriter(f)
		prev := chain.Genesis
		for i := range benchRuns {
			r := fixtureRecord(i)
			if err := chain.Seal(r, prev, nil); err != nil {
				benchErr = err
				return
			}
			prev = r.Hash
			raw, _ := json.Marshal(r)
			w.Write(raw)
			w.WriteByte('\n')
		}
		if err := w.Flush(); err != nil {
			benchErr = err
		}
		f.Close()
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchFile
}

func fileSource(path string) Source {
	return func(ctx context.Context, fn func([]byte) error) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			if err := fn(sc.Bytes()); err != nil {
				return err
			}
		}
		return sc.Err()
	}
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

// BenchmarkReport100k renders a report over 100,000 runs: the summary pass (which also
// verifies the whole chain) and the rendering pass. It reports the peak live heap and the
// report's size; the source streams from a file, so the heap is the report's own.
func BenchmarkReport100k(b *testing.B) {
	path := benchHistory(b)
	for _, format := range []string{"html", "json", "csv", "junit", "markdown"} {
		b.Run(format, func(b *testing.B) {
			var size int64
			var peak uint64
			for b.Loop() {
				p := peakHeap(func() {
					r, err := New(context.Background(), fileSource(path), Options{VerifyCommand: "firedrill history verify"})
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
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(size)/(1<<20), "report-MiB")
		})
	}
}

// BenchmarkReadSource100k is the floor under BenchmarkReport100k: reading the records alone.
func BenchmarkReadSource100k(b *testing.B) {
	path := benchHistory(b)
	for b.Loop() {
		n := 0
		if err := fileSource(path)(context.Background(), func([]byte) error { n++; return nil }); err != nil || n != benchRuns {
			b.Fatal(err, n)
		}
	}
}

var _ io.Writer = (*countingWriter)(nil)

// TestMain removes the benchmarks' shared history file (benchHistory writes it once per
// process, for every benchmark to read), which would otherwise stay behind in TMPDIR.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchFile != "" {
		os.RemoveAll(filepath.Dir(benchFile))
	}
	os.Exit(code)
}
