// Package schedule runs drills on their scenarios' cron schedules for `firedrill serve`.
//
// CONTRACT (issue 5): the exported names below are what cmd/firedrill/serve.go and the server
// package are written against. The helper that implements the package may add to them but must
// not change them without telling the others. Bodies marked "not implemented" are placeholders.
package schedule

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// Trigger says why a run starts.
type Trigger struct {
	// ID is the run id, assigned before the run starts (drill.NewRunID); the RunFunc must use it
	// (drill.Runner.ID).
	ID string
	// Kind is "schedule" or "api".
	Kind string
	// ScheduledFor is the cron time of a scheduled run; zero for "api".
	ScheduledFor time.Time
	// Operator is who asked, for "api" runs (from the API's token identity or the request).
	Operator string
}

// RunFunc carries out one drill and records it in the history itself (drill.Runner with a
// Recorder); it returns the final record. ctx is cancelled when the drill must be aborted
// (shutdown grace expired); cleanup still runs (drill.Runner does that).
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
	Now      func() time.Time
	Logger   *slog.Logger
	// Runner identifies this process in skipped and missed records.
	Runner drill.RunnerInfo
}

// Status is one scenario as the API and dashboard show it.
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

// Scheduler schedules scenarios. Safe for concurrent use.
type Scheduler struct{}

// New returns a Scheduler with no scenarios.
func New(opts Options) *Scheduler { panic("not implemented") }

// Update replaces the set of scenarios (the watcher calls it on every change). A run in
// flight keeps the scenario version it started with.
func (s *Scheduler) Update(entries []Entry) { panic("not implemented") }

// Run schedules until ctx is done: it first catches up on runs missed since each scenario's
// LastScheduled (start once within StartingDeadline, else record missed), then starts runs on
// time. serve calls it while this replica is the leader and cancels ctx when leadership is
// lost; runs already started go on. Returns nil when ctx is cancelled.
func (s *Scheduler) Run(ctx context.Context) error { panic("not implemented") }

// Trigger starts a run of the named scenario now (the API's "run now"), on any replica,
// respecting the per-scenario overlap rule (ErrBusy) and the concurrency limit (it may
// queue). It returns the run's id at once.
func (s *Scheduler) Trigger(ctx context.Context, name, operator string) (string, error) {
	panic("not implemented")
}

// Scenarios returns the status of every scenario, sorted by name.
func (s *Scheduler) Scenarios() []Status { panic("not implemented") }

// Shutdown stops scheduling, waits for drills in flight until ctx is done, then cancels
// them and waits for their cleanup and records. Queued runs that never started are dropped
// (the API's trigger caller was told only an id; they are recorded as aborted).
func (s *Scheduler) Shutdown(ctx context.Context) error { panic("not implemented") }

// Watcher keeps the scenarios of one directory.
type Watcher struct{}

// NewWatcher loads every *.yaml / *.yml scenario in dir once; it fails when dir cannot be read
// (a file that does not validate is not an error here: its Entry carries Err).
func NewWatcher(dir string, log *slog.Logger) (*Watcher, error) { panic("not implemented") }

// Entries returns the current set.
func (w *Watcher) Entries() []Entry { panic("not implemented") }

// Run reloads whenever a file in the directory changes (fsnotify, debounced) or reload
// receives (SIGHUP), and calls update with the full set after each reload; it returns when ctx
// is done. A file that no longer validates keeps its last good Scenario with Err set (and the
// error is logged); a deleted file drops it.
func (w *Watcher) Run(ctx context.Context, reload <-chan struct{}, update func([]Entry)) error {
	panic("not implemented")
}
