package history

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/internal/pgtest"
)

// testLog is a logger that writes to t and can be read back.
func testLog(t *testing.T) (*slog.Logger, func() string) {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%s", bytes.TrimRight(p, "\n"))
		return buf.Write(p)
	})
	return slog.New(slog.NewTextHandler(w, nil)), func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// flushUntilEmpty flushes until nothing is pending: right after a restart the first attempt
// may meet a connection the server closed.
func flushUntilEmpty(t *testing.T, sp *Spool) int {
	t.Helper()
	total := 0
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := sp.Flush(context.Background())
		total += n
		if err == nil && sp.Pending() == 0 {
			return total
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool not flushed: %d pending, last error %v", sp.Pending(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSpoolStoreDown: PostgreSQL stops while a drill runs; Update and Finish still return
// nil, the final records wait on disk, and once the server is back Flush writes each into
// the history exactly once, oldest first.
func TestSpoolStoreDown(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL (initdb, postgres): skipped under -short")
	}
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t) // its own server: this test stops it
	store := openDSN(t, srv.NewDatabase(t))
	dir := filepath.Join(t.TempDir(), "spool")
	log, logged := testLog(t)
	sp, err := NewSpool(store, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool dir: %v, %v; want 0700", fi.Mode(), err)
	}

	t0 := time.Now().UTC()
	r := running("mid-run", "shop", t0, CurrentRunner())
	if err := sp.Begin(ctx, r); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)

	r.Steps[0].Result, r.Steps[0].FinishedAt = drill.Passed, ptr(t0.Add(time.Second))
	if err := sp.Update(ctx, r); err != nil {
		t.Errorf("Update with the store down: %v, want nil", err)
	}
	late := running("begun-while-down", "shop", t0.Add(time.Second), CurrentRunner())
	if err := sp.Begin(ctx, late); err != nil {
		t.Errorf("Begin with the store down: %v, want nil", err)
	}
	done := finalOf(r, drill.Passed, "")
	if err := sp.Finish(ctx, done); err != nil {
		t.Fatalf("Finish with the store down: %v, want nil", err)
	}
	if err := sp.Finish(ctx, finalOf(late, drill.Failed, "check c failed")); err != nil {
		t.Fatalf("Finish with the store down: %v, want nil", err)
	}
	// A whole record, evidence and all, that never reached the store before it ended.
	full := fullRecord("full", t0.In(time.FixedZone("CET", 3600)), map[string]any{"revision": int64(9007199254740993), "ok": true})
	if err := sp.Finish(ctx, full); err != nil {
		t.Fatalf("Finish with the store down: %v, want nil", err)
	}
	if n := sp.Pending(); n != 3 {
		t.Fatalf("Pending = %d, want 3", n)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", f, fi.Mode(), err)
		}
	}
	if !strings.Contains(logged(), "spooled") {
		t.Errorf("spooling was not logged:\n%s", logged())
	}
	if n, err := sp.Flush(ctx); err == nil || n != 0 || sp.Pending() != 3 {
		t.Errorf("Flush with the store down: %d, %v; pending %d", n, err, sp.Pending())
	}

	srv.Restart(t)
	if n := flushUntilEmpty(t, sp); n != 3 {
		t.Errorf("flushed %d records, want 3", n)
	}
	got, err := store.Get(ctx, "mid-run")
	if err != nil || got.Result != drill.Passed || got.FinishedAt == nil || !got.FinishedAt.Equal(*done.FinishedAt) ||
		got.Steps[0].Result != drill.Passed {
		t.Errorf("flushed record: %+v, %v", got, err)
	}
	assertOnce(t, store, "mid-run", "begun-while-down", "full")
	// The stored bytes are those Finish would have stored with the store up.
	u := inUTC(full)
	if err := chain.Seal(&u, column[string](t, store, "full", "prev_hash"), nil); err != nil {
		t.Fatal(err)
	}
	if want, _ := json.Marshal(&u); column[string](t, store, "full", "record") != string(want) {
		t.Errorf("the spooled record changed on its way:\n%s\n%s", column[string](t, store, "full", "record"), want)
	}
	if first, second := column[int64](t, store, "mid-run", "seq"), column[int64](t, store, "begun-while-down", "seq"); first >= second {
		t.Errorf("seqs %d, %d: not flushed oldest first", first, second)
	}

	// A record spooled again (its Finish got through but the answer was lost) is not written
	// twice; one the history has finished otherwise is set aside, not dropped.
	if _, err := sp.write(done); err != nil {
		t.Fatal(err)
	}
	other := finalOf(r, drill.Error, "a different ending")
	if _, err := sp.write(other); err != nil {
		t.Fatal(err)
	}
	if n, err := sp.Flush(ctx); err != nil || n != 1 || sp.Pending() != 0 {
		t.Errorf("Flush of a stored record and a conflicting one: %d, %v, pending %d", n, err, sp.Pending())
	}
	assertOnce(t, store, "mid-run", "begun-while-down")
	if got, _ := store.Get(ctx, "mid-run"); got.Result != drill.Passed {
		t.Errorf("a spooled record changed a finished run: %s", got.Result)
	}
	rejected, _ := filepath.Glob(filepath.Join(dir, spoolRejected, "*.json"))
	if len(rejected) != 1 {
		t.Fatalf("rejected files: %v", rejected)
	}
	var kept drill.Record
	if b, err := os.ReadFile(rejected[0]); err != nil || decode(b, &kept) != nil || kept.Message != "a different ending" {
		t.Errorf("the rejected record was not kept whole: %+v, %v", kept, err)
	}
}

