package schedule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/scenarios"
)

func TestScheduledRunStartsOnTime(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:00:30Z"), Options{})
	r.s.Update([]Entry{entry(scenario("hourly", "0 * * * *", ""))})
	if st := r.status(t, "hourly"); !st.NextRun.IsZero() {
		t.Errorf("NextRun before Run = %v, want zero (not the leader)", st.NextRun)
	}
	r.start(t)
	st := r.status(t, "hourly")
	if want := date("2026-03-02T11:00:00Z"); !st.NextRun.Equal(want) {
		t.Errorf("NextRun = %v, want %v", st.NextRun, want)
	}
	if st.Interval != time.Hour || st.TimeZone != "UTC" || st.Schedule != "0 * * * *" || st.Labels["team"] != "sre" {
		t.Errorf("status = %+v, want interval 1h in UTC with the scenario's schedule and labels", st)
	}
	r.run.none(t)

	r.advance(t, date("2026-03-02T11:00:00Z"))
	c := r.run.next(t)
	if c.trig.Kind != KindSchedule || !c.trig.ScheduledFor.Equal(date("2026-03-02T11:00:00Z")) || c.trig.ID == "" {
		t.Errorf("trigger = %+v, want a scheduled run for 11:00 with an id", c.trig)
	}
	if got := r.status(t, "hourly").Running; got != c.trig.ID {
		t.Errorf("Running = %q, want %q", got, c.trig.ID)
	}
	c.release <- drill.Passed
	rec := r.fin.next(t)
	if rec.ID != c.trig.ID || rec.Result != drill.Passed {
		t.Errorf("OnFinish got %s %s, want %s passed", rec.ID, rec.Result, c.trig.ID)
	}
	testkit.EventuallyTrue(t, wait, "the run to end", func() bool { return r.status(t, "hourly").Running == "" })
	if got := r.status(t, "hourly").NextRun; !got.Equal(date("2026-03-02T12:00:00Z")) {
		t.Errorf("NextRun after the run = %v, want 12:00", got)
	}
}

func TestOverlapIsSkipped(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:59:00Z"), Options{})
	r.s.Update([]Entry{entry(scenario("slow", "0 * * * *", ""))})
	r.start(t)
	r.advance(t, date("2026-03-02T11:00:00Z"))
	first := r.run.next(t)

	r.advance(t, date("2026-03-02T12:00:01Z"))
	rec := r.fin.next(t)
	if rec.Result != drill.Skipped || rec.Trigger != "schedule" || rec.ScheduledFor == nil ||
		!rec.ScheduledFor.Equal(date("2026-03-02T12:00:00Z")) {
		t.Fatalf("record = %+v, want skipped, trigger schedule, for 12:00", rec)
	}
	if want := "previous run " + first.trig.ID + " still running"; rec.Message != want {
		t.Errorf("message = %q, want %q", rec.Message, want)
	}
	if rec.Runner != testRunner || !rec.StartedAt.Equal(*rec.FinishedAt) || rec.StartedAt.IsZero() {
		t.Errorf("runner %+v, startedAt %v, finishedAt %v: want this runner and both now", rec.Runner, rec.StartedAt, rec.FinishedAt)
	}
	if len(r.hist.records("slow", drill.Skipped)) != 1 {
		t.Errorf("skipped run not in the history: %+v", r.hist.records("slow", ""))
	}
	r.run.none(t)

	first.release <- drill.Failed
	if rec := r.fin.next(t); rec.ID != first.trig.ID || rec.Result != drill.Failed {
		t.Errorf("OnFinish got %s %s, want the first run failed", rec.ID, rec.Result)
	}
	testkit.EventuallyTrue(t, wait, "the run to end", func() bool { return r.status(t, "slow").Running == "" })
	r.advance(t, date("2026-03-02T13:00:00Z"))
	r.run.next(t).release <- drill.Passed
	r.fin.next(t)
}

