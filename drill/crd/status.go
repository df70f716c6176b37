package crd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
)

// Runs is what the status writer reads of the history (history.Store has it).
type Runs interface {
	List(ctx context.Context, f history.Filter) ([]drill.Record, error)
}

// StatusOptions are what a StatusWriter reads.
type StatusOptions struct {
	// Scheduled is the scheduler's view (schedule.Scheduler.Scenarios): next runs.
	Scheduled func() []schedule.Status
	// Runs is the history: each scenario's last run.
	Runs Runs
	// Leading reports whether this replica may write; nil: always.
	Leading func() bool
	// Every is how often every Scenario's status is compared with what it should be, besides
	// after each change and run; default 30s.
	Every time.Duration
	// FieldManager names this replica in the managedFields of what it writes; default
	// DefaultFieldManager (FieldManager makes one per replica).
	FieldManager string
	Logger       *slog.Logger
}

// DefaultFieldManager is the field manager of serve's writes to Scenarios and DrillRuns.
const DefaultFieldManager = "firedrill"

// FieldManager is the field manager of one serve replica, DefaultFieldManager/IDENTITY: an
// operator reads in a resource's managedFields which replica wrote its status, and when (kubectl
// get --show-managed-fields). The API server caps the length (128).
func FieldManager(identity string) string {
	if identity == "" {
		return DefaultFieldManager
	}
	m := DefaultFieldManager + "/" + identity
	if len(m) > 128 {
		m = m[:128]
	}
	return m
}

// StatusWriter writes the status of the Source's Scenarios: only while leading, only what
// changed, retried on conflict.
type StatusWriter struct {
	src  *Source
	opts StatusOptions
	log  *slog.Logger
	poke chan struct{}

	// lastRun caches each scenario's last run between history reads; a name is read again
	// after RunFinished. Only Run's goroutine touches it.
	lastRun map[string]*v1alpha1.RunSummary
	stale   chan string
	// staleAll: more runs finished than stale holds; every last run is read again.
	staleAll atomic.Bool
	// startingSince is when Pass first found the scheduler not started yet (zero: it has).
	startingSince time.Time
}

// NewStatusWriter returns a writer for src's Scenarios.
func NewStatusWriter(src *Source, opts StatusOptions) *StatusWriter {
	if opts.Every <= 0 {
		opts.Every = 30 * time.Second
	}
	if opts.FieldManager == "" {
		opts.FieldManager = DefaultFieldManager
	}
	if opts.Leading == nil {
		opts.Leading = func() bool { return true }
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &StatusWriter{src: src, opts: opts, log: log, poke: make(chan struct{}, 1), stale: make(chan string, 64), lastRun: map[string]*v1alpha1.RunSummary{}}
}

// Poke asks for a pass soon: the Scenarios or the schedule changed.
func (w *StatusWriter) Poke() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// RunFinished tells the writer a run of scenario was recorded: its last run is read again.
func (w *StatusWriter) RunFinished(scenario string) {
	select {
	case w.stale <- scenario:
	default:
		w.staleAll.Store(true)
	}
	w.Poke()
}

// Run writes statuses after each Poke and every opts.Every until ctx is done.
func (w *StatusWriter) Run(ctx context.Context) {
	t := time.NewTicker(w.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.poke:
		case <-t.C:
		}
		w.Pass(ctx)
	}
}

// Pass compares every Scenario's status with what it should be and writes those that differ.
func (w *StatusWriter) Pass(ctx context.Context) {
	for drained := false; !drained; {
		select {
		case name := <-w.stale:
			delete(w.lastRun, name)
		default:
			drained = true
		}
	}
	if w.staleAll.Swap(false) {
		clear(w.lastRun)
	}
	if !w.opts.Leading() {
		return
	}
	next := map[string]time.Time{}
	starting := false
	for _, st := range w.opts.Scheduled() {
		next[st.File] = st.NextRun
		// A schedule without a next run: the scheduler has not started yet (it just became
		// leader); look again in a moment rather than at the next interval.
		starting = starting || (st.Schedule != "" && st.Err == "" && st.NextRun.IsZero())
	}
	if starting {
		time.AfterFunc(time.Second, w.Poke)
		// Writing now would write every status twice, without and then with its next run.
		if w.startingSince.IsZero() {
			w.startingSince = time.Now()
		}
		if time.Since(w.startingSince) < maxStartWait {
			return
		}
	} else {
		w.startingSince = time.Time{}
	}
	items := w.src.snapshot()
	wants := make([]v1alpha1.ScenarioStatus, len(items))
	for i, it := range items {
		wants[i] = w.desired(ctx, it, next[it.entry.File])
	}
	// A few writes at once: each waits mostly on the API server's round trip.
	var wg sync.WaitGroup
	todo := make(chan int)
	for range writers {
		wg.Go(func() {
			for i := range todo {
				if err := w.write(ctx, items[i], wants[i]); err != nil && ctx.Err() == nil {
					w.log.Warn("could not write a Scenario's status; retried at the next pass", "scenario", items[i].key(), "err", err)
				}
			}
		})
	}
	for i := range items {
		if ctx.Err() != nil {
			break
		}
		todo <- i
	}
	close(todo)
	wg.Wait()
}

// writers is how many status writes a pass has in flight.
const writers = 4

// maxStartWait bounds how long statuses wait for the scheduler's first next runs.
const maxStartWait = 30 * time.Second

