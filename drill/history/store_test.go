package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// The engine records through this interface; the CLI passes a *Store.
var _ drill.Recorder = (*Store)(nil)

// TestRoundTrip: Get returns exactly what Finish stored, with every time in UTC to the
// nanosecond, evidence numbers intact, and the columns and check rows filled for queries.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)

		now := time.Now() // carries a monotonic reading and the Local zone
		base := time.Date(2026, 11, 27, 10, 15, 30, 123456789, time.UTC)
		zone := time.FixedZone("CET", 3600)
		ev := func(num func(string) any) map[string]any {
			return map[string]any{
				"keys":     num("1234"),
				"revision": num("9007199254740993"), // 2^53+1: lost if decoded as float64
				"ratio":    num("0.5"),
				"sha256":   "abc",
				"hashOK":   true,
				"missing":  nil,
				"prefixes": []any{"/registry/pods/", num("7")},
				"nested":   map[string]any{"count": num("2")},
			}
		}
		goNumber := func(s string) any {
			switch s {
			case "1234":
				return 1234
			case "9007199254740993":
				return int64(9007199254740993)
			case "0.5":
				return 0.5
			case "7":
				return uint8(7)
			}
			return 2
		}
		in := fullRecord("20261127-101530-7f3a9c", base.In(zone), ev(goNumber))
		in.Steps[0].StartedAt = now
		want := fullRecord("20261127-101530-7f3a9c", base, ev(func(s string) any { return json.Number(s) }))
		want.Steps[0].StartedAt = now.UTC()
		want.Checks[1].Evidence = map[string]any{"decoded": json.Number("4200"), "encrypted": json.Number("42"), "failed": json.Number("0")}

		if err := s.Finish(ctx, in); err != nil {
			t.Fatal(err)
		}
		if in.StartedAt.Location() != zone {
			t.Error("Finish changed the caller's record")
		}
		// Finish tells the caller where the record went in the hash chain (chain_test.go).
		if in.Hash == "" || in.PrevHash != "" {
			t.Errorf("Finish sealed the record as prev %q, hash %q", in.PrevHash, in.Hash)
		}
		want.PrevHash, want.Hash = in.PrevHash, in.Hash
		got, err := s.Get(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			gj, _ := json.MarshalIndent(got, "", " ")
			wj, _ := json.MarshalIndent(want, "", " ")
			t.Fatalf("round trip differs:\ngot  %s\nwant %s", gj, wj)
		}
		if got.StartedAt.Location() != time.UTC || got.FinishedAt.Location() != time.UTC {
			t.Errorf("times not in UTC: %v, %v", got.StartedAt, got.FinishedAt)
		}
		if got.Checks[0].Evidence["revision"] != json.Number("9007199254740993") {
			t.Errorf("revision = %v", got.Checks[0].Evidence["revision"])
		}
		// Encoding what Get returned gives the stored bytes back.
		stored := column[string](t, s, in.ID, "record")
		if again, _ := json.Marshal(got); string(again) != stored {
			t.Errorf("re-encoded record differs from stored:\n%s\n%s", again, stored)
		}

		// The columns hold what the queries need.
		for col, want := range map[string]any{
			"scenario":    "control-plane-etcd",
			"result":      "passed",
			"started_at":  "2026-11-27T10:15:30.123456789Z",
			"finished_at": "2026-11-27T10:16:31.623456789Z",
			"runner_host": "ops-1",
		} {
			if got := column[string](t, s, in.ID, col); got != want {
				t.Errorf("column %s = %q, want %q", col, got, want)
			}
		}
		if got := column[float64](t, s, in.ID, "rto_seconds"); got != 19.987654321 {
			t.Errorf("rto_seconds = %v", got)
		}
		if got := column[int64](t, s, in.ID, "seq"); got != 1 {
			t.Errorf("seq = %d, want 1", got)
		}
		var n, keys int
		var typ string
		keysSQL := map[string]string{"SQLite": "json_extract(evidence, '$.keys')", "PostgreSQL": "(evidence->>'keys')::int"}[s.d.name]
		err = s.db.QueryRow(q(s, `SELECT (SELECT count(*) FROM checks WHERE run_id = ?), type, `+keysSQL+`
		FROM checks WHERE run_id = ? AND position = 0`), in.ID, in.ID).Scan(&n, &typ, &keys)
		if err != nil || n != 3 || typ != "etcdIntegrity" || keys != 1234 {
			t.Errorf("check rows: n=%d type=%q keys=%d err=%v", n, typ, keys, err)
		}
		var nullEvidence int
		if err := s.db.QueryRow(`SELECT count(*) FROM checks WHERE evidence IS NULL`).Scan(&nullEvidence); err != nil || nullEvidence != 1 {
			t.Errorf("a check without evidence should store NULL: %d, %v", nullEvidence, err)
		}
	})
}

