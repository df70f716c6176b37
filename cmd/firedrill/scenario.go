package main

import (
	"fmt"

	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/spf13/cobra"
)

func (a *app) scenarioCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scenario",
		Short: "Work with scenario files: the drills firedrill runs",
		Long: `A scenario is a YAML file (apiVersion: firedrill.dev/v1alpha1, kind: Scenario) that says which
backup to drill, where to restore it, what to check, the objectives it must meet and when it runs.
The field reference is scenarios/README.md; documented examples are in scenarios/examples/.`,
	}
	cmd.AddCommand(a.scenarioValidateCmd())
	return cmd
}

// scenarioFileResult is one file's verdict in `scenario validate -o json`.
type scenarioFileResult struct {
	Path     string               `json:"path"`
	Valid    bool                 `json:"valid"`
	Problems []*scenarios.Problem `json:"problems"`
}

func (a *app) scenarioValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check scenario files and report every problem of every file, with file and line",
		Long: `Loads each scenario file as a drill would (strict decoding, defaults, relative paths resolved
against the file) and validates it, reporting every problem at once as FILE:LINE: MESSAGE. A
directory means the *.yaml and *.yml files directly in it. Files the scenario reads (TLS
certificates and keys, S3 credentials, encryption config) must exist.

Exits 0 when every file is valid and 2 when any has a problem.`,
		Example: `  # One file, and every scenario in a directory
  firedrill scenario validate scenarios/examples/minimal.yaml
  firedrill scenario validate scenarios/examples/

  # In CI: one JSON verdict per file
  firedrill scenario validate -o json scenarios/examples/ | jq '.[] | select(.valid == false)'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef(fmt.Sprintf("Run '%s --help' for usage.", cmd.CommandPath()), "%s takes one or more scenario files or directories", cmd.CommandPath())
			}
			return nil
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.validateScenarios(args)
		},
	}
}

// validateScenarios reports on every file paths name; it is the command without cobra.
func (a *app) validateScenarios(paths []string) error {
	// Files in the order given (a directory's sorted), each once, as LoadAll loads them; a path
	// that names no file comes after them, under its own name.
	order, _ := scenarios.Expand(paths...)
	seen := map[string]bool{}
	for _, f := range order {
		seen[f] = true
	}
	_, err := scenarios.LoadAll(paths...)
	byFile := map[string][]*scenarios.Problem{}
	for _, p := range scenarios.Problems(err) {
		if !seen[p.File] {
			seen[p.File] = true
			order = append(order, p.File)
		}
		byFile[p.File] = append(byFile[p.File], p)
	}

	plural := func(n int, what string) string {
		if n == 1 {
			return "1 " + what
		}
		return fmt.Sprintf("%d %ss", n, what)
	}
	results := make([]scenarioFileResult, 0, len(order))
	invalid, problems := 0, 0
	for _, f := range order {
		ps := byFile[f]
		if ps == nil {
			ps = []*scenarios.Problem{} // [] rather than null in JSON
		}
		results = append(results, scenarioFileResult{Path: f, Valid: len(ps) == 0, Problems: ps})
		if len(ps) > 0 {
			invalid++
			problems += len(ps)
		}
	}
	if perr := a.print(results, func(p printer) {
		for _, r := range results {
			if r.Valid {
				p("OK %s\n", r.Path)
			}
			for _, pr := range r.Problems {
				p("%s\n", pr)
			}
		}
		switch {
		case invalid == 0:
			p("%s: all valid\n", plural(len(results), "file"))
		default:
			p("%s in %d of %s\n", plural(problems, "problem"), invalid, plural(len(results), "file"))
		}
	}); perr != nil {
		return perr
	}
	if invalid > 0 {
		return &codedError{code: exitUsage} // every problem is printed above
	}
	return nil
}