func TestGlobalLimitQueuesInOrder(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{MaxConcurrent: 2})
	var es []Entry
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		es = append(es, entry(scenario(n, "", "")))
	}
	r.s.Update(es)
	ctx := context.Background()
	ids := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		id, err := r.s.Trigger(ctx, n, "alice")
		if err != nil {
			t.Fatalf("Trigger %s: %v", n, err)
		}
		ids[n] = id
	}
	running := map[string]*call{}
	for range 2 {
		c := r.run.next(t)
		running[c.sc.Metadata.Name] = c
	}
	if running["a"] == nil || running["b"] == nil {
		t.Fatalf("started %v, want a and b", running)
	}
	r.run.none(t)
	for _, n := range []string{"c", "d", "e"} {
		if st := r.status(t, n); st.Queued != 1 || st.Running != "" {
			t.Errorf("%s: queued %d running %q, want queued", n, st.Queued, st.Running)
		}
	}
	if _, err := r.s.Trigger(ctx, "c", "bob"); !errors.Is(err, ErrBusy) {
		t.Errorf("Trigger of a queued scenario: %v, want ErrBusy", err)
	}

	// Slots free up one at a time; the queue goes first in, first out.
	for _, n := range []string{"c", "d", "e"} {
		var done string
		for k := range running {
			done = k
			break
		}
		running[done].release <- drill.Passed
		delete(running, done)
		c := r.run.next(t)
		if c.sc.Metadata.Name != n || c.trig.ID != ids[n] || c.trig.Kind != KindAPI || c.trig.Operator != "alice" {
			t.Fatalf("started %s %+v, want %s with id %s by alice", c.sc.Metadata.Name, c.trig, n, ids[n])
		}
		running[n] = c
		r.run.none(t)
	}
	for _, c := range running {
		c.release <- drill.Passed
	}
	testkit.EventuallyTrue(t, wait, "every run to end", func() bool { return r.fin.count() == 5 })
}

func TestTrigger(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{})
	r.s.Update([]Entry{entry(scenario("manual", "", ""))})
	ctx := context.Background()
	if _, err := r.s.Trigger(ctx, "nope", "alice"); !errors.Is(err, ErrUnknownScenario) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Trigger of an unknown scenario: %v, want ErrUnknownScenario naming it", err)
	}
	// Run is not active (not the leader): a trigger still runs here.
	id, err := r.s.Trigger(ctx, "manual", "alice")
	if err != nil {
		t.Fatal(err)
	}
	c := r.run.next(t)
	if c.trig.ID != id || c.trig.Kind != KindAPI || !c.trig.ScheduledFor.IsZero() || c.trig.Operator != "alice" {
		t.Errorf("trigger = %+v, want api run %s by alice", c.trig, id)
	}
	_, err = r.s.Trigger(ctx, "manual", "bob")
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), id) {
		t.Errorf("second Trigger: %v, want ErrBusy naming %s", err, id)
	}
	c.release <- drill.Passed
	r.fin.next(t)
	testkit.EventuallyTrue(t, wait, "the run to end", func() bool { return r.status(t, "manual").Running == "" })
	if _, err := r.s.Trigger(ctx, "manual", "bob"); err != nil {
		t.Errorf("Trigger after the run ended: %v", err)
	}
	r.run.next(t).release <- drill.Passed
	r.fin.next(t)
}

func TestRunFuncWithoutRecordIsRecordedAsError(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{})
	r.s.opts.Run = func(context.Context, *scenarios.Scenario, Trigger) (*drill.Record, error) {
		return nil, errors.New("build the driver: no kubeconfig")
	}
	r.s.Update([]Entry{entry(scenario("broken-driver", "", ""))})
	id, err := r.s.Trigger(context.Background(), "broken-driver", "alice")
	if err != nil {
		t.Fatal(err)
	}
	rec := r.fin.next(t)
	if rec.ID != id || rec.Result != drill.Error || !strings.Contains(rec.Message, "no kubeconfig") || rec.Operator != "alice" {
		t.Errorf("record = %+v, want error record %s with the RunFunc's error", rec, id)
	}
	if len(r.hist.records("broken-driver", drill.Error)) != 1 {
		t.Errorf("error record not in the history")
	}
}

