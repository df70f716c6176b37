package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/pgtest"
	"github.com/firedrill-dev/firedrill/report"
)

// tamperDB is raw access to a history's database, behind firedrill's back.
type tamperDB struct {
	exec func(t *testing.T, query string, args ...any)
	// bind is the placeholder of the nth argument.
	bind func(n int) string
	// text turns the record column into text for replace(), and back.
	asText, fromText string
}

func sqliteTamper(t *testing.T, path string) tamperDB {
	return tamperDB{
		exec: func(t *testing.T, q string, args ...any) {
			t.Helper()
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		},
		bind: func(int) string { return "?" }, asText: "record", fromText: "%s",
	}
}

func postgresTamper(t *testing.T, dsn string) tamperDB {
	return tamperDB{
		exec: func(t *testing.T, q string, args ...any) {
			t.Helper()
			ctx := context.Background()
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			if _, err := c.Exec(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		},
		bind: func(n int) string { return fmt.Sprintf("$%d", n) }, asText: "record::text", fromText: "(%s)::json",
	}
}

// seedHistory finishes n runs in the history at dsn, signed with key when it is set, and
// returns them as stored.
func seedHistory(t *testing.T, dsn string, n int, key string) []drill.Record {
	t.Helper()
	ctx := context.Background()
	store, err := history.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	a := newApp(strings.NewReader(""), nil, nil, func(string) string { return "" })
	a.signingKey = key
	if err := a.applySigner(store); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 2, 3, 0, 0, 0, time.UTC)
	for i := range n {
		s, e := start.Add(time.Duration(i)*time.Hour), start.Add(time.Duration(i)*time.Hour+time.Minute)
		rto := 30.5 + float64(i)
		r := &drill.Record{ID: fmt.Sprintf("20261102-%02d0000-%06x", i, i), Scenario: []string{"shop", "etcd"}[i%2], Trigger: "manual",
			Operator: "me@host", Result: drill.Passed, StartedAt: s, FinishedAt: &e, RTOSeconds: &rto,
			Objectives: []drill.ObjectiveRecord{{Name: "rto", TargetSeconds: 600, ActualSeconds: &rto, Met: true}},
			Checks:     []drill.CheckRecord{{Name: "keys", Type: "etcdKeys", Result: drill.Passed, Evidence: map[string]any{"count": 10 + i, "revision": int64(1) << 60}}},
		}
		if err := store.Finish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var out []drill.Record
	err = store.WalkRaw(ctx, func(raw []byte) error {
		var r drill.Record
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		out = append(out, r)
		return dec.Decode(&out[len(out)-1])
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != n {
		t.Fatalf("walked %d records, want %d", len(out), n)
	}
	return out
}

func verifyHistory(dsn string, extra ...string) result {
	return inProcess(append([]string{"history", "verify", "--history", dsn}, extra...)...)
}

// forge returns r as someone with write access to the database but not the key would make it:
// changed, and rehashed onto prev so that it is a valid link itself.
func forge(t *testing.T, r drill.Record, id, prev string) (drill.Record, string) {
	t.Helper()
	r.ID, r.Result, r.Message = id, drill.Passed, "forged"
	if err := chain.Seal(&r, prev, nil); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	return r, string(raw)
}

// insertRow inserts a run row with the given seq and record, as firedrill would have: every
// column that copies a field of the record agrees with it.
func (db tamperDB) insertRow(t *testing.T, seq int64, r drill.Record, raw string) {
	t.Helper()
	const layout = "2006-01-02T15:04:05.000000000Z07:00"
	var args []string
	for i := range 13 {
		args = append(args, db.bind(i+1))
	}
	q := fmt.Sprintf(`INSERT INTO runs (id, seq, scenario, trigger, operator, result, message, started_at, finished_at,
		rto_seconds, heartbeat_at, runner_host, runner_pid, runner_start_ticks, prev_hash, hash, signature, record)
		VALUES (%s, '2026-11-02T03:01:00.000000000Z', 'h', 1, 0, %s, %s, '', `+db.fromText+`)`,
		strings.Join(args[:10], ", "), args[10], args[11], args[12])
	db.exec(t, q, r.ID, seq, r.Scenario, r.Trigger, r.Operator, string(r.Result), r.Message, r.StartedAt.UTC().Format(layout),
		r.FinishedAt.UTC().Format(layout), *r.RTOSeconds, r.PrevHash, r.Hash, raw)
}

// runTamperSuite tampers with a fresh history for each case, directly in its database, and
// checks that `history verify` names the first broken record and what is wrong with it.
func runTamperSuite(t *testing.T, newHistory func(t *testing.T) (dsn string, db tamperDB)) {
	keyDir := t.TempDir()
	priv, pub, err := chain.WriteKeyPair(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	tests := []struct {
		name   string
		signed bool
		tamper func(t *testing.T, db tamperDB, recs []drill.Record)
		// the first broken record (1-based chain position, an index into recs, or -1 for the forged one)
		pos, rec int
		want     string
	}{
		{"record edited", false, func(t *testing.T, db tamperDB, recs []drill.Record) {
			db.exec(t, fmt.Sprintf(`UPDATE runs SET record = `+db.fromText+` WHERE seq = 3`,
				`replace(`+db.asText+`, '"result":"passed"', '"result":"failed"')`))
		}, 3, 2, "modified"},
		{"evidence edited", false, func(t *testing.T, db tamperDB, recs []drill.Record) {
			db.exec(t, fmt.Sprintf(`UPDATE runs SET record = `+db.fromText+` WHERE seq = 2`,
				`replace(`+db.asText+`, '"count":11', '"count":12')`))
		}, 2, 1, "modified"},
		{"result column edited", false, func(t *testing.T, db tamperDB, recs []drill.Record) {
			db.exec(t, `UPDATE runs SET result = 'failed' WHERE seq = 4`)
		}, 4, 3, "modified"},
		{"row deleted", false, func(t *testing.T, db tamperDB, recs []drill.Record) {
			db.exec(t, `DELETE FROM runs WHERE seq = 3`)
		}, 3, 3, "deleted, inserted or reordered"},
		{"first row deleted", false, func(t *testing.T, db tamperDB, recs []drill.Record) {
			db.exec(t, `DELETE FROM runs WHERE seq = 1`)
		}, 1, 1, "deleted, inserted or reordered"},
		{"forged row inserted", false, func(t *testing.T, db tamperDB, recs []drill.Record) {
			db.exec(t, `UPDATE runs SET seq = seq + 100 WHERE seq >= 3`)
			db.exec(t, `UPDATE runs SET seq = seq - 99 WHERE seq >= 100`)
			f, raw := forge(t, recs[1], "forged-run", recs[1].Hash)
			db.insertRow(t, 3, f, raw)
		}, 4, 2, "deleted, inserted or reordered"},
		{"rows swapped", false, func(t *testing.T, db tamperDB, recs []drill.Record) {
			db.exec(t, `UPDATE runs SET seq = -1 WHERE seq = 2`)
			db.exec(t, `UPDATE runs SET seq = 2 WHERE seq = 3`)
			db.exec(t, `UPDATE runs SET seq = 3 WHERE seq = -1`)
		}, 2, 2, "deleted, inserted or reordered"},
		{"forged row appended, unsigned", true, func(t *testing.T, db tamperDB, recs []drill.Record) {
			f, raw := forge(t, recs[n-1], "forged-run", recs[n-1].Hash)
			db.insertRow(t, n+1, f, raw)
		}, n + 1, -1, "unsigned"},
		{"signature copied from another record", true, func(t *testing.T, db tamperDB, recs []drill.Record) {
			db.exec(t, fmt.Sprintf(`UPDATE runs SET record = `+db.fromText+` WHERE seq = 4`,
				`replace(`+db.asText+`, '`+recs[3].Signature+`', '`+recs[0].Signature+`')`))
		}, 4, 3, "bad signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dsn, db := newHistory(t)
			key := ""
			if tc.signed {
				key = priv
			}
			recs := seedHistory(t, dsn, n, key)
			args := []string{}
			if tc.signed {
				args = append(args, "--public-key", pub)
			}
			if res := verifyHistory(dsn, args...); res.code != 0 || !strings.Contains(res.stdout, fmt.Sprintf("intact: %d records, chain head %s", n, recs[n-1].Hash)) {
				t.Fatalf("before tampering: exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			tc.tamper(t, db, recs)
			res := verifyHistory(dsn, args...)
			id := "forged-run"
			if tc.rec >= 0 {
				id = recs[tc.rec].ID
			}
			want := fmt.Sprintf("TAMPERED: record %d of the chain (run %s, scenario ", tc.pos, id)
			if res.code != 1 || !strings.Contains(res.stdout, want) || !strings.Contains(res.stdout, "): "+tc.want+": ") {
				t.Errorf("exit %d, want 1 and %q ... %q\n%s%s", res.code, want, tc.want, res.stdout, res.stderr)
			}
			// A report states the same verification, word for word, and exits 1 too.
			out := filepath.Join(t.TempDir(), "report.json")
			rep := inProcess(append([]string{"report", "--history", dsn, "--format", "json", "--out", out}, args...)...)
			var doc struct{ Summary report.Summary }
			b, _ := os.ReadFile(out)
			if err := json.Unmarshal(b, &doc); err != nil || rep.code != 1 || doc.Summary.Integrity.Intact ||
				doc.Summary.Integrity.Message != strings.TrimSpace(res.stdout) {
				t.Errorf("report: exit %d, %v, integrity %q, verify said %q\n%s", rep.code, err, doc.Summary.Integrity.Message, res.stdout, rep.stderr)
			}
		})
	}
}

func TestHistoryVerifyDetectsTamperingSQLite(t *testing.T) {
	t.Parallel()
	runTamperSuite(t, func(t *testing.T) (string, tamperDB) {
		path := filepath.Join(t.TempDir(), "history.db")
		return path, sqliteTamper(t, path)
	})
}

func TestHistoryVerifyDetectsTamperingPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Parallel()
	srv := pgtest.Start(t)
	runTamperSuite(t, func(t *testing.T) (string, tamperDB) {
		dsn := srv.NewDatabase(t)
		return dsn, postgresTamper(t, dsn)
	})
}

func TestHistoryVerifyJSONAndEmpty(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	if res := verifyHistory(path); res.code != 3 || !strings.Contains(res.stderr, "no history at") {
		t.Errorf("missing history: exit %d %s", res.code, res.stderr)
	}
	recs := seedHistory(t, path, 3, "")
	res := verifyHistory(path, "-o", "json")
	var v history.Verification
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil || res.code != 0 {
		t.Fatalf("exit %d: %v\n%s", res.code, err, res.stdout)
	}
	if !v.Intact || v.Records != 3 || v.ChainHead != recs[2].Hash || v.SignaturesChecked || v.Break != nil {
		t.Errorf("%+v", v)
	}
	if recs[0].PrevHash != chain.Genesis || recs[1].PrevHash != recs[0].Hash {
		t.Errorf("chain links: %q %q", recs[0].PrevHash, recs[1].PrevHash)
	}
	// A head noted earlier must still be there: cutting the last record off is caught.
	if res := verifyHistory(path, "--contains", recs[2].Hash, "--contains", recs[0].Hash); res.code != 0 {
		t.Errorf("--contains of heads in the chain: exit %d\n%s", res.code, res.stdout)
	}
	sqliteTamper(t, path).exec(t, `DELETE FROM runs WHERE seq = 3`)
	if res := verifyHistory(path); res.code != 0 {
		t.Errorf("a cut-off chain is still a valid chain on its own: exit %d\n%s", res.code, res.stdout)
	}
	if res := verifyHistory(path, "--contains", recs[2].Hash); res.code != 1 || !strings.Contains(res.stdout, "no longer holds "+recs[2].Hash) {
		t.Errorf("--contains of a removed head: exit %d\n%s", res.code, res.stdout)
	}
	dir := t.TempDir()
	_, pub, _ := chain.WriteKeyPair(dir)
	// An unsigned history with a key to check against: the first record is the culprit.
	if res := verifyHistory(path, "--public-key", pub); res.code != 1 || !strings.Contains(res.stdout, "record 1 of the chain") || !strings.Contains(res.stdout, "unsigned") {
		t.Errorf("unsigned with key: exit %d\n%s", res.code, res.stdout)
	}
	if res := verifyHistory(path, "--public-key", filepath.Join(dir, "nope.pub")); res.code != 2 {
		t.Errorf("missing key file: exit %d %s", res.code, res.stderr)
	}
}

func TestKeygen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	res := inProcess("keygen", "--out", dir)
	if res.code != 0 || !strings.Contains(res.stdout, chain.PrivateKeyFile) {
		t.Fatalf("keygen: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if res := inProcess("keygen", "--out", dir); res.code != 3 || !strings.Contains(res.stderr, "never overwrites") {
		t.Errorf("second keygen: exit %d %s", res.code, res.stderr)
	}
	if res := inProcess("keygen"); res.code != 2 {
		t.Errorf("keygen without --out: exit %d", res.code)
	}

	// --signing-key reaches every command that opens the history to write: a key that can't
	// be used stops it before anything is written.
	hist := filepath.Join(t.TempDir(), "history.db")
	if res := inProcess("--signing-key", filepath.Join(dir, "missing.key"), "history", "--history", hist); res.code != 2 || !strings.Contains(res.stderr, "signing key") {
		t.Errorf("missing signing key: exit %d %s", res.code, res.stderr)
	}
	priv := filepath.Join(dir, chain.PrivateKeyFile)
	if err := os.Chmod(priv, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := inProcess("history", "--history", hist, "--signing-key", priv); res.code != 2 || !strings.Contains(res.stderr, "open to every user") {
		t.Errorf("world-readable signing key: exit %d %s", res.code, res.stderr)
	}
	if err := os.Chmod(priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := inProcess("history", "--history", hist, "--signing-key", priv); res.code != 0 {
		t.Errorf("good signing key: exit %d %s", res.code, res.stderr)
	}
}
