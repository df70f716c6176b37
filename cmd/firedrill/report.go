package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/report"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// reportFlags are `firedrill report`'s flags.
type reportFlags struct {
	history, from, to, since, scenario, selector, format, out, bundle, publicKey, scenarios string
	// coverage adds the section "not restore-tested in the period" (discovery as `coverage`).
	coverage      bool
	coverageFlags coverageFlags
}

func (a *app) reportCmd() *cobra.Command {
	var f reportFlags
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Report the drills of a period for auditors: HTML, JSON, JUnit, Markdown or CSV",
		Long: `Reports which drills ran in a period, on what, with what result, whether they met their
recovery objectives, which controls they evidence, and whether the history is intact (verified
over every record as the report is made: the check 'firedrill history verify' makes). See
docs/reports.md.

Formats: html (one self-contained page that also prints; it lists each scenario's last runs, its
failures and its last success in full, and says where every run is), json (summary and every
record; schema in docs/reports.md), junit (a testsuite per scenario, a testcase per check),
markdown, csv (a row per run). --bundle writes a tar.gz for an auditor: report.html, report.json, records.jsonl (the
records as stored), verify.txt and the public key.

--from and --to take a date (2026-11-01, UTC; --to includes that whole day) or an RFC 3339 time;
--since a duration back from now (30d, 12h). Controls come from the scenarios' annotation
firedrill.dev/controls ("SOC2-A1.3,ISO27001-A.5.30"); with --scenarios (or FIREDRILL_SCENARIOS)
scenarios and controls that never ran in the period are listed too.

--coverage opens the report with what was not restore-tested in the period: it discovers what
there is to drill as 'firedrill coverage' does (the scenarios of --scenarios, the
--kubeconfig/--context cluster) and lists the items no drill passed on in the period (without
--from or --since: within their window), with the reasons and the exclusions.`,
		Example: `  # the quarter, for the auditor
  firedrill report --from 2026-10-01 --to 2026-12-31 --out q4.html
  firedrill report --since 90d --bundle q4-evidence.tar.gz --public-key /etc/firedrill/keys/firedrill-signing.pub

  # the quarter, opening with the backups that were not restore-tested in it
  firedrill report --since 90d --coverage --scenarios /etc/firedrill/scenarios --context prod --out q4.html

  # last week's drills of one team as JUnit, for CI
  firedrill report --since 7d --label team=shop --format junit --out drills.xml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runReport(cmd.Context(), cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.history, "history", "", "history database (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	fl.StringVar(&f.from, "from", "", "runs started on or after this date or time (2026-11-01 or RFC 3339)")
	fl.StringVar(&f.to, "to", "", "runs started before this time, or on or before this date")
	fl.StringVar(&f.since, "since", "", "runs started within this long before now, e.g. 30d (instead of --from)")
	fl.StringVar(&f.scenario, "scenario", "", "only runs of this scenario")
	fl.StringVarP(&f.selector, "label", "l", "", "only runs of scenarios whose labels match this selector (team=shop, tier in (1,2))")
	fl.StringVar(&f.format, "format", "html", "report format: "+strings.Join(report.Formats, "|"))
	fl.StringVar(&f.out, "out", "", "write the report to this file (default: standard output)")
	fl.StringVar(&f.bundle, "bundle", "", "write an evidence bundle (tar.gz) for an auditor to this file")
	fl.StringVar(&f.publicKey, "public-key", "", "ed25519 public key: check every record's signature, and put the key in the bundle")
	fl.StringVar(&f.scenarios, "scenarios", "", "scenario directory, to list scenarios and controls that did not run (default: $FIREDRILL_SCENARIOS)")
	fl.BoolVar(&f.coverage, "coverage", false, "open the report with what was not restore-tested in the period (needs --scenarios; see 'firedrill coverage')")
	f.coverageFlags.register(fl)
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(report.Formats, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) runReport(ctx context.Context, cmd *cobra.Command, f reportFlags) error {
	if !slices.Contains(report.Formats, f.format) {
		return usagef("", "--format %q: use one of %s", f.format, strings.Join(report.Formats, ", "))
	}
	scope, err := parseScope(f, time.Now())
	if err != nil {
		return err
	}
	var (
		pub    ed25519.PublicKey
		pubPEM []byte
	)
	if f.publicKey != "" {
		if pub, err = chain.LoadPublicKey(f.publicKey); err != nil {
			return usagef("", "%v", err)
		}
		if pubPEM, err = os.ReadFile(f.publicKey); err != nil {
			return err
		}
	}
	infos, err := a.scenarioInfos(f.scenarios)
	if err != nil {
		return err
	}
	store, err := a.openHistoryReadOnly(cmd, f.history)
	if err != nil {
		return err
	}
	defer store.Close()
	opts := report.Options{Scope: scope, Scenarios: infos, PublicKey: pub, VerifyCommand: verifyCommand(f)}
	if f.coverage {
		if opts.CoverageWithin, err = f.coverageFlags.window(); err != nil {
			return err
		}
		scs, err := a.coverageScenarios(nil, f.scenarios)
		if err != nil {
			return err
		}
		opts.Coverage = coverage.Discover(ctx, scs, a.discovery(f.coverageFlags))
		for _, p := range opts.Coverage.Problems {
			fmt.Fprintf(a.err, "coverage is incomplete: %s\n", p)
		}
	}
	rep, err := report.New(ctx, store, opts)
	if err != nil {
		return err
	}
	if f.bundle != "" {
		var extra []report.BundleFile
		if pubPEM != nil {
			extra = append(extra, report.BundleFile{Name: chain.PublicKeyFile, Data: pubPEM})
		}
		if err := writeAtomically(f.bundle, func(w io.Writer) error { return rep.Bundle(ctx, w, extra...) }); err != nil {
			return err
		}
		fmt.Fprintf(a.err, "wrote %s: %d runs, history %s\n", f.bundle, rep.Summary.Runs, integrityWord(rep.Summary.Integrity))
		if f.out == "" && !cmd.Flags().Changed("format") {
			return integrityExit(rep.Summary.Integrity)
		}
	}
	if f.out == "" {
		if err := rep.Write(ctx, f.format, a.out); err != nil {
			return err
		}
	} else {
		if err := writeAtomically(f.out, func(w io.Writer) error { return rep.Write(ctx, f.format, w) }); err != nil {
			return err
		}
		fmt.Fprintf(a.err, "wrote %s: %d runs, pass rate %s, history %s\n", f.out, rep.Summary.Runs, report.Percent(rep.Summary.PassRate), integrityWord(rep.Summary.Integrity))
	}
	return integrityExit(rep.Summary.Integrity)
}

func integrityWord(in report.Integrity) string {
	if in.Intact {
		return "intact"
	}
	return "TAMPERED"
}

// integrityExit makes a report of a tampered history exit 1, as `history verify` does: the
// report is written (it says so on its first page), but a pipeline must not take it as clean.
func integrityExit(in report.Integrity) error {
	if in.Intact {
		return nil
	}
	return &codedError{code: exitFailed, err: fmt.Errorf("the history is tampered (its hash chain is broken, or a record or a column was edited): %s", in.Problem)}
}

// writeAtomically writes through a temporary file renamed into place, so that a failed report never
// leaves a truncated file that looks like a report.
func writeAtomically(path string, render func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := render(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// parseScope turns the period and selection flags into a report scope.
func parseScope(f reportFlags, now time.Time) (report.Scope, error) {
	var s report.Scope
	if f.since != "" && f.from != "" {
		return s, usagef("", "--since and --from both set the start of the period: give one")
	}
	var err error
	if f.since != "" {
		d, err := scenarios.ParseDuration(f.since)
		if err != nil {
			return s, usagef("", "--since: %v", err)
		}
		s.From = now.Add(-d)
	}
	if f.from != "" {
		if s.From, err = parseWhen(f.from, false); err != nil {
			return s, usagef("", "--from: %v", err)
		}
	}
	if f.to != "" {
		if s.To, err = parseWhen(f.to, true); err != nil {
			return s, usagef("", "--to: %v", err)
		}
	}
	if !s.From.IsZero() && !s.To.IsZero() && !s.From.Before(s.To) {
		return s, usagef("", "the period is empty: --to (%s) is not after the start (%s)", s.To.Format(time.RFC3339), s.From.Format(time.RFC3339))
	}
	s.Scenario = f.scenario
	if f.selector != "" {
		if s.Labels, err = labels.Parse(f.selector); err != nil {
			return s, usagef("", "--label %q: %v", f.selector, err)
		}
	}
	return s, nil
}

// parseWhen reads a date (UTC midnight; as an end, the next midnight, so the day is included)
// or an RFC 3339 time.
func parseWhen(v string, end bool) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", v); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a date (2026-11-01) nor an RFC 3339 time (2026-11-01T00:00:00Z)", v)
}

// scenarioInfos reads the scenarios of dir (or FIREDRILL_SCENARIOS), for the controls they
// name; none when neither is set.
func (a *app) scenarioInfos(dir string) ([]report.ScenarioInfo, error) {
	if dir == "" {
		dir = a.getenv("FIREDRILL_SCENARIOS")
	}
	if dir == "" {
		return nil, nil
	}
	scs, err := scenarios.LoadAll(dir)
	if err != nil && len(scs) == 0 {
		return nil, usagef("Check them with 'firedrill scenario validate'.", "read scenarios in %s: %v", dir, err)
	}
	var out []report.ScenarioInfo
	for _, sc := range scs {
		out = append(out, report.ScenarioInfo{Name: sc.Metadata.Name, Labels: sc.Metadata.Labels,
			Controls: report.ControlsOf(sc.Metadata.Annotations, sc.Metadata.Labels)})
	}
	return out, nil
}

// verifyCommand is the command line that re-verifies the history a report was made from, with
// any password left out.
func verifyCommand(f reportFlags) string {
	parts := []string{"firedrill history verify"}
	if f.history != "" {
		// An absolute file path, since the command is run later, from anywhere; a URL without
		// its password.
		h := f.history
		if loc, err := history.ParseLocation(h); err == nil {
			h = loc.String()
		}
		parts = append(parts, "--history "+shellQuote(h))
	}
	if f.publicKey != "" {
		parts = append(parts, "--public-key "+shellQuote(f.publicKey))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@=,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
