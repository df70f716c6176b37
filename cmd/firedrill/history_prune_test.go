package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/internal/pgtest"
	"github.com/firedrill-dev/firedrill/report"
)

// runPruneSuite drives the built binary as an operator and an auditor would: prune a signed
// history into an archive, verify the history and the archive, list and report on what is
// left, then tamper with the archive and with the checkpoint and see each named.
func runPruneSuite(t *testing.T, dsn string, db tamperDB) {
	dir := t.TempDir()
	priv, pub, err := chain.WriteKeyPair(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	recs := seedHistory(t, dsn, 6, priv) // run i finishes at 2026-11-02 03:01 + i hours
	env := []string{"FIREDRILL_HISTORY=" + dsn, "FIREDRILL_SIGNING_KEY="}
	signed := append(env[:1:1], "FIREDRILL_SIGNING_KEY="+priv)
	archive := filepath.Join(dir, "firedrill-2026-11-02.jsonl")
	taken := filepath.Join(dir, "taken.jsonl")
	if err := os.WriteFile(taken, []byte("keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		env  []string
		args []string
		code int
		want string
	}{
		{signed, []string{"--before", "2026-11-02T06:00:00Z"}, 2, "needs --before DATE and --archive FILE"},
		{signed, []string{"--before", "yesterday", "--archive", archive}, 2, "is neither a date"},
		{signed, []string{"--before", "2999-01-01", "--archive", archive}, 2, "is in the future"},
		{signed, []string{"--before", "2026-11-02T06:00:00Z", "--archive", taken}, 2, "never overwrites an archive"},
		{env, []string{"--before", "2026-11-02T06:00:00Z", "--archive", archive}, 2, "give the signing key"},
		{signed, []string{"--before", "2026-11-02T06:00:00Z", "--archive", filepath.Join(dir, "no", "dir.jsonl")}, 3, "create the archive"},
	} {
		res := firedrill(t, tc.env, append([]string{"history", "prune"}, tc.args...)...)
		if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("prune %v: exit %d, want %d and %q\n%s%s", tc.args, res.code, tc.code, tc.want, res.stdout, res.stderr)
		}
	}
	if b, _ := os.ReadFile(taken); string(b) != "keep\n" {
		t.Errorf("an existing file was overwritten: %q", b)
	}
	if _, err := os.Stat(archive); err == nil {
		t.Fatal("a refused prune wrote the archive")
	}

	res := firedrill(t, signed, "history", "prune", "--before", "2026-11-02T06:00:00Z", "--archive", archive)
	if res.code != 0 || !strings.Contains(res.stdout, "archive: "+archive+" (3 records)") || !strings.Contains(res.stdout, "stands for 3 runs up to "+recs[2].Hash) {
		t.Fatalf("prune: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	lines := bytes.SplitAfter(mustRead(t, archive), []byte("\n"))
	if len(lines) != 4 || len(lines[3]) != 0 {
		t.Fatalf("the archive has %d lines, want 3 records:\n%s", len(lines)-1, bytes.Join(lines, nil))
	}
	if again := firedrill(t, signed, "history", "prune", "--before", "2026-11-02T06:00:00Z", "--archive", filepath.Join(dir, "again.jsonl")); again.code != 0 ||
		!strings.Contains(again.stdout, "nothing to prune") {
		t.Errorf("prune again: exit %d\n%s%s", again.code, again.stdout, again.stderr)
	}

	verify := func(args ...string) result {
		return firedrill(t, env, append([]string{"history", "verify", "--public-key", pub}, args...)...)
	}
	if res := verify(); res.code != 0 || !strings.Contains(res.stdout, "intact: 4 records (the first a checkpoint for 3 pruned runs up to ") ||
		!strings.Contains(res.stdout, "chain head "+recs[5].Hash+", signatures ok") {
		t.Errorf("verify the pruned history: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if res := verify("--archive", archive); res.code != 0 || !strings.Contains(res.stdout, "archive "+archive+": intact: 3 records from the genesis up to "+recs[2].Hash) {
		t.Errorf("verify the archive: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var v verified
	if res := verify("--archive", archive, "-o", "json"); json.Unmarshal([]byte(res.stdout), &v) != nil || !v.Intact ||
		v.Checkpoint == nil || v.Checkpoint.Runs != 3 || len(v.Archives) != 1 || !v.Archives[0].Intact || v.Archives[0].Joins != v.Checkpoint.ID {
		t.Errorf("verify -o json: exit %d\n%s", res.code, res.stdout)
	}

	// The checkpoint is in the chain, not among the runs: listings and reports leave it out.
	var listed []drill.Record
	if res := firedrill(t, env, "history", "-o", "json"); json.Unmarshal([]byte(res.stdout), &listed) != nil || len(listed) != 3 {
		t.Errorf("history lists %d runs, want 3\n%s", len(listed), res.stdout)
	}
	out := filepath.Join(dir, "report.json")
	if res := firedrill(t, env, "report", "--format", "json", "--out", out, "--public-key", pub); res.code != 0 {
		t.Fatalf("report: exit %d\n%s", res.code, res.stderr)
	}
	var doc struct{ Summary report.Summary }
	if err := json.Unmarshal(mustRead(t, out), &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.Summary
	if s.Runs != 3 || s.Counts["passed"] != 3 || len(s.Scenarios) != 2 || !s.Integrity.Intact || s.Integrity.Records != 4 ||
		!strings.Contains(s.Integrity.Statement, "the first a checkpoint, "+v.Checkpoint.ID+", that stands for 3 earlier runs") {
		t.Errorf("report of the pruned history: %d runs %v, integrity %+v", s.Runs, s.Counts, s.Integrity)
	}

	// Each change to the archive is named: its file, its line, what is wrong.
	for _, tc := range []struct {
		name  string
		lines [][]byte
		want  string
	}{
		{"record edited", [][]byte{lines[0], bytes.Replace(lines[1], []byte(`"count":11`), []byte(`"count":12`), 1), lines[2]}, ": TAMPERED: line 2 (run " + recs[1].ID + ", scenario etcd): modified"},
		{"line dropped", [][]byte{lines[0], lines[2]}, ": TAMPERED: line 2 (run " + recs[2].ID + ", scenario shop): deleted, inserted or reordered"},
		{"lines reordered", [][]byte{lines[1], lines[0], lines[2]}, ": TAMPERED: line 2 (run " + recs[0].ID + ", scenario shop): deleted, inserted or reordered"},
		{"first line dropped", [][]byte{lines[1], lines[2]}, ": does not join the chain: its first record links to " + recs[0].Hash},
		{"last line dropped", [][]byte{lines[0], lines[1]}, ": does not join the chain: its last record's hash " + recs[1].Hash + " is no checkpoint's last hash"},
	} {
		bad := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".jsonl")
		if err := os.WriteFile(bad, bytes.Join(tc.lines, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		res := verify("--archive", bad)
		if res.code != 1 || !strings.Contains(res.stdout, "archive "+bad+tc.want) {
			t.Errorf("%s: exit %d, want 1 and %q\n%s%s", tc.name, res.code, tc.want, res.stdout, res.stderr)
		}
	}

	// Without its checkpoint row the history starts in mid-air, and the archive joins nothing.
	db.exec(t, `DELETE FROM runs WHERE kind = 'checkpoint'`)
	res = verify("--archive", archive)
	if res.code != 1 || !strings.Contains(res.stdout, "TAMPERED: record 1 of the chain (run "+recs[3].ID+", scenario etcd): deleted, inserted or reordered") ||
		!strings.Contains(res.stdout, "the checkpoint that stood for them") || !strings.Contains(res.stdout, "does not join the chain") {
		t.Errorf("checkpoint removed: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if res := firedrill(t, signed, "history", "prune", "--before", "2026-11-02T08:00:00Z", "--archive", filepath.Join(dir, "tampered.jsonl")); res.code != 1 ||
		!strings.Contains(res.stderr, "the history is not intact") {
		t.Errorf("prune of a tampered history: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHistoryPruneSQLite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	runPruneSuite(t, path, sqliteTamper(t, path))
}

func TestHistoryPrunePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Parallel()
	dsn := pgtest.Start(t).NewDatabase(t)
	runPruneSuite(t, dsn, postgresTamper(t, dsn))
}

// TestHistoryPruneTwiceKeepsEveryArchive: a second prune's archive starts with the first
// checkpoint, so both archives join the chain, given in any order; with only the older one,
// verify says it joins nothing.
func TestHistoryPruneTwiceKeepsEveryArchive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "history.db")
	recs := seedHistory(t, path, 5, "")
	a1, a2 := filepath.Join(dir, "a1.jsonl"), filepath.Join(dir, "a2.jsonl")
	for _, p := range []struct{ before, archive string }{{"2026-11-02T05:00:00Z", a1}, {"2026-11-02T07:00:00Z", a2}} {
		if res := inProcess("history", "prune", "--history", path, "--before", p.before, "--archive", p.archive); res.code != 0 {
			t.Fatalf("prune: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
	}
	if res := verifyHistory(path, "--archive", a2, "--archive", a1); res.code != 0 || strings.Count(res.stdout, ": intact: ") != 2 ||
		!strings.Contains(res.stdout, fmt.Sprintf("archive %s: intact: 2 records from the genesis up to %s", a1, recs[1].Hash)) {
		t.Errorf("both archives: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if res := verifyHistory(path, "--archive", a1); res.code != 1 || !strings.Contains(res.stdout, "archive "+a1+": does not join the chain") {
		t.Errorf("the older archive alone: exit %d\n%s", res.code, res.stdout)
	}
	if res := verifyHistory(path, "--archive", filepath.Join(dir, "missing.jsonl")); res.code != 2 {
		t.Errorf("a missing archive: exit %d\n%s", res.code, res.stderr)
	}
}
