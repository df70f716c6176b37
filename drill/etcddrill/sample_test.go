package etcddrill_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/etcddrill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// tenDays writes a directory of ten real snapshots, one a day, the newest an hour old (less
// ageOffset), named etcd-00.db (newest) to etcd-09.db.
func tenDays(t *testing.T, sb *sandbox.Sandbox, ageOffset time.Duration) string {
	t.Helper()
	data, err := os.ReadFile(snapshotFile(t, sb, t.TempDir(), "source.db"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	now := time.Now()
	for i := range 10 {
		p := filepath.Join(dir, fmt.Sprintf("etcd-%02d.db", i))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		mt := now.Add(-time.Hour - ageOffset - time.Duration(i)*24*time.Hour)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func sampledScenario(name, dir, window string) string {
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s}
spec:
  backup:
    etcd:
      latestFrom: {dir: %s, select: random, window: %s}
  restore:
    scratchEtcd: {}
  checks:
    - {name: snapshot integrity, etcdIntegrity: {}}
    - {name: every object decodes, etcdObjectsDecode: {}}
`, name, dir, window)
}

// preflightChoice runs a drill's preflight, as firedrill plan does, and returns the selection
// its plan shows.
func preflightChoice(t *testing.T, sc *scenarios.Scenario, seed *uint64) *drill.SelectionRecord {
	t.Helper()
	r, err := etcddrill.New(etcddrill.Options{}).NewRun(sc, &drill.RunContext{ID: "plan", Scenario: sc, Progress: drill.NopProgress{}, WorkDir: t.TempDir(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Preflight(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Cleanup(context.Background(), false)
	p := drill.PlanOf(sc, r)
	if p.Selection == nil || p.Selection.Chosen == nil {
		t.Fatalf("plan shows no choice: %+v", p)
	}
	if !strings.Contains(strings.Join(p.Backup, "\n"), "candidates: 7 usable, within 7d") {
		t.Errorf("plan does not show the candidates:\n%s", strings.Join(p.Backup, "\n"))
	}
	return p.Selection
}

// Random within a week of ten daily snapshots: the seven of the week are the candidates, over
// many choices more than one is drilled, and a recorded seed drills the same snapshot again.
func TestEtcdDrillRandomWithinWindow(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	dir := tenDays(t, sb, 0)
	sc := testkit.WriteScenario(t, sampledScenario("sampled", dir, "7d"))

	chosen := map[string]int{}
	var older *drill.SelectionRecord // a choice that is not the newest
	for range 30 {
		sel := preflightChoice(t, sc, nil)
		if sel.Method != "random" || sel.Seed == nil || sel.SeedGiven || sel.CandidateCount != 7 || uint64(*sel.Chosen) != *sel.Seed%7 {
			t.Fatalf("selection %+v", sel)
		}
		if sel.Candidates[0].Name != "etcd-00.db" || sel.Candidates[6].Name != "etcd-06.db" || sel.Backup != sel.Candidates[*sel.Chosen].Name {
			t.Fatalf("candidates %+v, chose %s", sel.Candidates, sel.Backup)
		}
		chosen[sel.Backup]++
		if *sel.Chosen > 0 {
			older = sel
		}
	}
	t.Logf("30 choices among 7: %v", chosen)
	if len(chosen) < 2 || older == nil {
		t.Fatalf("30 random choices drilled only %v", chosen)
	}

	// A drill with a recorded seed restores that snapshot, and says the seed was given.
	rec, work := runDrillSeeded(t, sc, sb, older.Seed)
	if rec.Result != drill.Passed || rec.Backup.Name != older.Backup {
		t.Fatalf("seed %d: %s %q drilled %s, want %s", *older.Seed, rec.Result, rec.Message, rec.Backup.Name, older.Backup)
	}
	sel := rec.Backup.Selection
	if sel == nil || *sel.Seed != *older.Seed || !sel.SeedGiven || *sel.Chosen != *older.Chosen || !strings.Contains(sel.Reproduce, fmt.Sprintf("--seed %d", *older.Seed)) {
		t.Errorf("recorded selection %+v", sel)
	}
	if want := time.Since(sel.Candidates[*sel.Chosen].CreatedAt).Seconds(); rec.RPOSeconds == nil || *rec.RPOSeconds < want-60 {
		t.Errorf("RPO %v, want the chosen snapshot's age %.0fs", rec.RPOSeconds, want)
	}
	assertNothingLeft(t, work)

	// A drill that drew its own seed records it; that seed repeats its choice.
	first, _ := runDrillSeeded(t, sc, sb, nil)
	if first.Result != drill.Passed || first.Backup.Selection == nil || first.Backup.Selection.Seed == nil {
		t.Fatalf("drawn seed: %s %q %+v", first.Result, first.Message, first.Backup.Selection)
	}
	again, _ := runDrillSeeded(t, sc, sb, first.Backup.Selection.Seed)
	if again.Backup.Name != first.Backup.Name || again.Backup.SHA256 != first.Backup.SHA256 {
		t.Errorf("seed %d drilled %s, then %s", *first.Backup.Selection.Seed, first.Backup.Name, again.Backup.Name)
	}
}

// A window that holds no snapshot fails the drill, saying so: nothing is restored, the record
// keeps the (empty) selection, and nothing is left behind.
func TestEtcdDrillEmptyWindowFails(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	dir := tenDays(t, sb, 8*24*time.Hour) // the newest is 8 days old
	sc := testkit.WriteScenario(t, sampledScenario("stale", dir, "7d"))
	rec, work := runDrillSeeded(t, sc, sb, nil)
	if rec.Result != drill.Failed {
		t.Fatalf("result %s %q, want failed", rec.Result, rec.Message)
	}
	for _, want := range []string{"no backup within the window (7d, since ", "RPO unbounded", "the newest usable backup, etcd-00.db, is 8d1h old"} {
		if !strings.Contains(rec.Message, want) {
			t.Errorf("message %q lacks %q", rec.Message, want)
		}
	}
	sel := rec.Backup.Selection
	if sel == nil || sel.Chosen != nil || sel.CandidateCount != 0 || sel.NotBefore == nil || rec.Backup.Location != dir {
		t.Errorf("backup record %+v, selection %+v", rec.Backup, sel)
	}
	steps := map[string]drill.Result{}
	for _, s := range rec.Steps {
		steps[s.Name] = s.Result
	}
	if steps[drill.StepPreflight] != drill.Passed || steps[drill.StepBackup] != drill.Failed || rec.Target != nil {
		t.Errorf("steps %v, target %+v", steps, rec.Target)
	}
	for _, c := range rec.Checks {
		if c.Result != drill.Skipped {
			t.Errorf("check %s: %s, want skipped", c.Name, c.Result)
		}
	}
	assertNothingLeft(t, work)

	// Without the window the newest is drilled, as before sampling.
	sc = testkit.WriteScenario(t, latestFromScenario("stale-latest", dir))
	if rec, _ := runDrillSeeded(t, sc, sb, nil); rec.Result != drill.Passed || rec.Backup.Name != "etcd-00.db" || rec.Backup.Selection.Method != "latest" {
		t.Errorf("no window: %s %q drilled %s", rec.Result, rec.Message, rec.Backup.Name)
	}
}

func runDrillSeeded(t *testing.T, sc *scenarios.Scenario, sb *sandbox.Sandbox, seed *uint64) (*drill.Record, string) {
	t.Helper()
	work := t.TempDir()
	rec, err := (&drill.Runner{WorkRoot: work, Seed: seed}).Run(context.Background(), sc, etcddrill.New(etcddrill.Options{BinDir: sb.BinDir()}))
	if err != nil {
		t.Fatal(err)
	}
	return rec, work
}
