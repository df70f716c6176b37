package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// Step names, in order.
const (
	StepPreflight = "preflight"
	StepBackup    = "backup"
	StepRestore   = "restore"
	StepVerify    = "verify"
	StepCleanup   = "cleanup"
	StepRecordRun = "record"
)

// Runner executes drills. Its zero value works: no recording, no progress, the system clock.
type Runner struct {
	// Recorder stores the run as it happens; nil records nothing.
	Recorder Recorder
	Progress Progress
	Now      func() time.Time
	// Trigger (manual, schedule, api) and Operator (user@host) go into the record.
	Trigger, Operator string
	// ID, when set, is the run's id (the scheduler hands out ids before a run starts, so that
	// the API can answer with it); else a new one. Set it on a copy of the Runner per run.
	ID string
	// ScheduledFor goes into the record of a scheduled run (see Record.ScheduledFor).
	ScheduledFor *time.Time
	Runner       RunnerInfo
	// WorkRoot holds each run's work directory; default os.TempDir().
	WorkRoot string
	// PreflightTimeout and CleanupTimeout bound those steps; defaults 2m and 5m. The others share
	// the scenario's spec.timeout. Cleanup has its own clock: it runs after the run's deadline and
	// after an interrupt.
	PreflightTimeout, CleanupTimeout time.Duration
	// HeartbeatEvery is how often a running record is updated; default 15s.
	HeartbeatEvery time.Duration
}

// ErrRecord wraps a failure to store the run's evidence.
var ErrRecord = errors.New("could not record the run")

// Run carries out one drill of sc with d. It always returns the record, also when the drill
// failed; the drill's verdict is rec.Result. The error says the record could not be stored
// (ErrRecord), or that the drill was refused as asked (IsRefusal): both are also in the record.
func (r *Runner) Run(ctx context.Context, sc *scenarios.Scenario, d Driver) (*Record, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	progress := r.Progress
	if progress == nil {
		progress = NopProgress{}
	}
	run := &run{
		rec: &Record{
			ID: orDefault(r.ID, NewRunID(now())), ScheduledFor: r.ScheduledFor, Scenario: sc.Metadata.Name, Labels: sc.Metadata.Labels, Annotations: sc.Metadata.Annotations,
			Trigger: orDefault(r.Trigger, "manual"), Operator: r.Operator, Result: Running,
			StartedAt: now().UTC(), Runner: r.Runner, Objectives: []ObjectiveRecord{}, Steps: []StepRecord{}, Checks: []CheckRecord{},
		},
		now: now, progress: progress, recorder: r.Recorder,
	}
	rec := run.rec

	workDir, err := os.MkdirTemp(r.WorkRoot, "firedrill-"+rec.ID+"-")
	if err != nil {
		return rec, fmt.Errorf("create work directory: %w", err)
	}
	rc := &RunContext{ID: rec.ID, Scenario: sc, Progress: progress, WorkDir: workDir}

	if run.recorder != nil {
		if err := run.recorder.Begin(ctx, run.copy()); err != nil {
			os.RemoveAll(workDir)
			return rec, fmt.Errorf("%w: %w", ErrRecord, err)
		}
		stop := run.heartbeat(ctx, orDuration(r.HeartbeatEvery, 15*time.Second))
		defer stop()
	}

	timeout := sc.Spec.Timeout.Duration
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	runCtx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("drill timed out after %s (spec.timeout)", timeout))
	defer cancel()

	var (
		restoreStart, verifyEnd time.Time
		stepErr                 error // the first step that did not complete
	)
	stepErr = run.step(runCtx, StepPreflight, orDuration(r.PreflightTimeout, 2*time.Minute), func(ctx context.Context) error {
		return d.Preflight(ctx, rc)
	})
	if stepErr == nil {
		stepErr = run.step(runCtx, StepBackup, 0, func(ctx context.Context) error {
			b, err := d.Backup(ctx, rc)
			run.mu.Lock()
			rec.Backup = b
			run.mu.Unlock()
			return err
		})
	}
	if stepErr == nil {
		restoreStart = now()
		stepErr = run.step(runCtx, StepRestore, 0, func(ctx context.Context) error { return d.Restore(ctx, rc) })
	}
	var checks []CheckRecord
	if stepErr == nil {
		_ = run.step(runCtx, StepVerify, 0, func(ctx context.Context) error {
			checks = d.Verify(ctx, rc)
			return checksError(checks)
		})
		verifyEnd = now()
	} else {
		checks = d.NotVerified(fmt.Sprintf("not run: the %s step did not complete", run.lastStep()))
		run.skip(StepVerify, "skipped: "+run.lastStep()+" did not complete")
	}
	run.mu.Lock()
	rec.Checks = checks
	run.mu.Unlock()

	// The verdict on the backup is known before cleanup, which needs it for OnSuccess.
	interrupted := ctx.Err() != nil
	result, message := judge(interrupted, stepErr, checks)
	run.measure(sc.Spec.Objectives, restoreStart, verifyEnd, result)
	if result == Passed {
		for _, o := range rec.Objectives {
			if !o.Met {
				result, message = Failed, fmt.Sprintf("objective %s not met: %s", strings.ToUpper(o.Name), describeObjective(o))
				break
			}
		}
	}

	keep := keepScratch(sc.Spec.Cleanup.Policy, result)
	if t, ok := d.(Targeter); ok && !restoreStart.IsZero() {
		if tr := t.Target(); tr != nil {
			tr.Kept = keep
			run.mu.Lock()
			rec.Target = tr
			run.mu.Unlock()
		}
	}
	cleanupCtx, cancelCleanup := context.WithTimeout(context.WithoutCancel(ctx), orDuration(r.CleanupTimeout, 5*time.Minute))
	cleanupErr := run.step(cleanupCtx, StepCleanup, 0, func(ctx context.Context) error {
		err := d.Cleanup(ctx, rc, keep)
		if !keep {
			if rmErr := os.RemoveAll(workDir); rmErr != nil && err == nil {
				err = fmt.Errorf("remove work directory %s: %w", workDir, rmErr)
			}
		} else {
			progress.Note("kept for inspection (cleanup policy " + string(sc.Spec.Cleanup.Policy) + "): " + workDir)
		}
		return err
	})
	cancelCleanup()
	if cleanupErr != nil {
		if result == Passed {
			result = Error
		}
		message = joinMessage(message, "cleanup: "+cleanupErr.Error())
	}

	run.mu.Lock()
	rec.Result, rec.Message = result, message
	run.mu.Unlock()

	// The record step stores the final record; it cannot record its own end, so it is marked
	// passed when storing succeeded.
	start := now().UTC()
	run.mu.Lock()
	fin := start
	rec.Steps = append(rec.Steps, StepRecord{Name: StepRecordRun, Result: Passed, StartedAt: start, FinishedAt: &fin})
	end := now().UTC()
	rec.FinishedAt = &end
	run.mu.Unlock()
	progress.Step(StepRecordRun)
	if run.recorder != nil {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer rcancel()
		final := run.copy()
		if err := run.recorder.Finish(rctx, final); err != nil {
			run.mu.Lock()
			rec.Steps[len(rec.Steps)-1].Result = Error
			rec.Steps[len(rec.Steps)-1].Message = err.Error()
			run.mu.Unlock()
			return rec, fmt.Errorf("%w %s: %w", ErrRecord, rec.ID, err)
		}
		// The recorder links the record into the history's hash chain; show where.
		run.mu.Lock()
		rec.PrevHash, rec.Hash, rec.Signature = final.PrevHash, final.Hash, final.Signature
		run.mu.Unlock()
	}
	if IsRefusal(stepErr) {
		return rec, stepErr
	}
	return rec, nil
}

