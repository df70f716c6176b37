// Package historytest makes large run histories for benchmarks: Seed writes records into an
// SQLite history as the store's Finish would, but in one transaction, so that a history of
// 100,000 runs takes seconds instead of an hour of fsynced commits.
package historytest

import (
	"context"
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
)

// dbTime is how the history stores a time in a column (drill/history's timeLayout).
const dbTime = "2006-01-02T15:04:05.000000000Z07:00"

// Seed creates an SQLite history at path and writes n finished runs into it, record(i) for i
// from 0 (its times in UTC, as the store keeps them), sealed into one hash chain (signed when signer is set) with every column of the runs
// table filled from the record, as Finish fills them — so that `history verify` finds it
// intact. It leaves the checks table empty (nothing reads it back) and returns the chain head.
func Seed(tb testing.TB, path string, n int, record func(i int) *drill.Record, signer *chain.Signer) (head string) {
	tb.Helper()
	st, err := history.Open(context.Background(), path) // creates the schema
	if err != nil {
		tb.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	stmt, err := tx.Prepare(`INSERT INTO runs (id, seq, scenario, trigger, operator, result, message, started_at,
		finished_at, rto_seconds, rpo_seconds, heartbeat_at, runner_host, runner_pid, runner_start_ticks, prev_hash, hash,
		signature, record, scheduled_for) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	head = chain.Genesis
	for i := range n {
		r := record(i)
		if err := chain.Seal(r, head, signer); err != nil {
			tb.Fatal(err)
		}
		head = r.Hash
		raw, err := json.Marshal(r)
		if err != nil {
			tb.Fatal(err)
		}
		_, err = stmt.Exec(r.ID, i+1, r.Scenario, r.Trigger, r.Operator, string(r.Result), r.Message, r.StartedAt.Format(dbTime),
			column(r.FinishedAt), number(r.RTOSeconds), number(r.RPOSeconds), r.StartedAt.Format(dbTime), r.Runner.Host,
			r.Runner.PID, int64(r.Runner.StartTicks), r.PrevHash, r.Hash, r.Signature, string(raw), column(r.ScheduledFor))
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return head
}

// column is a time column's value: NULL for none.
func column(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Format(dbTime)
}

func number(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
