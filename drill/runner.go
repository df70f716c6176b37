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
	// Seed repeats an earlier random choice of the backup (see RunContext.Seed).
	Seed *uint64
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

	timeout := sc.Spec.Timeout.Duration
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	cleanupTimeout := orDuration(r.CleanupTimeout, 5*time.Minute)

	workDir, err := os.MkdirTemp(r.WorkRoot, WorkDirPrefix+rec.ID+"-")
	if err != nil {
		return rec, fmt.Errorf("create work directory: %w", err)
	}
	// The owner file lets the janitor remove the directory once this process is gone (a crash).
	owner := Owner{Run: rec.ID, Scenario: sc.Metadata.Name, Runner: ownerProcess(r.Runner), StartedAt: rec.StartedAt}
	if err := WriteOwner(workDir, owner); err != nil {
		os.RemoveAll(workDir)
		return rec, fmt.Errorf("create work directory: %w", err)
	}
	rc := &RunContext{ID: rec.ID, Scenario: sc, Progress: progress, WorkDir: workDir,
		Expires: rec.StartedAt.Add(timeout + cleanupTimeout + ExpiryMargin), Seed: r.Seed}

	if run.recorder != nil {
		if err := run.recorder.Begin(ctx, run.copy()); err != nil {
			os.RemoveAll(workDir)
			return rec, fmt.Errorf("%w: %w", ErrRecord, err)
		}
		stop := run.heartbeat(ctx, orDuration(r.HeartbeatEvery, 15*time.Second))
		defer stop()
	}
	// A driver that cannot drill the scenario as written touched nothing: the run is refused at
	// its preflight, and still recorded.
	dr, newErr := d.NewRun(sc, rc)
	if newErr != nil {
		dr = unstarted{}
	}

	runCtx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("drill timed out after %s (spec.timeout)", timeout))
	defer cancel()

	var (
		restoreStart, verifyEnd time.Time
		stepErr                 error // the first step that did not complete
	)
	stepErr = run.step(runCtx, StepPreflight, "", orDuration(r.PreflightTimeout, 2*time.Minute), func(ctx context.Context) error {
		if newErr != nil {
			return Refuse(fmt.Errorf("scenario %s: %w", sc.Metadata.Name, newErr))
		}
		return dr.Preflight(ctx)
	})
	if stepErr == nil {
		stepErr = run.step(runCtx, StepBackup, "", 0, func(ctx context.Context) error {
			b, err := dr.Backup(ctx)
			run.mu.Lock()
			rec.Backup = b
			run.mu.Unlock()
			return err
		})
	}
	grouped, _ := dr.(Grouped)
	if grouped != nil && len(grouped.Groups()) == 0 {
		grouped = nil
	}
	var checks []CheckRecord
	groupsRan := false
	switch {
	case stepErr == nil && grouped != nil:
		restoreStart = now()
		checks, stepErr = run.groups(runCtx, grouped)
		groupsRan = true
	case stepErr == nil:
		restoreStart = now()
		stepErr = run.step(runCtx, StepRestore, "", 0, func(ctx context.Context) error { return dr.Restore(ctx) })
	case grouped != nil:
		// Nothing was restored: every group's checks are skipped with the reason.
		for i, g := range grouped.Groups() {
			checks = append(checks, inGroup(g, runChecks(context.WithoutCancel(runCtx), grouped.GroupChecks(i, false), progress,
				fmt.Sprintf("not run: the %s step did not complete", run.lastStep())))...)
		}
	}
	switch final := dr.Checks(stepErr == nil); {
	case stepErr == nil && (grouped == nil || len(final) > 0):
		var more []CheckRecord
		_ = run.step(runCtx, StepVerify, "", 0, func(ctx context.Context) error {
			more = runChecks(ctx, final, progress, "")
			return checksError(more)
		})
		checks = append(checks, more...)
		verifyEnd = now()
	case stepErr == nil:
		verifyEnd = now() // every group passed and there are no checks of the whole
	default:
		// What can be judged without a restore still is; the rest is skipped, saying why.
		why := fmt.Sprintf("the %s step did not complete", run.lastStep())
		if groupsRan {
			why = stepErr.Error() // names the group the run stopped at
		}
		checks = append(checks, runChecks(context.WithoutCancel(runCtx), dr.Checks(false), progress, "not run: "+why)...)
		if grouped == nil || len(final) > 0 {
			run.skip(StepVerify, "", "skipped: "+why)
		}
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
	if !restoreStart.IsZero() {
		if tr := dr.Target(); tr != nil {
			tr.Kept = keep
			run.mu.Lock()
			rec.Target = tr
			run.mu.Unlock()
		}
	}
	cleanupCtx, cancelCleanup := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	cleanupErr := run.step(cleanupCtx, StepCleanup, "", 0, func(ctx context.Context) error {
		err := dr.Cleanup(ctx, keep)
		if !keep {
			if rmErr := os.RemoveAll(workDir); rmErr != nil && err == nil {
				err = fmt.Errorf("remove work directory %s: %w", workDir, rmErr)
			}
			return err
		}
		// Kept: the janitor leaves it until keepFor has passed, as the scratch resources.
		keepFor := sc.Spec.Cleanup.KeepFor.Duration
		if keepFor <= 0 {
			keepFor = scenarios.DefaultKeepFor
		}
		until := now().Add(keepFor).UTC()
		owner.KeptUntil = &until
		if werr := WriteOwner(workDir, owner); werr != nil && err == nil {
			err = fmt.Errorf("keep work directory: %w", werr)
		}
		progress.Note("kept for inspection (cleanup policy " + string(sc.Spec.Cleanup.Policy) + ") until " + until.Format(time.RFC3339) + ": " + workDir)
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

// groups restores a Grouped run's groups in order, each followed by its checks; the first group
// that does not restore, or whose checks do not pass, stops the run there and the groups after it
// are skipped, saying why. It returns every group's check records and the error that stopped it.
func (r *run) groups(ctx context.Context, g Grouped) ([]CheckRecord, error) {
	var checks []CheckRecord
	var stop error // what ended the run: decides its result
	var why string // the same, said to the groups it skips
	for i, name := range g.Groups() {
		if stop != nil {
			r.skip(StepRestore, name, "skipped: "+why)
			checks = append(checks, inGroup(name, runChecks(context.WithoutCancel(ctx), g.GroupChecks(i, false), r.progress, "not run: "+why))...)
			continue
		}
		if err := r.step(ctx, StepRestore, name, 0, func(ctx context.Context) error { return g.RestoreGroup(ctx, i) }); err != nil {
			stop = fmt.Errorf("stopped at group %s: restore: %w", name, err)
			why = stop.Error()
			checks = append(checks, inGroup(name, runChecks(context.WithoutCancel(ctx), g.GroupChecks(i, false), r.progress, "not run: "+why))...)
			continue
		}
		var got []CheckRecord
		verr := r.step(ctx, StepVerify, name, 0, func(ctx context.Context) error {
			got = inGroup(name, runChecks(ctx, g.GroupChecks(i, true), r.progress, ""))
			return checksError(got)
		})
		checks = append(checks, got...)
		if verr != nil {
			stop = groupStopped(name, got, verr)
			why = stop.Error()
		}
	}
	return checks, stop
}

// groupStopped is why a group's checks stop an ordered run: a failed check fails the drill (the
// restored group does not work), one that could not be carried out makes it an error.
func groupStopped(name string, checks []CheckRecord, err error) error {
	for _, c := range checks {
		if c.Result == Failed {
			return Fail(fmt.Errorf("stopped at group %s: check %q failed: %s", name, c.Name, c.Message))
		}
	}
	for _, c := range checks {
		if c.Result == Error {
			return fmt.Errorf("stopped at group %s: check %q could not be carried out: %s", name, c.Name, c.Message)
		}
	}
	return fmt.Errorf("stopped at group %s: %w", name, err)
}

func inGroup(group string, checks []CheckRecord) []CheckRecord {
	for i := range checks {
		checks[i].Group = group
	}
	return checks
}

// runChecks runs each check in order, timed and panic-safe. A check without Run, or every check
// when skipReason is set and it has none, is recorded as skipped with skipReason.
func runChecks(ctx context.Context, checks []Check, progress Progress, skipReason string) []CheckRecord {
	out := make([]CheckRecord, 0, len(checks))
	for _, c := range checks {
		if c.Run == nil {
			out = append(out, CheckRecord{Name: c.Name, Type: c.Type, Result: Skipped, Message: orDefault(skipReason, "not run")})
			continue
		}
		progress.Note("check: " + c.Name)
		start := time.Now()
		o := runCheck(ctx, c)
		out = append(out, CheckRecord{Name: c.Name, Type: c.Type, Result: o.Result, Message: o.Message, Evidence: o.Evidence, Seconds: time.Since(start).Seconds()})
	}
	return out
}

// runCheck turns a panic inside a check into an Error outcome: one broken check must not kill the
// process before cleanup.
func runCheck(ctx context.Context, c Check) (o CheckOutcome) {
	defer func() {
		if p := recover(); p != nil {
			o = CheckOutcome{Result: Error, Message: fmt.Sprintf("internal error in check: %v", p)}
		}
	}()
	o = c.Run(ctx)
	switch o.Result {
	case Passed, Failed, Error:
	default:
		o = CheckOutcome{Result: Error, Message: fmt.Sprintf("internal error in check: result %q is not passed, failed or error", o.Result), Evidence: o.Evidence}
	}
	return o
}

// unstarted stands for a run its driver could not prepare; the preflight refuses it.
type unstarted struct{}

func (unstarted) Preflight(context.Context) error              { return nil }
func (unstarted) Backup(context.Context) (BackupRecord, error) { return BackupRecord{}, nil }
func (unstarted) Restore(context.Context) error                { return nil }
func (unstarted) Checks(bool) []Check                          { return nil }
func (unstarted) Target() *TargetRecord                        { return nil }
func (unstarted) Cleanup(context.Context, bool) error          { return nil }
func (unstarted) Plan(*Plan)                                   {}

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
func (r *run) step(ctx context.Context, name, group string, timeout time.Duration, f func(context.Context) error) (err error) {
	start := r.now().UTC()
	r.mu.Lock()
	r.rec.Steps = append(r.rec.Steps, StepRecord{Name: name, Group: group, Result: Running, StartedAt: start})
	i := len(r.rec.Steps) - 1
	label := r.rec.Steps[i].Label()
	r.mu.Unlock()
	r.progress.Step(label)

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
		r.progress.Note(fmt.Sprintf("%s: %s", label, msg))
	}
	return err
}

func (r *run) skip(name, group, msg string) {
	now := r.now().UTC()
	r.mu.Lock()
	r.rec.Steps = append(r.rec.Steps, StepRecord{Name: name, Group: group, Result: Skipped, StartedAt: now, FinishedAt: &now, Message: msg})
	r.mu.Unlock()
}

func (r *run) lastStep() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.rec.Steps) - 1; i >= 0; i-- {
		if r.rec.Steps[i].Result != Passed && r.rec.Steps[i].Result != Skipped {
			return r.rec.Steps[i].Label()
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
				c := r.copy()
				if c.Result != Running {
					return // the run has its verdict; the final record, not a heartbeat, stores it
				}
				uctx, ucancel := context.WithTimeout(ctx, 10*time.Second)
				_ = r.recorder.Update(uctx, c)
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
