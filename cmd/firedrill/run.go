package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/etcddrill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/sample"
	"github.com/firedrill-dev/firedrill/drill/velerodrill"
	"github.com/firedrill-dev/firedrill/report"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// drillFlags are shared by run and plan.
type drillFlags struct {
	scenariosDir  string
	kubeAPIServer string
	binDir        string
	probeImage    string
	seed          seedFlag
}

// seedFlag is --seed: unset, or a seed that repeats a recorded random choice of the backup.
type seedFlag struct{ v *uint64 }

func (s *seedFlag) String() string {
	if s.v == nil {
		return ""
	}
	return strconv.FormatUint(*s.v, 10)
}

func (s *seedFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > sample.MaxSeed {
		return fmt.Errorf("want a whole number from 0 to %d, as a run record's backup.selection.seed", uint64(sample.MaxSeed))
	}
	s.v = &n
	return nil
}

func (*seedFlag) Type() string { return "N" }

func (f *drillFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.scenariosDir, "scenarios", "", "directory to look scenario names up in (default: $FIREDRILL_SCENARIOS)")
	fl.StringVar(&f.kubeAPIServer, "kube-apiserver", "", "kube-apiserver binary for scratch control planes (overrides spec.restore.scratchEtcd.apiServer.binary)")
	fl.StringVar(&f.binDir, "bin-dir", "", "where to look for component binaries before PATH (default: $FIREDRILL_BIN_DIR, next to firedrill, or ./bin)")
	fl.Var(&f.seed, "seed", "repeat a recorded random choice of the backup (latestFrom select: random): the seed of a run record's backup.selection; it chooses the same backup while the candidates are the same (default: a fresh seed per run)")
	fl.StringVar(&f.probeImage, "probe-image", "", "image of firedrill-probe, which http, tcp, isolation and volumeData checks run in short-lived pods (default: $FIREDRILL_PROBE_IMAGE, else "+velerodrill.DefaultProbeImage+")")
}

