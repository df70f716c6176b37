package schedule

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
)

// seed puts a passed scheduled run of scenario for at into the history.
func seed(t *testing.T, h *fakeHistory, scenario string, at time.Time) {
	t.Helper()
	end := at.Add(time.Minute)
	r := &drill.Record{
		ID: drill.NewRunID(at), Scenario: scenario, Trigger: "schedule", ScheduledFor: &at, Result: drill.Passed,
		StartedAt: at, FinishedAt: &end, Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{}, Checks: []drill.CheckRecord{},
	}
	if err := h.Finish(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func TestCatchUpWithinDeadlineStartsOnce(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:20:00Z"), Options{})
	seed(t, r.hist, "hourly", date("2026-03-02T08:00:00Z"))
	r.s.Update([]Entry{entry(scenario("hourly", "0 * * * *", ""))})
	r.start(t)

	missed := r.fin.next(t)
	if missed.Result != drill.Missed || !missed.ScheduledFor.Equal(date("2026-03-02T09:00:00Z")) ||
		!strings.Contains(missed.Message, "the scheduled run of 2026-03-02T09:00:00Z") ||
		!strings.Contains(missed.Message, "only the newest, 2026-03-02T10:00:00Z, was started") {
		t.Errorf("record = %+v, want 09:00 missed and 10:00 started", missed)
	}
	c := r.run.next(t)
	if c.trig.Kind != KindSchedule || !c.trig.ScheduledFor.Equal(date("2026-03-02T10:00:00Z")) {
		t.Errorf("started %+v, want the 10:00 run", c.trig)
	}
	r.run.none(t)
	if st := r.status(t, "hourly"); !st.NextRun.Equal(date("2026-03-02T11:00:00Z")) || st.Running != c.trig.ID {
		t.Errorf("status = %+v, want running %s, next 11:00", st, c.trig.ID)
	}
	c.release <- drill.Passed
	r.fin.next(t)
	if n := len(r.hist.records("hourly", "")); n != 3 {
		t.Errorf("history has %d records, want 3 (seed, missed, run)", n)
	}
}

func TestCatchUpBeyondDeadlineRecordsOneMissed(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{})
	seed(t, r.hist, "nightly", date("2026-02-25T03:00:00Z"))
	r.s.Update([]Entry{entry(scenario("nightly", "0 3 * * *", ""))})
	r.start(t)

	rec := r.fin.next(t)
	if rec.Result != drill.Missed || rec.Trigger != "schedule" || !rec.ScheduledFor.Equal(date("2026-03-02T03:00:00Z")) {
		t.Fatalf("record = %+v, want missed for the newest time, 03-02 03:00", rec)
	}
	want := "missed 5 scheduled runs from 2026-02-26T03:00:00Z to 2026-03-02T03:00:00Z"
	if !strings.HasPrefix(rec.Message, want) || !strings.Contains(rec.Message, "starting deadline (1h0m0s)") {
		t.Errorf("message = %q, want it to start %q and name the deadline", rec.Message, want)
	}
	if rec.Runner != testRunner || !rec.StartedAt.Equal(date("2026-03-02T10:00:00Z")) {
		t.Errorf("runner %+v startedAt %v, want this runner, now", rec.Runner, rec.StartedAt)
	}
	r.run.none(t)
	if n := len(r.hist.records("nightly", drill.Missed)); n != 1 {
		t.Errorf("%d missed records, want 1", n)
	}
	if st := r.status(t, "nightly"); !st.NextRun.Equal(date("2026-03-03T03:00:00Z")) {
		t.Errorf("next run = %v, want tomorrow 03:00", st.NextRun)
	}
}

func TestCatchUpLongGapIsOneRecord(t *testing.T) {
	// A minutely schedule down for 60 days: 86,400 times, one record, the newest exact.
	r := newRig(t, date("2026-03-02T10:00:30Z"), Options{})
	seed(t, r.hist, "minutely", date("2026-01-01T10:00:00Z"))
	r.s.Update([]Entry{entry(scenario("minutely", "* * * * *", ""))})
	r.start(t)
	rec := r.fin.next(t)
	if rec.Result != drill.Missed || !rec.ScheduledFor.Equal(date("2026-03-02T09:59:00Z")) ||
		!strings.HasPrefix(rec.Message, "missed more than 9999 scheduled runs from 2026-01-01T10:01:00Z to 2026-03-02T09:59:00Z") {
		t.Errorf("record = %+v, want one missed record up to 09:59", rec)
	}
	c := r.run.next(t)
	if !c.trig.ScheduledFor.Equal(date("2026-03-02T10:00:00Z")) {
		t.Errorf("started for %v, want 10:00", c.trig.ScheduledFor)
	}
	c.release <- drill.Passed
	r.fin.next(t)
	if n := len(r.hist.records("minutely", "")); n != 3 {
		t.Errorf("history has %d records, want 3", n)
	}
}

func TestCatchUpEvery(t *testing.T) {
	// @every keeps its grid from the last scheduled run.
	r := newRig(t, date("2026-03-01T10:10:00Z"), Options{})
	seed(t, r.hist, "every", date("2026-03-01T00:00:00Z"))
	r.s.Update([]Entry{entry(scenario("every", "@every 1h", ""))})
	r.start(t)
	rec := r.fin.next(t)
	if rec.Result != drill.Missed || !rec.ScheduledFor.Equal(date("2026-03-01T09:00:00Z")) ||
		!strings.HasPrefix(rec.Message, "missed 9 scheduled runs from 2026-03-01T01:00:00Z to 2026-03-01T09:00:00Z") {
		t.Errorf("record = %+v, want 9 missed up to 09:00", rec)
	}
	c := r.run.next(t)
	if !c.trig.ScheduledFor.Equal(date("2026-03-01T10:00:00Z")) {
		t.Errorf("started for %v, want 10:00", c.trig.ScheduledFor)
	}
	if st := r.status(t, "every"); !st.NextRun.Equal(date("2026-03-01T11:00:00Z")) {
		t.Errorf("next run = %v, want 11:00", st.NextRun)
	}
	c.release <- drill.Passed
	r.fin.next(t)
}

func TestNoHistoryStartsFromNow(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:20:00Z"), Options{})
	r.s.Update([]Entry{entry(scenario("new", "0 * * * *", ""))})
	r.start(t)
	r.run.none(t)
	if n := r.fin.count(); n != 0 {
		t.Errorf("%d records, want none", n)
	}
	if st := r.status(t, "new"); !st.NextRun.Equal(date("2026-03-02T11:00:00Z")) {
		t.Errorf("next run = %v, want 11:00", st.NextRun)
	}
}

func TestCatchUpWhileBusyIsSkipped(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:20:00Z"), Options{})
	seed(t, r.hist, "hourly", date("2026-03-02T09:00:00Z"))
	r.s.Update([]Entry{entry(scenario("hourly", "0 * * * *", ""))})
	id, err := r.s.Trigger(context.Background(), "hourly", "alice")
	if err != nil {
		t.Fatal(err)
	}
	api := r.run.next(t)
	r.start(t)
	rec := r.fin.next(t)
	if rec.Result != drill.Skipped || !rec.ScheduledFor.Equal(date("2026-03-02T10:00:00Z")) || rec.Message != "previous run "+id+" still running" {
		t.Errorf("record = %+v, want 10:00 skipped for run %s", rec, id)
	}
	r.run.none(t)
	api.release <- drill.Passed
	r.fin.next(t)
}

func TestLeadershipRegainedCatchesUp(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:59:00Z"), Options{})
	r.s.Update([]Entry{entry(scenario("hourly", "0 * * * *", ""))})
	ctx, lose := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.s.Run(ctx) }()
	r.idle(t)
	r.advance(t, date("2026-03-02T11:00:00Z"))
	c := r.run.next(t)

	// Leadership lost: the run goes on, nothing more is scheduled here.
	lose()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := r.status(t, "hourly"); !st.NextRun.IsZero() || st.Running != c.trig.ID {
		t.Errorf("status after losing leadership = %+v, want no next run, the run still in flight", st)
	}
	if c.ctx.Err() != nil {
		t.Error("losing leadership cancelled the drill")
	}
	c.release <- drill.Passed
	r.fin.next(t)
	testkit.EventuallyTrue(t, wait, "the run to end", func() bool { return r.status(t, "hourly").Running == "" })

	// Regained at 13:05: 12:00 was missed (the other leader was down too), 13:00 is started.
	r.clock.Set(date("2026-03-02T13:05:00Z"))
	r.start(t)
	rec := r.fin.next(t)
	if rec.Result != drill.Missed || !rec.ScheduledFor.Equal(date("2026-03-02T12:00:00Z")) {
		t.Errorf("record = %+v, want 12:00 missed", rec)
	}
	c = r.run.next(t)
	if !c.trig.ScheduledFor.Equal(date("2026-03-02T13:00:00Z")) {
		t.Errorf("started for %v, want 13:00", c.trig.ScheduledFor)
	}
	c.release <- drill.Passed
	r.fin.next(t)
}

