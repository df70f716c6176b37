package server

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// prometheusRule is the part of a monitoring.coreos.com/v1 PrometheusRule the test reads.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

var metricName = regexp.MustCompile(`\bfiredrill_[a-z_]+\b`)

// TestAlertRulesUseRegisteredMetrics reads deploy/prometheus/firedrill-rules.yaml and checks
// that it has the alerts it promises and that every metric it queries is one Metrics exports: a
// renamed metric would otherwise leave an alert that can never fire.
func TestAlertRulesUseRegisteredMetrics(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "firedrill-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(b, &pr); err != nil {
		t.Fatalf("the rules file does not parse: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Errorf("not a PrometheusRule: %s %s %q", pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}

	// Every metric Metrics exports, once each has a series.
	reg := newRegistry()
	m := NewMetrics(reg)
	m.Observe(record("r1", "shop", drill.Passed, 0))
	m.SetScenarios([]schedule.Status{{Name: "shop", Interval: time.Hour}})
	ratio := 0.0
	m.SetCoverage(&coverage.Result{Ratio: &ratio, NotCovered: 1, Items: []coverage.Item{
		{Kind: coverage.KindSchedule, Name: "nightly", Status: coverage.NotCovered, Window: scenarios.Duration{Duration: time.Hour}}}})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		exported[f.GetName()] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f.GetType().String() == "HISTOGRAM" {
				exported[f.GetName()+suffix] = true
			}
		}
	}
	if len(exported) < 11 {
		t.Fatalf("only %d metric names gathered: %v", len(exported), exported)
	}

	alerts := map[string]bool{}
	used := map[string]bool{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s has no expr", r.Alert)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s has no %s annotation", r.Alert, a)
				}
			}
			if r.Labels["severity"] == "" {
				t.Errorf("%s has no severity", r.Alert)
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("%s: unbalanced parentheses in %s", r.Alert, r.Expr)
			}
			for _, name := range metricName.FindAllString(r.Expr, -1) {
				used[name] = true
				if !exported[name] {
					t.Errorf("%s queries %s, which Metrics does not export", r.Alert, name)
				}
			}
		}
	}
	for _, want := range []string{"FiredrillDrillFailing", "FiredrillDrillNotPassing", "FiredrillObjectiveBreached",
		"FiredrillScratchLeftBehind", "FiredrillScenarioInvalid", "FiredrillHistorySpooling", "FiredrillBackupNotRestoreTested"} {
		if !alerts[want] {
			t.Errorf("alert %s is missing", want)
		}
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 6 {
		t.Errorf("the rules query only %v", names)
	}
}
