package history

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/pgtest"
)

// A backend is one kind of store the suite runs against (litestream's RunWithReplicaClient).
type backend struct {
	name string
	// newDSN returns where a new, empty history lives.
	newDSN func(t testing.TB) string
}

var backends = []backend{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "history.db") }},
	{"postgres", func(t testing.TB) string {
		t.Helper()
		if testing.Short() {
			t.Skip("needs PostgreSQL (initdb, postgres): skipped under -short")
		}
		return pgtest.Shared(t).NewDatabase(t)
	}},
}

// runWithStores runs fn once per backend, each a parallel subtest named after it.
func runWithStores(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// openStore opens a new history of b, closed when t ends, and returns it with its DSN.
func openStore(t testing.TB, b backend) (*Store, string) {
	t.Helper()
	dsn := b.newDSN(t)
	return openDSN(t, dsn), dsn
}

// openDSN opens the history at dsn, closed when t ends.
func openDSN(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openTemp opens a new SQLite history in a temporary directory, for the tests of what only
// SQLite has (files, pragmas).
func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	return openStore(t, backends[0])
}

// q turns a test's ? placeholders into the store's dialect.
func q(s *Store, query string) string {
	if s.d.name == "PostgreSQL" {
		return rebind(query)
	}
	return query
}

func ptr[T any](v T) *T { return &v }

// fullRecord is a finished, passed run with every part of a record filled; all its times are
// t0 plus offsets, in t0's location. ev is the evidence of its first check.
func fullRecord(id string, t0 time.Time, ev map[string]any) *drill.Record {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	steps := []drill.StepRecord{}
	for i, name := range []string{"preflight", "backup", "restore", "verify", "cleanup", "record"} {
		steps = append(steps, drill.StepRecord{
			Name: name, Result: drill.Passed,
			StartedAt: at(float64(i) * 10), FinishedAt: ptr(at(float64(i)*10 + 9.123456789)),
		})
	}
	steps[4].Message = "removed 2 temp dirs"
	return &drill.Record{
		ID:         id,
		Scenario:   "control-plane-etcd",
		Labels:     map[string]string{"team": "platform", "tier": "0"},
		Trigger:    "manual",
		Operator:   "alice@ops-1",
		Result:     drill.Passed,
		StartedAt:  t0,
		FinishedAt: ptr(at(61.5)),
		RTOSeconds: ptr(19.987654321),
		RPOSeconds: ptr(3600.25),
		Objectives: []drill.ObjectiveRecord{
			{Name: "rto", TargetSeconds: 600, ActualSeconds: ptr(19.987654321), Met: true},
			{Name: "rpo", TargetSeconds: 90000, ActualSeconds: ptr(3600.25), Met: true},
		},
		Backup: drill.BackupRecord{
			Kind: "etcd-snapshot", Source: "take", Name: "snap-" + id + ".db",
			Location: "/var/lib/firedrill/snapshots", Endpoint: "https://10.0.0.10:2379",
			SHA256:    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			SizeBytes: 1 << 30, Revision: 123456789, TotalKeys: 4242, Version: "3.6.0",
			CreatedAt: ptr(at(-3600.25)), SelectedBy: "taken now",
		},
		Steps: steps,
		Checks: []drill.CheckRecord{
			{Name: "snapshot integrity", Type: "etcdIntegrity", Result: drill.Passed, Message: "hash ok", Evidence: ev, Seconds: 0.25},
			{Name: "every object decodes", Type: "etcdObjectsDecode", Result: drill.Passed, Message: "4242 objects decode",
				Evidence: map[string]any{"decoded": 4200, "encrypted": 42, "failed": 0}, Seconds: 3.5},
			{Name: "deployments present", Type: "etcdKeys", Result: drill.Passed, Message: "12 keys", Seconds: 0.01},
		},
		Runner: drill.RunnerInfo{Host: "ops-1", PID: 4242, StartTicks: 987654321, Version: "v0.1.0"},
	}
}

// column reads one value of run id's row.
func column[T any](t *testing.T, s *Store, id, col string) T {
	t.Helper()
	var v T
	if err := s.db.QueryRow(q(s, "SELECT "+col+" FROM runs WHERE id = ?"), id).Scan(&v); err != nil {
		t.Fatalf("%s of %s: %v", col, id, err)
	}
	return v
}

// running is a record that has just begun.
func running(id, scenario string, t0 time.Time, ri drill.RunnerInfo) *drill.Record {
	return &drill.Record{
		ID: id, Scenario: scenario, Trigger: "manual", Operator: "bob@ops-2", Result: drill.Running,
		StartedAt: t0, Runner: ri,
		Objectives: []drill.ObjectiveRecord{}, Checks: []drill.CheckRecord{},
		Steps: []drill.StepRecord{{Name: "preflight", Result: drill.Running, StartedAt: t0}},
	}
}
