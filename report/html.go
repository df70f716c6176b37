package report

import (
	"context"
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill"
)

// HTML writes one self-contained page (inline CSS and SVG, no script, no external assets) that
// reads on screen and prints: scope, integrity, per-scenario results with RTO and RPO trends,
// controls, failures, then, grouped by scenario, a bounded list of runs with their steps,
// checks and evidence: each scenario's last ListedPerScenario runs, its failures of the
// failure list and its last success. The page says how many runs it leaves out and where
// they are. It reads nothing more from the history: the listed runs were kept by New.
func (r *Report) HTML(_ context.Context, w io.Writer) error {
	return r.html(w, false)
}

// html writes the page; inBundle links the bundle's report.json and records.jsonl, which sit
// next to it.
func (r *Report) html(w io.Writer, inBundle bool) error {
	if err := htmlTemplates.ExecuteTemplate(w, "head", htmlPage{r.Summary, inBundle}); err != nil {
		return err
	}
	names := make([]string, 0, len(r.listed))
	for name := range r.listed {
		names = append(names, name)
	}
	sort.Strings(names)
	runs := map[string]int{}
	for _, sc := range r.Summary.Scenarios {
		runs[sc.Name] = sc.Runs
	}
	listed := 0
	var b strings.Builder
	for _, name := range names {
		kept := r.listed[name].runs()
		listed += len(kept)
		fmt.Fprintf(w, "<h3 class=\"runs-of\" id=\"runs-%s\">%s: %s</h3>\n", esc(name), esc(name), listedText(len(kept), runs[name]))
		for _, k := range kept {
			var rec drill.Record
			if err := decodeRecord(k.raw, &rec); err != nil {
				return fmt.Errorf("stored record %d of the chain: %w", k.pos, err)
			}
			b.Reset()
			writeRunHTML(&b, &rec)
			if _, err := io.WriteString(w, b.String()); err != nil {
				return err
			}
		}
	}
	return htmlTemplates.ExecuteTemplate(w, "foot", htmlFoot{Listed: listed, Runs: r.Summary.Runs, InBundle: inBundle})
}

// htmlPage is what the page's head template reads.
type htmlPage struct {
	*Summary
	InBundle bool
}

type htmlFoot struct {
	Listed, Runs int
	InBundle     bool
}

// listedText says how many of a scenario's runs the page lists.
func listedText(listed, runs int) string {
	if listed == runs {
		return fmt.Sprintf("%d runs", runs)
	}
	return fmt.Sprintf("%d runs, %d listed here (the last %d, failures, the last success), %d left out", runs, listed, min(runs, ListedPerScenario), runs-listed)
}