func TestTwoReplicasNeverDoubleRun(t *testing.T) {
	clock := newClock(date("2026-03-02T10:00:00Z"))
	hist := &fakeHistory{t: t}
	seed(t, hist, "nightly", date("2026-02-27T03:00:00Z"))
	seed(t, hist, "hourly", date("2026-03-02T07:00:00Z"))
	a := newRigOn(t, clock, hist, Options{Runner: drill.RunnerInfo{Host: "a", PID: 1}})
	b := newRigOn(t, clock, hist, Options{Runner: drill.RunnerInfo{Host: "b", PID: 2}})
	es := []Entry{entry(scenario("nightly", "0 3 * * *", "")), entry(scenario("hourly", "0 * * * *", ""))}
	a.s.Update(es)
	b.s.Update(es)
	// Both catch up at once, on one clock and one history.
	a.loop(t)
	b.loop(t)
	bothIdle := func() {
		t.Helper()
		testkit.EventuallyTrue(t, wait, "both replicas to sleep", func() bool { return clock.sleepers() == 2 })
	}
	bothIdle()

	// One missed record per gap, one run of 10:00, whoever wrote first.
	var c *call
	select {
	case c = <-a.run.calls:
	case c = <-b.run.calls:
	case <-time.After(wait):
		t.Fatal("no replica started the 10:00 run")
	}
	idle := func() {
		t.Helper()
		testkit.EventuallyTrue(t, wait, "the duplicate run to be dropped", func() bool {
			n := 0
			for _, r := range []*rig{a, b} {
				if r.status(t, "hourly").Running != "" {
					n++
				}
			}
			return n == 1
		})
	}
	idle()
	a.run.none(t)
	b.run.none(t)
	if n := len(hist.records("nightly", drill.Missed)); n != 1 {
		t.Errorf("%d missed records of nightly, want 1", n)
	}
	if n := len(hist.records("hourly", drill.Missed)); n != 1 {
		t.Errorf("%d missed records of hourly, want 1", n)
	}
	if n := a.fin.count() + b.fin.count(); n != 2 {
		t.Errorf("OnFinish saw %d records across replicas, want 2 (the missed ones)", n)
	}

	// On time, both fire 11:00; one runs it. The 10:00 run is still in flight on one replica,
	// so that replica records 11:00 as skipped, or the other one runs it: never both.
	clock.Set(date("2026-03-02T11:00:00Z"))
	bothIdle()
	c.release <- drill.Passed
	testkit.EventuallyTrue(t, wait, "every run of 11:00 to be decided", func() bool {
		return len(hist.records("hourly", "")) == 4 // seed, missed, 10:00, 11:00
	})
	seen := map[time.Time]int{}
	for _, r := range hist.records("hourly", "") {
		seen[*r.ScheduledFor]++
	}
	for at, n := range seen {
		if n != 1 {
			t.Errorf("%v has %d records, want 1", at, n)
		}
	}
	select {
	case c = <-a.run.calls:
		c.release <- drill.Passed
	case c = <-b.run.calls:
		c.release <- drill.Passed
	default:
	}
	testkit.EventuallyTrue(t, wait, "runs to end", func() bool {
		return a.status(t, "hourly").Running == "" && b.status(t, "hourly").Running == ""
	})
}

