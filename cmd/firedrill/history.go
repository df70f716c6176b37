package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/report"
	"github.com/firedrill-dev/firedrill/scenarios"
)

func (a *app) historyCmd() *cobra.Command {
	var (
		historyFlag, scenario, since, result string
		limit                                int
	)
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List past runs, newest first",
		Example: `  firedrill history
  firedrill history --scenario control-plane-etcd --since 30d
  firedrill history --result failed -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := history.Filter{Scenario: scenario, Limit: limit}
			if since != "" {
				d, err := scenarios.ParseDuration(since)
				if err != nil {
					return usagef("", "--since: %v", err)
				}
				f.Since = time.Now().Add(-d)
			}
			if result != "" {
				r := drill.Result(result)
				switch r {
				case drill.Passed, drill.Failed, drill.Error, drill.Aborted, drill.Skipped, drill.Missed, drill.Running:
				default:
					return usagef("", "--result %q: use passed, failed, error, aborted, skipped, missed or running", result)
				}
				f.Result = r
			}
			store, err := a.openHistory(cmd, historyFlag)
			if err != nil {
				return err
			}
			defer store.Close()
			runs, err := store.List(cmd.Context(), f)
			if err != nil {
				return err
			}
			if runs == nil {
				runs = []drill.Record{}
			}
			return a.print(runs, func(p printer) {
				if len(runs) == 0 {
					p("No runs recorded%s. Run a drill with 'firedrill run SCENARIO'.\n", describeFilter(f))
					return
				}
				report.Table(a.out, runs)
			})
		},
	}
	cmd.AddCommand(a.historyVerifyCmd(), a.historyPruneCmd())
	fl := cmd.Flags()
	fl.StringVar(&historyFlag, "history", "", "history database (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	fl.StringVar(&scenario, "scenario", "", "only runs of this scenario")
	fl.StringVar(&since, "since", "", "only runs started within this long, e.g. 24h or 30d")
	fl.StringVar(&result, "result", "", "only runs with this result: passed, failed, error, aborted, skipped, missed, running")
	fl.IntVar(&limit, "limit", 50, "at most this many runs (0: all)")
	return cmd
}

func describeFilter(f history.Filter) string {
	var parts []string
	if f.Scenario != "" {
		parts = append(parts, "of "+f.Scenario)
	}
	if f.Result != "" {
		parts = append(parts, "with result "+string(f.Result))
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since "+f.Since.Format("2006-01-02 15:04"))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

func (a *app) showCmd() *cobra.Command {
	var historyFlag string
	cmd := &cobra.Command{
		Use:   "show RUN_ID",
		Short: "Show one run: steps, checks and their evidence",
		Long:  "Shows a recorded run. RUN_ID may be a unique prefix of the id, as 'firedrill history' lists them.",
		Example: `  firedrill show 20261127-101530-7f3a9c
  firedrill show 20261127-1015 -o json`,
		Args: exactArgs(1, "one RUN_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := a.openHistory(cmd, historyFlag)
			if err != nil {
				return err
			}
			defer store.Close()
			rec, err := store.Get(cmd.Context(), args[0])
			if errors.Is(err, history.ErrNotFound) {
				return &codedError{code: exitUsage, err: fmt.Errorf("%w; list runs with 'firedrill history'", err)}
			}
			if errors.Is(err, history.ErrAmbiguous) {
				return &codedError{code: exitUsage, err: err}
			}
			if err != nil {
				return err
			}
			return a.print(rec, func(p printer) { report.Record(a.out, rec, true) })
		},
	}
	cmd.Flags().StringVar(&historyFlag, "history", "", "history database (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	return cmd
}