func TestGetPrefix(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		ids := []string{
			"20260101-000000-aaaaaa", "20260101-000000-aabbbb", "20260102-000000-cccccc",
			"abc", "abcd", "a_b", "axb",
		}
		for i := range 12 {
			ids = append(ids, fmt.Sprintf("many-%02d", i))
		}
		for i, id := range ids {
			if err := s.Finish(ctx, fullRecord(id, t0.Add(time.Duration(i)*time.Hour), nil)); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			arg, want string // want: the id found, or "" for an error
			err       error
			msg       []string
		}{
			{arg: "20260101-000000-aab", want: "20260101-000000-aabbbb"},
			{arg: "20260102", want: "20260102-000000-cccccc"},
			{arg: "20260101-000000-aaaaaa", want: "20260101-000000-aaaaaa"},
			{arg: "abc", want: "abc"}, // exact wins over abcd
			{arg: "abcd", want: "abcd"},
			{arg: "a_", want: "a_b"}, // no LIKE wildcards
			{arg: "20260101-000000-aa", err: ErrAmbiguous,
				msg: []string{"20260101-000000-aaaaaa (control-plane-etcd, 2026-01-01T00:00:00Z)", "20260101-000000-aabbbb", "give more characters"}},
			{arg: "2026", err: ErrAmbiguous, msg: []string{"aaaaaa", "aabbbb", "cccccc"}},
			{arg: "many-", err: ErrAmbiguous, msg: []string{"many-00", "many-09", "and more"}},
			{arg: "zzz", err: ErrNotFound, msg: []string{`"zzz"`, "firedrill history"}},
			{arg: "abce", err: ErrNotFound},
			{arg: "\xff\xff", err: ErrNotFound},
		} {
			got, err := s.Get(ctx, tc.arg)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("Get(%q) = %v, want %v", tc.arg, err, tc.err)
					continue
				}
				for _, m := range tc.msg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("Get(%q): %q does not mention %q", tc.arg, err, m)
					}
				}
				continue
			}
			if err != nil || got.ID != tc.want {
				t.Errorf("Get(%q) = %v, %v; want %s", tc.arg, got, err, tc.want)
			}
		}
		if _, err := s.Get(ctx, ""); err == nil {
			t.Error("Get of an empty id: no error")
		}
	})
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Hour) }
		add := func(id, scenario string, result drill.Result, start time.Time) {
			t.Helper()
			if result == drill.Running {
				if err := s.Begin(ctx, running(id, scenario, start, drill.RunnerInfo{})); err != nil {
					t.Fatal(err)
				}
				return
			}
			r := fullRecord(id, start, nil)
			r.Scenario, r.Result = scenario, result
			if err := s.Finish(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		// Inserted out of time order, so the order must come from started_at.
		add("r3", "s2", drill.Error, at(3))
		add("r0", "s1", drill.Passed, at(0))
		add("r5", "s2", drill.Running, at(5))
		add("r1", "s1", drill.Failed, at(1))
		add("r4", "s1", drill.Passed, at(4))
		add("r2", "s2", drill.Passed, at(2))
		add("r2b", "s2", drill.Aborted, at(2)) // same start as r2: id breaks the tie

		for _, tc := range []struct {
			name string
			f    Filter
			want string
		}{
			{"all, newest first", Filter{}, "r5 r4 r3 r2b r2 r1 r0"},
			{"scenario", Filter{Scenario: "s1"}, "r4 r1 r0"},
			{"since (inclusive)", Filter{Since: at(3)}, "r5 r4 r3"},
			{"since in another zone", Filter{Since: at(3).In(time.FixedZone("X", -5*3600))}, "r5 r4 r3"},
			{"result", Filter{Result: drill.Passed}, "r4 r2 r0"},
			{"running", Filter{Result: drill.Running}, "r5"},
			{"limit", Filter{Limit: 2}, "r5 r4"},
			{"limit offset", Filter{Limit: 2, Offset: 2}, "r3 r2b"},
			{"offset only", Filter{Offset: 5}, "r1 r0"},
			{"offset past the end", Filter{Offset: 50}, ""},
			{"combined", Filter{Scenario: "s1", Result: drill.Passed, Since: at(1)}, "r4"},
			{"no match", Filter{Scenario: "nope"}, ""},
		} {
			rs, err := s.List(ctx, tc.f)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			var ids []string
			for _, r := range rs {
				ids = append(ids, r.ID)
			}
			if got := strings.Join(ids, " "); got != tc.want {
				t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
			}
		}
		// The records are whole, not just ids.
		rs, _ := s.List(ctx, Filter{Scenario: "s1", Limit: 1})
		if len(rs) != 1 || len(rs[0].Steps) != 6 || rs[0].Backup.Revision != 123456789 {
			t.Errorf("List returned an incomplete record: %+v", rs)
		}
		for _, f := range []Filter{{Result: "passd"}, {Limit: -1}, {Offset: -1}} {
			if _, err := s.List(ctx, f); err == nil {
				t.Errorf("List(%+v): no error", f)
			}
		}
	})
}

