package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

func TestRecordText(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	end := start.Add(90 * time.Second)
	rto, rpo := 42.5, 3600.0
	created := start.Add(-time.Hour)
	r := &drill.Record{
		ID: "20261127-100000-abcdef", Scenario: "cp", Trigger: "manual", Operator: "me@host", Result: drill.Failed,
		Message: `check "keys" failed: 3 keys under /registry/x`, StartedAt: start, FinishedAt: &end,
		RTOSeconds: &rto, RPOSeconds: &rpo,
		Objectives: []drill.ObjectiveRecord{{Name: "rto", TargetSeconds: 30, ActualSeconds: &rto, Met: false}},
		Backup:     drill.BackupRecord{Kind: "etcd-snapshot", Source: "take", Location: "http://e:2379", SizeBytes: 3 << 20, Revision: 7, SHA256: strings.Repeat("ab", 32), CreatedAt: &created},
		Target:     &drill.TargetRecord{Kind: "scratchNamespace", Namespaces: map[string]string{"shop": "drill-x-shop"}, Kept: true},
		Steps: []drill.StepRecord{
			{Name: "restore", Result: drill.Passed, StartedAt: start, FinishedAt: &end},
			{Name: "verify", Result: drill.Failed, StartedAt: start, FinishedAt: &end, Message: "checks failed: keys"},
		},
		Checks: []drill.CheckRecord{{Name: "keys", Type: "etcdKeys", Result: drill.Failed, Message: "3 keys\nmore", Evidence: map[string]any{"count": 3}}},
		Hash:   "abc123", Signature: "c2ln",
	}
	var b bytes.Buffer
	Record(&b, r, true)
	out := b.String()
	for _, want := range []string{
		"✗ FAILED  drill cp  run 20261127-100000-abcdef  in 1m30s",
		`why:     check "keys" failed`,
		"etcd-snapshot from take at http://e:2379 (3.0 MiB, revision 7, sha256 abababababab…",
		"RTO:     42.5s  (objective 30.0s: NOT met)",
		"RPO:     1h00m",
		"target:  scratchNamespace shop → drill-x-shop (KEPT for inspection)",
		"✓ restore 1m30s · ✗ verify 1m30s",
		"verify: checks failed: keys",
		"✗ keys  etcdKeys  3 keys …",
		`evidence of "keys":`,
		"count: 3",
		"chain:   hash abc123 (signed;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

func TestTableAndUnits(t *testing.T) {
	t.Parallel()
	start := time.Now()
	var b bytes.Buffer
	Table(&b, []drill.Record{{ID: "r1", Scenario: "s", Result: drill.Running, StartedAt: start, Message: strings.Repeat("x", 100)}})
	if !strings.Contains(b.String(), "RUN") || !strings.Contains(b.String(), "… running") || !strings.Contains(b.String(), "xxx…") {
		t.Errorf("table:\n%s", b.String())
	}
	for d, want := range map[time.Duration]string{850 * time.Millisecond: "850ms", 12300 * time.Millisecond: "12.3s", 245 * time.Second: "4m05s", 26 * time.Hour: "26h00m", 100 * time.Hour: "4d04h"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %s, want %s", d, got, want)
		}
	}
	if Bytes(512) != "512 B" || Bytes(1536) != "1.5 KiB" || Bytes(3<<30) != "3.0 GiB" {
		t.Errorf("Bytes: %s %s %s", Bytes(512), Bytes(1536), Bytes(3<<30))
	}
	if Seconds(nil) != "-" {
		t.Error("unmeasured is not -")
	}
}

// A backup chosen among others says how, so that a reader sees a random choice and its seed.
func TestBackupLineSaysHowChosen(t *testing.T) {
	t.Parallel()
	seed, chosen := uint64(4181102), 3
	b := drill.BackupRecord{Kind: "velero-backup", Name: "nightly-3", Source: "velero-schedule nightly",
		Selection: &drill.SelectionRecord{Method: "random", Window: "7d", Seed: &seed, CandidateCount: 7, Chosen: &chosen}}
	if got, want := backupLine(b), "velero-backup nightly-3 from velero-schedule nightly (chosen at random (seed 4181102) within 7d of 7)"; got != want {
		t.Errorf("backupLine = %q, want %q", got, want)
	}
	b.Selection = &drill.SelectionRecord{Method: "latest", CandidateCount: 2, Chosen: new(int)}
	if got := backupLine(b); !strings.HasSuffix(got, "(chosen the newest of 2)") {
		t.Errorf("backupLine = %q", got)
	}
}
