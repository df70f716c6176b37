package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/coverage/clusters"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// coverageFlags say where coverage discovers and how recent a drill must be; `coverage` and
// `report --coverage` share them.
type coverageFlags struct {
	within          string
	veleroNamespace string
}

func (f *coverageFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.within, "within", "30d", "how recent a passed drill must be for an item without its own window ("+coverage.WindowAnnotation+")")
	fl.StringVar(&f.veleroNamespace, "velero-namespace", scenarios.DefaultVeleroNamespace, "namespace Velero runs in, in the --kubeconfig/--context cluster")
}

func (f *coverageFlags) window() (time.Duration, error) {
	d, err := scenarios.ParseDuration(f.within)
	if err != nil || d <= 0 {
		return 0, usagef("", "--within %q: give a duration longer than zero, e.g. 30d or 36h", f.within)
	}
	return d, nil
}

// discovery is where `coverage` and `report --coverage` look: the --kubeconfig/--context cluster
// (kubectl's defaults otherwise) besides the clusters the scenarios name.
func (a *app) discovery(f coverageFlags) coverage.DiscoverOptions {
	return coverage.DiscoverOptions{
		Connect:  clusters.Connect,
		Default:  coverage.Source{Kubeconfig: a.kubeconfig, Context: a.context, VeleroNamespace: f.veleroNamespace},
		Override: a.kubeconfig != "" || a.context != "",
	}
}

