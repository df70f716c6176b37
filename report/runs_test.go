package report

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

// TestRunReaderMatchesEncodingJSON: what the summary reads of a record from the verifier's
// Fields is what encoding/json decodes, for records of every kind the fixture makes.
func TestRunReaderMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	rr := runReader{metas: map[string]*runMeta{}}
	v := chain.NewVerifier(nil)
	prev := chain.Genesis
	for i := range 40 {
		r := fixtureRecord(i)
		if i%4 == 1 {
			sched := r.StartedAt.Truncate(time.Hour)
			r.ScheduledFor, r.Labels = &sched, map[string]string{"team": "shop", "tier": `"0"`}
		}
		if err := chain.Seal(r, prev, nil); err != nil {
			t.Fatal(err)
		}
		prev = r.Hash
		raw, _ := json.Marshal(r)
		if b := v.Add(raw); b != nil {
			t.Fatal(b)
		}
		var got, want drill.Record
		if _, err := rr.head(raw, v.Fields(), &got); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if err := rr.rest(v.Fields(), &got); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if err := decodeRecord(raw, &want); err != nil {
			t.Fatal(err)
		}
		// What the summary does not read: steps, backup, target, runner, check details.
		want.Steps, want.Backup, want.Target, want.Runner = nil, drill.BackupRecord{}, nil, drill.RunnerInfo{}
		for j := range want.Checks {
			want.Checks[j] = drill.CheckRecord{Name: want.Checks[j].Name, Result: want.Checks[j].Result, Message: want.Checks[j].Message}
		}
		if len(want.Checks) == 0 {
			want.Checks = nil
		}
		if len(want.Objectives) == 0 {
			want.Objectives = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	// A record the verifier could not parse is left to encoding/json, which says why.
	v = chain.NewVerifier(nil)
	v.Add([]byte(`{"id":`))
	if _, err := rr.head([]byte(`{"id":`), v.Fields(), new(drill.Record)); err == nil {
		t.Error("a malformed record was read")
	}
	// A field of the wrong type is an error, not an empty value.
	v = chain.NewVerifier(nil)
	bad := []byte(`{"id":"x","scenario":"s","result":5,"startedAt":"2026-11-01T00:00:00Z"}`)
	v.Add(bad)
	if _, err := rr.head(bad, v.Fields(), new(drill.Record)); err == nil {
		t.Error("a number as result was read")
	}
}