// writeRunHTML writes one run's article. It is Go rather than a template because it runs once
// per run: html/template's reflection made it most of a 100,000-run report's time. Every
// value from the record goes through esc.
func writeRunHTML(b *strings.Builder, r *drill.Record) {
	res := esc(string(r.Result))
	fmt.Fprintf(b, "<article class=\"run\" id=\"run-%s\">\n<h3><span class=\"%s\">%s %s</span> %s <span class=\"mono muted\">%s</span></h3>\n<dl class=\"facts\">\n",
		esc(r.ID), res, Mark(r.Result), strings.ToUpper(res), esc(r.Scenario), esc(r.ID))
	fmt.Fprintf(b, "<dt>Started</dt><dd>%s by %s (%s), took %s</dd>\n", r.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), esc(orDash(r.Operator)), esc(r.Trigger), took(r))
	if r.Message != "" {
		fmt.Fprintf(b, "<dt>Why</dt><dd class=\"%s\">%s</dd>\n", res, esc(r.Message))
	}
	if r.Backup.Kind != "" {
		fmt.Fprintf(b, "<dt>Backup</dt><dd>%s</dd>\n", esc(backupLine(r.Backup)))
	}
	if r.Target != nil {
		fmt.Fprintf(b, "<dt>Target</dt><dd>%s</dd>\n", esc(targetLine(r.Target)))
	}
	fmt.Fprintf(b, "<dt>RTO / RPO</dt><dd>%s / %s", Seconds(r.RTOSeconds), Seconds(r.RPOSeconds))
	for _, o := range r.Objectives {
		verdict := `<span class="passed">met</span>`
		if !o.Met {
			verdict = `<span class="failed">NOT met</span>`
		}
		t := o.TargetSeconds
		fmt.Fprintf(b, "; objective %s %s %s", esc(strings.ToUpper(o.Name)), Seconds(&t), verdict)
	}
	b.WriteString("</dd>\n")
	if cs := ControlsOf(r.Annotations, r.Labels); len(cs) > 0 {
		fmt.Fprintf(b, "<dt>Controls</dt><dd>%s</dd>\n", esc(strings.Join(cs, ", ")))
	}
	signed := ""
	if r.Signature != "" {
		signed = " (signed)"
	}
	fmt.Fprintf(b, "<dt>Hash</dt><dd class=\"mono\">%s%s</dd>\n</dl>\n", esc(r.Hash), signed)
	if len(r.Steps) > 0 {
		b.WriteString("<table><thead><tr><th>Step</th><th>Result</th><th>Took</th><th>Message</th></tr></thead><tbody>\n")
		for _, st := range r.Steps {
			d := ""
			if st.FinishedAt != nil {
				d = Duration(st.FinishedAt.Sub(st.StartedAt))
			}
			sr := esc(string(st.Result))
			fmt.Fprintf(b, "<tr><td>%s</td><td class=\"%s\">%s %s</td><td>%s</td><td>%s</td></tr>\n", esc(st.Name), sr, Mark(st.Result), sr, d, esc(st.Message))
		}
		b.WriteString("</tbody></table>\n")
	}
	if len(r.Checks) > 0 {
		b.WriteString("<table><thead><tr><th>Check</th><th>Type</th><th>Result</th><th>Message and evidence</th></tr></thead><tbody>\n")
		for _, c := range r.Checks {
			cr := esc(string(c.Result))
			fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td><td class=\"%s\">%s %s</td><td>%s", esc(c.Name), esc(c.Type), cr, Mark(c.Result), cr, esc(c.Message))
			if ev := sortedEvidence(c.Evidence); len(ev) > 0 {
				b.WriteString(`<ul class="evidence">`)
				for _, e := range ev {
					fmt.Fprintf(b, `<li><span>%s</span>: <span class="mono">%s</span></li>`, esc(e.Key), esc(e.Value))
				}
				b.WriteString("</ul>")
			}
			b.WriteString("</td></tr>\n")
		}
		b.WriteString("</tbody></table>\n")
	}
	b.WriteString("</article>\n")
}

// esc escapes text for HTML content and quoted attribute values.
func esc(s string) string { return html.EscapeString(s) }

var htmlTemplates = template.Must(template.New("report").Funcs(template.FuncMap{
	"mark":                Mark,
	"percent":             Percent,
	"seconds":             Seconds,
	"when":                func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"whenPtr":             func(t *time.Time, none string) string { return timeOr(t, none) },
	"counts":              countsText,
	"measure":             measureText,
	"join":                strings.Join,
	"chart":               trendChart,
	"upper":               strings.ToUpper,
	"listedPerScenario":   func() int { return ListedPerScenario },
	"str":                 func(r drill.Result) string { return string(r) },
	"coverageExplanation": func() string { return CoverageExplanation },
	"coverageHeadline":    coverageHeadline,
	"drillText":           drillText,
	"str2":                func(s coverage.Status) string { return string(s) },
	"statusClass": func(s string) string {
		return map[string]string{"passed": "passed", "failed": "failed", "not run": "missed"}[s]
	},
}).Parse(htmlSource + coverageHTML))

func took(r *drill.Record) string {
	if r.FinishedAt == nil {
		return "-"
	}
	return Duration(r.FinishedAt.Sub(r.StartedAt))
}

type evidenceItem struct{ Key, Value string }

