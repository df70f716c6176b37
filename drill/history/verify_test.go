package history

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

// finishRuns finishes n varied runs (scheduled, failed, unmeasured) in s and returns them as
// stored.
func finishRuns(t *testing.T, s *Store, n int) []drill.Record {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	for i := range n {
		r := fullRecord(fmt.Sprintf("run-%d", i), t0.Add(time.Duration(i)*time.Hour), map[string]any{"n": i})
		switch i % 3 {
		case 1:
			r.Trigger, r.ScheduledFor = "schedule", ptr(r.StartedAt.Truncate(time.Hour))
		case 2:
			r.Result, r.Message, r.RTOSeconds = drill.Failed, "check \"every object decodes\" failed", nil
		}
		if err := s.Finish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var recs []drill.Record
	if err := s.Walk(ctx, func(r drill.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestVerifyChecksTheCopiedColumns: Verify reports an edit of any column that copies a field
// of the record — the record itself still hashes right — as the first broken record, and
// names the column.
func TestVerifyChecksTheCopiedColumns(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		for _, tc := range []struct {
			column, set string
			seq         int
		}{
			{"result", "'passed'", 3},
			{"scenario", "'other'", 2},
			{"started_at", "'2020-01-01T00:00:00.000000000Z'", 4},
			{"finished_at", "NULL", 1},
			{"scheduled_for", "'2026-11-27T09:00:00.000000000Z'", 1},
			{"scheduled_for", "NULL", 2},
			{"rto_seconds", "1.5", 1},
			{"rpo_seconds", "NULL", 4},
			{"trigger", "'api'", 4},
			{"operator", "'mallory@ops'", 4},
			{"message", "''", 3},
			{"hash", "'00'", 4},
			{"prev_hash", "''", 2},
			{"signature", "'c2ln'", 2},
		} {
			t.Run(tc.column+"="+tc.set, func(t *testing.T) {
				s, _ := openStore(t, b)
				recs := finishRuns(t, s, 4)
				if v, err := s.Verify(ctx, VerifyOptions{}); err != nil || !v.Intact || v.Records != 4 || v.ChainHead != recs[3].Hash {
					t.Fatalf("before: %+v %v", v, err)
				}
				if _, err := s.db.ExecContext(ctx, fmt.Sprintf("UPDATE runs SET %s = %s WHERE seq = %d", tc.column, tc.set, tc.seq)); err != nil {
					t.Fatal(err)
				}
				var seen []string
				v, err := s.Verify(ctx, VerifyOptions{Each: func(raw []byte, f *chain.Fields) error {
					id, _ := f.String("id")
					seen = append(seen, id)
					return nil
				}})
				if err != nil {
					t.Fatal(err)
				}
				brk := v.Break
				if v.Intact || brk == nil || brk.Position != tc.seq || brk.ID != recs[tc.seq-1].ID || brk.Problem != chain.Modified ||
					!strings.Contains(brk.Detail, "column "+tc.column+" is ") || v.Problem != brk.Error() || !strings.HasPrefix(v.Message, "TAMPERED: record ") {
					t.Errorf("%+v", v)
				}
				if len(seen) != 4 || seen[3] != recs[3].ID {
					t.Errorf("Each saw %v, want every record", seen)
				}
			})
		}
	})
}

// TestVerify: the chain, signatures and noted heads, from one read.
func TestVerify(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		if v, err := s.Verify(ctx, VerifyOptions{}); err != nil || !v.Intact || v.Records != 0 || v.Message != "intact: 0 records, chain head (none), signatures not checked (0 of 0 signed; give --public-key to check them)" {
			t.Errorf("empty history: %+v %v", v, err)
		}
		_, priv, _ := ed25519.GenerateKey(nil)
		signer := chain.NewSigner(priv)
		s.SetSigner(signer)
		recs := finishRuns(t, s, 3)
		v, err := s.Verify(ctx, VerifyOptions{PublicKey: signer.Public(), Contains: []string{strings.ToUpper(recs[1].Hash), recs[2].Hash}})
		if err != nil || !v.Intact || v.Records != 3 || v.Signed != 3 || !v.SignaturesChecked || v.ChainHead != recs[2].Hash || v.Message != v.Result.String() {
			t.Errorf("signed: %+v %v", v, err)
		}
		if v, _ := s.Verify(ctx, VerifyOptions{Contains: []string{"5f0c"}}); v.Intact || v.Break.Problem != chain.Relinked || !strings.Contains(v.Problem, "no longer holds 5f0c") {
			t.Errorf("a head not in the chain: %+v", v)
		}
		_, other, _ := ed25519.GenerateKey(nil)
		if v, _ := s.Verify(ctx, VerifyOptions{PublicKey: chain.NewSigner(other).Public()}); v.Intact || v.Break.Position != 1 || v.Break.Problem != chain.BadSignature {
			t.Errorf("another key: %+v", v)
		}
		// A record edited in place: Each still gets every record, the break stays the first.
		if _, err := s.db.ExecContext(ctx, `UPDATE runs SET record = `+replaceInRecord(s, `"operator":"alice@ops-1"`, `"operator":"mallory"`)+` WHERE seq = 2`); err != nil {
			t.Fatal(err)
		}
		n := 0
		v, err = s.Verify(ctx, VerifyOptions{Each: func([]byte, *chain.Fields) error { n++; return nil }})
		if err != nil || v.Intact || v.Break.Position != 2 || v.Break.Problem != chain.Modified || v.Records != 2 || n != 3 {
			t.Errorf("edited record: %+v %v, Each called %d times", v, err, n)
		}
		stop := fmt.Errorf("stop")
		if _, err := s.Verify(ctx, VerifyOptions{Each: func([]byte, *chain.Fields) error { return stop }}); err != stop {
			t.Errorf("Each's error: %v", err)
		}
	})
}