// staleHistory answers LastScheduled from before another replica wrote: the race that the
// history's duplicate rule settles.
type staleHistory struct {
	*fakeHistory
	last map[string]time.Time
}

func (h staleHistory) LastScheduled(_ context.Context, scenario string) (time.Time, error) {
	return h.last[scenario], nil
}

func TestDuplicateFromOtherReplicaDoesNothing(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:20:00Z"), Options{})
	r.s.opts.History = staleHistory{r.hist, map[string]time.Time{
		"nightly": date("2026-02-25T03:00:00Z"),
		"hourly":  date("2026-03-02T09:00:00Z"),
	}}
	// What the other replica wrote since: the missed record of the nightly gap, and the
	// hourly 10:00 run, still running there.
	seed(t, r.hist, "nightly", date("2026-03-02T03:00:00Z"))
	at := date("2026-03-02T10:00:00Z")
	if err := r.hist.Begin(context.Background(), &drill.Record{
		ID: "other", Scenario: "hourly", Trigger: "schedule", ScheduledFor: &at, Result: drill.Running, StartedAt: at,
		Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{}, Checks: []drill.CheckRecord{},
	}); err != nil {
		t.Fatal(err)
	}
	r.s.Update([]Entry{entry(scenario("nightly", "0 3 * * *", "")), entry(scenario("hourly", "0 * * * *", ""))})
	r.start(t)
	testkit.EventuallyTrue(t, wait, "the duplicate run to be dropped", func() bool {
		return strings.Count(r.log.String(), "another replica has it") == 2 && r.status(t, "hourly").Running == ""
	})
	r.run.none(t)
	if n := r.fin.count(); n != 0 {
		t.Errorf("OnFinish saw %d records, want none: the other replica has them", n)
	}
	if n := len(r.hist.records("nightly", "")) + len(r.hist.records("hourly", "")); n != 2 {
		t.Errorf("history has %d records, want the other replica's 2", n)
	}
	if st := r.status(t, "hourly"); !st.NextRun.Equal(date("2026-03-02T11:00:00Z")) {
		t.Errorf("next run = %v, want 11:00", st.NextRun)
	}
}
