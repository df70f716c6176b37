package history

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// scheduled is a running record of a scheduled run.
func scheduled(id, scenario string, at time.Time) *drill.Record {
	r := running(id, scenario, at.Add(time.Second), CurrentRunner())
	r.Trigger, r.ScheduledFor = "schedule", ptr(at)
	return r
}

// finalOf is r finished with result.
func finalOf(r *drill.Record, result drill.Result, msg string) *drill.Record {
	f := *r
	f.Result, f.Message, f.FinishedAt = result, msg, ptr(r.StartedAt.Add(time.Minute))
	return &f
}

// TestScheduled: one run per scenario and scheduled time, whether it is begun or only
// finished (skipped and missed runs); LastScheduled follows; unscheduled runs are not limited.
func TestScheduled(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		t0 := time.Date(2026, 11, 27, 3, 30, 0, 0, time.UTC)

		if last, err := s.LastScheduled(ctx, "shop"); err != nil || !last.IsZero() {
			t.Errorf("LastScheduled of an empty history = %v, %v; want zero", last, err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
		first := scheduled("run-a", "shop", t0.In(time.FixedZone("X", 7200)))
		if err := s.Begin(ctx, first); err != nil {
			t.Fatal(err)
		}
		if got := column[string](t, s, "run-a", "scheduled_for"); got != "2026-11-27T03:30:00.000000000Z" {
			t.Errorf("scheduled_for = %q", got)
		}
		// Another replica begins the same cron time of the same scenario.
		err := s.Begin(ctx, scheduled("run-b", "shop", t0))
		if !errors.Is(err, ErrDuplicateSchedule) {
			t.Fatalf("second Begin of one scheduled time: %v, want ErrDuplicateSchedule", err)
		}
		t.Log(err)
		// ... or records it as skipped or missed without Begin.
		if err := s.Finish(ctx, finalOf(scheduled("run-c", "shop", t0), drill.Missed, "missed")); !errors.Is(err, ErrDuplicateSchedule) {
			t.Errorf("Finish of a missed run at a taken time: %v, want ErrDuplicateSchedule", err)
		}
		if _, err := s.Get(ctx, "run-b"); !errors.Is(err, ErrNotFound) {
			t.Errorf("the refused run is in the history: %v", err)
		}
		// Another scenario at the same time, and the same scenario at the next time, are fine.
		if err := s.Begin(ctx, scheduled("run-d", "payments", t0)); err != nil {
			t.Error(err)
		}
		if err := s.Finish(ctx, finalOf(scheduled("run-e", "shop", t0.Add(time.Hour)), drill.Skipped, "previous run still in flight")); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, finalOf(scheduled("run-f", "shop", t0.Add(2*time.Hour)), drill.Missed, "serve was down")); err != nil {
			t.Fatal(err)
		}
		// The begun run finishes with its time; unscheduled runs have none and are not limited.
		if err := s.Finish(ctx, finalOf(first, drill.Passed, "")); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := s.Finish(ctx, fullRecord(fmt.Sprintf("manual-%d", i), t0.Add(3*time.Hour), nil)); err != nil {
				t.Fatal(err)
			}
		}
		if last, err := s.LastScheduled(ctx, "shop"); err != nil || !last.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("LastScheduled(shop) = %v, %v; want %v", last, err, t0.Add(2*time.Hour))
		}
		if last, err := s.LastScheduled(ctx, "payments"); err != nil || !last.Equal(t0) {
			t.Errorf("LastScheduled(payments) = %v, %v; want %v", last, err, t0)
		}
		for _, tc := range []struct {
			result drill.Result
			want   string
		}{{drill.Skipped, "run-e"}, {drill.Missed, "run-f"}} {
			rs, err := s.List(ctx, Filter{Result: tc.result})
			if err != nil || len(rs) != 1 || rs[0].ID != tc.want || rs[0].ScheduledFor == nil {
				t.Errorf("List(%s) = %+v, %v; want %s", tc.result, rs, err, tc.want)
			}
		}
		got, err := s.Get(ctx, "run-a")
		if err != nil || got.ScheduledFor == nil || !got.ScheduledFor.Equal(t0) || got.ScheduledFor.Location() != time.UTC {
			t.Errorf("run-a: %+v, %v", got, err)
		}
	})
}

