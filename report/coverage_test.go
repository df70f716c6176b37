package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill"
)

// coverageInventory is what discovery would find for the fixture's scenarios: a Schedule
// each of shop-velero and billing drill, an etcd directory control-plane-etcd drills, a
// Schedule no scenario drills and one excluded on purpose.
func coverageInventory() *coverage.Inventory {
	return &coverage.Inventory{Items: []coverage.Item{
		{Kind: coverage.KindSchedule, Cluster: "prod", Namespace: "velero", Name: "shop-nightly", Scenarios: []string{"shop-velero"}},
		{Kind: coverage.KindSchedule, Cluster: "prod", Namespace: "velero", Name: "billing-nightly", Scenarios: []string{"billing <db> & co"}},
		{Kind: coverage.KindEtcdDir, Name: "/var/backups/etcd", Scenarios: []string{"control-plane-etcd"}},
		{Kind: coverage.KindSchedule, Cluster: "prod", Namespace: "velero", Name: "orders-hourly", Scenarios: []string{}},
		{Kind: coverage.KindSchedule, Cluster: "prod", Namespace: "velero", Name: "ci-scratch", Scenarios: []string{}, Excluded: "test data <recreated> by CI"},
	}, Problems: []string{"cluster dr: list Velero schedules: forbidden"}}
}

func TestCoverageSection(t *testing.T) {
	t.Parallel()
	src, recs := fixture(t, 30, nil)
	from, to := fixtureStart.Add(5*24*time.Hour), fixtureStart.Add(6*24*time.Hour)
	r := newReport(t, src, Options{Scope: Scope{From: from, To: to}, Coverage: coverageInventory()})

	// What the section must say, from the records themselves: a scenario's item is covered
	// when one of its runs passed in the period.
	passed := map[string]bool{}
	for _, rec := range recs {
		if rec.Result == drill.Passed && !rec.StartedAt.Before(from) && rec.StartedAt.Before(to) {
			passed[rec.Scenario] = true
		}
	}
	want := map[string]coverage.Status{"orders-hourly": coverage.NotCovered, "ci-scratch": coverage.Excluded}
	for _, it := range coverageInventory().Items[:3] {
		want[it.Name] = coverage.NotCovered
		if passed[it.Scenarios[0]] {
			want[it.Name] = coverage.Covered
		}
	}
	c := r.Summary.Coverage
	if c == nil || len(c.Items) != 5 {
		t.Fatalf("coverage: %+v", c)
	}
	var notCovered []string
	for _, it := range c.Items {
		if it.Status != want[it.Name] {
			t.Errorf("%s: %s, want %s (%s)", it.Name, it.Status, want[it.Name], it.Reason)
		}
		if it.Status == coverage.NotCovered {
			notCovered = append(notCovered, it.Name)
		}
	}
	if len(notCovered) < 2 || c.NotCovered != len(notCovered) {
		t.Fatalf("not covered: %v (%d)", notCovered, c.NotCovered)
	}

	// HTML: the section comes first, names every item not covered, and shows the exclusion's
	// reason (escaped).
	page := string(render(t, r, "html"))
	sec, scope := strings.Index(page, `<section id="coverage">`), strings.Index(page, `<section id="scope">`)
	if sec < 0 || sec > scope {
		t.Fatalf("the coverage section is not first (at %d, scope at %d)", sec, scope)
	}
	section := page[sec:scope]
	for _, want := range append(notCovered, "Not restore-tested in the period", "expensive hopes", "test data &lt;recreated&gt; by CI",
		"no scenario drills it", "forbidden") {
		if !strings.Contains(section, want) {
			t.Errorf("the HTML section lacks %q", want)
		}
	}
	// Markdown: before the integrity statement.
	md := string(render(t, r, "markdown"))
	if i, j := strings.Index(md, "## Not restore-tested in the period"), strings.Index(md, "## Integrity"); i < 0 || i > j {
		t.Errorf("markdown: coverage at %d, integrity at %d", i, j)
	}
	for _, name := range notCovered {
		if !strings.Contains(md, "prod/velero/"+name) && !strings.Contains(md, name) {
			t.Errorf("markdown lacks %s", name)
		}
	}
	// JSON: in the summary.
	var doc struct {
		Summary struct {
			Coverage *coverage.Result `json:"coverage"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(render(t, r, "json"), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Summary.Coverage == nil || doc.Summary.Coverage.NotCovered != c.NotCovered || doc.Summary.Coverage.Items[0].Reason == "" {
		t.Errorf("json coverage: %+v", doc.Summary.Coverage)
	}

	// Without the option, no section.
	plain := newReport(t, src, Options{})
	if strings.Contains(string(render(t, plain, "html")), `id="coverage"`) || plain.Summary.Coverage != nil {
		t.Error("a report without Coverage has the section")
	}
}
