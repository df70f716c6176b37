package report

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
)

var fixtureStart = time.Date(2026, 11, 1, 3, 30, 0, 0, time.UTC)

// fixtureRecord is run i of a small, varied history: three scenarios, one of which names
// controls, failures of each kind, a missed scheduled run, evidence with awkward text.
func fixtureRecord(i int) *drill.Record {
	scenarios := []string{"shop-velero", "control-plane-etcd", "billing <db> & co"}
	sc := scenarios[i%3]
	start := fixtureStart.Add(time.Duration(i) * 8 * time.Hour)
	end := start.Add(time.Duration(60+i%7) * time.Second)
	rto, rpo := 40.0+float64(i%13), 3600.0+float64(i%5)*600
	rec := &drill.Record{
		ID: fmt.Sprintf("202611%02d-%06d-%06x", 1+i/3%28, i, i), Scenario: sc, Trigger: "schedule", Operator: "serve@drill-host",
		Labels: map[string]string{"team": []string{"shop", "platform", "billing"}[i%3]}, Result: drill.Passed,
		StartedAt: start, FinishedAt: &end, RTOSeconds: &rto, RPOSeconds: &rpo,
		Objectives: []drill.ObjectiveRecord{{Name: "rto", TargetSeconds: 50, ActualSeconds: &rto, Met: rto <= 50}, {Name: "rpo", TargetSeconds: 26 * 3600, ActualSeconds: &rpo, Met: true}},
		Backup:     drill.BackupRecord{Kind: "velero-backup", Source: "velero-schedule", Name: fmt.Sprintf("nightly-%d", i), Items: 40 + i},
		Steps: []drill.StepRecord{
			{Name: "preflight", Result: drill.Passed, StartedAt: start, FinishedAt: &end},
			{Name: "restore", Result: drill.Passed, StartedAt: start, FinishedAt: &end},
			{Name: "verify", Result: drill.Passed, StartedAt: start, FinishedAt: &end},
		},
		Checks: []drill.CheckRecord{
			{Name: "every object restored", Type: "objectsRestored", Result: drill.Passed, Message: "40 of 40 objects", Evidence: map[string]any{"restored": 40, "expected": 40}, Seconds: 1.5},
			{Name: "config identical", Type: "objectsMatch", Result: drill.Passed, Message: "3 secrets match", Evidence: map[string]any{"secrets/app-creds": "sha256:" + fmt.Sprintf("%064x", i)}, Seconds: 0.25},
		},
		Runner: drill.RunnerInfo{Host: "drill-host", PID: 4242},
	}
	if sc == "shop-velero" {
		rec.Annotations = map[string]string{ControlsKey: "SOC2-A1.3, ISO27001-A.5.30"}
	}
	if sc == "control-plane-etcd" {
		rec.Annotations = map[string]string{ControlsKey: "SOC2-CC7.5"}
	}
	switch {
	case i%10 == 4:
		rec.Result, rec.Message = drill.Failed, `check "config identical" failed: secret app-creds differs <b>`
		rec.Checks[1].Result, rec.Checks[1].Message = drill.Failed, "1 of 3 differ: secrets/app-creds"
		rec.RTOSeconds = nil
	case i%10 == 7:
		rec.Result, rec.Message = drill.Error, "velero server unreachable: dial tcp 10.0.0.1:8085: connection refused"
		rec.Checks[0].Result, rec.Checks[1].Result = drill.Skipped, drill.Skipped
		rec.RTOSeconds, rec.RPOSeconds = nil, nil
	case i%10 == 9:
		rec.Result, rec.Message = drill.Missed, "serve was down at 03:30; starting deadline 1h passed"
		rec.Steps, rec.Checks, rec.RTOSeconds, rec.RPOSeconds, rec.Objectives = []drill.StepRecord{}, []drill.CheckRecord{}, nil, nil, []drill.ObjectiveRecord{}
	case !rec.Objectives[0].Met:
		rec.Result, rec.Message = drill.Failed, "objective RTO not met: 51s > 50s"
	}
	return rec
}

// fixture finishes n records in a new SQLite history (signing them when s is set), as the
// engine does, and returns the history and the records as sealed.
func fixture(t testing.TB, n int, s *chain.Signer) (*history.Store, []*drill.Record) {
	t.Helper()
	st, err := history.Open(context.Background(), filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if s != nil {
		st.SetSigner(s)
	}
	var recs []*drill.Record
	for i := range n {
		r := fixtureRecord(i)
		if err := st.Finish(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return st, recs
}

func testKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}