// replaceInRecord is SQL for the record column with one text replaced, in s's dialect.
func replaceInRecord(s *Store, from, to string) string {
	if s.d.name == "PostgreSQL" {
		return fmt.Sprintf("(replace(record::text, '%s', '%s'))::json", from, to)
	}
	return fmt.Sprintf("replace(record, '%s', '%s')", from, to)
}

// TestVerifyReadsAhead: the rows come through the read-ahead batches in order and complete,
// and stopping early — Each's error, a cancelled context — ends the reading goroutine.
func TestVerifyReadsAhead(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		s, _ := openStore(t, b)
		const n = 3*readAheadRows + 7
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		recs := make([]*drill.Record, n)
		for i := range recs {
			recs[i] = benchRecord(i, t0.Add(time.Duration(i)*time.Minute))
		}
		ctx := context.Background()
		if err := seed(ctx, s, recs); err != nil { // sealed, unsigned
			t.Fatal(err)
		}
		i := 0
		v, err := s.Verify(ctx, VerifyOptions{Each: func(raw []byte, f *chain.Fields) error {
			if id, _ := f.String("id"); id != recs[i].ID {
				t.Fatalf("record %d is %s, want %s", i+1, id, recs[i].ID)
			}
			i++
			return nil
		}})
		if err != nil || !v.Intact || v.Records != n || v.Unprotected != 0 || i != n {
			t.Errorf("%+v %v, Each called %d times", v, err, i)
		}
		stop := fmt.Errorf("stop")
		calls := 0
		if _, err := s.Verify(ctx, VerifyOptions{Each: func([]byte, *chain.Fields) error {
			if calls++; calls == readAheadRows+1 {
				return stop
			}
			return nil
		}}); err != stop || calls != readAheadRows+1 {
			t.Errorf("Each's error: %v after %d records", err, calls)
		}
		cctx, cancel := context.WithCancel(ctx)
		calls = 0
		_, err = s.Verify(cctx, VerifyOptions{Each: func([]byte, *chain.Fields) error {
			if calls++; calls == 2 {
				cancel()
			}
			return nil
		}})
		if err == nil || calls == n {
			t.Errorf("cancelled: %v after %d records", err, calls)
		}
	})
}
