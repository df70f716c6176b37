// Package schedule runs drills on their scenarios' cron schedules for `firedrill serve`.
//
// Per scenario at most one run is in flight or queued: a scheduled time that comes while the
// previous run is still going is recorded as skipped. Across scenarios, Options.MaxConcurrent
// drills run at once and the rest wait in order. Scheduled runs that passed while this process
// was down or not the leader are caught up when Run starts: the newest once if it is still
// within the starting deadline, the rest as one missed record per scenario. The history's rule
// of one run per scenario and scheduled time (history.ErrDuplicateSchedule) is what keeps two
// replicas from running or recording the same scheduled time twice.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// Trigger says why a run starts.
type Trigger struct {
	// ID is the run id, assigned before the run starts (drill.NewRunID); the RunFunc must use it
	// (drill.Runner.ID).
	ID string
	// Kind is "schedule", "api" or "drillrun".
	Kind string
	// ScheduledFor is the cron time of a scheduled run; zero for the others.
	ScheduledFor time.Time
	// Operator is who asked: for "api" runs the API's token identity or the request's, for
	// "drillrun" runs drillrun/NAMESPACE/NAME.
	Operator string
	// Seed, when set, repeats a recorded random choice of the backup (drill.Runner.Seed); the
	// RunFunc must pass it on.
	Seed *uint64
	// Labels are added to the record's (the scenario's labels); a key the scenario has keeps
	// the scenario's value. The scheduler hands the RunFunc a scenario with both.
	Labels map[string]string
}

// Trigger kinds.
const (
	KindSchedule = "schedule"
	KindAPI      = "api"
	// KindDrillRun: a DrillRun resource asked for the run (drill/crd).
	KindDrillRun = "drillrun"
)

// RunFunc carries out one drill and records it in the history itself (drill.Runner with a
// Recorder); it returns the final record. ctx is cancelled when the drill must be aborted
// (shutdown grace expired); cleanup still runs (drill.Runner does that).
//
// An error wrapping history.ErrDuplicateSchedule (from the recorder's Begin) means another
// replica has this scheduled time: the scheduler then drops the run without a trace. When the
// RunFunc returns no record, the scheduler records the run as an error with the returned error.
type RunFunc func(ctx context.Context, sc *scenarios.Scenario, t Trigger) (*drill.Record, error)

// History is what the scheduler needs from the run history (drill/history.Store has it).
type History interface {
	// Finish stores a final record; the scheduler writes skipped and missed runs with it.
	Finish(ctx context.Context, r *drill.Record) error
	// LastScheduled returns the ScheduledFor of the newest run of scenario that has one (any
	// result, running included), or the zero time when there is none.
	LastScheduled(ctx context.Context, scenario string) (time.Time, error)
}

// Entry is one scenario file as the directory watcher last read it.
type Entry struct {
	File     string
	Scenario *scenarios.Scenario // the last version that validated; nil if none ever did
	// Err is why the file's current content is not used (it does not parse or validate); the
	// last good Scenario stays scheduled.
	Err error
	// LoadedAt is when Scenario was read.
	LoadedAt time.Time
}

// Options configure a Scheduler.
type Options struct {
	Run     RunFunc
	History History
	// MaxConcurrent bounds the drills in flight across all scenarios; the rest wait in order.
	// Default 2.
	MaxConcurrent int
	// StartingDeadline: a run due while serve was down (or not leader) is started once when its
	// time is at most this long ago, else recorded as missed. Default 1h.
	StartingDeadline time.Duration
	// OnFinish, when set, is called with every final record the scheduler sees (runs, skipped,
	// missed), for metrics and notifications. It must not block for long.
	OnFinish func(*drill.Record)
	// OnStart, when set, is called as each run starts (after any wait for a slot) or is adopted,
	// with the scenario version and trigger it runs with; for a scheduled run another replica
	// may still turn out to have (history.ErrDuplicateSchedule). It must not block for long.
	OnStart func(*scenarios.Scenario, Trigger)
	Now     func() time.Time
	Logger  *slog.Logger
	// Runner identifies this process in skipped and missed records.
	Runner drill.RunnerInfo
}

