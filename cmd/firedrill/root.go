package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// app holds what every command depends on; commands take it instead of reaching for globals,
// so tests run them in-process with their own streams and environment.
type app struct {
	in       io.Reader
	out, err io.Writer
	getenv   func(string) string

	// Flags shared by every command.
	kubeconfig string
	context    string
	output     string
	signingKey string // --signing-key: signs the records this process finishes

	// prog is how the user called firedrill (programName): "kubectl firedrill" as a plugin.
	prog string
}

func newApp(in io.Reader, out, errw io.Writer, getenv func(string) string) *app {
	return &app{in: in, out: out, err: errw, getenv: getenv, prog: "firedrill"}
}

// outputFormats for -o; "table" is text, the word history listings use.
var outputFormats = []string{"text", "table", "json", "yaml"}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "firedrill",
		Short: "Disaster-recovery drills for Kubernetes",
		Long: `firedrill restores etcd snapshots and Velero backups somewhere harmless, checks that what came
back works and is the data that was backed up, cleans up, and records the result with RTO and RPO
as evidence an auditor can trust.`,
		Example: `  # Start a local cluster with Velero to try firedrill on (no Docker needed)
  firedrill sandbox up --velero
  eval "$(firedrill sandbox env)"

  # Versions of firedrill and of the components it was tested with
  firedrill version -o json`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(outputFormats, a.output) {
				return usagef("", "unknown output format %q: use one of %s", a.output, strings.Join(outputFormats, ", "))
			}
			return nil
		},
	}
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.err)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: err, hint: fmt.Sprintf("Run '%s --help' for usage.", cmd.CommandPath())}
	})

	pf := root.PersistentFlags()
	pf.StringVar(&a.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
	pf.StringVar(&a.context, "context", "", "kubeconfig context to use (default: the current context)")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: "+strings.Join(outputFormats, "|"))
	a.registerSigningFlag(pf)
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputFormats, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(
		a.runCmd(),
		a.planCmd(),
		a.historyCmd(),
		a.showCmd(),
		a.snapshotCmd(),
		a.restoreCmd(),
		a.janitorCmd(),
		a.versionCmd(),
		a.sandboxCmd(),
		a.scenarioCmd(),
		a.serveCmd(),
		a.keygenCmd(),
		a.reportCmd(),
		a.coverageCmd(),
		a.runJobCmd(),
	)
	// The exit codes close every help page: they are part of the interface.
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodesHelp + "\n")
	if a.prog == pluginName {
		renameForPlugin(root)
	}
	return root
}

// execute runs the command line and returns the process exit status.
func execute(ctx context.Context, a *app, args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if a.prog == pluginName {
		err = pluginError(err)
	}
	return exitCode(ctx, err, a.err)
}

// args validators that report misuse as a usage error (exit 2).
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef(fmt.Sprintf("Run '%s --help' for usage.", cmd.CommandPath()), "%s takes %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(fmt.Sprintf("Run '%s --help' for usage.", cmd.CommandPath()), "%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}