// assertOnce checks that the history holds each id exactly once.
func assertOnce(t *testing.T, s *Store, ids ...string) {
	t.Helper()
	rs, err := s.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range rs {
		count[r.ID]++
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("run %s is %d times in the history, want once", id, count[id])
		}
	}
}

// TestSpoolCorrupt: a spool file that can't be read back is reported and moved aside with
// its bytes intact, and the records after it are still written.
func TestSpoolCorrupt(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		store, _ := openStore(t, b)
		dir := t.TempDir()
		log, logged := testLog(t)
		sp, err := NewSpool(store, dir, log)
		if err != nil {
			t.Fatal(err)
		}
		garbage := []byte(`{"id": "half-writ`)
		bad := "20260101T000000.000000000Z-bad.json"
		if err := os.WriteFile(filepath.Join(dir, bad), garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		noResult := "20260101T000001.000000000Z-noresult.json"
		if err := os.WriteFile(filepath.Join(dir, noResult), []byte(`{"id":"x","scenario":"s","startedAt":"2026-01-01T00:00:00Z"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		good := fullRecord("good", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil)
		if _, err := sp.write(good); err != nil {
			t.Fatal(err)
		}
		if n := sp.Pending(); n != 3 {
			t.Fatalf("Pending = %d, want 3", n)
		}
		n, err := sp.Flush(ctx)
		if n != 1 || err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "moved to") {
			t.Errorf("Flush: %d, %v; want 1 and an error naming %s", n, err, bad)
		}
		if sp.Pending() != 0 {
			t.Errorf("Pending = %d after Flush", sp.Pending())
		}
		if b, err := os.ReadFile(filepath.Join(dir, spoolCorrupt, bad)); err != nil || !bytes.Equal(b, garbage) {
			t.Errorf("corrupt file not kept as it was: %q, %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(dir, spoolCorrupt, noResult)); err != nil {
			t.Errorf("a record without a final result was not set aside: %v", err)
		}
		if !strings.Contains(logged(), "moved it aside") {
			t.Errorf("not logged:\n%s", logged())
		}
		assertOnce(t, store, "good")
		// A new Spool over the same directory does not bring them back.
		if sp2, err := NewSpool(store, dir, nil); err != nil || sp2.Pending() != 0 {
			t.Errorf("reopened spool: %v pending, %v", sp2.Pending(), err)
		}
	})
}

// TestSpoolRefuses: what the store would never take is an error at once, not a spool file;
// a duplicate scheduled run is the caller's to know about.
func TestSpoolRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, _ := openTemp(t)
	sp, err := NewSpool(store, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 27, 3, 30, 0, 0, time.UTC)
	if err := sp.Begin(ctx, scheduled("a", "shop", t0)); err != nil {
		t.Fatal(err)
	}
	if err := sp.Begin(ctx, scheduled("b", "shop", t0)); !errors.Is(err, ErrDuplicateSchedule) {
		t.Errorf("Begin of a duplicate: %v", err)
	}
	if err := sp.Finish(ctx, finalOf(scheduled("c", "shop", t0), drill.Skipped, "")); !errors.Is(err, ErrDuplicateSchedule) {
		t.Errorf("Finish of a duplicate: %v", err)
	}
	unfinished := running("d", "shop", t0, drill.RunnerInfo{})
	unfinished.Result = drill.Passed
	if err := sp.Finish(ctx, unfinished); err == nil || !strings.Contains(err.Error(), "finishedAt") {
		t.Errorf("Finish without finishedAt: %v", err)
	}
	// A run finished otherwise meanwhile: an error, and the record is kept aside.
	if err := store.Finish(ctx, finalOf(scheduled("a", "shop", t0), drill.Aborted, "abandoned")); err != nil {
		t.Fatal(err)
	}
	if err := sp.Finish(ctx, finalOf(scheduled("a", "shop", t0), drill.Passed, "")); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Finish of a finished run: %v", err)
	}
	if kept, _ := filepath.Glob(filepath.Join(sp.dir, spoolRejected, "*-a.json")); len(kept) != 1 {
		t.Errorf("the refused final record was not kept aside: %v", kept)
	}
	if n := sp.Pending(); n != 0 {
		t.Errorf("%d records spooled, want none", n)
	}
	// NewSpool refuses a directory it can't write to.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := NewSpool(store, filepath.Join(file, "spool"), nil); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("NewSpool under a file: %v", err)
	}
}

// TestSpoolRun: Run writes what waits in the spool without being asked.
func TestSpoolRun(t *testing.T) {
	t.Parallel()
	store, _ := openTemp(t)
	sp, err := NewSpool(store, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.write(fullRecord("waiting", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var pending atomic.Int64
	pending.Store(-1)
	wg.Go(func() { sp.Run(ctx, 10*time.Millisecond, func(n int) { pending.Store(int64(n)) }) })
	defer wg.Wait()
	defer cancel()
	deadline := time.Now().Add(time.Minute)
	for (sp.Pending() > 0 || pending.Load() != 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sp.Pending() != 0 {
		t.Fatal("Run did not flush the spool")
	}
	if n := pending.Load(); n != 0 {
		t.Errorf("Run told %d records pending after the flush, want 0", n)
	}
	assertOnce(t, store, "waiting")
}

// TestSpoolUpdateBegins: a run whose Begin was lost (the store was down) is begun by its next
// Update, so that it shows as running; Finish then completes it.
func TestSpoolUpdateBegins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, _ := openTemp(t)
	sp, err := NewSpool(store, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := running("lost-begin", "shop", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), CurrentRunner())
	if err := sp.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, err := store.Get(ctx, r.ID); err != nil || got.Result != drill.Running {
		t.Fatalf("after Update: %+v, %v; want running", got, err)
	}
	if err := sp.Finish(ctx, finalOf(r, drill.Passed, "")); err != nil {
		t.Fatal(err)
	}
	if got, err := store.Get(ctx, r.ID); err != nil || got.Result != drill.Passed || sp.Pending() != 0 {
		t.Errorf("after Finish: %+v, %v, pending %d", got, err, sp.Pending())
	}
}
