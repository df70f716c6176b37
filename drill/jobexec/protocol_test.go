package jobexec

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// What LineRecorder writes, ParseLine reads back, in order, among the drill's progress lines.
func TestRecordLinesRoundTrip(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	lr := NewLineRecorder(&out)
	lr.Amend = func(r *drill.Record) { r.Message = "amended" }
	start := time.Date(2026, 12, 4, 22, 0, 0, 0, time.UTC)
	rec := &drill.Record{ID: "20261204-220000-abcdef", Scenario: "etcd", Result: drill.Running, StartedAt: start,
		Checks: []drill.CheckRecord{{Name: "etcdIntegrity", Result: drill.Passed, Evidence: map[string]any{"revision": 42.0}}}}
	ctx := context.Background()
	if err := lr.Begin(ctx, rec); err != nil {
		t.Fatal(err)
	}
	out.WriteString("preflight\n") // progress, as the drill writes it to the same log
	if err := lr.Update(ctx, rec); err != nil {
		t.Fatal(err)
	}
	fin := *rec
	fin.Result = drill.Passed
	if err := lr.Finish(ctx, &fin); err != nil {
		t.Fatal(err)
	}
	var got []Line
	for _, s := range strings.SplitAfter(out.String(), "\n") {
		l, ok, err := ParseLine(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if ok {
			got = append(got, l)
		}
	}
	if len(got) != 3 {
		t.Fatalf("got %d record lines, want 3:\n%s", len(got), out.String())
	}
	for i, want := range []string{KindBegin, KindUpdate, KindFinish} {
		if got[i].Kind != want || got[i].Seq != i+1 {
			t.Errorf("line %d: kind %s seq %d, want %s %d", i, got[i].Kind, got[i].Seq, want, i+1)
		}
	}
	f := got[2].Record
	if f.Result != drill.Passed || f.Message != "amended" || !f.StartedAt.Equal(start) || f.Checks[0].Evidence["revision"] != 42.0 {
		t.Errorf("final record came back as %+v", f)
	}
}

func TestParseLineRefusesBrokenRecordLines(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		LinePrefix + "{not json",
		LinePrefix + `{"seq":1,"kind":"delete","record":{}}`,
		LinePrefix + `{"seq":1,"kind":"finish"}`,
		LinePrefix + `{"seq":0,"kind":"finish","record":{}}`,
	} {
		if _, ok, err := ParseLine(s); !ok || err == nil {
			t.Errorf("%q: ok=%v err=%v, want a record line that does not parse", s, ok, err)
		}
	}
	if _, ok, err := ParseLine("check: etcdIntegrity\n"); ok || err != nil {
		t.Errorf("a progress line: ok=%v err=%v", ok, err)
	}
}
