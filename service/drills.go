package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// run is how the scheduler runs one drill: as a Job with --executor job, else in this process.
func (s *Service) run(ctx context.Context, sc *scenarios.Scenario, t schedule.Trigger) (*drill.Record, error) {
	if s.jobs != nil {
		return s.jobs.Run(ctx, sc, t)
	}
	return s.runDrill(ctx, sc, t)
}

// runDrill is how the scheduler runs one drill: a fresh drill.Runner and driver per run.
func (s *Service) runDrill(ctx context.Context, sc *scenarios.Scenario, t schedule.Trigger) (*drill.Record, error) {
	rlog := s.log.With("component", "drill", "scenario", sc.Metadata.Name, "id", t.ID)
	op := t.Operator
	if op == "" {
		op = s.cfg.Operator
	}
	guard := &beginGuard{Recorder: s.spool}
	runner := &drill.Runner{Recorder: guard, Progress: logProgress{rlog}, Trigger: t.Kind, ID: t.ID, Operator: op, Runner: s.cfg.Runner, Seed: t.Seed}
	if !t.ScheduledFor.IsZero() {
		sf := t.ScheduledFor.UTC()
		runner.ScheduledFor = &sf
	}
	out, err := runner.Run(ctx, sc, s.cfg.Drivers.For(sc))
	if guard.err != nil && errors.Is(guard.err, history.ErrDuplicateSchedule) {
		// Another replica has this scheduled run: nothing ran here, nothing to report.
		return out, guard.err
	}
	return out, err
}

// spooledHistory is the scheduler's view of the history: its skipped and missed records go
// through the spool like every other final record.
type spooledHistory struct {
	spool *history.Spool
	store *history.Store
}

func (h spooledHistory) Finish(ctx context.Context, r *drill.Record) error {
	return h.spool.Finish(ctx, r)
}
func (h spooledHistory) LastScheduled(ctx context.Context, scenario string) (time.Time, error) {
	return h.store.LastScheduled(ctx, scenario)
}

var _ schedule.History = spooledHistory{}

// beginGuard keeps the error of Begin, which drill.Runner reports only as text, so that the
// scheduler can tell a scheduled run another replica already has (ErrDuplicateSchedule).
type beginGuard struct {
	drill.Recorder
	err error
}

func (g *beginGuard) Begin(ctx context.Context, r *drill.Record) error {
	g.err = g.Recorder.Begin(ctx, r)
	return g.err
}

// logProgress writes a drill's steps and notes to the log.
type logProgress struct{ log *slog.Logger }

func (p logProgress) Step(name string)   { p.log.Info("drill step", "step", name) }
func (p logProgress) Bytes(int64, int64) {}
func (p logProgress) Note(msg string)    { p.log.Info("drill note", "note", msg) }