// Status is one scenario as the API and dashboard show it.
//
// A file that never loaded (or whose scenario name another file already has) has no scenario
// to show; it appears with Name set to its file name (broken.yaml) and Err, so that the
// problem is visible. Such a name cannot be triggered.
type Status struct {
	Name     string
	File     string
	Schedule string // "" for a scenario without one (it can still be run through the API)
	TimeZone string
	// Interval is the time between two consecutive scheduled runs around now (for the
	// dead-man's-switch alert); 0 without a schedule.
	Interval time.Duration
	NextRun  time.Time // zero when not scheduled, or when this replica is not the leader
	Running  string    // id of the run in flight, if any
	Queued   int       // runs waiting for a free slot
	Err      string    // the file's current problem, if any (see Entry.Err)
	Labels   map[string]string
}

// ErrUnknownScenario: Trigger names no loaded scenario.
var ErrUnknownScenario = errors.New("no such scenario")

// ErrBusy: Trigger on a scenario whose previous run is still in flight or queued.
var ErrBusy = errors.New("scenario already has a run in flight")

// ErrStopped: Trigger after Shutdown.
var ErrStopped = errors.New("the scheduler is shutting down")

// ErrNotOurs, from the RunFunc of an adopted run, says the run is not this replica's to record
// or report: another replica finished it, or still follows it as this one stops.
var ErrNotOurs = errors.New("the run is another replica's")

// Default option values.
const (
	DefaultMaxConcurrent    = 2
	DefaultStartingDeadline = time.Hour
)

// recordTimeout bounds each write of a skipped, missed or aborted record; the Spool in front
// of the store answers at once, a store without one must not hang the scheduler.
const recordTimeout = 30 * time.Second

// Scheduler schedules scenarios. Safe for concurrent use.
type Scheduler struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	// timer returns a channel that receives once the clock reaches until; tests replace it
	// with a fake clock's, so that no test waits for a cron period.
	timer func(until time.Time) (<-chan time.Time, func() bool)

	// runCtx is the parent of every drill: not Run's context, since a drill that started goes
	// on when leadership is lost; cancelled by Shutdown after its grace.
	runCtx     context.Context
	cancelRuns context.CancelFunc
	wg         sync.WaitGroup // drills in flight

	wake chan struct{} // tells Run's loop that the scenario set changed or Shutdown began

	mu      sync.Mutex
	states  map[string]*state // by scenario name
	broken  []Status          // files without a usable scenario
	queue   []*job            // FIFO across scenarios
	running int
	active  bool // Run is scheduling (this replica is the leader)
	stopped bool
}

// state is one scenario.
type state struct {
	name  string
	file  string
	sc    *scenarios.Scenario
	err   string // the file's problem (Entry.Err)
	sched cron.Schedule
	// schedErr says why a scenario with spec.schedule is not scheduled (cannot happen for a
	// scenario that validated, but the time zone database may differ from the validator's).
	schedErr string
	removed  bool // its file is gone; kept only until its run in flight or queued is done

	// While Run is active: last is the newest scheduled time handled (run, skipped or missed),
	// next the one after it.
	last, next time.Time
	// lastFired is the newest scheduled time this process handed out; catch-up starts after it
	// too, since a run that is only queued is not in the history yet.
	lastFired time.Time

	running *job
	queued  *job
}

func (st *state) busy() *job {
	if st.running != nil {
		return st.running
	}
	return st.queued
}

// job is one run, from the moment its id is assigned.
type job struct {
	st   *state
	sc   *scenarios.Scenario // the version it was started with
	trig Trigger
	// adopt, for a run another replica started (Adopt), follows it instead of Options.Run.
	adopt RunFunc
}

