package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

func newReport(t *testing.T, src Source, o Options) *Report {
	t.Helper()
	o.Now = func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	if o.VerifyCommand == "" {
		o.VerifyCommand = "firedrill history verify --history /var/lib/firedrill/history.db"
	}
	r, err := New(context.Background(), src, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func render(t *testing.T, r *Report, format string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := r.Write(context.Background(), format, &b); err != nil {
		t.Fatalf("%s: %v", format, err)
	}
	return b.Bytes()
}

// expect counts what the fixture holds in scope, independently of the summary code.
type expect struct {
	runs, passed, ran int
	byScenario        map[string]int
	checks            int
}

func count(recs []*drill.Record, scope Scope) expect {
	e := expect{byScenario: map[string]int{}}
	for _, r := range recs {
		if !scope.Match(r) {
			continue
		}
		e.runs++
		e.byScenario[r.Scenario]++
		e.checks += len(r.Checks)
		if r.Result == drill.Passed {
			e.passed++
		}
		if r.Result != drill.Missed && r.Result != drill.Skipped {
			e.ran++
		}
	}
	return e
}

func TestSummary(t *testing.T) {
	t.Parallel()
	src, recs := fixture(t, 60, nil)
	scope := Scope{From: fixtureStart.Add(24 * time.Hour), To: fixtureStart.Add(15 * 24 * time.Hour)}
	r := newReport(t, src, Options{Scope: scope, Scenarios: []ScenarioInfo{{Name: "dr-site", Controls: []string{"SOC2-A1.2"}}}})
	s := r.Summary
	e := count(recs, scope)
	if s.Runs != e.runs || s.Counts["passed"] != e.passed {
		t.Errorf("runs %d passed %d, want %d %d", s.Runs, s.Counts["passed"], e.runs, e.passed)
	}
	if s.PassRate == nil || *s.PassRate != float64(e.passed)/float64(e.ran) {
		t.Errorf("pass rate %v, want %d/%d", s.PassRate, e.passed, e.ran)
	}
	if !s.Integrity.Intact || s.Integrity.Records != 60 || s.Integrity.ChainHead != recs[59].Hash {
		t.Errorf("integrity %+v", s.Integrity)
	}
	status := map[string]string{}
	for _, c := range s.Controls {
		status[c.Control] = c.Status
	}
	// shop-velero failed in the period; dr-site never ran.
	want := map[string]string{"SOC2-A1.3": "failed", "ISO27001-A.5.30": "failed", "SOC2-CC7.5": status["SOC2-CC7.5"], "SOC2-A1.2": "not run"}
	for c, st := range want {
		if status[c] != st || st == "" {
			t.Errorf("control %s: %q, want %q (all %v)", c, status[c], st, status)
		}
	}
	for _, c := range s.Controls {
		if c.Control == "SOC2-A1.3" {
			// Its evidence: the newest passed run of shop-velero, and every one that failed.
			var last string
			var failed []string
			for _, r := range recs {
				if r.Scenario == "shop-velero" && scope.Match(r) {
					if r.Result == drill.Passed {
						last = r.ID
					} else if ran(r.Result) {
						failed = append(failed, r.ID)
					}
				}
			}
			if c.LastSuccessRun != last || strings.Join(c.FailedRuns, ",") != strings.Join(failed, ",") || len(failed) == 0 {
				t.Errorf("SOC2-A1.3 evidence: last %s failed %v, want %s %v", c.LastSuccessRun, c.FailedRuns, last, failed)
			}
		}
	}
	for _, sc := range s.Scenarios {
		if sc.Runs != e.byScenario[sc.Name] {
			t.Errorf("%s: %d runs, want %d", sc.Name, sc.Runs, e.byScenario[sc.Name])
		}
		if sc.Name == "shop-velero" && (sc.RTO.TargetSeconds == nil || *sc.RTO.TargetSeconds != 50 || sc.RTO.NotMet == 0 || len(sc.Trend) == 0) {
			t.Errorf("shop-velero RTO %+v trend %d", sc.RTO, len(sc.Trend))
		}
	}
	if len(s.Failures) != e.runs-e.passed {
		t.Errorf("%d failures, want %d", len(s.Failures), e.runs-e.passed)
	}
}

func TestTrendStaysBounded(t *testing.T) {
	t.Parallel()
	sc := &ScenarioSummary{}
	for i := range 100000 {
		v := float64(i)
		sc.addTrend(TrendPoint{At: fixtureStart.Add(time.Duration(i) * time.Minute), RTOSeconds: &v, Runs: 1})
	}
	sc.finish()
	n := 0
	for _, p := range sc.Trend {
		n += p.Runs
	}
	if len(sc.Trend) > 2*MaxTrend || len(sc.Trend) < MaxTrend/2 || n != 100000 {
		t.Errorf("%d points standing for %d runs", len(sc.Trend), n)
	}
}

func TestJSONReport(t *testing.T) {
	t.Parallel()
	src, recs := fixture(t, 30, nil)
	sel, _ := labels.Parse("team in (shop,billing)")
	scope := Scope{Labels: sel}
	r := newReport(t, src, Options{Scope: scope})
	var doc struct {
		Schema  string            `json:"schema"`
		Summary Summary           `json:"summary"`
		Records []json.RawMessage `json:"records"`
	}
	out := render(t, r, "json")
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e := count(recs, scope)
	if doc.Schema != JSONSchema || len(doc.Records) != e.runs || doc.Summary.Runs != e.runs || e.runs == 0 {
		t.Errorf("schema %q, %d records, summary %d, want %d", doc.Schema, len(doc.Records), doc.Summary.Runs, e.runs)
	}
	// Each record is the stored JSON, so each still verifies on its own.
	for _, raw := range doc.Records {
		var h struct{ Hash, Scenario string }
		_ = json.Unmarshal(raw, &h)
		if got, _ := chain.HashJSON(raw); got != h.Hash {
			t.Errorf("record in the report does not hash to its hash")
		}
		if h.Scenario == "control-plane-etcd" {
			t.Errorf("label selector let through %s", h.Scenario)
		}
	}
}

func TestCSVReport(t *testing.T) {
	t.Parallel()
	src, recs := fixture(t, 20, nil)
	r := newReport(t, src, Options{Scope: Scope{Scenario: "shop-velero"}})
	rows, err := csv.NewReader(bytes.NewReader(render(t, r, "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	e := count(recs, Scope{Scenario: "shop-velero"})
	if len(rows) != e.runs+1 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("%d rows, want %d + header; header %v", len(rows), e.runs, rows[0])
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	i := 0
	for _, rec := range recs {
		if rec.Scenario != "shop-velero" {
			continue
		}
		i++
		row := rows[i]
		if row[col["id"]] != rec.ID || row[col["result"]] != string(rec.Result) || row[col["hash"]] != rec.Hash ||
			row[col["controls"]] != "SOC2-A1.3,ISO27001-A.5.30" || row[col["started_at"]] != rec.StartedAt.Format(time.RFC3339Nano) {
			t.Errorf("row %d: %v for %s", i, row, rec.ID)
		}
	}
	if csvSafe("=HYPERLINK(1)") != "'=HYPERLINK(1)" {
		t.Error("formula not neutralised")
	}
}

func TestJUnitReport(t *testing.T) {
	t.Parallel()
	src, recs := fixture(t, 30, nil)
	r := newReport(t, src, Options{})
	type detail struct {
		Message string `xml:"message,attr"`
	}
	var doc struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Errors   int    `xml:"errors,attr"`
			Skipped  int    `xml:"skipped,attr"`
			Cases    []struct {
				Name    string  `xml:"name,attr"`
				Failure *detail `xml:"failure"`
				Error   *detail `xml:"error"`
				Skipped *detail `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	out := render(t, r, "junit")
	if err := xml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e := count(recs, Scope{})
	if len(doc.Suites) != 3 || doc.Tests != e.runs+e.checks {
		t.Errorf("%d suites, %d tests; want 3, %d", len(doc.Suites), doc.Tests, e.runs+e.checks)
	}
	totalFailures := 0
	for _, s := range doc.Suites {
		if len(s.Cases) != s.Tests {
			t.Errorf("suite %s says %d tests, has %d", s.Name, s.Tests, len(s.Cases))
		}
		f, er, sk := 0, 0, 0
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil:
				f++
			case c.Error != nil:
				er++
			case c.Skipped != nil:
				sk++
			}
		}
		if f != s.Failures || er != s.Errors || sk != s.Skipped {
			t.Errorf("suite %s: counts %d/%d/%d, elements %d/%d/%d", s.Name, s.Failures, s.Errors, s.Skipped, f, er, sk)
		}
		totalFailures += f
	}
	if totalFailures == 0 || totalFailures != doc.Failures {
		t.Errorf("failures %d, root says %d", totalFailures, doc.Failures)
	}
	if !bytes.Contains(out, []byte(`name="config identical"`)) || !bytes.Contains(out, []byte(`message="1 of 3 differ: secrets/app-creds"`)) {
		t.Errorf("failed check not shown:\n%s", out)
	}
}

func TestMarkdownReport(t *testing.T) {
	t.Parallel()
	src, recs := fixture(t, 12, nil)
	r := newReport(t, src, Options{})
	out := string(render(t, r, "markdown"))
	for _, want := range []string{"# Disaster-recovery drill report", "## Integrity", "chain over all 12 records", recs[11].Hash,
		"| shop-velero |", `billing &lt;db&gt; & co`, "**FAILED**", "| `" + recs[4].ID + "` |", "firedrill history verify --history"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	// Every run, and only those, is a row of the runs table.
	runs := strings.SplitN(out, "## Runs", 2)[1]
	if n := strings.Count(runs, "\n| `"); n != len(recs) {
		t.Errorf("%d run rows, want %d", n, len(recs))
	}
}

func TestHTMLReport(t *testing.T) {
	t.Parallel()
	signer := chain.NewSigner(testKey())
	src, recs := fixture(t, 30, signer)
	r := newReport(t, src, Options{PublicKey: signer.Public()})
	out := render(t, r, "html")
	doc, err := html.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var (
		runs, svgs, external int
		text                 strings.Builder
	)
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "article":
				runs++
			case "svg":
				svgs++
			case "script", "link", "img", "iframe":
				external++
			}
			for _, a := range n.Attr {
				if (a.Key == "src" || a.Key == "href") && !strings.HasPrefix(a.Val, "#") {
					external++
				}
			}
		}
		if n.Type == html.TextNode {
			text.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if runs != len(recs) || svgs != 2*3 || external != 0 {
		t.Errorf("%d runs, %d charts, %d external references; want %d, 6, 0", runs, svgs, external, len(recs))
	}
	txt := text.String()
	for _, want := range []string{"billing <db> & co", recs[29].Hash, "Every record's ed25519 signature verified",
		Percent(r.Summary.PassRate), "SOC2-A1.3", "velero server unreachable", "sha256:" + strings.Repeat("0", 63) + "1"} {
		if !strings.Contains(txt, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
	if bytes.Contains(out, []byte("<b>")) {
		t.Error("a message's markup reached the page unescaped")
	}
	// Runs are grouped under their scenario's heading.
	scenarioOf := map[string]string{}
	for _, r := range recs {
		scenarioOf[r.ID] = r.Scenario
	}
	group, groups, listed := "", 0, 0
	for _, m := range regexp.MustCompile(`<h3 class="runs-of" id="runs-([^"]*)"|<article class="run" id="run-([^"]*)"`).FindAllSubmatch(out, -1) {
		if len(m[1]) > 0 {
			group = html.UnescapeString(string(m[1]))
			groups++
			continue
		}
		listed++
		if id := string(m[2]); scenarioOf[id] != group {
			t.Errorf("run %s of %s is listed under %s", id, scenarioOf[id], group)
		}
	}
	if groups != 3 || listed != len(recs) {
		t.Errorf("%d groups, %d runs listed", groups, listed)
	}
}

func TestBundleScriptIsTheDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/history.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```python\n(.*?)```").FindSubmatch(doc)
	if m == nil || !bytes.Equal(m[1], verifyScript) {
		t.Error("report/verify-chain.py differs from docs/history.md's script: copy the script from the docs (drill/chain's TestDocumentedScript tests that one)")
	}
}

// TestHTMLListsABoundedSetOfRuns: beyond ListedPerScenario runs a scenario, the page lists its
// last ones, its failures and its last success, says how many it leaves out and where every
// run is; in a bundle it links the bundle's JSON files.
func TestHTMLListsABoundedSetOfRuns(t *testing.T) {
	t.Parallel()
	n := 3*ListedPerScenario + 30
	src, recs := fixture(t, n, nil)
	r := newReport(t, src, Options{})
	out := string(render(t, r, "html"))

	want := map[string]bool{} // the runs that must be listed: computed from the records
	byScenario := map[string][]*drill.Record{}
	for _, rec := range recs {
		byScenario[rec.Scenario] = append(byScenario[rec.Scenario], rec)
		if rec.Result != drill.Passed && rec.Result != drill.Skipped {
			want[rec.ID] = true // every failure: fewer than MaxFailures here
		}
	}
	for name, runs := range byScenario {
		for _, rec := range runs[len(runs)-ListedPerScenario:] {
			want[rec.ID] = true
		}
		for i := len(runs) - 1; i >= 0; i-- {
			if runs[i].Result == drill.Passed {
				want[runs[i].ID] = true
				break
			}
		}
		heading := regexp.MustCompile(`<h3 class="runs-of" id="runs-` + regexp.QuoteMeta(html.EscapeString(name)) + `">[^<]*: (\d+) runs, (\d+) listed here \(the last \d+, failures, the last success\), (\d+) left out</h3>`).FindStringSubmatch(out)
		if heading == nil || heading[1] != fmt.Sprint(len(runs)) {
			t.Errorf("%s: heading %v", name, heading)
		}
	}
	got := map[string]bool{}
	for _, m := range regexp.MustCompile(`<article class="run" id="run-([^"]*)"`).FindAllStringSubmatch(out, -1) {
		if got[m[1]] {
			t.Errorf("run %s listed twice", m[1])
		}
		got[m[1]] = true
	}
	if len(got) != len(want) || len(got) >= n {
		t.Errorf("%d runs listed, want %d of %d", len(got), len(want), n)
	}
	for id := range want {
		if !got[id] {
			t.Errorf("run %s is not listed", id)
		}
	}
	if !strings.Contains(out, fmt.Sprintf("End of report: %d of %d runs listed.", len(want), n)) || !strings.Contains(out, "<code>--format json</code>") {
		t.Error("the page does not say how many runs it lists and where the others are")
	}
	for _, m := range regexp.MustCompile(`href="#run-([^"]*)"`).FindAllStringSubmatch(out, -1) {
		if !got[html.UnescapeString(m[1])] {
			t.Errorf("a link to run %s, which the page does not list", m[1])
		}
	}
	var bundled bytes.Buffer
	if err := r.html(&bundled, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(bundled.String(), `<a href="records.jsonl">`) || !strings.Contains(bundled.String(), `<a href="report.json">`) {
		t.Error("the bundle's page does not link the bundle's records")
	}
}