// TestLifecycle: Begin inserts a running run, Update replaces its progress and heartbeat,
// Finish stores the final record once; what does not fit that order is refused.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		clock := time.Date(2026, 5, 1, 3, 30, 0, 0, time.UTC)
		s.now = func() time.Time { return clock }

		r := running("run-1", "shop", clock, CurrentRunner())
		if err := s.Begin(ctx, fullRecord("run-x", clock, nil)); err == nil || !strings.Contains(err.Error(), "want \"running\"") {
			t.Errorf("Begin of a passed record: %v", err)
		}
		if err := s.Begin(ctx, &drill.Record{Scenario: "shop", Result: drill.Running, StartedAt: clock}); err == nil {
			t.Error("Begin without id: no error")
		}
		if err := s.Begin(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.Begin(ctx, r); err == nil || !strings.Contains(err.Error(), "already") {
			t.Errorf("Begin twice: %v", err)
		}
		got, err := s.Get(ctx, "run-1")
		if err != nil || got.Result != drill.Running || len(got.Steps) != 1 {
			t.Fatalf("after Begin: %+v, %v", got, err)
		}
		if hb := column[string](t, s, "run-1", "heartbeat_at"); hb != "2026-05-01T03:30:00.000000000Z" {
			t.Errorf("heartbeat after Begin = %s", hb)
		}

		clock = clock.Add(15 * time.Second)
		r.Steps[0].Result, r.Steps[0].FinishedAt = drill.Passed, ptr(clock)
		r.Steps = append(r.Steps, drill.StepRecord{Name: "backup", Result: drill.Running, StartedAt: clock})
		r.Checks = append(r.Checks, drill.CheckRecord{Name: "c", Type: "etcdKeys", Result: drill.Passed})
		if err := s.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, _ = s.Get(ctx, "run-1")
		if len(got.Steps) != 2 || got.Steps[0].Result != drill.Passed || len(got.Checks) != 1 {
			t.Errorf("after Update: %+v", got)
		}
		if hb := column[string](t, s, "run-1", "heartbeat_at"); hb != "2026-05-01T03:30:15.000000000Z" {
			t.Errorf("heartbeat after Update = %s", hb)
		}
		clock = clock.Add(15 * time.Second)
		if err := s.Heartbeat(ctx, "run-1"); err != nil {
			t.Fatal(err)
		}
		if hb := column[string](t, s, "run-1", "heartbeat_at"); hb != "2026-05-01T03:30:30.000000000Z" {
			t.Errorf("heartbeat after Heartbeat = %s", hb)
		}

		// Finish refuses a record that is not final, and one without finishedAt.
		if err := s.Finish(ctx, r); err == nil || !strings.Contains(err.Error(), "want passed, failed, error, aborted, skipped or missed") {
			t.Errorf("Finish of a running record: %v", err)
		}
		r.Result = "done"
		if err := s.Finish(ctx, r); err == nil {
			t.Error("Finish of a record with an unknown result: no error")
		}
		r.Result = drill.Failed
		if err := s.Finish(ctx, r); err == nil || !strings.Contains(err.Error(), "finishedAt") {
			t.Errorf("Finish without finishedAt: %v", err)
		}
		if got, _ := s.Get(ctx, "run-1"); got.Result != drill.Running {
			t.Errorf("a refused Finish changed the run: %s", got.Result)
		}

		r.FinishedAt, r.Message = ptr(clock), "check c failed"
		r.Steps[1].Result, r.Steps[1].FinishedAt = drill.Failed, ptr(clock)
		if err := s.Update(ctx, r); err == nil {
			t.Error("Update with a final result: no error")
		}
		if err := s.Finish(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, _ = s.Get(ctx, "run-1")
		if got.Result != drill.Failed || got.Message != "check c failed" || got.FinishedAt == nil {
			t.Errorf("after Finish: %+v", got)
		}
		if seq := column[int64](t, s, "run-1", "seq"); seq != 1 {
			t.Errorf("seq = %d", seq)
		}

		// A finished record never changes again.
		r2 := *r
		r2.Result = drill.Passed
		if err := s.Finish(ctx, &r2); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "finished as failed") {
			t.Errorf("Finish twice: %v", err)
		}
		r3 := *r
		r3.Result = drill.Running
		if err := s.Update(ctx, &r3); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Update after Finish: %v", err)
		}
		if err := s.Heartbeat(ctx, "run-1"); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Heartbeat after Finish: %v", err)
		}
		if got, _ := s.Get(ctx, "run-1"); got.Result != drill.Failed {
			t.Errorf("finished run changed: %s", got.Result)
		}

		// Update of a run never begun; Finish of a run never begun inserts it.
		if err := s.Update(ctx, running("nope", "shop", clock, drill.RunnerInfo{})); !errors.Is(err, ErrNotFound) {
			t.Errorf("Update of an unknown run: %v", err)
		}
		if err := s.Heartbeat(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Heartbeat of an unknown run: %v", err)
		}
		if err := s.Finish(ctx, fullRecord("run-2", clock, nil)); err != nil {
			t.Fatal(err)
		}
		if seq := column[int64](t, s, "run-2", "seq"); seq != 2 {
			t.Errorf("seq of the second finished run = %d", seq)
		}
	})
}