func sortedEvidence(ev map[string]any) []evidenceItem {
	out := make([]evidenceItem, 0, len(ev))
	for k, v := range ev {
		out = append(out, evidenceItem{k, evidenceValue(v)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// trendChart draws RTO or RPO over time as an inline SVG: the measured values, failed runs as
// red marks, and the objective as a dashed line.
func trendChart(sc *ScenarioSummary, which string) template.HTML {
	const w, h, left, right, top, bottom = 520.0, 150.0, 56.0, 12.0, 18.0, 26.0
	val := func(p TrendPoint) *float64 {
		if which == "rpo" {
			return p.RPOSeconds
		}
		return p.RTOSeconds
	}
	m := sc.RTO
	if which == "rpo" {
		m = sc.RPO
	}
	var pts []TrendPoint
	for _, p := range sc.Trend {
		pts = append(pts, p)
	}
	title := strings.ToUpper(which)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" viewBox="0 0 %g %g" width="%g" height="%g" xmlns="http://www.w3.org/2000/svg"><title>%s of %s over the period</title>`,
		w, h, w, h, title, template.HTMLEscapeString(sc.Name))
	maxV := 0.0
	if m.MaxSeconds != nil {
		maxV = *m.MaxSeconds
	}
	if m.TargetSeconds != nil {
		maxV = math.Max(maxV, *m.TargetSeconds)
	}
	fmt.Fprintf(&b, `<text class="ttl" x="%g" y="12">%s</text>`, left, title)
	if len(pts) == 0 || maxV == 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%g" class="none">no %s measured in the period</text></svg>`, left, h/2, title)
		return template.HTML(b.String())
	}
	maxV *= 1.1
	t0, t1 := pts[0].At, pts[len(pts)-1].At
	span := t1.Sub(t0).Seconds()
	x := func(t time.Time) float64 {
		if span <= 0 {
			return left + (w-left-right)/2
		}
		return left + (w-left-right)*t.Sub(t0).Seconds()/span
	}
	y := func(v float64) float64 { return top + (h-top-bottom)*(1-v/maxV) }
	// axes and labels
	fmt.Fprintf(&b, `<line class="axis" x1="%g" y1="%g" x2="%g" y2="%g"/><line class="axis" x1="%g" y1="%g" x2="%g" y2="%g"/>`,
		left, top, left, h-bottom, left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<text class="lbl" x="%g" y="%g" text-anchor="end">%s</text><text class="lbl" x="%g" y="%g" text-anchor="end">0</text>`,
		left-4, top+8, Seconds(&maxV), left-4, h-bottom)
	fmt.Fprintf(&b, `<text class="lbl" x="%g" y="%g">%s</text><text class="lbl" x="%g" y="%g" text-anchor="end">%s</text>`,
		left, h-8, t0.UTC().Format("2006-01-02"), w-right, h-8, t1.UTC().Format("2006-01-02"))
	if m.TargetSeconds != nil {
		ty := y(*m.TargetSeconds)
		fmt.Fprintf(&b, `<line class="objective" x1="%g" y1="%.1f" x2="%g" y2="%.1f"/><text class="lbl obj" x="%g" y="%.1f" text-anchor="end">objective %s</text>`,
			left, ty, w-right, ty, w-right, ty-3, Seconds(m.TargetSeconds))
	}
	var line []string
	for _, p := range pts {
		if v := val(p); v != nil {
			line = append(line, fmt.Sprintf("%.1f,%.1f", x(p.At), y(*v)))
		}
	}
	if len(line) > 1 {
		fmt.Fprintf(&b, `<polyline class="series" points="%s"/>`, strings.Join(line, " "))
	}
	for _, p := range pts {
		v := val(p)
		switch {
		case v != nil:
			cls := "pt"
			if p.Failed > 0 {
				cls = "pt fail"
			}
			fmt.Fprintf(&b, `<circle class="%s" cx="%.1f" cy="%.1f" r="2.5"/>`, cls, x(p.At), y(*v))
		case p.Failed > 0: // failed before it could be measured: a mark on the axis
			fmt.Fprintf(&b, `<path class="fail" d="M%.1f,%.1f l-3,6 h6 z"/>`, x(p.At), h-bottom-6)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

const htmlSource = `
{{define "head"}}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="firedrill">
<title>Disaster-recovery drill report — {{.Scope}}</title>
<style>
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; } td.num, th.num { text-align: right; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; word-break: break-all; }
.passed { color: var(--ok); } .failed, .error, .aborted { color: var(--bad); } .missed, .skipped { color: var(--warn); }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-weight: 600; border: 1px solid currentColor; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 6px 0; }
.facts dt { color: var(--muted); } .facts dd { margin: 0; }
.integrity { border: 2px solid var(--ok); border-radius: 6px; padding: 10px 14px; background: #f0fff4; }
.integrity.broken { border-color: var(--bad); background: #fff0f0; }
.scenario { page-break-inside: avoid; break-inside: avoid; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
.chart .axis { stroke: #8c959f; stroke-width: 1; } .chart .series { fill: none; stroke: #0969da; stroke-width: 1.5; }
.chart .pt { fill: #0969da; } .chart .fail { fill: var(--bad); } .chart .objective { stroke: var(--warn); stroke-dasharray: 5 4; stroke-width: 1.2; }
.chart .ttl { font-size: 11px; font-weight: 600; fill: #1f2328; } .chart .lbl { font-size: 10px; fill: var(--muted); } .chart .obj { fill: var(--warn); } .chart .none { font-size: 12px; fill: var(--muted); }
.run { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin: 10px 0; break-inside: avoid-page; }
.run h3 { margin: 0 0 4px; font-size: 15px; } h3.runs-of { margin-top: 22px; border-bottom: 1px dashed var(--line); }
.run table { font-size: 13px; } .evidence { margin: 2px 0 0 0; padding: 0; list-style: none; color: var(--muted); font-size: 12px; }
.muted { color: var(--muted); } td.nowrap { white-space: nowrap; word-break: normal; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  h2 { page-break-after: avoid; break-after: avoid; }
  .run, .scenario, tr { page-break-inside: avoid; break-inside: avoid; }
  .integrity { background: none; }
  a { color: inherit; text-decoration: none; }
  @page { size: A4; margin: 14mm 12mm; }
}
</style>
</head>
<body>
<header>
<h1>Disaster-recovery drill report</h1>
<p class="muted">Generated {{when .GeneratedAt}} by firedrill</p>
</header>
{{with .Coverage}}{{template "coverage" .}}{{end}}
<section id="scope">
<h2>Period and scope</h2>
<dl class="facts">
<dt>Scope</dt><dd>{{.Scope}}</dd>
<dt>Runs</dt><dd id="total-runs">{{.Runs}} ({{counts .Counts}})</dd>
<dt>Pass rate</dt><dd id="pass-rate"><strong>{{percent .PassRate}}</strong> of the drills that ran</dd>
</dl>
</section>

<section id="integrity">
<h2>Integrity</h2>
<div class="integrity{{if not .Integrity.Intact}} broken{{end}}">
<p id="integrity-statement"><strong>{{if .Integrity.Intact}}Intact.{{else}}TAMPERED.{{end}}</strong> {{.Integrity.Statement}}</p>
<dl class="facts">
<dt>Chain head</dt><dd class="mono" id="chain-head">{{if .Integrity.ChainHead}}{{.Integrity.ChainHead}}{{else}}(none){{end}}</dd>
<dt>Signatures</dt><dd>{{if .Integrity.SignaturesChecked}}verified with key {{.Integrity.KeyFingerprint}}{{else}}not checked ({{.Integrity.Signed}} of {{.Integrity.Records}} records signed){{end}}</dd>
{{if .Integrity.VerifyCommand}}<dt>Re-verify</dt><dd><code>{{.Integrity.VerifyCommand}}</code></dd>{{end}}
</dl>
</div>
</section>

<section id="scenarios">
<h2>Scenarios</h2>
<table>
<thead><tr><th>Scenario</th><th class="num">Runs</th><th class="num">Pass rate</th><th>Last success</th><th>Last result</th><th>RTO max (objective, met/not met)</th><th>RPO max (objective, met/not met)</th></tr></thead>
<tbody>
{{range .Scenarios}}<tr><td><a href="#sc-{{.Name}}">{{.Name}}</a></td><td class="num">{{.Runs}}</td><td class="num">{{percent .PassRate}}</td><td>{{whenPtr .LastSuccess "never in the period"}}</td><td class="{{str .LastResult}}">{{if .LastResult}}{{mark .LastResult}} {{.LastResult}}{{else}}no run{{end}}</td><td>{{measure .RTO}}</td><td>{{measure .RPO}}</td></tr>
{{else}}<tr><td colspan="7">No scenario in scope.</td></tr>
{{end}}</tbody>
</table>
{{range .Scenarios}}
<div class="scenario" id="sc-{{.Name}}">
<h3>{{.Name}}</h3>
<p>{{.Runs}} runs ({{counts .Counts}}), pass rate <strong>{{percent .PassRate}}</strong>, last success {{whenPtr .LastSuccess "never in the period"}}{{if .Controls}}; evidences {{join .Controls ", "}}{{end}}.
RTO mean {{seconds .RTO.MeanSeconds}}, max {{seconds .RTO.MaxSeconds}}{{if .RTO.TargetSeconds}} against {{seconds .RTO.TargetSeconds}} (met {{.RTO.Met}}, not met {{.RTO.NotMet}}){{end}};
RPO mean {{seconds .RPO.MeanSeconds}}, max {{seconds .RPO.MaxSeconds}}{{if .RPO.TargetSeconds}} against {{seconds .RPO.TargetSeconds}} (met {{.RPO.Met}}, not met {{.RPO.NotMet}}){{end}}.</p>
<div class="charts">{{chart . "rto"}}{{chart . "rpo"}}</div>
{{if .Runs}}<p><a href="#runs-{{.Name}}">Its runs, with steps, checks and evidence</a></p>{{end}}
</div>
{{end}}
</section>

{{if .Controls}}
<section id="controls">
<h2>Controls</h2>
<table>
<thead><tr><th>Control</th><th>Status</th><th class="num">Runs</th><th class="num">Passed</th><th>Last evidence</th><th>Evidenced by</th><th>Failed runs</th></tr></thead>
<tbody>
{{range .Controls}}<tr><td>{{.Control}}</td><td class="{{statusClass .Status}}"><span class="badge">{{upper .Status}}</span></td><td class="num">{{.Runs}}</td><td class="num">{{.Passed}}</td><td>{{if .LastSuccessRun}}<a href="#run-{{.LastSuccessRun}}">{{whenPtr .LastSuccess "-"}}</a>{{else}}none in the period{{end}}</td><td>{{join .Scenarios ", "}}</td><td class="mono">{{range $i, $id := .FailedRuns}}{{if $i}}, {{end}}<a href="#run-{{$id}}">{{$id}}</a>{{end}}</td></tr>
{{end}}</tbody>
</table>
</section>
{{end}}

<section id="failures">
<h2>Failures</h2>
{{if .Failures}}<table>
<thead><tr><th>Run</th><th>Scenario</th><th>Started</th><th>Result</th><th>Reason</th></tr></thead>
<tbody>
{{range .Failures}}<tr><td class="mono nowrap"><a href="#run-{{.ID}}">{{.ID}}</a></td><td>{{.Scenario}}</td><td>{{when .At}}</td><td class="{{str .Result}}">{{mark .Result}} {{.Result}}</td><td>{{.Reason}}</td></tr>
{{end}}</tbody>
</table>
{{if .FailuresOmitted}}<p>…and {{.FailuresOmitted}} more, not listed on this page: {{template "evidence" .InBundle}}</p>{{end}}
{{else}}<p>No drill failed in the period.</p>{{end}}
</section>

<section id="runs">
<h2>Runs</h2>
<p class="muted" id="runs-note">By scenario, in the order they finished (the order of the hash chain): of each scenario its last {{listedPerScenario}} runs, its runs in the failure list above and the run that last evidenced its controls, with steps, checks and evidence.
Every run of the report, with all its evidence: {{template "evidence" .InBundle}}</p>
{{end}}

{{define "evidence"}}{{if .}}<a href="report.json">report.json</a> (the report as JSON) and <a href="records.jsonl">records.jsonl</a> (the records exactly as stored, which verify-chain.py verifies), next to this page in the bundle.{{else}}the same report as JSON (<code>--format json</code>), and an evidence bundle's records.jsonl, the records exactly as stored (<code>--bundle</code>).{{end}}{{end}}

{{define "foot"}}{{if eq .Runs 0}}<p>No runs in the period.</p>{{end}}
</section>
<footer class="muted"><p>End of report: {{.Listed}} of {{.Runs}} runs listed.{{if lt .Listed .Runs}} Every run: {{template "evidence" .InBundle}}{{end}}</p></footer>
</body>
</html>
{{end}}`
