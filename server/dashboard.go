package server

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/report"
)

//go:embed templates/*.html
var templateFS embed.FS

// staticFS serves /static/... (the stylesheet and the run-now script): its paths start with
// static/, as the URLs do.
//
//go:embed static
var staticFS embed.FS

// pages are the parsed templates, one set per page sharing layout.html.
type pages struct {
	byName map[string]*template.Template
}

func loadPages() *pages {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range []string{"dashboard.html", "runs.html", "run.html", "error.html", "login.html"} {
		p.byName[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name))
	}
	return p
}

// layout is what every page's frame shows.
type layout struct {
	Title   string
	Leader  bool
	Version string
	// Refresh, when positive, reloads the page every so many seconds (while runs are in flight),
	// which also works without JavaScript.
	Refresh int
	Now     time.Time
	// ReadAuth: reads need a token, so the header offers to log out.
	ReadAuth bool
	// Locked: the page is shown to someone not logged in (the login form): no navigation.
	Locked bool
}

// render writes a page; a template error becomes a 500 (the page is buffered first, so a
// half-written page is never sent).
func (s *server) render(w http.ResponseWriter, status int, page string, data any) {
	var buf bytes.Buffer
	if err := s.pages.byName[page].ExecuteTemplate(&buf, page, data); err != nil {
		s.log.Error("render page", "page", page, "error", err)
		http.Error(w, "could not render the page; see the serve log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *server) layout(title string) layout {
	return layout{Title: title, Leader: s.leader(), Version: s.opts.Version, Now: s.now(), ReadAuth: s.opts.ReadToken != ""}
}

type errorPage struct {
	layout
	Status  int
	Message string
}

func (s *server) errorPage(w http.ResponseWriter, status int, err error) {
	if status >= 500 {
		s.log.Error("page request failed", "status", status, "error", err)
	}
	s.render(w, status, "error.html", errorPage{layout: s.layout(http.StatusText(status)), Status: status, Message: err.Error()})
}

// scenarioRow is one row of the dashboard.
type scenarioRow struct {
	Name, File, Schedule, TimeZone string
	NextRun                        time.Time
	Running                        string
	Queued                         int
	Err                            string
	Labels                         map[string]string
	Last                           *drill.Record
	// Ran and Passed count the newest runs that drilled (passed, failed, error, aborted).
	Ran, Passed int
	Trend       template.HTML // the RTO sparkline, or ""
	LastRTO     *float64
	RTOTarget   *float64
}

// PassRate renders Passed of Ran.
func (r scenarioRow) PassRate() string {
	if r.Ran == 0 {
		return "–"
	}
	return fmt.Sprintf("%d%% (%d/%d)", r.Passed*100/r.Ran, r.Passed, r.Ran)
}

type dashboardPage struct {
	layout
	Scenarios     []scenarioRow
	Invalid       []scenarioRow
	WritesEnabled bool
	TrendRuns     int
}

func (s *server) dashboard(w http.ResponseWriter, r *http.Request) {
	page := dashboardPage{layout: s.layout("firedrill"), WritesEnabled: s.opts.Token != "", TrendRuns: s.opts.TrendRuns}
	for _, st := range s.scenarioStatus() {
		row := scenarioRow{Name: st.Name, File: st.File, Schedule: st.Schedule, TimeZone: st.TimeZone,
			NextRun: st.NextRun, Running: st.Running, Queued: st.Queued, Err: st.Err, Labels: st.Labels}
		runs, err := s.opts.Runs.List(r.Context(), history.Filter{Scenario: st.Name, Limit: s.opts.TrendRuns})
		if err != nil {
			s.errorPage(w, http.StatusInternalServerError, fmt.Errorf("read the history: %w; check the history store and the serve log", err))
			return
		}
		fillTrend(&row, runs)
		if row.Running != "" || row.Queued > 0 || (row.Last != nil && row.Last.Result == drill.Running) {
			page.Refresh = 10
		}
		page.Scenarios = append(page.Scenarios, row)
		if row.Err != "" {
			page.Invalid = append(page.Invalid, row)
		}
	}
	s.render(w, http.StatusOK, "dashboard.html", page)
}

// fillTrend sets the last run, pass rate and RTO trend of row from runs, newest first.
func fillTrend(row *scenarioRow, runs []drill.Record) {
	if len(runs) == 0 {
		return
	}
	row.Last = &runs[0]
	var rtos []float64
	for i := len(runs) - 1; i >= 0; i-- {
		rec := &runs[i]
		if ran(rec.Result) {
			row.Ran++
			if rec.Result == drill.Passed {
				row.Passed++
			}
		}
		if rec.RTOSeconds != nil {
			rtos = append(rtos, *rec.RTOSeconds)
			row.LastRTO = rec.RTOSeconds
		}
		for _, o := range rec.Objectives {
			if o.Name == "rto" {
				t := o.TargetSeconds
				row.RTOTarget = &t
			}
		}
	}
	row.Trend = sparkline(rtos, row.RTOTarget)
}

// sparkline draws values (oldest first) as an inline SVG polyline, with the target as a dashed
// line when there is one. It holds only numbers it formats itself, so it is safe as HTML.
func sparkline(values []float64, target *float64) template.HTML {
	if len(values) == 0 {
		return ""
	}
	const w, h, pad = 120.0, 28.0, 3.0
	top := 0.0
	for _, v := range values {
		top = max(top, v)
	}
	if target != nil {
		top = max(top, *target)
	}
	if top <= 0 {
		top = 1
	}
	y := func(v float64) float64 { return h - pad - v/top*(h-2*pad) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" width="%g" height="%g" viewBox="0 0 %g %g" role="img" aria-label="RTO of the last %d measured runs">`, w, h, w, h, len(values))
	var secs []string
	for _, v := range values {
		secs = append(secs, report.Seconds(&v))
	}
	fmt.Fprintf(&b, `<title>RTO, oldest to newest: %s</title>`, template.HTMLEscapeString(strings.Join(secs, ", ")))
	if target != nil {
		fmt.Fprintf(&b, `<line class="target" x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#b42318" stroke-dasharray="3 2" stroke-width="1"/>`, pad, w-pad, y(*target), y(*target))
	}
	step := 0.0
	if len(values) > 1 {
		step = (w - 2*pad) / float64(len(values)-1)
	}
	var pts []string
	for i, v := range values {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", pad+float64(i)*step, y(v)))
	}
	if len(values) > 1 {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#1d4ed8" stroke-width="1.5" points="%s"/>`, strings.Join(pts, " "))
	}
	last := values[len(values)-1]
	fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.2" fill="#1d4ed8"/></svg>`, pad+float64(len(values)-1)*step, y(last))
	return template.HTML(b.String())
}

type runsPage struct {
	layout
	Runs      []drill.Record
	Query     runQuery
	Scenarios []string
	Results   []drill.Result
	NextURL   template.URL
	Err       string
}

func (s *server) runsPage(w http.ResponseWriter, r *http.Request) {
	page := runsPage{layout: s.layout("runs · firedrill"), Results: results}
	q, err := parseRunQuery(r.URL.Query(), s.now())
	page.Query = q
	page.Scenarios = s.scenarioNames(q.Scenario)
	if err != nil {
		page.Err = err.Error()
		s.render(w, http.StatusBadRequest, "runs.html", page)
		return
	}
	runs, next, err := s.listRuns(r.Context(), q)
	if err != nil {
		s.errorPage(w, http.StatusInternalServerError, fmt.Errorf("%w; check the history store and the serve log", err))
		return
	}
	page.Runs = runs
	for _, rec := range runs {
		if rec.Result == drill.Running {
			page.Refresh = 10
		}
	}
	if next != "" {
		v := url.Values{}
		for _, k := range []string{"scenario", "result", "since", "limit"} {
			if x := r.URL.Query().Get(k); x != "" {
				v.Set(k, x)
			}
		}
		v.Set("cursor", next)
		page.NextURL = template.URL("/runs?" + v.Encode())
	}
	s.render(w, http.StatusOK, "runs.html", page)
}

// scenarioNames lists the loaded scenarios for the filter, plus the one asked for.
func (s *server) scenarioNames(current string) []string {
	var names []string
	seen := false
	for _, st := range s.scenarioStatus() {
		names = append(names, st.Name)
		seen = seen || st.Name == current
	}
	if current != "" && !seen {
		names = append(names, current)
	}
	sort.Strings(names)
	return names
}

type runPage struct {
	layout
	R      *drill.Record
	Checks []checkView
	// Namespaces is the target's namespace map, sorted.
	Namespaces [][2]string
	Labels     [][2]string
}

type checkView struct {
	drill.CheckRecord
	EvidenceJSON string
}

func (s *server) runPage(w http.ResponseWriter, r *http.Request) {
	rec, status, err := s.getRun(r.Context(), r.PathValue("id"))
	if err != nil {
		if status == http.StatusNotFound {
			err = fmt.Errorf("%w; see the runs list", err)
		}
		s.errorPage(w, status, err)
		return
	}
	page := runPage{layout: s.layout("run " + rec.ID + " · firedrill"), R: rec,
		Namespaces: sortedPairs(nil), Labels: sortedPairs(rec.Labels)}
	if rec.Target != nil {
		page.Namespaces = sortedPairs(rec.Target.Namespaces)
	}
	if rec.Result == drill.Running {
		page.Refresh = 10
	}
	for _, c := range rec.Checks {
		cv := checkView{CheckRecord: c}
		if len(c.Evidence) > 0 {
			cv.EvidenceJSON = prettyJSON(c.Evidence)
		}
		page.Checks = append(page.Checks, cv)
	}
	s.render(w, http.StatusOK, "run.html", page)
}

// prettyJSON indents v for reading; the template escapes it, so JSON's own HTML escaping
// (\u003c) would only hide what the evidence says.
func prettyJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("(evidence does not encode: %v)", err)
	}
	return strings.TrimSpace(b.String())
}

func sortedPairs(m map[string]string) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// funcs are the templates' helpers; they format, the templates escape.
var funcs = template.FuncMap{
	"mark":    report.Mark,
	"seconds": report.Seconds,
	"bytes":   report.Bytes,
	"dur":     report.Duration,
	"secs": func(f float64) string {
		return report.Duration(time.Duration(f * float64(time.Second)))
	},
	"took": func(start time.Time, end *time.Time) string {
		if end == nil {
			return "–"
		}
		return report.Duration(end.Sub(start))
	},
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"rel": func(t, now time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := t.Sub(now)
		switch {
		case d > time.Second:
			return "in " + report.Duration(d)
		case d < -time.Second:
			return report.Duration(-d) + " ago"
		}
		return "now"
	},
	"deref": func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	},
	"short": func(s string, n int) string {
		r := []rune(s)
		if len(r) <= n {
			return s
		}
		return string(r[:n-1]) + "…"
	},
	"sha": func(s string) string {
		if len(s) > 16 {
			return s[:16] + "…"
		}
		return s
	},
	"fval": func(f *float64) float64 {
		if f == nil {
			return 0
		}
		return *f
	},
}