func TestUpdateKeepsLastGoodVersion(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:30:00Z"), Options{})
	v1 := scenario("shop", "0 * * * *", "")
	v1.Spec.Timeout.Duration = time.Minute
	r.s.Update([]Entry{entry(v1)})
	r.start(t)

	// The watcher's way: the entry carries the last good scenario and the error.
	broken := errors.New("shop.yaml:7: spec.checks: at least one check")
	r.s.Update([]Entry{{File: "/scenarios/shop.yaml", Scenario: v1, Err: broken}})
	r.idle(t)
	st := r.status(t, "shop")
	if st.Err != broken.Error() || !st.NextRun.Equal(date("2026-03-02T11:00:00Z")) {
		t.Errorf("status = %+v, want the error shown and 11:00 still scheduled", st)
	}
	// Another caller's way: an error without a scenario keeps what the file had.
	r.s.Update([]Entry{{File: "/scenarios/shop.yaml", Err: broken}})
	r.idle(t)
	if st := r.status(t, "shop"); st.Err != broken.Error() || st.Schedule != "0 * * * *" {
		t.Errorf("status = %+v, want the last good version with the error", st)
	}

	r.advance(t, date("2026-03-02T11:00:00Z"))
	c := r.run.next(t)
	if c.sc != v1 {
		t.Errorf("run started with %p, want the last good version %p", c.sc, v1)
	}

	// A new version while the run is in flight: the run keeps v1, the schedule follows v2.
	v2 := scenario("shop", "30 * * * *", "")
	r.s.Update([]Entry{entry(v2)})
	r.idle(t)
	if st := r.status(t, "shop"); st.Err != "" || st.Running != c.trig.ID || !st.NextRun.Equal(date("2026-03-02T11:30:00Z")) {
		t.Errorf("status = %+v, want no error, the run in flight, next 11:30", st)
	}
	c.release <- drill.Passed
	if rec := r.fin.next(t); rec.ID != c.trig.ID {
		t.Errorf("finished %s, want %s", rec.ID, c.trig.ID)
	}
	testkit.EventuallyTrue(t, wait, "the run to end", func() bool { return r.status(t, "shop").Running == "" })
	r.advance(t, date("2026-03-02T11:30:00Z"))
	c = r.run.next(t)
	if c.sc != v2 {
		t.Errorf("run started with %p, want v2 %p", c.sc, v2)
	}

	// The file is removed while a run is in flight: it is no longer shown, scheduled or
	// triggerable; the run goes on; the name is busy until it ends, also when it comes back.
	r.s.Update(nil)
	if got := r.s.Scenarios(); len(got) != 0 {
		t.Errorf("Scenarios after removal = %+v, want none", got)
	}
	if _, err := r.s.Trigger(context.Background(), "shop", "alice"); !errors.Is(err, ErrUnknownScenario) {
		t.Errorf("Trigger of a removed scenario: %v, want ErrUnknownScenario", err)
	}
	r.s.Update([]Entry{entry(v2)})
	if _, err := r.s.Trigger(context.Background(), "shop", "alice"); !errors.Is(err, ErrBusy) {
		t.Errorf("Trigger of a re-added scenario with a run in flight: %v, want ErrBusy", err)
	}
	c.release <- drill.Passed
	r.fin.next(t)
	r.s.Update(nil)
	testkit.EventuallyTrue(t, wait, "the removed scenario to be forgotten", func() bool {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		return len(r.s.states) == 0
	})
}