// run is the mutable state of one Run, shared with the heartbeat.
type run struct {
	mu       sync.Mutex
	rec      *Record
	now      func() time.Time
	progress Progress
	recorder Recorder
}

// step runs f as the named step with its own timeout (0: the parent's), recording it. A panic in a
// driver becomes the step's error rather than killing the process before cleanup.
func (r *run) step(ctx context.Context, name string, timeout time.Duration, f func(context.Context) error) (err error) {
	start := r.now().UTC()
	r.mu.Lock()
	r.rec.Steps = append(r.rec.Steps, StepRecord{Name: name, Result: Running, StartedAt: start})
	i := len(r.rec.Steps) - 1
	r.mu.Unlock()
	r.progress.Step(name)

	sctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		sctx, cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%s timed out after %s", name, timeout))
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%s: internal error: %v", name, p)
			}
		}()
		err = f(sctx)
	}()
	// A timeout or interrupt shows as the cause, not a bare "context canceled".
	if err != nil && sctx.Err() != nil && errors.Is(err, sctx.Err()) {
		err = fmt.Errorf("%w: %w", context.Cause(sctx), err)
	}
	cancel()

	end := r.now().UTC()
	res, msg := Passed, ""
	switch {
	case err == nil:
	case errors.Is(err, errChecksFailed):
		res, msg = Failed, err.Error()
	case errors.Is(err, errChecksErrored):
		res, msg = Error, err.Error()
	case IsFailure(err):
		res, msg = Failed, err.Error()
	case errors.Is(ctx.Err(), context.Canceled):
		res, msg = Aborted, "interrupted: "+err.Error()
	default:
		res, msg = Error, err.Error()
	}
	r.mu.Lock()
	r.rec.Steps[i].Result, r.rec.Steps[i].Message, r.rec.Steps[i].FinishedAt = res, msg, &end
	r.mu.Unlock()
	if err != nil {
		r.progress.Note(fmt.Sprintf("%s: %s", name, msg))
	}
	return err
}

