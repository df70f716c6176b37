package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// wait is how long a test waits for something that should happen at once; generous, since
// the machine is shared.
const wait = 20 * time.Second

// fakeClock is a settable clock whose timers fire when Advance reaches them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) timer(until time.Time) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: until, c: make(chan time.Time, 1)}
	if !until.After(c.now) {
		t.c <- c.now
		return t.c, func() bool { return false }
	}
	c.timers = append(c.timers, t)
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, t)
		if i < 0 {
			return false
		}
		c.timers = slices.Delete(c.timers, i, i+1)
		return true
	}
}

// Set moves the clock to now and fires the timers it reached.
func (c *fakeClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.at.After(now) {
			return false
		}
		t.c <- now
		return true
	})
}

// sleepers is the number of timers waiting: a Run loop waits on one when it has nothing to do.
func (c *fakeClock) sleepers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// fakeHistory keeps records in memory with the store's rule that one scenario and scheduled
// time has one run (history.ErrDuplicateSchedule).
type fakeHistory struct {
	t    *testing.T
	mu   sync.Mutex
	recs []drill.Record
}

func (h *fakeHistory) check(r *drill.Record) {
	h.t.Helper()
	if r.ID == "" || r.Scenario == "" || r.StartedAt.IsZero() || r.Trigger == "" {
		h.t.Errorf("record lacks id, scenario, trigger or startedAt: %+v", r)
	}
	if r.Objectives == nil || r.Steps == nil || r.Checks == nil {
		h.t.Errorf("record %s has nil objectives, steps or checks (they are stored as JSON arrays)", r.ID)
	}
}

func (h *fakeHistory) put(r *drill.Record, final bool) error {
	h.check(r)
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, o := range h.recs {
		if o.ID == r.ID {
			if o.Result != drill.Running {
				return fmt.Errorf("run %s is already finished", r.ID)
			}
			h.recs[i] = *r
			return nil
		}
		if r.ScheduledFor != nil && o.ScheduledFor != nil && o.Scenario == r.Scenario && o.ScheduledFor.Equal(*r.ScheduledFor) {
			return fmt.Errorf("store run %s of %s for %s: %w", r.ID, r.Scenario, r.ScheduledFor, history.ErrDuplicateSchedule)
		}
	}
	if final && r.FinishedAt == nil {
		h.t.Errorf("final record %s has no finishedAt", r.ID)
	}
	h.recs = append(h.recs, *r)
	return nil
}

func (h *fakeHistory) Begin(_ context.Context, r *drill.Record) error  { return h.put(r, false) }
func (h *fakeHistory) Finish(_ context.Context, r *drill.Record) error { return h.put(r, true) }

func (h *fakeHistory) LastScheduled(_ context.Context, scenario string) (time.Time, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var last time.Time
	for _, r := range h.recs {
		if r.Scenario == scenario && r.ScheduledFor != nil && r.ScheduledFor.After(last) {
			last = *r.ScheduledFor
		}
	}
	return last, nil
}

// records returns the records of scenario with result (any result when "").
func (h *fakeHistory) records(scenario string, result drill.Result) []drill.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []drill.Record
	for _, r := range h.recs {
		if r.Scenario == scenario && (result == "" || r.Result == result) {
			out = append(out, r)
		}
	}
	return out
}

// call is one RunFunc invocation, blocked until the test releases it or ctx is cancelled.
type call struct {
	ctx     context.Context
	sc      *scenarios.Scenario
	trig    Trigger
	release chan drill.Result
}

// fakeRunner is a RunFunc that records like drill.Runner (Begin, then Finish) in its
// history and blocks each run on a channel.
type fakeRunner struct {
	hist  *fakeHistory
	now   func() time.Time
	calls chan *call
}

func newRunner(h *fakeHistory, now func() time.Time) *fakeRunner {
	return &fakeRunner{hist: h, now: now, calls: make(chan *call, 100)}
}

func (f *fakeRunner) run(ctx context.Context, sc *scenarios.Scenario, t Trigger) (*drill.Record, error) {
	rec := &drill.Record{
		ID: t.ID, Scenario: sc.Metadata.Name, Trigger: t.Kind, Operator: t.Operator, Result: drill.Running,
		StartedAt: f.now().UTC(), Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{}, Checks: []drill.CheckRecord{},
	}
	if !t.ScheduledFor.IsZero() {
		at := t.ScheduledFor.UTC()
		rec.ScheduledFor = &at
	}
	if err := f.hist.Begin(ctx, rec); err != nil {
		// As drill.Runner does: both errors stay in the chain.
		return rec, fmt.Errorf("%w: %w", drill.ErrRecord, err)
	}
	c := &call{ctx: ctx, sc: sc, trig: t, release: make(chan drill.Result)}
	f.calls <- c
	select {
	case rec.Result = <-c.release:
	case <-ctx.Done():
		rec.Result, rec.Message = drill.Aborted, "interrupted"
	}
	end := f.now().UTC()
	rec.FinishedAt = &end
	return rec, f.hist.Finish(context.Background(), rec)
}