func TestUpdateShowsBrokenAndDuplicateFiles(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:30:00Z"), Options{})
	a := scenario("same", "@daily", "")
	b := scenario("same", "@hourly", "")
	r.s.Update([]Entry{
		{File: "/s/a.yaml", Scenario: a},
		{File: "/s/b.yaml", Scenario: b},
		{File: "/s/c.yaml", Err: errors.New("/s/c.yaml:1: not valid YAML")},
	})
	got := r.s.Scenarios()
	if len(got) != 3 {
		t.Fatalf("Scenarios = %+v, want 3", got)
	}
	// Sorted by name: a.yaml, c.yaml, same.
	if got[2].Name != "same" || got[2].File != "/s/a.yaml" || got[2].Schedule != "@daily" || got[2].Err != "" {
		t.Errorf("first file with the name: %+v, want a.yaml scheduled", got[2])
	}
	if got[0].Name != "b.yaml" || !strings.Contains(got[0].Err, "also the name of /s/a.yaml") {
		t.Errorf("second file with the name: %+v, want shown with an error", got[0])
	}
	if got[1].Name != "c.yaml" || !strings.Contains(got[1].Err, "not valid YAML") {
		t.Errorf("broken file: %+v, want shown with its error", got[1])
	}
}

func TestShutdownWaitsThenAborts(t *testing.T) {
	for _, grace := range []bool{true, false} {
		t.Run(fmt.Sprintf("finish-in-grace=%v", grace), func(t *testing.T) {
			r := newRig(t, date("2026-03-02T10:00:00Z"), Options{MaxConcurrent: 1})
			r.s.Update([]Entry{entry(scenario("a", "", "")), entry(scenario("b", "", ""))})
			ctx := context.Background()
			if _, err := r.s.Trigger(ctx, "a", "alice"); err != nil {
				t.Fatal(err)
			}
			a := r.run.next(t)
			idB, err := r.s.Trigger(ctx, "b", "bob")
			if err != nil {
				t.Fatal(err)
			}

			graceCtx, endGrace := context.WithCancel(ctx)
			defer endGrace()
			done := make(chan error, 1)
			go func() { done <- r.s.Shutdown(graceCtx) }()

			// The queued run never starts: it is recorded as aborted.
			rec := r.fin.next(t)
			if rec.ID != idB || rec.Result != drill.Aborted || rec.Trigger != "api" || rec.Operator != "bob" || rec.Message == "" {
				t.Errorf("record = %+v, want b's queued run %s aborted with a message", rec, idB)
			}
			if len(r.hist.records("b", drill.Aborted)) != 1 {
				t.Errorf("aborted run of b not in the history")
			}
			if _, err := r.s.Trigger(ctx, "b", "bob"); !errors.Is(err, ErrStopped) {
				t.Errorf("Trigger during shutdown: %v, want ErrStopped", err)
			}
			// a blocks until released or cancelled, so Shutdown cannot have returned.
			select {
			case err := <-done:
				t.Fatalf("Shutdown returned %v while a drill was in flight", err)
			default:
			}
			if a.ctx.Err() != nil {
				t.Fatal("the drill's context was cancelled before the grace period ended")
			}

			want := drill.Passed
			if grace {
				a.release <- drill.Passed
			} else {
				endGrace()
				want = drill.Aborted
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			case <-time.After(wait):
				t.Fatal("Shutdown did not return")
			}
			rec = r.fin.next(t)
			if rec.ID != a.trig.ID || rec.Result != want {
				t.Errorf("a's record = %s %s, want %s", rec.ID, rec.Result, want)
			}
			r.run.none(t)
		})
	}
}

func TestShutdownStopsRun(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{})
	r.s.Update([]Entry{entry(scenario("a", "@hourly", ""))})
	done := make(chan error, 1)
	go func() { done <- r.s.Run(context.Background()) }()
	r.idle(t)
	if err := r.s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after Shutdown")
	}
	r.clock.Set(date("2026-03-02T11:00:00Z"))
	r.run.none(t)
}

