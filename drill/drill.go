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

// Driver carries out the parts of a run that depend on the kind of backup. Its errors end the
// run as Error unless wrapped with Fail, which says the backup itself is not good enough.
type Driver interface {
	// Preflight checks, changing nothing, that the drill can run: sources reachable, tools there,
	// the restore target confirmed scratch.
	Preflight(ctx context.Context, rc *RunContext) error
	// Backup takes or locates the backup and describes it; CreatedAt is the age of its data.
	Backup(ctx context.Context, rc *RunContext) (BackupRecord, error)
	// Restore restores the backup into the scratch target.
	Restore(ctx context.Context, rc *RunContext) error
	// Verify runs every check against the restored target; what they find goes in the records.
	Verify(ctx context.Context, rc *RunContext) []CheckRecord
	// NotVerified returns the checks as they stand when Verify could not run (skipped, or judged
	// already, like a snapshot's integrity).
	NotVerified(reason string) []CheckRecord
	// Cleanup removes what the run created. keep asks to leave scratch resources for inspection;
	// the driver says where they are. It runs with its own context, even after an interrupt.
	Cleanup(ctx context.Context, rc *RunContext, keep bool) error
	// Plan describes what a run would do, without doing it.
	Plan() Plan
}

// Targeter is implemented by drivers that can say where they restored; the runner records it.
type Targeter interface {
	Target() *TargetRecord
}

// RunContext is what a driver knows about the run it serves.
type RunContext struct {
	ID       string
	Scenario *scenarios.Scenario
	Progress Progress
	// WorkDir is a private directory for the run's files, removed at cleanup unless kept.
	WorkDir string
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

// Plan is what a run would do, for `firedrill plan`.
type Plan struct {
	Scenario   string      `json:"scenario"`
	Backup     []string    `json:"backup"`
	Restore    []string    `json:"restore"`
	Isolation  []string    `json:"isolation"`
	Checks     []PlanCheck `json:"checks"`
	Objectives []string    `json:"objectives"`
	Cleanup    []string    `json:"cleanup"`
	// Writes lists everything the run would write outside its scratch target.
	Writes []string `json:"writes"`
}

// PlanCheck is one check as a plan shows it.
type PlanCheck struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description"`
}
