package history

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

// rawChain returns the records of s's chain as stored.
func rawChain(t *testing.T, s *Store) [][]byte {
	t.Helper()
	var out [][]byte
	if err := s.WalkRaw(context.Background(), func(raw []byte) error { out = append(out, bytes.Clone(raw)); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// pruneTo prunes s of the runs finished before before into a new archive in dir.
func pruneTo(t *testing.T, s *Store, dir string, before time.Time) PruneResult {
	t.Helper()
	res, err := s.Prune(context.Background(), PruneOptions{Before: before, Dir: dir, Trigger: "manual", Operator: "me@host"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// mustVerify verifies s with pub and fails the test unless it is intact with records records.
func mustVerify(t *testing.T, s *Store, pub ed25519.PublicKey, records int) Verification {
	t.Helper()
	v, err := s.Verify(context.Background(), VerifyOptions{PublicKey: pub})
	if err != nil || !v.Intact || v.Records != records {
		t.Fatalf("verify: %v, want intact with %d records: %s", err, records, v.Message)
	}
	return v
}

// TestPrune: a prune archives the runs that finished before a time exactly as stored, leaves
// a signed checkpoint that the rest of the chain verifies from, and the archive joins it; a
// second prune takes the first checkpoint along, and both archives still join. Running runs,
// the newest record and listings of runs are untouched by checkpoints.
func TestPrune(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		_, priv, _ := ed25519.GenerateKey(nil)
		signer := chain.NewSigner(priv)
		s.SetSigner(signer)
		pub := signer.Public()
		t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
		inFlight := running("in-flight", "shop", t0.Add(-time.Hour), CurrentRunner())
		if err := s.Begin(ctx, inFlight); err != nil {
			t.Fatal(err)
		}
		recs := finishRuns(t, s, 6) // run-i finishes 61.5s after t0 + i hours
		before := rawChain(t, s)
		dir := t.TempDir()

		res := pruneTo(t, s, dir, recs[3].StartedAt)
		cp := res.Checkpoint
		if cp == nil || cp.Pruned.Runs != 3 || cp.Pruned.Records != 3 || cp.LastHash != recs[2].Hash || cp.PrevHash != chain.Genesis ||
			cp.Pruned.FirstRun != "run-0" || cp.Pruned.LastRun != "run-2" || cp.Pruned.FirstSeq != 1 || cp.Pruned.LastSeq != 3 ||
			cp.Signature == "" || cp.Trigger != "manual" || cp.Operator != "me@host" || !cp.Pruned.To.Equal(*recs[2].FinishedAt) {
			t.Fatalf("checkpoint: %+v", cp)
		}
		wantName := ArchiveName(*recs[0].FinishedAt, *recs[2].FinishedAt)
		if res.Archive != filepath.Join(dir, wantName) || cp.Pruned.Archive != wantName {
			t.Errorf("archive %s (%s), want %s in %s", res.Archive, cp.Pruned.Archive, wantName, dir)
		}
		archived, err := os.ReadFile(res.Archive)
		if err != nil {
			t.Fatal(err)
		}
		if want := append(bytes.Join(before[:3], []byte("\n")), '\n'); !bytes.Equal(archived, want) {
			t.Errorf("the archive is not the first three records as stored:\n%s\nwant\n%s", archived, want)
		}
		if fi, _ := os.Stat(res.Archive); fi.Mode().Perm() != 0o600 {
			t.Errorf("archive mode %o, want 0600", fi.Mode().Perm())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("the archive directory holds %d files, want only the archive", len(entries))
		}

		v := mustVerify(t, s, pub, 4)
		if v.Checkpoint == nil || v.Checkpoint.ID != cp.ID || v.Checkpoint.Runs != 3 || v.ChainHead != recs[5].Hash ||
			!strings.Contains(v.Message, "intact: 4 records (the first a checkpoint for 3 pruned runs up to") {
			t.Errorf("after the prune: %+v\n%s", v.Checkpoint, v.Message)
		}
		if after := rawChain(t, s); !bytes.Equal(bytes.Join(after[1:], nil), bytes.Join(before[3:], nil)) {
			t.Error("the records after the checkpoint changed")
		}
		av, err := VerifyArchives([]string{res.Archive}, v.Checkpoint, pub)
		if err != nil || len(av) != 1 || !av[0].Intact || av[0].Joins != cp.ID || av[0].Records != 3 {
			t.Fatalf("archive: %v %+v", err, av)
		}

		// A checkpoint is in the chain, never among the runs.
		runs, err := s.List(ctx, Filter{})
		if err != nil || len(runs) != 4 {
			t.Fatalf("list after the prune: %d runs, %v; want 3 finished and the one in flight", len(runs), err)
		}
		for _, r := range runs {
			if r.ID == cp.ID || r.ID == "run-0" {
				t.Errorf("listed %s after the prune", r.ID)
			}
		}
		if _, err := s.Get(ctx, cp.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("get the checkpoint as a run: %v", err)
		}
		if _, err := s.Get(ctx, "run-1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("get a pruned run: %v", err)
		}

		// The run in flight finishes into the chain after the checkpoint.
		inFlight.Result, inFlight.FinishedAt = drill.Passed, ptr(t0.Add(10*time.Hour))
		if err := s.Finish(ctx, inFlight); err != nil {
			t.Fatal(err)
		}
		if inFlight.PrevHash != recs[5].Hash {
			t.Errorf("the run in flight linked to %s, want the head %s", inFlight.PrevHash, recs[5].Hash)
		}
		mustVerify(t, s, pub, 5)

		// The second prune takes the first checkpoint along; each archive joins its checkpoint.
		res2 := pruneTo(t, s, dir, recs[5].StartedAt)
		cp2 := res2.Checkpoint
		if cp2 == nil || cp2.Pruned.Runs != 5 || cp2.Pruned.Records != 3 || cp2.LastHash != recs[4].Hash || cp2.Pruned.FirstRun != "run-3" ||
			cp2.Pruned.FirstSeq != 3 || cp2.Pruned.LastSeq != 5 || !strings.Contains(cp2.Message, "2 runs and the checkpoint before them (for 3 runs)") {
			t.Fatalf("second checkpoint: %+v", cp2)
		}
		v = mustVerify(t, s, pub, 3)
		av, err = VerifyArchives([]string{res.Archive, res2.Archive}, v.Checkpoint, pub)
		if err != nil || !av[0].Intact || av[0].Joins != cp.ID || !av[1].Intact || av[1].Joins != cp2.ID {
			t.Fatalf("both archives: %v %+v", err, av)
		}
		// Without the second archive, the first has no checkpoint to join.
		av, _ = VerifyArchives([]string{res.Archive}, v.Checkpoint, pub)
		if av[0].Intact || !strings.Contains(av[0].Message, "does not join the chain") || !strings.Contains(av[0].Message, cp2.ID) {
			t.Errorf("first archive alone: %s", av[0].Message)
		}

		// Nothing more finished before that time: nothing to prune, nothing written.
		if again := pruneTo(t, s, dir, recs[5].StartedAt); again.Checkpoint != nil || again.Archive != "" {
			t.Errorf("second prune to the same time: %+v", again)
		}
		// Never the newest record: it is what new records link to.
		res3 := pruneTo(t, s, dir, t0.Add(100*time.Hour))
		if res3.Checkpoint == nil || res3.Checkpoint.Pruned.LastRun != "run-5" {
			t.Fatalf("prune of everything: %+v", res3.Checkpoint)
		}
		v = mustVerify(t, s, pub, 2)
		if v.ChainHead != inFlight.Hash {
			t.Errorf("chain head %s, want the newest run %s", v.ChainHead, inFlight.Hash)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 3 {
			t.Errorf("the archive directory holds %d files, want the 3 archives", len(entries))
		}
	})
}

// TestPruneRefuses: a time in the future, an existing archive, a tampered history, a signed
// history without its key: refused, with nothing removed and no archive left behind.
func TestPruneRefuses(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		_, priv, _ := ed25519.GenerateKey(nil)
		s.SetSigner(chain.NewSigner(priv))
		recs := finishRuns(t, s, 4)
		t0 := recs[0].StartedAt
		cut := t0.Add(2 * time.Hour)
		dir := t.TempDir()
		refused := func(name string, o PruneOptions, want string) {
			t.Helper()
			if o.Dir == "" {
				o.Dir = dir
			}
			if o.Before.IsZero() {
				o.Before = cut
			}
			res, err := s.Prune(ctx, o)
			if err == nil || !strings.Contains(err.Error(), want) || res.Checkpoint != nil {
				t.Errorf("%s: %v, want an error saying %q", name, err, want)
			}
			if n := len(rawChain(t, s)); n != 4 {
				t.Errorf("%s: %d records left, want all 4", name, n)
			}
		}
		refused("future", PruneOptions{Before: time.Now().Add(time.Hour)}, "in the future")
		taken := ArchiveName(*recs[0].FinishedAt, *recs[1].FinishedAt)
		if err := os.WriteFile(filepath.Join(dir, taken), []byte("keep me\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		refused("existing archive", PruneOptions{}, "never overwrites an archive")
		if b, _ := os.ReadFile(filepath.Join(dir, taken)); string(b) != "keep me\n" {
			t.Errorf("the existing file was changed: %q", b)
		}
		os.Remove(filepath.Join(dir, taken))
		refused("missing directory", PruneOptions{Dir: filepath.Join(dir, "nope")}, "create the archive")

		s.SetSigner(nil)
		refused("unsigned checkpoint in a signed history", PruneOptions{}, "give the signing key")
		_, other, _ := ed25519.GenerateKey(nil)
		s.SetSigner(chain.NewSigner(other))
		refused("another key", PruneOptions{}, "did not sign the history's newest record")
		s.SetSigner(chain.NewSigner(priv))

		if _, err := s.db.ExecContext(ctx, q(s, `UPDATE runs SET result = 'passed' WHERE id = ?`), "run-2"); err != nil {
			t.Fatal(err)
		}
		refused("tampered", PruneOptions{}, "the history is not intact")
		if _, err := s.Prune(ctx, PruneOptions{Before: cut, Dir: dir}); !errors.Is(err, ErrNotIntact) {
			t.Errorf("tampered: %v, want ErrNotIntact", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("refused prunes left %d files in the archive directory", len(entries))
		}
	})
}

// TestPruneTamperDetected: what `history verify` and VerifyArchives say when the checkpoint or
// an archive is changed after a prune.
func TestPruneTamperDetected(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		recs := finishRuns(t, s, 5)
		res := pruneTo(t, s, t.TempDir(), recs[3].StartedAt) // run-0..run-2
		v := mustVerify(t, s, nil, 3)

		// The kind column is a copy like the others: a run hidden from listings as a
		// checkpoint is an edit of the runs table.
		if _, err := s.db.ExecContext(ctx, q(s, `UPDATE runs SET kind = 'checkpoint' WHERE id = ?`), "run-4"); err != nil {
			t.Fatal(err)
		}
		if w, _ := s.Verify(ctx, VerifyOptions{}); w.Intact || w.Break.Position != 3 || !strings.Contains(w.Problem, `column kind is "checkpoint", the record says "run"`) {
			t.Errorf("kind column edited: %s", w.Message)
		}
		if _, err := s.db.ExecContext(ctx, q(s, `UPDATE runs SET kind = 'run' WHERE id = ?`), "run-4"); err != nil {
			t.Fatal(err)
		}
		// Without the checkpoint the chain starts in mid-air, and the message says why.
		if _, err := s.db.ExecContext(ctx, q(s, `DELETE FROM runs WHERE id = ?`), res.Checkpoint.ID); err != nil {
			t.Fatal(err)
		}
		w, _ := s.Verify(ctx, VerifyOptions{})
		if w.Intact || w.Break.Position != 1 || w.Break.ID != "run-3" || w.Break.Problem != chain.Relinked || !strings.Contains(w.Problem, "the checkpoint that stood for them") {
			t.Errorf("checkpoint removed: %s", w.Message)
		}

		archive, err := os.ReadFile(res.Archive)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.SplitAfter(archive, []byte("\n"))[:3]
		for _, tc := range []struct {
			name  string
			lines [][]byte
			want  string
		}{
			{"record edited", [][]byte{lines[0], bytes.Replace(lines[1], []byte(`"result":"passed"`), []byte(`"result":"failed"`), 1), lines[2]}, "TAMPERED: line 2 (run run-1, scenario control-plane-etcd): modified"},
			{"middle line dropped", [][]byte{lines[0], lines[2]}, "TAMPERED: line 2 (run run-2, scenario control-plane-etcd): deleted, inserted or reordered"},
			{"lines reordered", [][]byte{lines[0], lines[2], lines[1]}, "TAMPERED: line 2 (run run-2, scenario control-plane-etcd): deleted, inserted or reordered"},
			{"first line dropped", [][]byte{lines[1], lines[2]}, "records were removed from its start"},
			{"last line dropped", [][]byte{lines[0], lines[1]}, "records were removed from its end"},
			{"line added", [][]byte{lines[0], lines[1], lines[2], lines[2]}, "TAMPERED: line 4 (run run-2, scenario control-plane-etcd): deleted, inserted or reordered"},
			{"empty", nil, "it holds no records"},
		} {
			path := filepath.Join(t.TempDir(), "archive.jsonl")
			if err := os.WriteFile(path, bytes.Join(tc.lines, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			av, err := VerifyArchives([]string{path}, v.Checkpoint, nil)
			if err != nil || av[0].Intact || !strings.Contains(av[0].Message, "archive "+path+": ") || !strings.Contains(av[0].Message, tc.want) {
				t.Errorf("%s: %v %s; want %q", tc.name, err, av[0].Message, tc.want)
			}
		}
		if _, err := VerifyArchives([]string{filepath.Join(t.TempDir(), "missing")}, v.Checkpoint, nil); err == nil {
			t.Error("a missing archive verified")
		}
	})
}

// TestPruneConcurrently: two prunes and a writer at once on one history, each with its own
// connections: one prune removes the runs, the other finds nothing left or the chain changed
// under it and removes nothing; every run is in the history or an archive, and both verify.
func TestPruneConcurrently(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		first, dsn := openStore(t, b)
		finishRuns(t, first, 20)
		cut := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC) // run-0..run-10 finished before
		var wg sync.WaitGroup
		results := make([]PruneResult, 2)
		errs := make([]error, 3)
		for i := range 2 {
			s := openDSN(t, dsn)
			wg.Go(func() {
				results[i], errs[i] = s.Prune(ctx, PruneOptions{Before: cut, Dir: t.TempDir(), Name: func(_, _ time.Time) string { return fmt.Sprintf("p%d.jsonl", i) }})
			})
		}
		writer := openDSN(t, dsn)
		wg.Go(func() { errs[2] = writeRunsTo(ctx, writer, "w", 20) })
		wg.Wait()
		if errs[2] != nil {
			t.Fatal(errs[2])
		}
		var pruned []PruneResult
		for i, r := range results {
			t.Logf("prune %d: checkpoint %v, error %v", i, r.Checkpoint != nil, errs[i])
			switch {
			case errs[i] == nil && r.Checkpoint != nil:
				pruned = append(pruned, r)
			case errs[i] != nil && !strings.Contains(errs[i].Error(), "another prune ran at the same time; nothing was removed"):
				t.Errorf("prune %d: %v", i, errs[i])
			}
		}
		if len(pruned) != 1 {
			t.Fatalf("%d prunes removed runs, want 1: %v", len(pruned), errs)
		}
		v := mustVerify(t, first, nil, 1+9+20)
		if v.Checkpoint.Runs != 11 {
			t.Errorf("checkpoint for %d runs, want 11", v.Checkpoint.Runs)
		}
		av, err := VerifyArchives([]string{pruned[0].Archive}, v.Checkpoint, nil)
		if err != nil || !av[0].Intact || av[0].Records != 11 {
			t.Errorf("archive: %v %+v", err, av)
		}
	})
}

// TestPruneUnprotected: runs from before the hash chain go into an archive only with a chained
// run after them, since the checkpoint must name a hash.
func TestPruneUnprotected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openTemp(t)
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	for i := range 2 { // as a firedrill older than the chain wrote them
		rec := fullRecord(fmt.Sprintf("old-%d", i), t0.Add(time.Duration(i)*time.Hour), nil)
		js, _ := marshal(rec)
		_, err := s.db.Exec(`INSERT INTO runs (id, seq, scenario, trigger, operator, result, message, started_at, finished_at,
			rto_seconds, rpo_seconds, heartbeat_at, runner_host, runner_pid, runner_start_ticks, record)
			VALUES (?, ?, ?, 'manual', 'alice@ops-1', 'passed', '', ?, ?, ?, ?, ?, '', 0, 0, ?)`,
			rec.ID, i+1, rec.Scenario, dbTime(rec.StartedAt), dbTime(*rec.FinishedAt), *rec.RTOSeconds, *rec.RPOSeconds, dbTime(rec.StartedAt), string(js))
		if err != nil {
			t.Fatal(err)
		}
	}
	recs := finishRuns(t, s, 3)
	dir := t.TempDir()
	if _, err := s.Prune(ctx, PruneOptions{Before: t0.Add(2 * time.Hour), Dir: dir}); err == nil || !strings.Contains(err.Error(), "predates the hash chain") {
		t.Errorf("prune of unprotected runs only: %v", err)
	}
	recs = recs[2:] // after old-0 and old-1
	res := pruneTo(t, s, dir, recs[1].StartedAt)
	if c := res.Checkpoint; c == nil || c.Pruned.Runs != 3 || c.Pruned.Unprotected != 2 || c.LastHash != recs[0].Hash {
		t.Fatalf("checkpoint: %+v", res.Checkpoint)
	}
	v := mustVerify(t, s, nil, 3)
	if v.Unprotected != 0 {
		t.Errorf("%d unprotected records left", v.Unprotected)
	}
	av, err := VerifyArchives([]string{res.Archive}, v.Checkpoint, nil)
	if err != nil || !av[0].Intact || av[0].Unprotected != 2 {
		t.Errorf("archive: %v %+v", err, av)
	}
}

// TestPruneStopsAtTheFirstRunThatStays: the chain is in the order runs were written, not the
// order they finished; a run written late (a spooled record) that finished before the time
// stays, with the runs before it, so that what remains is still one chain from the checkpoint.
func TestPruneStopsAtTheFirstRunThatStays(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		for i, start := range []time.Duration{0, 10 * time.Hour, time.Hour, 20 * time.Hour} { // the third finished early, written late
			if err := s.Finish(ctx, fullRecord(fmt.Sprintf("run-%d", i), t0.Add(start), nil)); err != nil {
				t.Fatal(err)
			}
		}
		res := pruneTo(t, s, t.TempDir(), t0.Add(5*time.Hour))
		if res.Checkpoint == nil || res.Checkpoint.Pruned.Runs != 1 || res.Checkpoint.Pruned.LastRun != "run-0" {
			t.Fatalf("checkpoint: %+v", res.Checkpoint)
		}
		mustVerify(t, s, nil, 4)
		if _, err := s.Get(ctx, "run-2"); err != nil {
			t.Errorf("the run written late was pruned: %v", err)
		}
	})
}