// New returns a Scheduler with no scenarios.
func New(opts Options) *Scheduler {
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.StartingDeadline <= 0 {
		opts.StartingDeadline = DefaultStartingDeadline
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{
		opts:   opts,
		log:    opts.Logger,
		now:    opts.Now,
		wake:   make(chan struct{}, 1),
		states: map[string]*state{},
	}
	s.timer = func(until time.Time) (<-chan time.Time, func() bool) {
		t := time.NewTimer(until.Sub(s.now()))
		return t.C, t.Stop
	}
	s.runCtx, s.cancelRuns = context.WithCancel(context.Background())
	return s
}

// Update replaces the set of scenarios (the watcher calls it on every change). A run in
// flight keeps the scenario version it started with.
//
// An entry with Err and no Scenario whose file had a scenario before keeps that scenario: the
// last good version stays scheduled whoever built the entries. Of two entries with one
// scenario name the first wins; the second is shown as a broken file.
func (s *Scheduler) Update(entries []Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()

	byFile := map[string]*state{}
	for _, st := range s.states {
		if !st.removed {
			byFile[st.file] = st
		}
	}
	seen := map[string]bool{}
	var broken []Status
	for _, e := range entries {
		errText := ""
		if e.Err != nil {
			errText = e.Err.Error()
		}
		sc := e.Scenario
		if sc == nil && e.Err != nil {
			if old := byFile[e.File]; old != nil {
				sc = old.sc
			}
		}
		if sc == nil {
			if errText == "" {
				errText = "no scenario loaded from this file"
			}
			broken = append(broken, Status{Name: filepath.Base(e.File), File: e.File, Err: errText})
			continue
		}
		name := sc.Metadata.Name
		if seen[name] {
			other := s.states[name].file
			broken = append(broken, Status{Name: filepath.Base(e.File), File: e.File,
				Err: joinErr(errText, fmt.Sprintf("metadata.name %q is also the name of %s: give every scenario its own name; this file is not scheduled", name, other))})
			continue
		}
		seen[name] = true
		st := s.states[name]
		if st == nil {
			st = &state{name: name}
			s.states[name] = st
		}
		oldSpec := ""
		if st.sc != nil && !st.removed {
			oldSpec = st.sc.Spec.Schedule + "\x00" + st.sc.Spec.TimeZone
		}
		st.file, st.sc, st.err, st.removed = e.File, sc, errText, false
		if sc.Spec.Schedule+"\x00"+sc.Spec.TimeZone != oldSpec {
			st.sched, st.schedErr = nil, ""
			if sc.Spec.Schedule != "" {
				st.sched, st.schedErr = parseSchedule(sc.Spec.Schedule, sc.Spec.TimeZone, now)
			}
			// A new or changed schedule starts from now: what it would have fired before is
			// not a missed run.
			st.last, st.next = time.Time{}, time.Time{}
			if s.active && st.sched != nil {
				st.last, st.next = now, st.sched.Next(now)
			}
		}
	}
	for name, st := range s.states {
		if seen[name] {
			continue
		}
		if st.busy() == nil {
			delete(s.states, name)
			continue
		}
		st.removed = true
		st.last, st.next = time.Time{}, time.Time{}
	}
	s.broken = broken
	s.poke()
}

func joinErr(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// parser reads what scenarios.Validate accepts: 5 fields, descriptors and @every.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// parseSchedule parses expr in the time zone tz (default UTC); an expression's own CRON_TZ=
// or TZ= prefix wins, as in cron.
func parseSchedule(expr, tz string, now time.Time) (cron.Schedule, string) {
	if tz == "" {
		tz = scenarios.DefaultTimeZone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Sprintf("spec.timeZone %q: %v: use an IANA name such as Europe/Berlin, or UTC", tz, err)
	}
	sched, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Sprintf("spec.schedule %q is not a schedule (%v): use 5 cron fields or a descriptor such as @daily or @every 6h", expr, err)
	}
	if spec, ok := sched.(*cron.SpecSchedule); ok && !strings.HasPrefix(expr, "CRON_TZ=") && !strings.HasPrefix(expr, "TZ=") {
		spec.Location = loc
	}
	if sched.Next(now).IsZero() {
		return nil, fmt.Sprintf("spec.schedule %q never fires in the next five years (a date that does not exist?)", expr)
	}
	return sched, ""
}

// poke wakes Run's loop; it never blocks.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Trigger starts a run of the named scenario now (the API's "run now"), on any replica,
// respecting the per-scenario overlap rule (ErrBusy) and the concurrency limit (it may
// queue). It returns the run's id at once.
func (s *Scheduler) Trigger(ctx context.Context, name, operator string) (string, error) {
	return s.Start(ctx, name, Trigger{Kind: KindAPI, Operator: operator})
}

// Start is Trigger with the whole Trigger given: a run id assigned beforehand (a DrillRun claims
// its run under that id before the run starts), a seed, extra labels. An empty ID gets a new
// one, an empty Kind is "api"; ScheduledFor is ignored (scheduled runs are the scheduler's own).
func (s *Scheduler) Start(ctx context.Context, name string, t Trigger) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return "", ErrStopped
	}
	st := s.states[name]
	if st == nil || st.removed {
		return "", fmt.Errorf("%w %q: see GET /api/v1/scenarios for the loaded ones", ErrUnknownScenario, name)
	}
	if j := st.busy(); j != nil {
		return "", fmt.Errorf("%w: %s: run %s is still %s; wait for it to finish", ErrBusy, name, j.trig.ID, s.where(j))
	}
	if t.ID == "" {
		t.ID = drill.NewRunID(s.now())
	}
	if t.Kind == "" {
		t.Kind = KindAPI
	}
	t.ScheduledFor = time.Time{}
	j := &job{st: st, sc: withLabels(st.sc, t.Labels), trig: t}
	s.enqueueLocked(j)
	return j.trig.ID, nil
}

