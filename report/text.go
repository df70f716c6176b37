// Package report renders run records for people and machines: text for terminals, and reports
// over a period of the history for auditors in HTML, JSON, JUnit XML, Markdown and CSV
// (docs/reports.md). It reads drill's record types and verifies the history's hash chain.
package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// Mark is the one-character sign of a result, for dense listings.
func Mark(r drill.Result) string {
	switch r {
	case drill.Passed:
		return "✓"
	case drill.Failed:
		return "✗"
	case drill.Error:
		return "!"
	case drill.Aborted:
		return "⊘"
	case drill.Skipped:
		return "-"
	case drill.Missed:
		return "○"
	case drill.Running:
		return "…"
	}
	return "?"
}

// Seconds renders a measured duration, "-" when unmeasured.
func Seconds(s *float64) string {
	if s == nil {
		return "-"
	}
	return Duration(time.Duration(*s * float64(time.Second)))
}

// Duration renders a duration rounded for reading: 850ms, 12.3s, 4m05s, 26h.
func Duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 72*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// Record writes one run for a person: verdict, backup, objectives, steps, checks and evidence.
func Record(w io.Writer, r *drill.Record, withEvidence bool) {
	took := "still running"
	if r.FinishedAt != nil {
		took = "in " + Duration(r.FinishedAt.Sub(r.StartedAt))
	}
	fmt.Fprintf(w, "%s %s  drill %s  run %s  %s\n", Mark(r.Result), strings.ToUpper(string(r.Result)), r.Scenario, r.ID, took)
	if r.Message != "" {
		fmt.Fprintf(w, "  why:     %s\n", r.Message)
	}
	fmt.Fprintf(w, "  started: %s by %s (%s)\n", r.StartedAt.Local().Format("2006-01-02 15:04:05 MST"), orDash(r.Operator), r.Trigger)
	if b := r.Backup; b.Kind != "" {
		fmt.Fprintf(w, "  backup:  %s\n", backupLine(b))
	}
	if t := r.Target; t != nil {
		fmt.Fprintf(w, "  target:  %s\n", targetLine(t))
	}
	fmt.Fprintf(w, "  RTO:     %s%s\n", Seconds(r.RTOSeconds), objective(r, "rto"))
	fmt.Fprintf(w, "  RPO:     %s%s\n", Seconds(r.RPOSeconds), objective(r, "rpo"))
	var steps []string
	for _, s := range r.Steps {
		d := ""
		if s.FinishedAt != nil && s.Result != drill.Skipped {
			d = " " + Duration(s.FinishedAt.Sub(s.StartedAt))
		}
		steps = append(steps, fmt.Sprintf("%s %s%s", Mark(s.Result), s.Name, d))
	}
	fmt.Fprintf(w, "  steps:   %s\n", strings.Join(steps, " · "))
	for _, s := range r.Steps {
		if s.Message != "" && s.Message != r.Message && s.Result != drill.Passed && s.Result != drill.Skipped {
			fmt.Fprintf(w, "           %s: %s\n", s.Name, s.Message)
		}
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(w, "  checks:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range r.Checks {
			fmt.Fprintf(tw, "    %s %s\t%s\t%s\n", Mark(c.Result), c.Name, c.Type, oneLine(c.Message))
		}
		tw.Flush()
	}
	if withEvidence && r.Hash != "" {
		signed := "unsigned"
		if r.Signature != "" {
			signed = "signed"
		}
		fmt.Fprintf(w, "  chain:   hash %s (%s; verify with 'firedrill history verify')\n", r.Hash, signed)
	}
	if withEvidence {
		for _, c := range r.Checks {
			if len(c.Evidence) == 0 {
				continue
			}
			fmt.Fprintf(w, "  evidence of %q:\n", c.Name)
			keys := make([]string, 0, len(c.Evidence))
			for k := range c.Evidence {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "    %s: %v\n", k, c.Evidence[k])
			}
		}
	}
}

func backupLine(b drill.BackupRecord) string {
	parts := []string{b.Kind}
	if b.Name != "" {
		parts = append(parts, b.Name)
	}
	if b.Source != "" {
		parts = append(parts, "from "+b.Source)
	}
	if b.Location != "" {
		parts = append(parts, "at "+b.Location)
	}
	line := strings.Join(parts, " ")
	var facts []string
	if b.SizeBytes > 0 {
		facts = append(facts, Bytes(b.SizeBytes))
	}
	if b.Revision > 0 {
		facts = append(facts, fmt.Sprintf("revision %d", b.Revision))
	}
	if b.Items > 0 {
		facts = append(facts, fmt.Sprintf("%d items", b.Items))
	}
	if b.SHA256 != "" {
		facts = append(facts, "sha256 "+b.SHA256[:min(12, len(b.SHA256))]+"…")
	}
	if b.CreatedAt != nil {
		facts = append(facts, "data from "+b.CreatedAt.Local().Format("2006-01-02 15:04:05"))
	}
	if s := b.Selection; s != nil && s.Chosen != nil {
		how := "the newest"
		if s.Seed != nil {
			how = fmt.Sprintf("at random (seed %d)", *s.Seed)
		}
		if s.Window != "" {
			how += " within " + s.Window
		}
		facts = append(facts, fmt.Sprintf("chosen %s of %d", how, s.CandidateCount))
	}
	if len(facts) > 0 {
		line += " (" + strings.Join(facts, ", ") + ")"
	}
	return line
}

func targetLine(t *drill.TargetRecord) string {
	parts := []string{t.Kind}
	if t.Cluster != "" {
		parts = append(parts, t.Cluster)
	}
	keys := make([]string, 0, len(t.Namespaces))
	for k := range t.Namespaces {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+" → "+t.Namespaces[k])
	}
	if len(t.Endpoints) > 0 {
		parts = append(parts, strings.Join(t.Endpoints, " "))
	}
	state := "removed at cleanup"
	if t.Kept {
		state = "KEPT for inspection"
	}
	return strings.Join(parts, " ") + " (" + state + ")"
}

func objective(r *drill.Record, name string) string {
	for _, o := range r.Objectives {
		if o.Name == name {
			verdict := "met"
			if !o.Met {
				verdict = "NOT met"
			}
			return fmt.Sprintf("  (objective %s: %s)", Duration(time.Duration(o.TargetSeconds*float64(time.Second))), verdict)
		}
	}
	return ""
}

// Table writes runs one per line, newest first as given.
func Table(w io.Writer, runs []drill.Record) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSCENARIO\tRESULT\tSTARTED\tTOOK\tRTO\tRPO\tWHY")
	for _, r := range runs {
		took := "-"
		if r.FinishedAt != nil {
			took = Duration(r.FinishedAt.Sub(r.StartedAt))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Scenario, Mark(r.Result), r.Result,
			r.StartedAt.Local().Format("2006-01-02 15:04"), took, Seconds(r.RTOSeconds), Seconds(r.RPOSeconds), truncate(oneLine(r.Message), 60))
	}
	tw.Flush()
}

// Bytes renders a size in binary units.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
