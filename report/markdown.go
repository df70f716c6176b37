package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// Markdown writes the report for tickets and wikis: scope, integrity, per-scenario and
// per-control tables, failures, and one line per run.
func (r *Report) Markdown(ctx context.Context, w io.Writer) error {
	s := r.Summary
	fmt.Fprintf(w, "# Disaster-recovery drill report\n\n")
	fmt.Fprintf(w, "- **Scope:** %s\n- **Generated:** %s\n- **Runs:** %d, pass rate %s (%s)\n\n",
		mdEscape(s.Scope), s.GeneratedAt.Format(time.RFC3339), s.Runs, Percent(s.PassRate), countsText(s.Counts))

	if s.Coverage != nil {
		coverageMarkdown(w, s.Coverage)
	}
	fmt.Fprintf(w, "## Integrity\n\n%s\n\n", mdEscape(s.Integrity.Statement))
	if s.Integrity.VerifyCommand != "" {
		fmt.Fprintf(w, "Re-verify with:\n\n```sh\n%s\n```\n\n", s.Integrity.VerifyCommand)
	}

	fmt.Fprintf(w, "## Scenarios\n\n| scenario | runs | pass rate | last success | last result | RTO max (objective, met/not) | RPO max (objective, met/not) | controls |\n|---|---:|---:|---|---|---|---|---|\n")
	for _, sc := range s.Scenarios {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", mdEscape(sc.Name), sc.Runs, Percent(sc.PassRate),
			timeOr(sc.LastSuccess, "never in period"), orDash(string(sc.LastResult)), measureText(sc.RTO), measureText(sc.RPO), mdEscape(strings.Join(sc.Controls, ", ")))
	}
	fmt.Fprintln(w)

	if len(s.Controls) > 0 {
		fmt.Fprintf(w, "## Controls\n\n| control | status | runs | passed | last evidence | scenarios | failed runs |\n|---|---|---:|---:|---|---|---|\n")
		for _, c := range s.Controls {
			status := c.Status
			if status != "passed" {
				status = "**" + strings.ToUpper(status) + "**"
			}
			last := "none in the period"
			if c.LastSuccessRun != "" {
				last = fmt.Sprintf("%s (`%s`)", timeOr(c.LastSuccess, "-"), c.LastSuccessRun)
			}
			failed := make([]string, len(c.FailedRuns))
			for i, id := range c.FailedRuns {
				failed[i] = "`" + id + "`"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %s | %s |\n", mdEscape(c.Control), status, c.Runs, c.Passed,
				last, mdEscape(strings.Join(c.Scenarios, ", ")), strings.Join(failed, " "))
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "## Failures\n\n")
	if len(s.Failures) == 0 {
		fmt.Fprintf(w, "None in the period.\n\n")
	} else {
		fmt.Fprintf(w, "| run | scenario | started | result | reason |\n|---|---|---|---|---|\n")
		for _, f := range s.Failures {
			fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s |\n", f.ID, mdEscape(f.Scenario), f.At.Format("2006-01-02 15:04Z"), f.Result, mdEscape(f.Reason))
		}
		if s.FailuresOmitted > 0 {
			fmt.Fprintf(w, "\n…and %d more (every run is listed below).\n", s.FailuresOmitted)
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "## Runs\n\n| run | scenario | started | result | RTO | RPO | checks | hash |\n|---|---|---|---|---:|---:|---|---|\n")
	return r.eachInScope(ctx, func(rec *drill.Record) error {
		var checks []string
		for _, c := range rec.Checks {
			checks = append(checks, Mark(c.Result)+" "+c.Name)
		}
		_, err := fmt.Fprintf(w, "| `%s` | %s | %s | %s %s | %s | %s | %s | `%s` |\n", rec.ID, mdEscape(rec.Scenario),
			rec.StartedAt.UTC().Format("2006-01-02 15:04Z"), Mark(rec.Result), rec.Result, Seconds(rec.RTOSeconds), Seconds(rec.RPOSeconds),
			mdEscape(strings.Join(checks, "; ")), shortHash(rec.Hash))
		return err
	})
}

func countsText(c map[string]int) string {
	var parts []string
	for _, r := range []drill.Result{drill.Passed, drill.Failed, drill.Error, drill.Aborted, drill.Skipped, drill.Missed} {
		if n := c[string(r)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, r))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func measureText(m Measure) string {
	s := Seconds(m.MaxSeconds)
	if m.TargetSeconds != nil {
		s += fmt.Sprintf(" (%s, %d/%d)", Seconds(m.TargetSeconds), m.Met, m.NotMet)
	}
	return s
}

func timeOr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return orDash(h)
}

// mdEscape keeps text from breaking a table or turning into markup.
var mdReplacer = strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;", "*", `\*`, "_", `\_`, "`", "\\`", "[", `\[`, "]", `\]`)

func mdEscape(s string) string { return mdReplacer.Replace(s) }

// evidenceValue renders one evidence value: strings as they are, anything else as JSON.
func evidenceValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
