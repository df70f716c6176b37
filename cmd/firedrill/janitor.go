package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/janitor"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

func (a *app) janitorCmd() *cobra.Command {
	var (
		opts     janitor.Options
		now      string
		workRoot string
	)
	cmd := &cobra.Command{
		Use:   "janitor",
		Short: "Remove what drills left behind (crashed, killed or kept past keepFor), and nothing else",
		Long: `Removes what firedrill made for a drill once the drill is over: scratch namespaces, Velero
Restores and their resource-modifier ConfigMaps, canary ConfigMaps, probe pods, DownloadRequests,
Backups made with deleteAfter (through a DeleteBackupRequest: their data in object storage goes
too), kind clusters, and runs' work directories in the work root (scratch etcd data, kube-apiserver
directories, snapshots).

Objects are found by both of firedrill's labels (app.kubernetes.io/managed-by=firedrill and
firedrill.dev/run) and removed once their firedrill.dev/expires annotation has passed (the run's
timeouts plus an hour, or cleanup.keepFor for what a cleanup policy kept); without an expiry, once
older than --grace. A work directory is a run's only with an owner file naming its run and runner
(host, pid, start time): it goes once that runner is gone, and then everything of its run in the
cluster goes too, expired or not. Nothing without firedrill's labels or owner file is removed,
whatever its name, and each removal checks the object again first.

It waits for Velero to finish a backup or restore still in flight before deleting it. Exit status
is 1 when a removal failed; what was removed is listed either way.`,
		Example: `  firedrill janitor --dry-run -o json   # what would go, and why
  firedrill janitor --context prod
  firedrill janitor --dry-run --now +2h  # what will be due in two hours`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if now != "" {
				t, err := parseNow(now, time.Now())
				if err != nil {
					return usagef("", "--now %q: %v", now, err)
				}
				opts.AsOf = t
			}
			cfg := janitor.Config{WorkRoot: workRoot, Alive: history.ProcessAlive}
			rc, err := a.restConfig()
			switch {
			case err == nil:
				cfg.Kube = rc
			case errors.Is(err, clientcmd.ErrEmptyConfig) && a.kubeconfig == "" && a.context == "":
				fmt.Fprintln(a.err, "No Kubernetes configuration: only work directories (and kind clusters) are looked at.")
			default:
				return err
			}
			if engine, err := velero.FindContainerEngine(cmd.Context(), velero.SystemEngineProbe()); err == nil {
				cfg.Kind = velero.NewKindClusters(engine)
			}
			j, err := janitor.New(cfg)
			if err != nil {
				return err
			}
			opts.WaitInFlight = true
			rep, err := j.Sweep(cmd.Context(), opts)
			if perr := a.print(rep, func(p printer) { printJanitorReport(p, a, rep) }); perr != nil {
				return perr
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.DryRun, "dry-run", false, "list what would be removed and why, remove nothing")
	fl.DurationVar(&opts.Grace, "grace", scratch.DefaultGrace, "remove something of firedrill's without an expiry once it is this old")
	fl.StringVar(&now, "now", "", "judge expiries as at this time (RFC 3339, or +DURATION from now) instead of now; without --dry-run it also removes what running drills use")
	fl.StringVar(&workRoot, "work-root", "", "where runs make their work directories (default: $TMPDIR, as firedrill run and serve)")
	return cmd
}

// parseNow reads --now: an RFC 3339 time, or +DURATION after now.
func parseNow(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return time.Time{}, fmt.Errorf("write +DURATION, e.g. +2h: %w", err)
		}
		return now.Add(dur), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("write an RFC 3339 time (2026-01-02T15:04:05Z) or +DURATION: %w", err)
	}
	return t, nil
}

func printJanitorReport(p printer, a *app, rep *janitor.Report) {
	verb := "Deleted"
	if rep.DryRun {
		verb = "Would delete"
	}
	if len(rep.Items) == 0 {
		p("Nothing of firedrill's is due.\n")
	} else {
		p("%s %d leftover(s) of firedrill:\n", verb, len(rep.Items))
		tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  KIND\tNAME\tRUN\tWHY")
		for _, it := range rep.Items {
			why := it.Why()
			if it.Note != "" {
				why += "; " + it.Note
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", it.Kind, it.Where(), it.Run, why)
		}
		tw.Flush()
	}
	if len(rep.Left) > 0 {
		p("Left for a later pass:\n")
		for _, it := range rep.Left {
			p("  %s %s (run %s): %s\n", it.Kind, it.Where(), it.Run, it.Note)
		}
	}
}