func (r *run) skip(name, msg string) {
	now := r.now().UTC()
	r.mu.Lock()
	r.rec.Steps = append(r.rec.Steps, StepRecord{Name: name, Result: Skipped, StartedAt: now, FinishedAt: &now, Message: msg})
	r.mu.Unlock()
}

func (r *run) lastStep() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.rec.Steps) - 1; i >= 0; i-- {
		if r.rec.Steps[i].Result != Passed && r.rec.Steps[i].Result != Skipped {
			return r.rec.Steps[i].Name
		}
	}
	return "previous"
}

// copy returns a snapshot of the record safe to hand to the recorder while the run goes on.
func (r *run) copy() *Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := *r.rec
	c.Steps = slices.Clone(r.rec.Steps)
	c.Checks = slices.Clone(r.rec.Checks)
	c.Objectives = slices.Clone(r.rec.Objectives)
	return &c
}

func (r *run) heartbeat(ctx context.Context, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				uctx, ucancel := context.WithTimeout(ctx, 10*time.Second)
				_ = r.recorder.Update(uctx, r.copy())
				ucancel()
			}
		}
	}()
	return func() { cancel(); <-done }
}

// measure fills RTO, RPO and the objectives. RPO is the data's age when the restore started; RTO
// runs from the restore's start until every check had passed, so it exists only for a pass.
func (r *run) measure(o scenarios.Objectives, restoreStart, verifyEnd time.Time, result Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.rec
	if !restoreStart.IsZero() && rec.Backup.CreatedAt != nil {
		v := restoreStart.Sub(*rec.Backup.CreatedAt).Seconds()
		if v < 0 {
			v = 0
		}
		rec.RPOSeconds = &v
	}
	if result == Passed && !verifyEnd.IsZero() {
		v := verifyEnd.Sub(restoreStart).Seconds()
		rec.RTOSeconds = &v
	}
	add := func(name string, target time.Duration, actual *float64) {
		if target <= 0 {
			return
		}
		t := target.Seconds()
		rec.Objectives = append(rec.Objectives, ObjectiveRecord{Name: name, TargetSeconds: t, ActualSeconds: actual, Met: actual != nil && *actual <= t})
	}
	add("rto", o.RTO.Duration, rec.RTOSeconds)
	add("rpo", o.RPO.Duration, rec.RPOSeconds)
}

var (
	errChecksFailed  = errors.New("checks failed")
	errChecksErrored = errors.New("checks could not be carried out")
)

// checksError summarises check results for the verify step.
func checksError(checks []CheckRecord) error {
	var failed, errored []string
	for _, c := range checks {
		switch c.Result {
		case Failed:
			failed = append(failed, c.Name)
		case Error:
			errored = append(errored, c.Name)
		}
	}
	switch {
	case len(failed) > 0:
		return fmt.Errorf("%w: %s", errChecksFailed, strings.Join(failed, ", "))
	case len(errored) > 0:
		return fmt.Errorf("%w: %s", errChecksErrored, strings.Join(errored, ", "))
	}
	return nil
}

// judge decides the run's result: an interrupt aborts; a step that could not be carried out is
// an error; a finding about the backup or a failed check fails the drill (a failed check
// outweighs one that could not run: the backup is shown to be bad either way).
func judge(interrupted bool, stepErr error, checks []CheckRecord) (Result, string) {
	switch {
	case interrupted:
		return Aborted, "interrupted"
	case stepErr != nil && IsFailure(stepErr):
		return Failed, stepErr.Error()
	case stepErr != nil:
		return Error, stepErr.Error()
	}
	var errored *CheckRecord
	for i, c := range checks {
		if c.Result == Failed {
			return Failed, fmt.Sprintf("check %q failed: %s", c.Name, c.Message)
		}
		if c.Result == Error && errored == nil {
			errored = &checks[i]
		}
	}
	if errored != nil {
		return Error, fmt.Sprintf("check %q could not be carried out: %s", errored.Name, errored.Message)
	}
	return Passed, ""
}

func keepScratch(p scenarios.CleanupPolicy, result Result) bool {
	switch p {
	case scenarios.CleanupNever:
		return true
	case scenarios.CleanupOnSuccess:
		return result != Passed
	}
	return false
}

func describeObjective(o ObjectiveRecord) string {
	target := time.Duration(o.TargetSeconds * float64(time.Second))
	if o.ActualSeconds == nil {
		return fmt.Sprintf("target %s, not measured", target)
	}
	return fmt.Sprintf("%s measured, target %s", time.Duration(*o.ActualSeconds*float64(time.Second)).Round(time.Second), target)
}

func joinMessage(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
