package main

import (
	"context"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill"
)

type planOutput struct {
	drill.Plan
	Preflight string `json:"preflight"` // "ok", "skipped" or why it failed
}

func (a *app) planCmd() *cobra.Command {
	var (
		f       drillFlags
		offline bool
	)
	cmd := &cobra.Command{
		Use:   "plan SCENARIO",
		Short: "Show what a drill would back up, restore where, isolate how and check how — changing nothing",
		Long: `Describes the drill of SCENARIO without running it, and runs its preflight: the read-only
checks that the sources answer and the tools exist. Nothing is written anywhere; the plan lists
what a run would write outside its scratch target (such as the canary key). For latestFrom the
preflight lists the candidate backups and shows which one it chose, and how (with --seed, the one a
run with that seed would choose).`,
		Example: `  firedrill plan scenarios/examples/control-plane-etcd.yaml
  firedrill plan control-plane-etcd --scenarios /etc/firedrill/scenarios -o json
  firedrill plan scenarios/examples/minimal.yaml --offline    # no connections at all`,
		Args: exactArgs(1, "one SCENARIO"),
		RunE: func(cmd *cobra.Command, args []string) error {
			scs, err := a.loadScenarios(args, f.scenariosDir)
			if err != nil {
				return err
			}
			if len(scs) != 1 {
				return usagef("", "plan takes one scenario; %s holds %d", args[0], len(scs))
			}
			sc := scs[0]
			drivers := a.drivers(f)
			if err := drivers.Check(sc); err != nil {
				return usagef("", "%v", err)
			}
			dir, err := os.MkdirTemp("", "firedrill-plan-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			r, err := drivers.For(sc).NewRun(sc, &drill.RunContext{ID: "plan", Scenario: sc, Progress: drill.NopProgress{}, WorkDir: dir, Seed: f.seed.v})
			if err != nil {
				return usagef("", "scenario %s: %v", sc.Metadata.Name, err)
			}
			// The preflight comes first: it finds what a plan should name (the backup chosen).
			preflight, preErr := "skipped (--offline)", error(nil)
			if !offline {
				preflight, preErr = "ok", preflightOnly(cmd.Context(), r)
				if preErr != nil {
					preflight = preErr.Error()
				}
			}
			out := planOutput{Plan: drill.PlanOf(sc, r), Preflight: preflight}
			if err := a.print(out, func(p printer) { printPlan(p, sc.Path, out) }); err != nil {
				return err
			}
			if drill.IsRefusal(preErr) {
				return &codedError{code: exitUsage}
			}
			if preErr != nil {
				return &codedError{code: exitError}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&offline, "offline", false, "skip the preflight: make no connections at all")
	return cmd
}

// preflightOnly runs a drill's read-only preflight and releases what it opened.
func preflightOnly(ctx context.Context, r drill.Run) error {
	err := r.Preflight(ctx)
	_ = r.Cleanup(context.WithoutCancel(ctx), false)
	return err
}

func printPlan(p printer, path string, o planOutput) {
	p("Plan for drill %s (%s)\n", o.Scenario, path)
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		p("\n%s:\n", title)
		for _, l := range lines {
			p("  - %s\n", l)
		}
	}
	section("Backup", o.Backup)
	section("Restore", o.Restore)
	section("Isolation", o.Isolation)
	if len(o.Checks) > 0 {
		p("\nChecks:\n")
		for i, c := range o.Checks {
			p("  %d. %s (%s): %s\n", i+1, c.Name, c.Type, c.Description)
		}
	}
	section("Objectives", o.Objectives)
	section("Cleanup", o.Cleanup)
	writes := o.Writes
	if len(writes) == 0 {
		writes = []string{"nothing outside the scratch target"}
	}
	section("Writes outside the scratch target", writes)
	p("\nPreflight: %s\n", strings.ReplaceAll(o.Preflight, "\n", "\n  "))
	if o.Preflight == "ok" {
		p("\nRun it with: firedrill run %s\n", shellArg(path))
	}
}