func (a *app) runCmd() *cobra.Command {
	var (
		f           drillFlags
		historyFlag string
	)
	cmd := &cobra.Command{
		Use:   "run SCENARIO...",
		Short: "Run drills now: back up (or find the backup), restore somewhere harmless, check, clean up, record",
		Long: `Runs each scenario's drill in turn: preflight → backup → restore → verify → cleanup → record.
A SCENARIO is a file, a directory of *.yaml files, or a scenario name looked up in --scenarios.
Cleanup always runs, also after a failure, a timeout or Ctrl-C. Every run is recorded in the
history (see 'firedrill history').

On a terminal a live line shows the current step, elapsed time and bytes streamed; in a pipe
progress comes as plain lines on stderr. The result goes to stdout: a summary, or with -o json
the run record (an array when several scenarios ran).`,
		Example: `  # drill the control plane's etcd as scenarios/examples says
  firedrill run scenarios/examples/control-plane-etcd.yaml

  # every scenario of a directory, as JSON for a pipeline
  firedrill run scenarios/examples -o json > results.json

  # by name, from a scenario directory
  FIREDRILL_SCENARIOS=/etc/firedrill/scenarios firedrill run control-plane-etcd

  # repeat the random choice of a backup that a run record shows (backup.selection.seed)
  firedrill run scenarios/examples/etcd-backups-dir.yaml --seed 4181102`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("Run 'firedrill run --help' for usage.", "run needs at least one SCENARIO (a file, a directory or a name)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			scs, err := a.loadScenarios(args, f.scenariosDir)
			if err != nil {
				return err
			}
			drivers := a.drivers(f)
			for _, sc := range scs {
				if err := drivers.Check(sc); err != nil {
					return usagef("", "%v", err)
				}
			}
			store, err := a.openHistory(cmd, historyFlag)
			if err != nil {
				return err
			}
			defer store.Close()

			var (
				recs      []*drill.Record
				recordErr error
				refused   bool // a drill asked for something unsafe: exit 2, as for a bad scenario
			)
			for _, sc := range scs {
				label := ""
				if len(scs) > 1 {
					label = sc.Metadata.Name
				}
				p := newProgress(a.err, label)
				runner := &drill.Runner{Recorder: store, Progress: p, Trigger: "manual", Operator: operator(), Runner: runnerInfo(), Seed: f.seed.v}
				rec, err := runner.Run(cmd.Context(), sc, drivers.For(sc))
				p.Close()
				recs = append(recs, rec)
				switch {
				case drill.IsRefusal(err):
					refused = true
				case err != nil:
					recordErr = errors.Join(recordErr, err)
				}
				if a.output == "text" || a.output == "table" {
					report.Record(a.out, rec, false)
					fmt.Fprintln(a.out)
				}
				if cmd.Context().Err() != nil {
					break // interrupted: do not start the next drill
				}
			}
			if a.output == "json" || a.output == "yaml" {
				var v any = recs
				if len(recs) == 1 {
					v = recs[0]
				}
				if err := a.print(v, nil); err != nil {
					return err
				}
			}
			if recordErr != nil {
				return &codedError{code: exitError, err: fmt.Errorf("%w; the result above was not stored", recordErr)}
			}
			if refused && exitForResults(recs) != exitInterrupted {
				return &codedError{code: exitUsage}
			}
			if code := exitForResults(recs); code != exitPassed {
				return &codedError{code: code}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&historyFlag, "history", "", "history database: a path or sqlite:///path (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	return cmd
}

// exitForResults is the exit status of a set of runs: the most serious result wins.
func exitForResults(recs []*drill.Record) int {
	code := exitPassed
	rank := map[int]int{exitPassed: 0, exitFailed: 1, exitError: 2, exitInterrupted: 3}
	for _, r := range recs {
		c := exitForResult(r.Result)
		if rank[c] > rank[code] {
			code = c
		}
	}
	return code
}

func exitForResult(r drill.Result) int {
	switch r {
	case drill.Passed:
		return exitPassed
	case drill.Failed:
		return exitFailed
	case drill.Aborted:
		return exitInterrupted
	}
	return exitError
}

// loadScenarios resolves each argument — a file, a directory or a name in dir — and loads them
// all, reporting every problem of every file as a usage error.
func (a *app) loadScenarios(args []string, dir string) ([]*scenarios.Scenario, error) {
	if dir == "" {
		dir = a.getenv("FIREDRILL_SCENARIOS")
	}
	var paths []string
	for _, arg := range args {
		if _, err := os.Stat(arg); err == nil {
			paths = append(paths, arg)
			continue
		}
		if strings.ContainsAny(arg, `/\`) || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") || dir == "" {
			hint := ""
			if dir == "" {
				hint = "; to run a scenario by name, say where scenarios live with --scenarios DIR or FIREDRILL_SCENARIOS"
			}
			return nil, usagef("", "scenario %q: no such file or directory%s", arg, hint)
		}
		all, err := scenarios.LoadAll(dir)
		if err != nil && len(all) == 0 {
			return nil, usagef("", "look up scenario %q in %s: %v", arg, dir, err)
		}
		found := ""
		for _, s := range all {
			if s.Metadata.Name == arg {
				found = s.Path
			}
		}
		if found == "" {
			return nil, usagef("", "no scenario named %q in %s", arg, dir)
		}
		paths = append(paths, found)
	}
	scs, err := scenarios.LoadAll(paths...)
	if err != nil {
		return nil, usagef("Fix the files, or check them with 'firedrill scenario validate'.", "invalid scenarios:\n%v", err)
	}
	return scs, nil
}

// newDriver picks the driver for a scenario's kind of backup.
// drivers are the drill drivers this firedrill knows, set up with the operator's choices.
func (a *app) drivers(f drillFlags) *drill.Registry {
	return drill.NewRegistry(
		etcddrill.New(etcddrill.Options{KubeAPIServer: f.kubeAPIServer, BinDir: f.binDir}),
		velerodrill.New(velerodrill.Options{Kubeconfig: a.kubeconfig, Context: a.context, ProbeImage: cmp.Or(f.probeImage, a.getenv("FIREDRILL_PROBE_IMAGE"))}),
	)
}

// historyLocation resolves --history: the flag, else $FIREDRILL_HISTORY, else the default file.
func (a *app) historyLocation(flag string) (history.Location, error) {
	loc, err := history.Locate(flag, a.getenv)
	if errors.Is(err, history.ErrNoLocation) {
		return loc, usagef("", "%v", err)
	}
	return loc, err
}

// openStore opens the history for writing: what this process finishes is signed when a
// signing key is configured (set before anything is finished). hint, when set, follows an
// error of opening it.
func (a *app) openStore(ctx context.Context, loc history.Location, hint string) (*history.Store, error) {
	store, err := history.Open(ctx, loc.DSN)
	if err != nil && hint != "" {
		return nil, fmt.Errorf("%w\n%s", err, hint)
	} else if err != nil {
		return nil, err
	}
	if err := a.applySigner(store); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}

// openHistory opens the run history and marks runs whose runner died as aborted.
func (a *app) openHistory(cmd *cobra.Command, flag string) (*history.Store, error) {
	loc, err := a.historyLocation(flag)
	if err != nil {
		return nil, err
	}
	store, err := a.openStore(cmd.Context(), loc, "")
	if err != nil {
		return nil, err
	}
	ids, err := store.MarkAbandoned(cmd.Context(), history.ProcessAlive, history.StaleRunAfter)
	if err != nil {
		store.Close()
		return nil, err
	}
	if len(ids) > 0 {
		fmt.Fprintf(a.err, "firedrill: marked %d run(s) aborted whose runner is gone: %s\n", len(ids), strings.Join(ids, ", "))
	}
	return store, nil
}

func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func runnerInfo() drill.RunnerInfo {
	ri := history.CurrentRunner()
	ri.Version = version
	return ri
}