func (a *app) coverageCmd() *cobra.Command {
	var (
		f            coverageFlags
		historyFlag  string
		scenariosDir string
	)
	cmd := &cobra.Command{
		Use:   "coverage [SCENARIO...]",
		Short: "List what there is to drill and which of it no drill passed on recently: the backups never restore-tested",
		Long: `Discovers what there is to drill — the Velero Schedules of the cluster (--kubeconfig/--context,
else kubectl's defaults) and of every cluster a scenario names, the namespaces they back up,
Velero backups no Schedule made, and the etcd snapshot sources scenarios name (directories, S3
prefixes, endpoints) — and joins it with the history. An item is covered when a drill of a
scenario that drills it passed within its window; it is not covered when none did: never drilled,
only failing, or too long ago. Not covered items are listed first, with the reason.

A SCENARIO is a file, a directory or a name in --scenarios; with none, every scenario of
--scenarios (or FIREDRILL_SCENARIOS). A scenario drills a Schedule with latestFrom.schedule, a
backup by name (and so its Schedule), and the namespaces of either or of create.

The window is --within, or the annotation firedrill.dev/coverage-window ("7d") on a scenario (the
shortest of an item's scenarios wins) or on the Schedule, Backup or Namespace itself. Annotate a
Schedule, Backup or Namespace with firedrill.dev/coverage-exclude: "<reason>" to take it out on
purpose; the reason is shown wherever the item is. See docs/reports.md.

A cluster that cannot be read makes the answer incomplete: what was found is printed, the problem
on stderr, and the exit status is 3.`,
		Example: `  # what is not restore-tested, over the scenarios firedrill serve runs
  firedrill coverage --scenarios /etc/firedrill/scenarios --history /var/lib/firedrill/history.db

  # a stricter window, another cluster, as JSON for a dashboard or a ticket
  firedrill coverage --within 7d --context prod -o json

  # take a Schedule out on purpose (the reason shows in every report)
  kubectl -n velero annotate schedule ci-scratch firedrill.dev/coverage-exclude="test data, recreated by CI"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			within, err := f.window()
			if err != nil {
				return err
			}
			scs, err := a.coverageScenarios(args, scenariosDir)
			if err != nil {
				return err
			}
			h, closeHistory, err := a.coverageHistory(cmd, historyFlag)
			if err != nil {
				return err
			}
			defer closeHistory()
			res, err := coverage.Measure(cmd.Context(), scs, h, a.discovery(f), coverage.JoinOptions{Now: time.Now(), Within: within})
			if err != nil {
				return err
			}
			if err := a.print(res, func(p printer) { coverageTable(a.out, res) }); err != nil {
				return err
			}
			if len(res.Problems) > 0 {
				return fmt.Errorf("the answer is incomplete:\n  %s", strings.Join(res.Problems, "\n  "))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	f.register(fl)
	fl.StringVar(&historyFlag, "history", "", "history database (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	fl.StringVar(&scenariosDir, "scenarios", "", "scenario directory (default: $FIREDRILL_SCENARIOS)")
	return cmd
}

// coverageScenarios loads the scenarios named, or every scenario of the directory.
func (a *app) coverageScenarios(args []string, dir string) ([]*scenarios.Scenario, error) {
	if len(args) > 0 {
		return a.loadScenarios(args, dir)
	}
	if dir == "" {
		dir = a.getenv("FIREDRILL_SCENARIOS")
	}
	if dir == "" {
		return nil, usagef("Run 'firedrill coverage --help' for usage.", "coverage needs the scenarios that drill: give them as arguments, or --scenarios DIR (FIREDRILL_SCENARIOS)")
	}
	return a.loadScenarios([]string{dir}, "")
}

// coverageHistory opens the history to read; a SQLite history not made yet is empty: nothing
// was drilled.
func (a *app) coverageHistory(cmd *cobra.Command, flag string) (coverage.History, func(), error) {
	loc, err := a.historyLocation(flag)
	if err != nil {
		return nil, nil, err
	}
	if !loc.Postgres {
		if _, err := os.Stat(loc.Path); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(a.err, "no history at %s: nothing was drilled there\n", loc.Path)
			return &coverage.Runs{}, func() {}, nil
		}
	}
	store, err := a.openHistoryReadOnly(cmd, flag)
	if err != nil {
		return nil, nil, err
	}
	return coverage.StoreHistory{Runs: store}, func() { store.Close() }, nil
}

// coverageTable writes the text form: a headline, the items, then why each not covered item
// is not, the exclusions with their reasons, and what could not be discovered.
func coverageTable(w io.Writer, res *coverage.Result) {
	fmt.Fprintf(w, "%s at %s (default window %s)\n\n", coverageHeadline(res), res.At.Format("2006-01-02 15:04Z"), res.DefaultWindow)
	if len(res.Items) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STATUS\tKIND\tITEM\tWINDOW\tLAST PASSED\tLAST DRILL\tSCENARIOS")
		for _, it := range res.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.Status, it.Kind, it.Key().Path(), it.Window,
				drillWhen(it.LastPassed, false), drillWhen(it.LastDrill, true), orDash(strings.Join(it.Scenarios, ",")))
		}
		tw.Flush()
	}
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	var why, excluded, notes []string
	for _, it := range res.Items {
		switch it.Status {
		case coverage.NotCovered:
			why = append(why, it.Key().String()+": "+it.Reason)
		case coverage.Excluded:
			excluded = append(excluded, it.Key().String()+": "+it.Excluded)
		}
		if it.Note != "" {
			notes = append(notes, it.Key().String()+": "+it.Note)
		}
	}
	section("Not restore-tested", why)
	section("Excluded", excluded)
	section("Notes", append(notes, res.Notes...))
}

// coverageHeadline is "2 of 5 items covered (40.0%), 1 excluded".
func coverageHeadline(res *coverage.Result) string {
	n := res.Covered + res.NotCovered
	s := fmt.Sprintf("Coverage: %d of %d items restore-tested", res.Covered, n)
	if res.Ratio != nil {
		s += fmt.Sprintf(" (%.1f%%)", *res.Ratio*100)
	}
	if res.Excluded > 0 {
		s += fmt.Sprintf(", %d excluded", res.Excluded)
	}
	return s
}

func drillWhen(d *coverage.Drill, result bool) string {
	if d == nil {
		return "never"
	}
	s := d.At.UTC().Format("2006-01-02 15:04Z")
	if result {
		s += " " + string(d.Result)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