// Adopt takes over a run another replica started and no longer follows (it died): follow
// carries it on to its final record, stored and passed to OnFinish as any run's. While it
// runs it is the scenario's run in flight, so that scheduled times meanwhile are skipped as
// for any run, and it counts against MaxConcurrent, although it starts at once even past the
// limit: it runs already. sc is the version the run started with; t.ID is the run's id. A
// scenario this replica has not loaded (deleted since) is followed all the same.
func (s *Scheduler) Adopt(sc *scenarios.Scenario, t Trigger, follow RunFunc) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	name := sc.Metadata.Name
	st := s.states[name]
	if st == nil {
		st = &state{name: name, sc: sc, removed: true} // goes with the run, unless loaded meanwhile
		s.states[name] = st
	}
	j := &job{st: st, sc: sc, trig: t, adopt: follow}
	s.running++
	if st.running == nil {
		// Else a run of this replica's is in flight too: the overlap happened before this
		// replica knew, and cannot be undone.
		st.running = j
	}
	s.wg.Add(1)
	go s.execute(j)
	return nil
}

// withLabels is sc with extra labels added, sc itself when there are none; sc is not changed
// (other runs share it). A key sc has keeps sc's value: a run's labels add to its scenario's,
// they do not rewrite what reports and notifications group by.
func withLabels(sc *scenarios.Scenario, extra map[string]string) *scenarios.Scenario {
	if len(extra) == 0 {
		return sc
	}
	c := *sc
	c.Metadata.Labels = make(map[string]string, len(sc.Metadata.Labels)+len(extra))
	for k, v := range extra {
		c.Metadata.Labels[k] = v
	}
	for k, v := range sc.Metadata.Labels {
		c.Metadata.Labels[k] = v
	}
	return &c
}

func (s *Scheduler) where(j *job) string {
	if j.st.running == j {
		return "running"
	}
	return "queued for a free slot"
}

// enqueueLocked starts j, or queues it behind the others when MaxConcurrent drills run.
func (s *Scheduler) enqueueLocked(j *job) {
	if s.running < s.opts.MaxConcurrent {
		s.startLocked(j)
		return
	}
	j.st.queued = j
	s.queue = append(s.queue, j)
	s.log.Info("drill queued", "scenario", j.st.name, "id", j.trig.ID, "trigger", j.trig.Kind,
		"waiting", len(s.queue), "maxConcurrent", s.opts.MaxConcurrent)
}

func (s *Scheduler) startLocked(j *job) {
	s.running++
	j.st.running = j
	if j.st.queued == j {
		j.st.queued = nil
	}
	s.wg.Add(1)
	go s.execute(j)
}

