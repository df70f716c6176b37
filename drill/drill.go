// Package drill runs disaster-recovery drills: the steps preflight → backup → restore → verify →
// cleanup → record around a Driver that knows one kind of backup, with timeouts, RTO and RPO,
// objectives and a result. Cleanup always runs, also after failure, timeout or interrupt.
package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// Driver drills one kind of backup. The CLI and the service register one per kind in a
// Registry; the engine knows nothing else of etcd, Velero or any other backup.
type Driver interface {
	// Kind is the scenario's spec.backup field this driver drills: "etcd", "velero".
	Kind() string
	// NewRun prepares one drill of sc and returns its state, which lives only as long as that run.
	// An error says the scenario cannot be drilled as written (a check that does not apply), before
	// anything was touched.
	NewRun(sc *scenarios.Scenario, rc *RunContext) (Run, error)
}

// Run is one drill by one driver. The engine calls Preflight, Backup, Restore and Checks in
// order while each succeeds, and Cleanup always, on its own clock. Errors end the run as Error
// unless wrapped with Fail (the backup itself is not good enough) or Refuse (unsafe as asked).
type Run interface {
	// Preflight checks, changing nothing, that the drill can run: sources reachable, tools there,
	// the restore target confirmed scratch.
	Preflight(ctx context.Context) error
	// Backup takes or locates the backup and describes it; CreatedAt is the age of its data.
	Backup(ctx context.Context) (BackupRecord, error)
	// Restore restores the backup into the scratch target.
	Restore(ctx context.Context) error
	// Checks binds the scenario's checks, in order, to what this run restored. With restored false
	// the restore did not complete: a check that can still be judged (an etcd snapshot's integrity,
	// once inspected) keeps its Run; the others have none and are recorded as skipped.
	Checks(restored bool) []Check
	// Target says where the backup was restored; nil when the restore did not start.
	Target() *TargetRecord
	// Cleanup removes what the run created. keep asks to leave scratch resources for inspection;
	// the run says where they are. It runs with its own context, even after an interrupt.
	Cleanup(ctx context.Context, keep bool) error
	// Plan adds what the run would do to p: the backup (the one chosen, after a preflight), where
	// it restores, how it isolates, what cleanup removes and what it writes outside its target.
	// The engine adds the checks, objectives and cleanup policy.
	Plan(p *Plan)
}

// Grouped is implemented by a Run that restores in ordered groups (a Velero drill's
// spec.restore.order): each group is restored and its checks pass before the next one starts.
// The engine then calls RestoreGroup for each group instead of Restore, and Checks only for the
// checks of the whole, after the last group; RTO runs from the first group's restore to the last
// check. A group that does not restore or pass stops the run there: the groups after it are
// skipped, saying why.
type Grouped interface {
	// Groups names the groups in order; none means the run is not grouped.
	Groups() []string
	RestoreGroup(ctx context.Context, i int) error
	// GroupChecks binds group i's checks, as Checks does.
	GroupChecks(i int, restored bool) []Check
}

// Check is one of a scenario's checks bound to what a run restored.
type Check struct {
	Name, Type string
	// Description says what the check proves, for plans.
	Description string
	// Run carries the check out. Nil when it cannot be judged (the restore did not complete).
	Run func(ctx context.Context) CheckOutcome
}

// CheckOutcome is what a check found: a result (Passed, Failed, Error), a message a person can act
// on, and the measured values behind it.
type CheckOutcome struct {
	Result   Result
	Message  string
	Evidence map[string]any
}

// RunContext is what a driver knows about the run it serves.
type RunContext struct {
	ID       string
	Scenario *scenarios.Scenario
	Progress Progress
	// WorkDir is a private directory for the run's files, removed at cleanup unless kept.
	WorkDir string
	// Seed, when set, repeats an earlier random choice of the backup (latestFrom.select: random,
	// firedrill run --seed); nil draws a fresh one.
	Seed *uint64
	// Expires is when nothing of the run can still be in use: its timeout, its cleanup's and an
	// hour to spare after its start. What the run creates outside WorkDir carries it (the
	// annotation firedrill.dev/expires), and the janitor removes it after that.
	Expires time.Time
}

// ExpiryMargin is what RunContext.Expires adds to a run's timeouts.
const ExpiryMargin = time.Hour

// Expiry is rc.Expires or, for a RunContext made without one, the scenario's timeout (default
// 30m) and ExpiryMargin from now.
func (rc *RunContext) Expiry() time.Time {
	if !rc.Expires.IsZero() {
		return rc.Expires
	}
	timeout := 30 * time.Minute
	if rc.Scenario != nil && rc.Scenario.Spec.Timeout.Duration > 0 {
		timeout = rc.Scenario.Spec.Timeout.Duration
	}
	return time.Now().Add(timeout + ExpiryMargin)
}

// Progress receives what a run is doing, for live display.
type Progress interface {
	// Step says a step started.
	Step(name string)
	// Bytes reports bytes moved in the current step; total is 0 when unknown.
	Bytes(done, total int64)
	// Note is a line worth showing a person.
	Note(msg string)
}

// NopProgress discards progress.
type NopProgress struct{}

func (NopProgress) Step(string)        {}
func (NopProgress) Bytes(int64, int64) {}
func (NopProgress) Note(string)        {}

// Recorder stores runs as they happen; drill/history implements it.
type Recorder interface {
	Begin(ctx context.Context, r *Record) error
	Update(ctx context.Context, r *Record) error
	Finish(ctx context.Context, r *Record) error
}

// failure marks an error that shows the backup is not good enough: the run is Failed, not Error.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// Fail marks err as a finding about the backup (corrupt, incomplete), not a problem running the
// drill.
func Fail(err error) error {
	if err == nil {
		return nil
	}
	return &failure{err}
}

// refusal marks an error that refuses the drill as asked: it would write where firedrill must not
// (a mapping onto an existing namespace) or cannot work as written. The CLI exits 2 for it.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// Refuse marks err as a refusal, decided before anything was written.
func Refuse(err error) error {
	if err == nil {
		return nil
	}
	return &refusal{err}
}

// IsRefusal reports whether err, or a run's error, was marked with Refuse.
func IsRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r)
}

// IsFailure reports whether err was marked with Fail.
func IsFailure(err error) bool {
	var f *failure
	return errors.As(err, &f)
}

// NewRunID returns a unique, time-sortable run id such as 20261127-101530-7f3a9c.
func NewRunID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}