func TestTimeZoneAcrossDST(t *testing.T) {
	// Europe/Berlin leaves CET (UTC+1) for CEST (UTC+2) on 2026-03-29 and returns on 2026-10-25.
	sched, errText := parseSchedule("30 3 * * *", "Europe/Berlin", date("2026-03-27T12:00:00Z"))
	if sched == nil {
		t.Fatal(errText)
	}
	for _, tc := range []struct{ from, want string }{
		{"2026-03-27T12:00:00Z", "2026-03-28T02:30:00Z"},
		{"2026-03-28T02:30:00Z", "2026-03-29T01:30:00Z"},
		{"2026-03-29T01:30:00Z", "2026-03-30T01:30:00Z"},
		{"2026-10-24T00:00:00Z", "2026-10-24T01:30:00Z"},
		{"2026-10-24T01:30:00Z", "2026-10-25T02:30:00Z"},
	} {
		if got := sched.Next(date(tc.from)); !got.Equal(date(tc.want)) {
			t.Errorf("Next(%s) = %s, want %s", tc.from, got.UTC().Format(time.RFC3339), tc.want)
		}
	}

	// Through the scheduler: the interval straddling the change is 23 hours, and the run fires
	// at 03:30 Berlin time on both sides of it.
	r := newRig(t, date("2026-03-28T00:00:00Z"), Options{})
	r.s.Update([]Entry{entry(scenario("berlin", "30 3 * * *", "Europe/Berlin"))})
	if st := r.status(t, "berlin"); st.Interval != 23*time.Hour || st.TimeZone != "Europe/Berlin" {
		t.Errorf("berlin = %+v, want interval 23h across the change, in Europe/Berlin", st)
	}
	r.start(t)
	for _, at := range []string{"2026-03-28T02:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T01:30:00Z"} {
		if st := r.status(t, "berlin"); !st.NextRun.Equal(date(at)) {
			t.Fatalf("next run = %v, want %s (03:30 in Berlin)", st.NextRun, at)
		}
		r.advance(t, date(at))
		c := r.run.next(t)
		if !c.trig.ScheduledFor.Equal(date(at)) {
			t.Errorf("started for %v, want %s", c.trig.ScheduledFor, at)
		}
		c.release <- drill.Passed
		r.fin.next(t)
		testkit.EventuallyTrue(t, wait, "the run to end", func() bool { return r.status(t, "berlin").Running == "" })
	}
	if st := r.status(t, "berlin"); st.Interval != 24*time.Hour {
		t.Errorf("interval after the change = %v, want 24h", st.Interval)
	}
}

func TestIntervals(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{})
	r.s.Update([]Entry{
		entry(scenario("six", "0 */6 * * *", "")),
		entry(scenario("every", "@every 90m", "")),
		entry(scenario("daily", "@daily", "Asia/Tokyo")),
		entry(scenario("manual", "", "")),
	})
	if tz := r.status(t, "manual").TimeZone; tz != "UTC" {
		t.Errorf("default time zone = %q, want UTC", tz)
	}
	for name, want := range map[string]time.Duration{"six": 6 * time.Hour, "every": 90 * time.Minute, "daily": 24 * time.Hour, "manual": 0} {
		st := r.status(t, name)
		if st.Interval != want || !st.NextRun.IsZero() || st.Err != "" {
			t.Errorf("%s: %+v, want interval %v, no next run (not the leader), no error", name, st, want)
		}
	}
	r.start(t)
	if got := r.status(t, "daily").NextRun; !got.Equal(date("2026-03-02T15:00:00Z")) {
		t.Errorf("@daily in Tokyo next = %v, want 15:00Z (midnight JST)", got)
	}
	if got := r.status(t, "every").NextRun; !got.Equal(date("2026-03-02T11:30:00Z")) {
		t.Errorf("@every 90m next = %v, want 90 minutes after Run started", got)
	}
	if !r.status(t, "manual").NextRun.IsZero() {
		t.Error("a scenario without a schedule has a next run")
	}
}

func TestImpossibleScheduleIsAnError(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{})
	r.s.Update([]Entry{entry(scenario("never", "0 0 30 2 *", "")), entry(scenario("zone", "@daily", "Mars/Olympus"))})
	if st := r.status(t, "never"); !strings.Contains(st.Err, "never fires") || st.Interval != 0 {
		t.Errorf("never = %+v, want an error saying it never fires", st)
	}
	if st := r.status(t, "zone"); !strings.Contains(st.Err, "Mars/Olympus") {
		t.Errorf("zone = %+v, want an error naming the zone", st)
	}
}

