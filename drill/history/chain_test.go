package history

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

// walkChain verifies s's whole chain with pub and returns what it found and the records.
func walkChain(t *testing.T, s *Store, pub ed25519.PublicKey) (chain.Result, []drill.Record) {
	t.Helper()
	v := chain.NewVerifier(pub)
	if err := s.WalkRaw(context.Background(), func(raw []byte) error { v.Add(raw); return nil }); err != nil {
		t.Fatal(err)
	}
	var recs []drill.Record
	if err := s.Walk(context.Background(), func(r drill.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return v.Result(), recs
}

// TestFinishSealsTheChain: every way a record gets finished (Finish after Begin, Finish alone,
// MarkAbandoned) links it into one chain in finishing order, signed once a signer is set.
func TestFinishSealsTheChain(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		s, _ := openStore(t, b)
		ctx := context.Background()
		_, priv, _ := ed25519.GenerateKey(nil)
		signer := chain.NewSigner(priv)

		// Unsigned, in a non-UTC location and with evidence numbers that must keep every digit.
		loc := time.FixedZone("UTC+5:30", 5*3600+1800)
		first := fullRecord("r1", time.Date(2026, 11, 27, 10, 0, 0, 123456789, loc), map[string]any{"revision": int64(1)<<62 + 1, "ratio": 1e-9})
		if err := s.Finish(ctx, first); err != nil {
			t.Fatal(err)
		}
		if first.PrevHash != chain.Genesis || first.Hash == "" || first.Signature != "" {
			t.Fatalf("first record: prev %q hash %q sig %q", first.PrevHash, first.Hash, first.Signature)
		}
		s.SetSigner(signer)
		t0 := time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)
		second := running("r2", "shop", t0, drill.RunnerInfo{Host: "elsewhere", PID: 1})
		if err := s.Begin(ctx, second); err != nil {
			t.Fatal(err)
		}
		abandoned := running("r3", "shop", t0, drill.RunnerInfo{Host: "gone-host", PID: 2})
		if err := s.Begin(ctx, abandoned); err != nil {
			t.Fatal(err)
		}
		second.Result, second.FinishedAt = drill.Failed, ptr(t0.Add(time.Minute))
		if err := s.Finish(ctx, second); err != nil {
			t.Fatal(err)
		}
		if second.PrevHash != first.Hash || second.Signature == "" {
			t.Errorf("second record: prev %q (want %q), signature %q", second.PrevHash, first.Hash, second.Signature)
		}
		s.now = func() time.Time { return time.Now().Add(time.Hour) } // r3's heartbeat is stale
		if ids, err := s.MarkAbandoned(ctx, func(drill.RunnerInfo) bool { return false }, time.Minute); err != nil || len(ids) != 1 {
			t.Fatalf("mark abandoned: %v %v", ids, err)
		}

		// serve records a missed scheduled run with Finish alone: it is evidence too.
		missed := &drill.Record{ID: "r5", Scenario: "shop", Trigger: "schedule", ScheduledFor: ptr(t0), Result: drill.Missed,
			Message: "serve was down", StartedAt: t0, FinishedAt: ptr(t0), Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{}, Checks: []drill.CheckRecord{}}
		if err := s.Finish(ctx, missed); err != nil {
			t.Fatal(err)
		}

		// A signature is only required from the point the key was set, so check the chain
		// without the key, then the signed part's signatures one by one.
		res, recs := walkChain(t, s, nil)
		if !res.OK() || res.Records != 4 || res.Signed != 3 {
			t.Fatalf("chain: %s", res)
		}
		if recs[0].ID != "r1" || recs[1].ID != "r2" || recs[2].ID != "r3" || recs[2].Result != drill.Aborted || recs[3].ID != "r5" {
			t.Errorf("chain order: %s %s %s %s", recs[0].ID, recs[1].ID, recs[2].ID, recs[3].ID)
		}
		for _, r := range recs[1:] {
			if !chain.VerifySignature(signer.Public(), r.Hash, r.Signature) {
				t.Errorf("run %s: signature does not verify", r.ID)
			}
		}
		if res.ChainHead != missed.Hash || column[string](t, s, "r3", "hash") != recs[2].Hash || column[string](t, s, "r3", "prev_hash") != second.Hash ||
			missed.PrevHash != recs[2].Hash {
			t.Errorf("head %s, r3 %s, r5 %s after %s", res.ChainHead, recs[2].Hash, missed.Hash, missed.PrevHash)
		}
		// A running record is not in the chain yet.
		if err := s.Begin(ctx, running("r4", "shop", t0, drill.RunnerInfo{Host: "elsewhere", PID: 3})); err != nil {
			t.Fatal(err)
		}
		if res, _ := walkChain(t, s, nil); res.Records != 4 {
			t.Errorf("a running record is in the chain: %s", res)
		}
	})
}

// TestConcurrentFinishesFormOneChain: several stores (as several processes) finishing at once
// still form one unbroken chain.
func TestConcurrentFinishesFormOneChain(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		_, dsn := openStore(t, b)
		const writers, each = 4, 10
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			s := openDSN(t, dsn)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					r := fullRecord(fmt.Sprintf("w%d-%d", w, i), time.Now(), map[string]any{"n": i})
					if err := s.Finish(context.Background(), r); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		res, _ := walkChain(t, openDSN(t, dsn), nil)
		if !res.OK() || res.Records != writers*each {
			t.Errorf("chain: %s", res)
		}
	})
}
