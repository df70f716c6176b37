package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
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

// BenchmarkFinish stores one final record per op, each its own durable transaction (on
// SQLite fsynced; pgtest's PostgreSQL runs with fsync off, so its figure is CPU and round
// trips only).
func BenchmarkFinish(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			s, _ := openStore(b, be)
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
		})
	}
}

// benchRuns is the history size of the GET /api/v1/runs benchmarks (issue 5).
const benchRuns = 100_000

// BenchmarkList reads from a history of 100,000 runs as GET /api/v1/runs does: the first page
// of 50, the first page of one scenario (5,000 runs) and of its failed runs since a date, a
// deep page, and one run by id prefix.
func BenchmarkList(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			s, _ := openStore(b, be)
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			start := time.Now()
			recs := make([]*drill.Record, benchRuns)
			for i := range recs {
				recs[i] = benchRecord(i, t0.Add(time.Duration(i)*time.Hour))
			}
			if err := seed(ctx, s, recs); err != nil {
				b.Fatal(err)
			}
			if be.name == "postgres" {
				// What autovacuum does soon after a bulk insert; without statistics the
				// planner guesses, and the benchmark would measure the guess.
				if _, err := s.db.ExecContext(ctx, "ANALYZE"); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("%s: seeded %d runs in %s", be.name, benchRuns, time.Since(start).Round(time.Millisecond))
			for _, bc := range []struct {
				name string
				f    Filter
				want int
			}{
				{"newest-50", Filter{Limit: 50}, 50},
				{"scenario-50", Filter{Scenario: "scenario-07", Limit: 50}, 50},
				{"scenario-failed-since-50", Filter{Scenario: "scenario-00", Result: drill.Failed, Since: t0.Add(50000 * time.Hour), Limit: 50}, 50},
				{"page-2000-of-50", Filter{Limit: 50, Offset: benchRuns - 50}, 50},
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
				id := recs[42424].ID
				for b.Loop() {
					if _, err := s.Get(ctx, id[:len(id)-2]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// seed stores finished records as Finish would, sealed into one chain after what s holds, but
// many rows per statement and all in one transaction, so that a history of 100,000 runs takes
// seconds to make, not an hour of fsyncs and round trips.
func seed(ctx context.Context, s *Store, recs []*drill.Record) error {
	const batch = 400 // rows per INSERT: 19 values each, within SQLite's and PostgreSQL's limits
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var seq int64
		if err := tx.QueryRowContext(ctx, s.d.nextSeq).Scan(&seq); err != nil {
			return err
		}
		prev := chain.Genesis
		if err := tx.QueryRowContext(ctx, lastHash).Scan(&prev); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		for lo := 0; lo < len(recs); lo += batch {
			runs := queryBuilder{d: &s.d}
			runs.sql.WriteString("INSERT INTO runs (id, " + runColumns + ") VALUES ")
			checks := queryBuilder{d: &s.d}
			checks.sql.WriteString("INSERT INTO checks (run_id, position, name, type, result, message, seconds, evidence) VALUES ")
			values := func(b *queryBuilder, vals ...any) {
				if len(b.args) > 0 {
					b.sql.WriteString(", ")
				}
				b.sql.WriteString("(")
				for i, v := range vals {
					if i > 0 {
						b.sql.WriteString(", ")
					}
					b.sql.WriteString(b.arg(v))
				}
				b.sql.WriteString(")")
			}
			for _, r := range recs[lo:min(lo+batch, len(recs))] {
				u := inUTC(r)
				if err := chain.Seal(&u, prev, nil); err != nil {
					return err
				}
				r.PrevHash, r.Hash, prev = u.PrevHash, u.Hash, u.Hash
				row, err := s.encode(r, &seq)
				if err != nil {
					return err
				}
				seq++
				values(&runs, row.insertArgs()...)
				for i, c := range r.Checks {
					var evidence any
					if c.Evidence != nil {
						b, err := marshal(c.Evidence)
						if err != nil {
							return err
						}
						evidence = string(b)
					}
					values(&checks, r.ID, i, c.Name, c.Type, string(c.Result), c.Message, c.Seconds, evidence)
				}
			}
			if _, err := tx.ExecContext(ctx, runs.sql.String(), runs.args...); err != nil {
				return err
			}
			if len(checks.args) > 0 {
				if _, err := tx.ExecContext(ctx, checks.sql.String(), checks.args...); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// BenchmarkPrune prunes a history of 100,000 runs of all but its newest run: 99,999 records
// verified, written to the archive and fsynced, then removed with their checks and replaced by
// the checkpoint. Each op has a fresh history; x-verify is its time over Verify's of the same
// history (Prune reads it once, through Verify), and s-finish-wait the longest a run finishing
// meanwhile (one every 20ms, its own connection) waited for the lock Prune holds.
func BenchmarkPrune(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var verifying, pruning, waited time.Duration
			var archived int64
			for range b.N {
				b.StopTimer()
				s, _ := openStore(b, be)
				recs := make([]*drill.Record, benchRuns)
				for i := range recs {
					recs[i] = benchRecord(i, t0.Add(time.Duration(i)*time.Minute))
				}
				if err := seed(ctx, s, recs); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if v, err := s.Verify(ctx, VerifyOptions{}); err != nil || !v.Intact {
					b.Fatalf("verify: %v %s", err, v.Message)
				}
				verifying += time.Since(start)
				dir := b.TempDir()
				writer, err := Open(ctx, s.loc.DSN)
				if err != nil {
					b.Fatal(err)
				}
				stop, finished := make(chan struct{}), make(chan error, 1)
				go func() { finished <- finishWhile(ctx, writer, stop, &waited) }()
				b.StartTimer()
				start = time.Now()
				res, err := s.Prune(ctx, PruneOptions{Before: t0.Add(benchRuns * time.Minute), Dir: dir})
				pruning += time.Since(start)
				b.StopTimer()
				close(stop)
				if err := <-finished; err != nil {
					b.Fatalf("a run finishing during the prune: %v", err)
				}
				writer.Close()
				if err != nil || res.Checkpoint == nil || res.Checkpoint.Pruned.Runs != benchRuns-1 {
					b.Fatalf("prune: %v %+v", err, res.Checkpoint)
				}
				fi, err := os.Stat(res.Archive)
				if err != nil {
					b.Fatal(err)
				}
				archived = fi.Size()
				if v, err := s.Verify(ctx, VerifyOptions{}); err != nil || !v.Intact || v.Records < 3 {
					b.Fatalf("verify after the prune: %v %s", err, v.Message)
				}
				s.Close()
			}
			b.ReportMetric(float64(pruning)/float64(verifying), "x-verify")
			b.ReportMetric(waited.Seconds(), "s-finish-wait")
			b.ReportMetric(float64(archived)/1e6, "MB-archive")
		})
	}
}

// finishWhile finishes a run every 20ms until stop is closed, and raises *longest to the
// longest Finish took.
func finishWhile(ctx context.Context, s *Store, stop <-chan struct{}, longest *time.Duration) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
		start := time.Now()
		if err := s.Finish(ctx, benchRecord(i, start.UTC())); err != nil {
			return err
		}
		*longest = max(*longest, time.Since(start))
	}
}
