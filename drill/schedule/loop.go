package schedule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/firedrill-dev/firedrill/drill"
)

// maxSleep bounds one wait of the loop, so that a wall clock that jumps (NTP, a suspended
// machine) is noticed within a minute; timers follow the monotonic clock.
const maxSleep = time.Minute

// maxCount bounds the counting of missed times: a minutely schedule missed for a month is
// reported as "more than", not counted for seconds.
const maxCount = 10000

// Run schedules until ctx is done: it first catches up on runs missed since each scenario's
// LastScheduled (start once within StartingDeadline, else record missed), then starts runs on
// time. serve calls it while this replica is the leader and cancels ctx when leadership is
// lost; runs already started go on. Returns nil when ctx is cancelled (or after Shutdown).
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	if s.active {
		s.mu.Unlock()
		return errors.New("schedule: Run is already running: call it once per leadership term")
	}
	s.active = true
	var names []string
	for name, st := range s.states {
		if !st.removed && st.sched != nil {
			names = append(names, name)
		}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active = false
		for _, st := range s.states {
			st.last, st.next = time.Time{}, time.Time{}
		}
		s.mu.Unlock()
	}()

	// Where each scenario's schedule stands in the history: another replica may have run it
	// since this one last led.
	lasts := map[string]time.Time{}
	for _, name := range names {
		last, err := s.opts.History.LastScheduled(ctx, name)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Error("cannot read the last scheduled run from the history: scheduling from now, without catching up",
				"scenario", name, "err", err)
			continue
		}
		lasts[name] = last
	}
	s.mu.Lock()
	now := s.now()
	for _, st := range s.states {
		if st.removed || st.sched == nil {
			continue
		}
		from := lasts[st.name]
		if st.lastFired.After(from) {
			from = st.lastFired
		}
		if from.IsZero() || from.After(now) {
			from = now
		}
		st.last, st.next = from, st.sched.Next(from)
	}
	s.mu.Unlock()

	for {
		acts, until, stopped := s.due()
		if stopped {
			return nil
		}
		s.act(acts)
		if len(acts) > 0 {
			continue // acting took time; look again before sleeping
		}
		var c <-chan time.Time
		stop := func() bool { return false }
		if !until.IsZero() {
			c, stop = s.timer(until)
		}
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-s.wake:
		case <-c:
		}
		stop()
	}
}

// action is what the loop does about one scenario's due times, decided under the lock and
// carried out outside it (records and runs take time).
type action struct {
	st     *state
	missed *drill.Record // older times, or all of them: one record
	start  *job          // the newest time, within the starting deadline
}

// due decides about every scenario whose next time has come, and returns when the loop must
// look again (zero: no scenario is scheduled), or that Shutdown has begun.
func (s *Scheduler) due() ([]action, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, time.Time{}, true
	}
	now := s.now()
	var acts []action
	var until time.Time
	for _, st := range s.states {
		if st.removed || st.sched == nil || st.next.IsZero() {
			continue
		}
		if !st.next.After(now) {
			acts = append(acts, s.decide(st, now))
		}
		if !st.next.IsZero() && (until.IsZero() || st.next.Before(until)) {
			until = st.next
		}
	}
	if limit := now.Add(maxSleep); !until.IsZero() && until.After(limit) {
		until = limit
	}
	// Runs due at one time queue in a stable order, not the map's.
	slices.SortFunc(acts, func(a, b action) int {
		if c := a.st.last.Compare(b.st.last); c != 0 {
			return c
		}
		return strings.Compare(a.st.name, b.st.name)
	})
	return acts, until, false
}

