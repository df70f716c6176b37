package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/jobexec"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// runJobCmd is what a drill's Job runs (serve --executor job): one drill of the scenario in its
// environment, its records written as lines on stdout for serve to store. Hidden: people run
// drills with `firedrill run`.
func (a *app) runJobCmd() *cobra.Command {
	var f drillFlags
	cmd := &cobra.Command{
		Use:    "run-job",
		Short:  "Run one drill inside a Job of 'firedrill serve --executor job' (not for people)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runJob(cmd.Context(), f)
		},
	}
	f.register(cmd)
	return cmd
}

// runJob exits 0 once the final record is written, whatever the drill's result: the Job's
// status says whether the record got out, the record says how the drill went.
func (a *app) runJob(ctx context.Context, f drillFlags) error {
	sc, rn, err := a.jobRun()
	if err != nil {
		return usagef("run-job is started by 'firedrill serve --executor job', which sets its environment.", "%v", err)
	}
	rec := jobexec.NewLineRecorder(a.out)
	rec.Amend = func(r *drill.Record) {
		if r.Result == drill.Aborted && errors.Is(context.Cause(ctx), errInterrupted) {
			r.Message = "interrupted: the drill's pod was stopped (SIGTERM: the pod was deleted or evicted, its node drained, or its Job deleted at serve's shutdown); cleanup ran"
		}
	}
	rn.Recorder, rn.Progress, rn.Runner = rec, newProgress(a.err, ""), runnerInfo()
	if f.seed.v != nil {
		rn.Seed = f.seed.v
	}
	_, err = rn.Run(ctx, sc, a.drivers(f).For(sc))
	if ctx.Err() != nil {
		// Stopped by SIGTERM: the pod is being deleted, and with it its log once the container
		// exits. A followed log can end at the exit before its last line has been sent, so the
		// container stays a moment after its final record for serve's reader to take it.
		time.Sleep(jobexec.FinalLinger)
	}
	if errors.Is(err, drill.ErrRecord) {
		return &codedError{code: exitError, err: err}
	}
	return nil
}

// jobRun reads the run serve handed over in the environment (jobexec.Env…).
func (a *app) jobRun() (*scenarios.Scenario, *drill.Runner, error) {
	var sc scenarios.Scenario
	raw := a.getenv(jobexec.EnvScenario)
	if raw == "" {
		return nil, nil, fmt.Errorf("%s is not set", jobexec.EnvScenario)
	}
	// The version serve loaded and validated, as it is: its files were checked where serve runs.
	if err := json.Unmarshal([]byte(raw), &sc); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", jobexec.EnvScenario, err)
	}
	rn := &drill.Runner{ID: a.getenv(jobexec.EnvRunID), Trigger: a.getenv(jobexec.EnvTrigger), Operator: a.getenv(jobexec.EnvOperator),
		WorkRoot: a.getenv(jobexec.EnvWorkDir), CleanupTimeout: jobexec.CleanupTimeout}
	if rn.ID == "" {
		return nil, nil, fmt.Errorf("%s is not set", jobexec.EnvRunID)
	}
	if s := a.getenv(jobexec.EnvScheduledFor); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", jobexec.EnvScheduledFor, err)
		}
		t = t.UTC()
		rn.ScheduledFor = &t
	}
	if s := a.getenv(jobexec.EnvSeed); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", jobexec.EnvSeed, err)
		}
		rn.Seed = &n
	}
	return &sc, rn, nil
}