// TestScheduledRace: replicas that begin one scheduled time at the same moment get exactly
// one run into the history; the others get ErrDuplicateSchedule.
func TestScheduledRace(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		_, dsn := openStore(t, b)
		t0 := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
		const replicas = 4
		stores := make([]*Store, replicas)
		for i := range stores {
			stores[i] = openDSN(t, dsn)
		}
		for slot := range 10 {
			at := t0.Add(time.Duration(slot) * time.Minute)
			errs := make([]error, replicas)
			var wg sync.WaitGroup
			for i, s := range stores {
				wg.Go(func() { errs[i] = s.Begin(ctx, scheduled(fmt.Sprintf("slot%d-r%d", slot, i), "shop", at)) })
			}
			wg.Wait()
			won := 0
			for i, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, ErrDuplicateSchedule):
					t.Errorf("slot %d, replica %d: %v", slot, i, err)
				}
			}
			if won != 1 {
				t.Errorf("slot %d: %d replicas began the run, want 1", slot, won)
			}
		}
	})
}

// TestUpgradeFromV1: a history made before scheduled_for existed is upgraded in place: its
// runs stay, and the new column and its unique index work.
func TestUpgradeFromV1(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.newDSN(t)
		old, err := open(ctx, dsn, func(d *dialect) { d.migrations = firstMigrations(t, d.migrations, 1) })
		if err != nil {
			t.Fatal(err)
		}
		// A row as the first version of the store wrote it.
		rec := fullRecord("old-run", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), nil)
		js, _ := marshal(rec)
		_, err = old.db.Exec(q(old, `INSERT INTO runs (id, seq, scenario, trigger, operator, result, message, started_at,
			finished_at, heartbeat_at, runner_host, runner_pid, runner_start_ticks, record)
			VALUES (?, 1, ?, 'manual', '', 'passed', '', ?, ?, ?, '', 0, 0, ?)`),
			rec.ID, rec.Scenario, dbTime(rec.StartedAt), dbTime(*rec.FinishedAt), dbTime(rec.StartedAt), string(js))
		if err != nil {
			t.Fatal(err)
		}
		old.Close()

		s := openDSN(t, dsn)
		var version int
		if err := s.db.QueryRow(s.d.schemaVersion).Scan(&version); err != nil || version < 2 {
			t.Fatalf("schema version after upgrade: %d, %v", version, err)
		}
		got, err := s.Get(ctx, "old-run")
		if err != nil || got.Result != drill.Passed || got.ScheduledFor != nil {
			t.Fatalf("old run after upgrade: %+v, %v", got, err)
		}
		t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		if err := s.Begin(ctx, scheduled("new-run", rec.Scenario, t0)); err != nil {
			t.Fatal(err)
		}
		if err := s.Begin(ctx, scheduled("new-run-2", rec.Scenario, t0)); !errors.Is(err, ErrDuplicateSchedule) {
			t.Errorf("duplicate after upgrade: %v", err)
		}
		if err := s.Finish(ctx, fullRecord("another", t0, nil)); err != nil {
			t.Fatal(err)
		}
		if seq := column[int64](t, s, "another", "seq"); seq != 2 {
			t.Errorf("seq after the upgraded run = %d, want 2", seq)
		}
		// The old row is a run to listings and verifies as one: before the chain, unprotected.
		if kind := column[string](t, s, "old-run", "kind"); kind != "run" {
			t.Errorf("kind of the upgraded run = %q, want run", kind)
		}
		if v, err := s.Verify(ctx, VerifyOptions{}); err != nil || !v.Intact || v.Records != 2 || v.Unprotected != 1 {
			t.Errorf("verify after upgrade: %v %s", err, v.Message)
		}
	})
}

// firstMigrations is fsys with only its first n migrations.
func firstMigrations(t *testing.T, fsys fs.FS, n int) fs.FS {
	t.Helper()
	ms, err := loadMigrations(fsys)
	if err != nil || len(ms) < n {
		t.Fatalf("migrations: %d, %v", len(ms), err)
	}
	out := fstest.MapFS{}
	for _, m := range ms[:n] {
		out[fmt.Sprintf("%04d_%s.sql", m.version, m.name)] = &fstest.MapFile{Data: []byte(m.sql)}
	}
	return out
}