func TestScheduledRunsQueueInNameOrder(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:30:00Z"), Options{MaxConcurrent: 1})
	r.s.Update([]Entry{entry(scenario("c", "@hourly", "")), entry(scenario("a", "@hourly", "")), entry(scenario("b", "@hourly", ""))})
	r.start(t)
	r.advance(t, date("2026-03-02T11:00:00Z"))
	a := r.run.next(t)
	if a.sc.Metadata.Name != "a" {
		t.Fatalf("first run is %s, want a", a.sc.Metadata.Name)
	}
	r.run.none(t)

	// An hour later all three are still busy: one in flight, two queued.
	r.advance(t, date("2026-03-02T12:00:00Z"))
	skipped := map[string]string{}
	for range 3 {
		rec := r.fin.next(t)
		if rec.Result != drill.Skipped || !rec.ScheduledFor.Equal(date("2026-03-02T12:00:00Z")) {
			t.Fatalf("record = %+v, want skipped for 12:00", rec)
		}
		skipped[rec.Scenario] = rec.Message
	}
	if want := "previous run " + a.trig.ID + " still running"; skipped["a"] != want {
		t.Errorf("a: %q, want %q", skipped["a"], want)
	}
	if m := skipped["b"]; !strings.HasSuffix(m, "still queued for a free slot") {
		t.Errorf("b: %q, want it to say the previous run is queued", m)
	}

	for _, want := range []string{"b", "c"} {
		a.release <- drill.Passed
		r.fin.next(t)
		a = r.run.next(t)
		if a.sc.Metadata.Name != want || !a.trig.ScheduledFor.Equal(date("2026-03-02T11:00:00Z")) {
			t.Fatalf("next run is %s for %v, want %s's 11:00 run", a.sc.Metadata.Name, a.trig.ScheduledFor, want)
		}
	}
	a.release <- drill.Passed
	r.fin.next(t)
}

// TestStartWithAssignedIDSeedAndLabels: a DrillRun's run keeps the id it was claimed under,
// its seed and extra labels reach the RunFunc, the scenario's own labels win over a run's, and
// the scenario the others share is not changed. OnStart hears of the run before it runs.
func TestStartWithAssignedIDSeedAndLabels(t *testing.T) {
	var started []Trigger
	var mu sync.Mutex
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{OnStart: func(_ *scenarios.Scenario, tr Trigger) {
		mu.Lock()
		started = append(started, tr)
		mu.Unlock()
	}})
	sc := scenario("adhoc", "", "")
	r.s.Update([]Entry{entry(sc)})
	seed := uint64(4181102)
	id, err := r.s.Start(context.Background(), "adhoc", Trigger{ID: "20260302-100000-abcdef", Kind: KindDrillRun, Operator: "drillrun/ops/adhoc-1",
		Seed: &seed, Labels: map[string]string{"change": "CHG-1", "team": "not-sre"}, ScheduledFor: date("2026-03-02T09:00:00Z")})
	if err != nil || id != "20260302-100000-abcdef" {
		t.Fatalf("Start = %q, %v; want the assigned id", id, err)
	}
	c := r.run.next(t)
	if c.trig.ID != id || c.trig.Kind != KindDrillRun || c.trig.Seed == nil || *c.trig.Seed != seed || !c.trig.ScheduledFor.IsZero() || c.trig.Operator != "drillrun/ops/adhoc-1" {
		t.Errorf("the RunFunc got %+v", c.trig)
	}
	if l := c.sc.Metadata.Labels; l["change"] != "CHG-1" || l["team"] != "sre" || len(l) != 2 {
		t.Errorf("the run's scenario has labels %v, want change=CHG-1 added and team=sre kept", l)
	}
	if len(sc.Metadata.Labels) != 1 {
		t.Errorf("the shared scenario was changed: %v", sc.Metadata.Labels)
	}
	mu.Lock()
	if len(started) != 1 || started[0].ID != id {
		t.Errorf("OnStart heard %+v", started)
	}
	mu.Unlock()
	c.release <- drill.Passed
	r.fin.next(t)

	// No id or kind: an API run with a new id, as Trigger.
	testkit.EventuallyTrue(t, wait, "the run to end", func() bool { return r.status(t, "adhoc").Running == "" })
	id2, err := r.s.Start(context.Background(), "adhoc", Trigger{})
	if err != nil || id2 == "" || id2 == id {
		t.Fatalf("Start without an id = %q, %v", id2, err)
	}
	c = r.run.next(t)
	if c.trig.Kind != KindAPI || c.sc != sc {
		t.Errorf("a run without labels: kind %q, own scenario copy %v", c.trig.Kind, c.sc != sc)
	}
	c.release <- drill.Passed
	r.fin.next(t)
}

