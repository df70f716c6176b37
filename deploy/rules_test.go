package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/server"
)

const (
	ruleCR      = "prometheus/firedrill-rules.yaml"
	ruleGroups  = "helm/firedrill/files/firedrill-rules.groups.yaml"
	ruleTests   = "prometheus/firedrill-rules.test.yaml"
	dashboardJS = "grafana/firedrill.json"
)

// groupsOf returns the `groups:` of a rule file, or of a PrometheusRule's spec.
func groupsOf(t testing.TB, b []byte) []any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if spec, ok := doc["spec"].(map[string]any); ok {
		doc = spec
	}
	g, ok := doc["groups"].([]any)
	if !ok || len(g) == 0 {
		t.Fatalf("no groups in %s", clip(b))
	}
	return g
}

// The plain rule file (promtool, Prometheus without the Operator, the Helm chart) and the
// PrometheusRule (kustomize) are kept by hand in two places: they must say the same thing.
func TestRuleFilesAgree(t *testing.T) {
	t.Parallel()
	cr := groupsOf(t, readFile(t, ruleCR))
	plain := groupsOf(t, readFile(t, ruleGroups))
	if !reflect.DeepEqual(cr, plain) {
		a, _ := json.MarshalIndent(cr, "", " ")
		b, _ := json.MarshalIndent(plain, "", " ")
		t.Fatalf("%s and %s differ: edit both the same way\n--- %s\n%s\n--- %s\n%s", ruleCR, ruleGroups, ruleCR, a, ruleGroups, b)
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool is not installed (-short)")
		}
		t.Fatal("promtool is not installed: run make promtool (Debian's prometheus package), or test with -short")
	}
	return p
}

// TestAlertsParseAndFire checks the rules with Prometheus' own parser and runs the unit tests
// of deploy/prometheus/firedrill-rules.test.yaml, which must make every alert fire at least once.
func TestAlertsParseAndFire(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	out := run(t, nil, pt, "check", "rules", ruleGroups)
	t.Logf("%s", out)
	out = run(t, nil, pt, "test", "rules", ruleTests)
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %s", out)
	}

	var tests struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, ruleTests), &tests); err != nil {
		t.Fatal(err)
	}
	if len(tests.RuleFiles) != 1 || filepath.Clean(filepath.Join(filepath.Dir(ruleTests), tests.RuleFiles[0])) != filepath.Clean(ruleGroups) {
		t.Errorf("%s tests %v, not %s", ruleTests, tests.RuleFiles, ruleGroups)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for _, g := range groupsOf(t, readFile(t, ruleGroups)) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			name, _ := r.(map[string]any)["alert"].(string)
			if name != "" && !fires[name] {
				t.Errorf("no test in %s makes %s fire", ruleTests, name)
			}
		}
	}
	if len(fires) < 6 {
		t.Errorf("only %d alerts are shown to fire: %v", len(fires), fires)
	}
}

// describer records what NewMetrics registers, so that every metric name is known without
// having to give each vector a series first.
type describer struct{ descs []*prometheus.Desc }

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		d.descs = append(d.descs, desc)
	}
	return nil
}
func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}
func (d *describer) Unregister(prometheus.Collector) bool { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedMetrics is every series name server.NewMetrics can produce (histograms with their
// _bucket, _sum and _count).
func exportedMetrics(t testing.TB) map[string]bool {
	d := &describer{}
	server.NewMetrics(d)
	names := map[string]bool{}
	for _, desc := range d.descs {
		m := fqName.FindStringSubmatch(desc.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", desc)
		}
		names[m[1]] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[m[1]+s] = true // harmless for non-histograms: the dashboard only uses them on one
		}
	}
	if len(names) < 4*10 {
		t.Fatalf("only %v registered", names)
	}
	return names
}

var metricRef = regexp.MustCompile(`\bfiredrill_[a-z_]+\b`)

// dashboardQueries returns every PromQL expression of the Grafana dashboard, by panel title.
func dashboardQueries(t testing.TB) map[string][]string {
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, dashboardJS), &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardJS, err)
	}
	q := map[string][]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			q[p.Title] = append(q[p.Title], tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			q["variable "+v.Name] = append(q["variable "+v.Name], v.Definition)
		}
	}
	if len(q) < 8 {
		t.Fatalf("the dashboard has only %d panels with queries", len(q))
	}
	return q
}

// TestDashboardQueriesExportedMetrics: a renamed metric would leave an empty panel.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	t.Parallel()
	exported := exportedMetrics(t)
	used := map[string]bool{}
	for title, exprs := range dashboardQueries(t) {
		for _, e := range exprs {
			refs := metricRef.FindAllString(e, -1)
			if len(refs) == 0 {
				t.Errorf("panel %q queries no firedrill metric: %s", title, e)
			}
			for _, name := range refs {
				used[name] = true
				if !exported[name] {
					t.Errorf("panel %q queries %s, which server.NewMetrics does not export", title, name)
				}
			}
		}
	}
	// Every family firedrill exports is on the dashboard somewhere.
	d := &describer{}
	server.NewMetrics(d)
	for _, desc := range d.descs {
		name := fqName.FindStringSubmatch(desc.String())[1]
		if !used[name] && !used[name+"_bucket"] {
			t.Errorf("the dashboard shows nothing of %s", name)
		}
	}
}

// TestDashboardQueriesParse runs the dashboard's queries through Prometheus' parser by handing
// them to promtool as recording rules ($scenario replaced by a regexp, as Grafana does).
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	var rules []map[string]string
	titles := slices.Sorted(func(yield func(string) bool) {
		for k := range dashboardQueries(t) {
			if !strings.HasPrefix(k, "variable ") && !yield(k) {
				return
			}
		}
	})
	q := dashboardQueries(t)
	for i, title := range titles {
		for j, e := range q[title] {
			rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:panel%d_%d", i, j), "expr": strings.ReplaceAll(e, "$scenario", ".*")})
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, pt, "check", "rules", f)
}