// execute runs j and frees its slot.
func (s *Scheduler) execute(j *job) {
	defer s.wg.Done()
	name := j.st.name
	attrs := []any{"scenario", name, "id", j.trig.ID, "trigger", j.trig.Kind}
	if !j.trig.ScheduledFor.IsZero() {
		attrs = append(attrs, "scheduledFor", j.trig.ScheduledFor)
	}
	run := s.opts.Run
	if j.adopt != nil {
		run = j.adopt
		s.log.Info("drill adopted: another replica started it and no longer follows it", attrs...)
	} else {
		s.log.Info("drill started", attrs...)
	}
	if s.opts.OnStart != nil {
		s.opts.OnStart(j.sc, j.trig)
	}
	rec, err := run(s.runCtx, j.sc, j.trig)
	switch {
	case err != nil && isDuplicate(err):
		s.log.Info("scheduled run already in the history: another replica has it", attrs...)
	case errors.Is(err, ErrNotOurs):
		s.log.Info("adopted run left to another replica", append(attrs, "why", err.Error())...)
	case rec == nil:
		if err == nil {
			err = errors.New("the drill returned no record")
		}
		s.log.Error("drill could not be carried out", append(attrs, "err", err)...)
		r := s.record(j.sc, j.trig, drill.Error, err.Error())
		s.finish(r)
	default:
		if err != nil {
			s.log.Error("drill ended with an error", append(attrs, "result", rec.Result, "err", err)...)
		}
		s.log.Info("drill finished", append(attrs, "result", rec.Result)...)
		s.onFinish(rec)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	if j.st.running == j {
		j.st.running = nil
	}
	if j.st.removed && j.st.busy() == nil && s.states[name] == j.st {
		delete(s.states, name)
	}
	for s.running < s.opts.MaxConcurrent && len(s.queue) > 0 {
		next := s.queue[0]
		s.queue = s.queue[1:]
		s.startLocked(next)
	}
}

// isDuplicate says err is the history refusing a second run of one scheduled time.
func isDuplicate(err error) bool {
	return errors.Is(err, history.ErrDuplicateSchedule)
}

// record builds a final record for a run the scheduler decided about without running it.
func (s *Scheduler) record(sc *scenarios.Scenario, t Trigger, result drill.Result, msg string) *drill.Record {
	now := s.now().UTC()
	id := t.ID
	if id == "" {
		id = drill.NewRunID(now)
	}
	r := &drill.Record{
		ID: id, Scenario: sc.Metadata.Name, Labels: sc.Metadata.Labels, Trigger: t.Kind,
		Operator: t.Operator, Result: result, Message: msg, StartedAt: now, FinishedAt: &now,
		Runner: s.opts.Runner, Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{},
		Checks: []drill.CheckRecord{},
	}
	if !t.ScheduledFor.IsZero() {
		at := t.ScheduledFor.UTC()
		r.ScheduledFor = &at
	}
	return r
}

// finish stores r and passes it on; it reports false when another replica has r's
// scheduled time, in which case nothing happened.
func (s *Scheduler) finish(r *drill.Record) bool {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	attrs := []any{"scenario", r.Scenario, "id", r.ID, "result", r.Result}
	if r.ScheduledFor != nil {
		attrs = append(attrs, "scheduledFor", *r.ScheduledFor)
	}
	if err := s.opts.History.Finish(ctx, r); err != nil {
		if isDuplicate(err) {
			s.log.Info("scheduled run already in the history: another replica has it", attrs...)
			return false
		}
		// Still passed on: metrics and notifications should see the run even when the
		// history cannot keep it.
		s.log.Error("could not record the run in the history", append(attrs, "err", err)...)
	}
	s.log.Info("drill "+string(r.Result), append(attrs, "message", r.Message)...)
	s.onFinish(r)
	return true
}

func (s *Scheduler) onFinish(r *drill.Record) {
	if s.opts.OnFinish != nil {
		s.opts.OnFinish(r)
	}
}

// Scenarios returns the status of every scenario, sorted by name.
func (s *Scheduler) Scenarios() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]Status, 0, len(s.states)+len(s.broken))
	for _, st := range s.states {
		if st.removed {
			continue
		}
		sp := st.sc.Spec
		tz := sp.TimeZone
		if tz == "" {
			tz = scenarios.DefaultTimeZone
		}
		v := Status{
			Name: st.name, File: st.file, Schedule: sp.Schedule, TimeZone: tz,
			Err: joinErr(st.err, st.schedErr), Labels: st.sc.Metadata.Labels,
		}
		if st.sched != nil {
			if n1 := st.sched.Next(now); !n1.IsZero() {
				if n2 := st.sched.Next(n1); !n2.IsZero() {
					v.Interval = n2.Sub(n1)
				}
			}
			if s.active {
				v.NextRun = st.next
			}
		}
		if st.running != nil {
			v.Running = st.running.trig.ID
		}
		if st.queued != nil {
			v.Queued = 1
		}
		out = append(out, v)
	}
	out = append(out, s.broken...)
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Shutdown stops scheduling, waits for drills in flight until ctx is done, then cancels
// them and waits for their cleanup and records. Queued runs that never started are dropped
// (the API's trigger caller was told only an id; they are recorded as aborted).
//
// It returns nil also when drills had to be aborted: that is what the grace period is for,
// and it is logged. Trigger answers ErrStopped from the moment Shutdown is called.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	queued := s.queue
	s.queue = nil
	for _, j := range queued {
		j.st.queued = nil
		if j.st.removed && j.st.busy() == nil && s.states[j.st.name] == j.st {
			delete(s.states, j.st.name)
		}
	}
	inFlight := s.running
	s.mu.Unlock()
	s.poke()

	for _, j := range queued {
		s.finish(s.record(j.sc, j.trig, drill.Aborted,
			"firedrill serve shut down before a slot was free (MaxConcurrent drills were running); the drill never started"))
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	if inFlight > 0 {
		s.log.Info("waiting for drills in flight", "drills", inFlight)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	left := s.running
	s.mu.Unlock()
	if left > 0 {
		s.log.Warn("shutdown grace period is over: aborting the drills in flight; their cleanup runs", "drills", left)
	}
	s.cancelRuns()
	<-done
	return nil
}
