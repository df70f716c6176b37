package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/report"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// drillFlags are shared by run and plan.
type drillFlags struct {
	scenariosDir  string
	kubeAPIServer string
	binDir        string
}

func (f *drillFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.scenariosDir, "scenarios", "", "directory to look scenario names up in (default: $FIREDRILL_SCENARIOS)")
	fl.StringVar(&f.kubeAPIServer, "kube-apiserver", "", "kube-apiserver binary for scratch control planes (overrides spec.restore.scratchEtcd.apiServer.binary)")
	fl.StringVar(&f.binDir, "bin-dir", "", "where to look for component binaries before PATH (default: $FIREDRILL_BIN_DIR, next to firedrill, or ./bin)")
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
  firedrill run scenarios/examples/etcd-take.yaml

  # every scenario of a directory, as JSON for a pipeline
  firedrill run ./drills -o json > results.json

  # by name, from a scenario directory
  FIREDRILL_SCENARIOS=/etc/firedrill/scenarios firedrill run control-plane-etcd`,
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
			drivers := make([]drill.Driver, len(scs))
			for i, sc := range scs {
				if drivers[i], err = a.newDriver(sc, f); err != nil {
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
			for i, sc := range scs {
				label := ""
				if len(scs) > 1 {
					label = sc.Metadata.Name
				}
				p := newProgress(a.err, label)
				runner := &drill.Runner{Recorder: store, Progress: p, Trigger: "manual", Operator: operator(), Runner: runnerInfo()}
				rec, err := runner.Run(cmd.Context(), sc, drivers[i])
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
func (a *app) newDriver(sc *scenarios.Scenario, f drillFlags) (drill.Driver, error) {
	switch {
	case sc.Spec.Backup.Etcd != nil:
		return drill.NewEtcdDriver(sc, drill.EtcdOptions{KubeAPIServer: f.kubeAPIServer, BinDir: f.binDir})
	case sc.Spec.Backup.Velero != nil:
		return drill.NewVeleroDriver(sc, drill.VeleroOptions{Kubeconfig: a.kubeconfig, Context: a.context})
	}
	return nil, fmt.Errorf("scenario %s (%s): no backup kind this firedrill knows", sc.Metadata.Name, sc.Path)
}

// openHistory opens the run history and marks runs whose runner died as aborted.
func (a *app) openHistory(cmd *cobra.Command, flag string) (*history.Store, error) {
	dsn := flag
	if dsn == "" {
		dsn = history.DefaultPath(a.getenv)
	}
	if dsn == "" {
		return nil, usagef("", "no history location: set --history, FIREDRILL_HISTORY or HOME")
	}
	store, err := history.Open(cmd.Context(), dsn)
	if err != nil {
		return nil, err
	}
	if err := a.applySigner(store); err != nil { // before MarkAbandoned, which finishes records too
		store.Close()
		return nil, err
	}
	ids, err := store.MarkAbandoned(cmd.Context(), history.ProcessAlive, staleRunAfter)
	if err != nil {
		store.Close()
		return nil, err
	}
	if len(ids) > 0 {
		fmt.Fprintf(a.err, "firedrill: marked %d run(s) aborted whose runner is gone: %s\n", len(ids), strings.Join(ids, ", "))
	}
	return store, nil
}

// staleRunAfter is how long a run of another host may go without a heartbeat before it counts as
// abandoned; runners beat every 15s.
const staleRunAfter = 2 * time.Minute

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
