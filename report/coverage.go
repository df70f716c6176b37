package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/firedrill-dev/firedrill/coverage"
)

// CoverageExplanation opens the coverage section of the HTML and Markdown reports: what an
// auditor reads to know why the section comes first and what its list means.
const CoverageExplanation = `A backup is only as good as its last successful restore. Teams write drills for the backups
they remember; the rest stay expensive hopes that no alert or report questions until the day they
are needed. This section lists everything there is to restore — each Velero Schedule and the
namespaces it backs up, Velero backups no Schedule made, and the etcd snapshot sources the
scenarios name — and whether a drill restored it somewhere harmless, checked it and passed.
The items listed first were not restore-tested in the period: a drill of them never ran, only
failed, or last passed too long ago, so there is no evidence that they can be restored,
whatever the backup job reports (ISO/IEC 27001:2022 A.8.13, SOC 2 A1.3, NIST SP 800-53
CP-9(2) ask for this evidence). Items excluded on purpose are listed with the reason given.`

// coverageWhen says what "covered" meant in a result: in the period, or within each window.
func coverageWhen(c *coverage.Result) string {
	if c.Since != nil {
		return fmt.Sprintf("in the period (since %s)", c.Since.Format("2006-01-02 15:04Z"))
	}
	return fmt.Sprintf("within its window (default %s) before %s", c.DefaultWindow, c.At.Format("2006-01-02 15:04Z"))
}

// coverageHeadline is the section's one-line answer.
func coverageHeadline(c *coverage.Result) string {
	s := fmt.Sprintf("%d of %d items not restore-tested %s; restore-tested: %s", c.NotCovered, c.Covered+c.NotCovered, coverageWhen(c), Percent(c.Ratio))
	if c.Excluded > 0 {
		s += fmt.Sprintf("; %d excluded", c.Excluded)
	}
	return s + "."
}

func drillText(d *coverage.Drill) string {
	if d == nil {
		return "never"
	}
	return fmt.Sprintf("%s %s (%s)", d.At.UTC().Format("2006-01-02 15:04Z"), d.Result, d.ID)
}

// coverageMarkdown writes the coverage section of the Markdown report.
func coverageMarkdown(w io.Writer, c *coverage.Result) {
	fmt.Fprintf(w, "## Not restore-tested in the period\n\n%s\n\n**%s**\n\n", strings.ReplaceAll(CoverageExplanation, "\n", " "), coverageHeadline(c))
	if nc := c.NotCoveredItems(); len(nc) > 0 {
		fmt.Fprintf(w, "| kind | item | why | last drill | scenarios |\n|---|---|---|---|---|\n")
		for _, it := range nc {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", it.Kind, mdEscape(it.Key().Path()), mdEscape(it.Reason),
				drillText(it.LastDrill), mdEscape(orDash(strings.Join(it.Scenarios, ", "))))
		}
		fmt.Fprintln(w)
	}
	if ex := c.ExcludedItems(); len(ex) > 0 {
		fmt.Fprintf(w, "Excluded on purpose:\n\n| kind | item | reason |\n|---|---|---|\n")
		for _, it := range ex {
			fmt.Fprintf(w, "| %s | %s | %s |\n", it.Kind, mdEscape(it.Key().Path()), mdEscape(it.Excluded))
		}
		fmt.Fprintln(w)
	}
	if c.Covered > 0 {
		fmt.Fprintf(w, "Restore-tested:\n\n| kind | item | last passed | scenarios |\n|---|---|---|---|\n")
		for _, it := range c.Items {
			if it.Status == coverage.Covered {
				fmt.Fprintf(w, "| %s | %s | %s | %s |\n", it.Kind, mdEscape(it.Key().Path()), drillText(it.LastPassed), mdEscape(strings.Join(it.Scenarios, ", ")))
			}
		}
		fmt.Fprintln(w)
	}
	for _, p := range c.Problems {
		fmt.Fprintf(w, "- **Incomplete:** %s\n", mdEscape(p))
	}
	if len(c.Problems) > 0 {
		fmt.Fprintln(w)
	}
}

// coverageHTML is the coverage section of the HTML report, first on the page.
const coverageHTML = `{{define "coverage"}}<section id="coverage">
<h2>Not restore-tested in the period</h2>
<p id="coverage-explanation">{{coverageExplanation}}</p>
<p id="coverage-headline"><strong>{{coverageHeadline .}}</strong></p>
{{with .NotCoveredItems}}<table id="not-covered">
<thead><tr><th>Kind</th><th>Item</th><th>Why</th><th>Last drill</th><th>Scenarios</th></tr></thead>
<tbody>
{{range .}}<tr><td>{{.Kind}}</td><td class="mono">{{.Key.Path}}</td><td class="failed">{{.Reason}}</td><td>{{drillText .LastDrill}}</td><td>{{if .Scenarios}}{{join .Scenarios ", "}}{{else}}none{{end}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p class="passed">Every item was restore-tested.</p>{{end}}
{{with .ExcludedItems}}<h3>Excluded on purpose</h3>
<table id="excluded">
<thead><tr><th>Kind</th><th>Item</th><th>Reason</th></tr></thead>
<tbody>
{{range .}}<tr><td>{{.Kind}}</td><td class="mono">{{.Key.Path}}</td><td>{{.Excluded}}</td></tr>
{{end}}</tbody>
</table>{{end}}
{{if .Covered}}<h3>Restore-tested</h3>
<table id="covered">
<thead><tr><th>Kind</th><th>Item</th><th>Last passed</th><th>Scenarios</th></tr></thead>
<tbody>
{{range .Items}}{{if eq (str2 .Status) "covered"}}<tr><td>{{.Kind}}</td><td class="mono">{{.Key.Path}}</td><td>{{drillText .LastPassed}}</td><td>{{join .Scenarios ", "}}</td></tr>
{{end}}{{end}}</tbody>
</table>{{end}}
{{range .Problems}}<p class="failed"><strong>Incomplete:</strong> {{.}}</p>
{{end}}</section>
{{end}}`