// An adopted run (another replica started it and died) is the scenario's run in flight: a
// scheduled time meanwhile is skipped, and its final record reaches OnFinish. One left to
// another replica (ErrNotOurs) is neither recorded nor reported here. A scenario not loaded
// here is followed all the same.
func TestAdopt(t *testing.T) {
	r := newRig(t, date("2026-03-02T10:59:00Z"), Options{MaxConcurrent: 1})
	sc := scenario("slow", "0 * * * *", "")
	r.s.Update([]Entry{entry(sc)})
	r.start(t)
	release := make(chan drill.Result)
	follow := func(_ context.Context, sc *scenarios.Scenario, t Trigger) (*drill.Record, error) {
		end := date("2026-03-02T11:00:30Z")
		return &drill.Record{ID: t.ID, Scenario: sc.Metadata.Name, Trigger: t.Kind, Result: <-release, FinishedAt: &end}, nil
	}
	adopted := Trigger{ID: "20260302-105000-adopt1", Kind: KindSchedule, ScheduledFor: date("2026-03-02T10:50:00Z")}
	if err := r.s.Adopt(sc, adopted, follow); err != nil {
		t.Fatal(err)
	}
	if st := r.status(t, "slow"); st.Running != adopted.ID {
		t.Errorf("running = %q, want the adopted run %s", st.Running, adopted.ID)
	}
	r.advance(t, date("2026-03-02T11:00:00Z"))
	if rec := r.fin.next(t); rec.Result != drill.Skipped || rec.Message != "previous run "+adopted.ID+" still running" {
		t.Errorf("scheduled time while the adopted run is in flight: %s %q, want skipped naming it", rec.Result, rec.Message)
	}
	r.run.none(t)
	release <- drill.Passed
	if rec := r.fin.next(t); rec.ID != adopted.ID || rec.Result != drill.Passed {
		t.Errorf("OnFinish got %s %s, want the adopted run passed", rec.ID, rec.Result)
	}
	testkit.EventuallyTrue(t, wait, "the adopted run to end", func() bool { return r.status(t, "slow").Running == "" })

	gone := scenario("gone", "", "")
	n := r.fin.count()
	done := make(chan struct{})
	elsewhere := func(context.Context, *scenarios.Scenario, Trigger) (*drill.Record, error) {
		defer close(done)
		return nil, fmt.Errorf("%w: finished by replica-2", ErrNotOurs)
	}
	if err := r.s.Adopt(gone, Trigger{ID: "20260302-105500-adopt2", Kind: KindAPI}, elsewhere); err != nil {
		t.Fatal(err)
	}
	<-done
	testkit.EventuallyTrue(t, wait, "the run left to another replica to end", func() bool {
		return !strings.Contains(fmt.Sprint(r.s.Scenarios()), "adopt2") && strings.Contains(r.log.String(), "adopted run left to another replica")
	})
	if r.fin.count() != n || len(r.hist.records("gone", "")) != 0 {
		t.Errorf("a run left to another replica was reported or recorded here: %d records to OnFinish, history %+v", r.fin.count()-n, r.hist.records("gone", ""))
	}
}