// desired is it's status, conditions without their transition times.
func (w *StatusWriter) desired(ctx context.Context, it item, nextRun time.Time) v1alpha1.ScenarioStatus {
	st := v1alpha1.ScenarioStatus{ObservedGeneration: it.generation}
	cond := func(typ string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		st.Conditions = append(st.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: it.generation})
	}
	if it.problem == "" {
		cond(v1alpha1.ConditionValid, true, "Validated", "passes firedrill scenario validate")
	} else {
		cond(v1alpha1.ConditionValid, false, "Invalid", it.problem)
	}
	switch {
	case it.takenBy != "":
		cond(v1alpha1.ConditionReady, false, "NameTaken", fmt.Sprintf("metadata.name %q is also the name of %s: not scheduled; rename this Scenario", it.name, it.takenBy))
	case it.entry.Scenario == nil:
		cond(v1alpha1.ConditionReady, false, "Invalid", "no version of this Scenario was ever valid: nothing is scheduled")
	case it.problem != "":
		cond(v1alpha1.ConditionReady, true, "LastValidVersion", "the current version is invalid; the last valid one stays scheduled")
	default:
		cond(v1alpha1.ConditionReady, true, "Loaded", "loaded by serve")
	}
	if it.entry.Scenario != nil && it.takenBy == "" {
		name := it.entry.Scenario.Metadata.Name
		run, ok := w.lastRun[name]
		if !ok {
			var err error
			if run, err = lastRun(ctx, w.opts.Runs, name); err != nil {
				w.log.Warn("could not read a Scenario's last run", "scenario", it.key(), "err", err)
			} else {
				w.lastRun[name] = run
			}
		}
		st.LastRun = run
		if !nextRun.IsZero() {
			st.NextRunAt = &metav1.Time{Time: nextRun.UTC().Truncate(time.Second)}
		}
	}
	switch {
	case st.LastRun == nil:
		st.Conditions = append(st.Conditions, metav1.Condition{Type: v1alpha1.ConditionLastRunPassed, Status: metav1.ConditionUnknown,
			Reason: "NoRun", Message: "no run in the history yet", ObservedGeneration: it.generation})
	case st.LastRun.Result == string(drill.Passed):
		cond(v1alpha1.ConditionLastRunPassed, true, "Passed", "run "+st.LastRun.ID+" passed")
	default:
		cond(v1alpha1.ConditionLastRunPassed, false, reasonOf(st.LastRun.Result), clip("run "+st.LastRun.ID+": "+st.LastRun.Reason, maxMessage))
	}
	return st
}

// lastRun is the newest finished run of scenario in the history, skipped runs aside; nil when
// there is none.
func lastRun(ctx context.Context, runs Runs, scenario string) (*v1alpha1.RunSummary, error) {
	const window = 20
	recs, err := runs.List(ctx, history.Filter{Scenario: scenario, Limit: window})
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Result == drill.Running || r.Result == drill.Skipped {
			continue
		}
		return Summary(&r), nil
	}
	return nil, nil
}

// Summary is a record as status.lastRun shows it.
func Summary(r *drill.Record) *v1alpha1.RunSummary {
	s := &v1alpha1.RunSummary{ID: r.ID, Result: string(r.Result), Trigger: r.Trigger, StartedAt: metav1.Time{Time: r.StartedAt.UTC().Truncate(time.Second)},
		RTO: seconds(r.RTOSeconds), RPO: seconds(r.RPOSeconds), Reason: clip(r.Message, maxMessage), RecordHash: r.Hash}
	if r.FinishedAt != nil {
		s.FinishedAt = &metav1.Time{Time: r.FinishedAt.UTC().Truncate(time.Second)}
	}
	return s
}

// seconds writes a measured duration as Go does ("1m32s"): to the second from a minute on,
// else to a tenth of a second.
func seconds(s *float64) string {
	if s == nil {
		return ""
	}
	d := time.Duration(*s * float64(time.Second))
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// reasonOf makes a result a condition reason (CamelCase).
func reasonOf(result string) string {
	if result == "" {
		return "Unknown"
	}
	return string(result[0]-'a'+'A') + result[1:]
}

// write updates it's status to want when it differs, keeping the transition time of every
// condition whose status did not change.
func (w *StatusWriter) write(ctx context.Context, it item, want v1alpha1.ScenarioStatus) error {
	res := w.src.client.Resource(v1alpha1.ScenarioResource).Namespace(it.namespace)
	u, fresh := it.obj, false
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// The informer's copy first: a pass that changes nothing costs the API server nothing.
		if fresh {
			var err error
			if u, err = res.Get(ctx, it.name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return nil // deleted since
			} else if err != nil {
				return err
			}
		}
		fresh = true
		u = u.DeepCopy()
		var cur v1alpha1.ScenarioStatus
		if raw, ok := u.Object["status"].(map[string]any); ok {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &cur); err != nil {
				return fmt.Errorf("read status: %w", err)
			}
		}
		next := want
		next.Conditions = slices.Clone(cur.Conditions)
		now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
		for _, c := range want.Conditions {
			c.LastTransitionTime = now
			meta.SetStatusCondition(&next.Conditions, c)
		}
		if sameJSON(cur, next) {
			return nil
		}
		raw, err := toMap(next)
		if err != nil {
			return err
		}
		u.Object["status"] = raw
		_, err = res.UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: w.opts.FieldManager})
		return err
	})
}

// sameJSON compares two statuses as the API server would store them.
func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func toMap(st any) (map[string]any, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}