// decide handles the times of st in (st.last, now]: in normal operation one, just due, which
// is started; after a gap the newest is started when still within the starting deadline and
// the rest go into one missed record.
func (s *Scheduler) decide(st *state, now time.Time) action {
	d := dueTimes(st.sched, st.last, now)
	st.last = d.newest
	st.next = st.sched.Next(d.newest)
	if d.newest.After(st.lastFired) {
		st.lastFired = d.newest
	}
	a := action{st: st}
	deadline := s.opts.StartingDeadline
	const why = "while firedrill serve was down or not the leader"
	if now.Sub(d.newest) <= deadline {
		a.start = &job{st: st, sc: st.sc, trig: Trigger{ID: drill.NewRunID(now), Kind: KindSchedule, ScheduledFor: d.newest}}
		if d.count > 1 {
			msg := fmt.Sprintf("missed %s %s; only the newest, %s, was started (starting deadline %s)",
				d.span(false), why, stamp(d.newest), deadline)
			a.missed = s.record(st.sc, Trigger{Kind: KindSchedule, ScheduledFor: d.previous}, drill.Missed, msg)
		}
		return a
	}
	msg := fmt.Sprintf("missed %s %s; the newest is more than the starting deadline (%s) ago, so none was started",
		d.span(true), why, deadline)
	a.missed = s.record(st.sc, Trigger{Kind: KindSchedule, ScheduledFor: d.newest}, drill.Missed, msg)
	return a
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// act writes the missed records, then starts the runs (or records them skipped when the
// scenario is busy). The missed record goes first: its time is older.
func (s *Scheduler) act(acts []action) {
	for _, a := range acts {
		if a.missed != nil {
			s.finish(a.missed)
		}
		if a.start == nil {
			continue
		}
		s.mu.Lock()
		if s.stopped {
			// Not recorded: the next leader's catch-up finds this time unhandled.
			s.mu.Unlock()
			continue
		}
		var skip string
		if busy := a.st.busy(); busy != nil {
			skip = fmt.Sprintf("previous run %s still %s", busy.trig.ID, s.where(busy))
		} else {
			s.enqueueLocked(a.start)
		}
		s.mu.Unlock()
		if skip != "" {
			s.finish(s.record(a.start.sc, a.start.trig, drill.Skipped, skip))
		}
	}
}

// due times of one schedule in (last, now].
type dueSet struct {
	count    int  // how many, at most maxCount
	more     bool // more than count
	first    time.Time
	previous time.Time // the one before newest; zero when count is 1
	newest   time.Time
}

// span says which times were missed: all of them, or all but the newest.
func (d dueSet) span(all bool) string {
	n, last := d.count, d.newest
	if !all {
		n, last = n-1, d.previous
	}
	switch {
	case d.more:
		return fmt.Sprintf("more than %d scheduled runs from %s to %s", n, stamp(d.first), stamp(last))
	case n == 1:
		return "the scheduled run of " + stamp(last)
	}
	return fmt.Sprintf("%d scheduled runs from %s to %s", n, stamp(d.first), stamp(last))
}

// dueTimes returns the times of sched in (last, now]; the caller knows there is at least one.
func dueTimes(sched cron.Schedule, last, now time.Time) dueSet {
	d := dueSet{first: sched.Next(last)}
	if every, ok := sched.(cron.ConstantDelaySchedule); ok {
		// @every runs on a grid from last: count it instead of walking it.
		n := int64(now.Sub(d.first)/every.Delay) + 1
		d.newest = d.first.Add(time.Duration(n-1) * every.Delay)
		if n > 1 {
			d.previous = d.newest.Add(-every.Delay)
		}
		d.count, d.more = int(min(n, maxCount)), n > maxCount
		return d
	}
	for t := d.first; !t.IsZero() && !t.After(now); t = sched.Next(t) {
		if d.count == maxCount {
			d.more = true
			break
		}
		d.count++
		d.previous, d.newest = d.newest, t
	}
	if d.more {
		// Too many to walk to now: find the newest two by walking windows back from now.
		for w := 24 * time.Hour; ; w *= 8 {
			from := now.Add(-w)
			if !from.After(d.first) {
				from = d.first.Add(-time.Second)
			}
			var prev, newest time.Time
			for t := sched.Next(from); !t.IsZero() && !t.After(now); t = sched.Next(t) {
				prev, newest = newest, t
			}
			if !prev.IsZero() {
				d.previous, d.newest = prev, newest
				break
			}
		}
	}
	return d
}