// next waits for the next run to start.
func (f *fakeRunner) next(t *testing.T) *call {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(wait):
		t.Fatal("no drill started")
		return nil
	}
}

// none checks that no run has started.
func (f *fakeRunner) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-f.calls:
		t.Fatalf("unexpected drill of %s started: %+v", c.sc.Metadata.Name, c.trig)
	default:
	}
}

// finished collects what OnFinish receives.
type finished struct {
	mu   sync.Mutex
	recs []*drill.Record
	c    chan *drill.Record
}

func newFinished() *finished { return &finished{c: make(chan *drill.Record, 100)} }

func (f *finished) add(r *drill.Record) {
	f.mu.Lock()
	f.recs = append(f.recs, r)
	f.mu.Unlock()
	f.c <- r
}

func (f *finished) next(t *testing.T) *drill.Record {
	t.Helper()
	select {
	case r := <-f.c:
		return r
	case <-time.After(wait):
		t.Fatal("no record reached OnFinish")
		return nil
	}
}

func (f *finished) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recs)
}

// rig is a scheduler on a fake clock with a fake history and runner.
type rig struct {
	s     *Scheduler
	clock *fakeClock
	hist  *fakeHistory
	run   *fakeRunner
	fin   *finished
	log   *testkit.Buffer
}

var testRunner = drill.RunnerInfo{Host: "replica-1", PID: 4242}

func newRig(t *testing.T, now time.Time, opts Options) *rig {
	t.Helper()
	clock := newClock(now)
	hist := &fakeHistory{t: t}
	return newRigOn(t, clock, hist, opts)
}

// newRigOn makes a scheduler on a shared clock and history (two replicas).
func newRigOn(t *testing.T, clock *fakeClock, hist *fakeHistory, opts Options) *rig {
	t.Helper()
	r := &rig{clock: clock, hist: hist, run: newRunner(hist, clock.Now), fin: newFinished(), log: &testkit.Buffer{}}
	opts.Run, opts.History, opts.Now, opts.OnFinish = r.run.run, hist, clock.Now, r.fin.add
	opts.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Runner == (drill.RunnerInfo{}) {
		opts.Runner = testRunner
	}
	r.s = New(opts)
	r.s.timer = clock.timer
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // abort whatever a failed test left running
		_ = r.s.Shutdown(ctx)
		if t.Failed() {
			t.Logf("scheduler log:\n%s", r.log.String())
		}
	})
	return r
}

// start runs the scheduler's loop until the test ends and waits until it has caught up and
// sleeps.
func (r *rig) start(t *testing.T) {
	t.Helper()
	r.loop(t)
	r.idle(t)
}

// loop runs the scheduler's loop until the test ends.
func (r *rig) loop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// idle waits until the loop waits on its timer, i.e. has acted on everything due.
func (r *rig) idle(t *testing.T) {
	t.Helper()
	testkit.EventuallyTrue(t, wait, "the scheduler to wait for its next time", func() bool { return r.clock.sleepers() > 0 })
}

// advance sets the clock and waits until the loop sleeps again.
func (r *rig) advance(t *testing.T, to time.Time) {
	t.Helper()
	r.clock.Set(to)
	r.idle(t)
}

func (r *rig) status(t *testing.T, name string) Status {
	t.Helper()
	for _, st := range r.s.Scenarios() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no status for %s in %+v", name, r.s.Scenarios())
	return Status{}
}

// scenario builds a scenario in code: the scheduler reads only its name, labels and schedule.
func scenario(name, schedule, tz string) *scenarios.Scenario {
	return &scenarios.Scenario{
		APIVersion: scenarios.APIVersion, Kind: scenarios.Kind,
		Metadata: scenarios.Metadata{Name: name, Labels: map[string]string{"team": "sre"}},
		Spec:     scenarios.Spec{Schedule: schedule, TimeZone: tz},
	}
}

func entry(sc *scenarios.Scenario) Entry {
	return Entry{File: "/scenarios/" + sc.Metadata.Name + ".yaml", Scenario: sc}
}

func date(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
