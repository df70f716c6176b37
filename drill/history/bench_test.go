package history

import (
	"context"
	"database/sql"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// benchRecord is a record of realistic size: six steps, three checks with evidence.
func benchRecord(i int, t0 time.Time) *drill.Record {
	r := fullRecord(fmt.Sprintf("%s-%06x", t0.Format("20060102-150405"), i), t0,
		map[string]any{"revision": 123456789 + i, "hashOK": true, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"})
	r.Scenario = fmt.Sprintf("scenario-%02d", i%20)
	if i%10 == 0 {
		r.Result, r.Message, r.RTOSeconds = drill.Failed, "check every object decodes: 3 objects do not decode", nil
	}
	return r
}

// cpuPerOp reports the CPU time (user and system, all threads) per op besides wall time,
// which on a shared machine says more than ns/op. Call it before b.Loop; it reports after.
func cpuPerOp(b *testing.B) {
	cpu := func() int64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	start := cpu()
	b.Cleanup(func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
		}
	})
}

// BenchmarkFinish stores one final record per op, each its own durable (fsynced) transaction.
func BenchmarkFinish(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	cpuPerOp(b)
	i := 0
	for b.Loop() {
		if err := s.Finish(ctx, benchRecord(i, t0.Add(time.Duration(i)*time.Minute))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkList reads from a history of 10,000 runs: the default page, a filtered page, and
// everything.
func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const runs = 10000
	// One transaction for the set-up, or it would spend a minute in fsync.
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for i := range runs {
			if err := s.finish(ctx, tx, benchRecord(i, t0.Add(time.Duration(i)*time.Hour))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		f    Filter
		want int
	}{
		{"newest-50", Filter{Limit: 50}, 50},
		{"scenario-failed-since-50", Filter{Scenario: "scenario-00", Result: drill.Failed, Since: t0.Add(5000 * time.Hour), Limit: 50}, 50},
		{"page-200-of-50", Filter{Limit: 50, Offset: 9950}, 50},
		{"all-10000", Filter{}, runs},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpuPerOp(b)
			for b.Loop() {
				rs, err := s.List(ctx, bc.f)
				if err != nil || len(rs) != bc.want {
					b.Fatalf("%d runs, %v; want %d", len(rs), err, bc.want)
				}
			}
		})
	}
	b.Run("get-by-prefix", func(b *testing.B) {
		b.ReportAllocs()
		cpuPerOp(b)
		id := benchRecord(4242, t0.Add(4242*time.Hour)).ID
		for b.Loop() {
			if _, err := s.Get(ctx, id[:len(id)-2]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
