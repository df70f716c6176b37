package crd

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
)

func TestRunStatusFollowsTheRecord(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 4, 3, 0, 0, 700, time.UTC)
	at := func(s int) *time.Time { v := t0.Add(time.Duration(s) * time.Second); return &v }
	rec := &drill.Record{ID: "20261204-030000-abcdef", Result: drill.Running, StartedAt: t0, Steps: []drill.StepRecord{
		{Name: drill.StepPreflight, Result: drill.Passed, StartedAt: t0, FinishedAt: at(1)},
		{Name: drill.StepRestore, Group: "database", Result: drill.Running, StartedAt: *at(2)},
	}}
	st := RunStatus(rec, schedule.KindDrillRun)
	if st.Phase != v1alpha1.DrillRunRunning || st.Step != "restore (database)" || st.RunID != rec.ID || st.RecordHash != "" || st.Result != "" ||
		len(st.Steps) != 2 || st.Steps[1].Name != "restore (database)" || st.Steps[0].FinishedAt == nil || !st.StartedAt.Equal(&metav1.Time{Time: t0.Truncate(time.Second)}) {
		t.Errorf("a running record: %+v", st)
	}
	if c := condition(st.Conditions, v1alpha1.ConditionComplete); c == nil || c.Status != metav1.ConditionFalse || condition(st.Conditions, v1alpha1.ConditionPassed) != nil {
		t.Errorf("a running record's conditions: %+v", st.Conditions)
	}

	rec.Steps[1].Result, rec.Steps[1].FinishedAt = drill.Failed, at(3)
	rec.Steps = append(rec.Steps, drill.StepRecord{Name: drill.StepCleanup, Result: drill.Passed, StartedAt: *at(3), FinishedAt: at(4)})
	rec.Result, rec.Message, rec.FinishedAt, rec.Hash = drill.Failed, `check "rows" failed: 3 of 5`, at(5), "9f86d08"
	st = RunStatus(rec, schedule.KindSchedule)
	if st.Phase != v1alpha1.DrillRunFinished || st.Step != "" || st.Result != "failed" || st.RecordHash != "9f86d08" || st.Message != rec.Message ||
		st.Trigger != "schedule" || st.FinishedAt == nil || len(st.Steps) != 3 {
		t.Errorf("a finished record: %+v", st)
	}
	if c := condition(st.Conditions, v1alpha1.ConditionComplete); c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "9f86d08") {
		t.Errorf("Complete of a finished record: %+v", c)
	}
	if c := condition(st.Conditions, v1alpha1.ConditionPassed); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Failed" {
		t.Errorf("Passed of a failed record: %+v", c)
	}
	rec.Result, rec.Message = drill.Passed, ""
	if c := condition(RunStatus(rec, "").Conditions, v1alpha1.ConditionPassed); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Passed of a passed record: %+v", c)
	}
}

func condition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

// TestResolveScenarioRef: who may run what. A DrillRun runs a Scenario of its own namespace, or
// a scenario file; never another namespace's Scenario.
func TestResolveScenarioRef(t *testing.T) {
	t.Parallel()
	sc := func(name string, labels map[string]string) *scenarios.Scenario {
		return &scenarios.Scenario{Metadata: scenarios.Metadata{Name: name, Labels: labels}}
	}
	entries := []schedule.Entry{
		{File: "/etc/firedrill/scenarios/from-file.yaml", Scenario: sc("from-file", nil)},
		{File: "/etc/firedrill/scenarios/shared.yaml", Scenario: sc("shared", nil)},
		{File: FilePrefix + "ops/etcd", Scenario: sc("etcd", map[string]string{"team": "platform"})},
		{File: FilePrefix + "ops/broken", Err: errors.New(`spec.schedule: "every tuesday" is not a schedule`)},
		{File: FilePrefix + "ops/shared", Err: errors.New(`metadata.name "shared" is also the name of /etc/firedrill/scenarios/shared.yaml`)},
		{File: FilePrefix + "shop/orders", Scenario: sc("orders", nil)},
	}
	scheduled := []schedule.Status{{Name: "from-file", File: entries[0].File}, {Name: "etcd", File: entries[2].File},
		{Name: "orders", File: entries[5].File, Running: "20261204-030000-abcdef"}}
	ref := func(name string) v1alpha1.DrillRunSpec {
		return v1alpha1.DrillRunSpec{ScenarioRef: v1alpha1.ScenarioRef{Name: name}}
	}
	seed := func(n int64) *int64 { return &n }

	for _, c := range []struct {
		what, ns string
		spec     v1alpha1.DrillRunSpec
		refusal  string // "" : runs
		wait     string
	}{
		{what: "own namespace's Scenario", ns: "ops", spec: ref("etcd")},
		{what: "a scenario file", ns: "anywhere", spec: ref("from-file")},
		{what: "another namespace's Scenario", ns: "ops", spec: ref("orders"), refusal: `scenario "orders" is a Scenario of namespace shop: a DrillRun runs a Scenario of its own namespace (ops)`},
		{what: "the same from its namespace, busy", ns: "shop", spec: ref("orders"), wait: "waiting for run 20261204-030000-abcdef of orders"},
		{what: "unknown", ns: "ops", spec: ref("nope"), refusal: `no scenario "nope": no Scenario of that name in namespace ops`},
		{what: "own Scenario that never validated", ns: "ops", spec: ref("broken"), refusal: `Scenario ops/broken cannot run: spec.schedule: "every tuesday"`},
		{what: "own Scenario whose name a file has", ns: "ops", spec: ref("shared"), refusal: `Scenario ops/shared cannot run: metadata.name "shared" is also the name of`},
		{what: "a label key that is no key", ns: "ops", spec: v1alpha1.DrillRunSpec{ScenarioRef: ref("etcd").ScenarioRef, Labels: map[string]string{"bad key": "x"}},
			refusal: `spec.labels[bad key]: key "bad key" is not a valid key`},
		{what: "a label value that is no value", ns: "ops", spec: v1alpha1.DrillRunSpec{ScenarioRef: ref("etcd").ScenarioRef, Labels: map[string]string{"change": "CHG 1"}},
			refusal: `spec.labels[change]: value "CHG 1" is not a valid label value`},
		{what: "a label that changes the scenario's", ns: "ops", spec: v1alpha1.DrillRunSpec{ScenarioRef: ref("etcd").ScenarioRef, Labels: map[string]string{"team": "other"}},
			refusal: `spec.labels[team]: the scenario's label team is "platform"`},
		{what: "the scenario's own label again", ns: "ops", spec: v1alpha1.DrillRunSpec{ScenarioRef: ref("etcd").ScenarioRef, Labels: map[string]string{"team": "platform", "change": "CHG-1"}}},
		{what: "a Scenario the scheduler does not have yet", ns: "anywhere", spec: ref("shared"), wait: `waiting for serve to load scenario "shared"`},
		{what: "a seed past 2^53-1", ns: "ops", spec: v1alpha1.DrillRunSpec{ScenarioRef: ref("etcd").ScenarioRef, Seed: seed(1 << 53)}, refusal: "spec.seed 9007199254740992: want a whole number from 0 to 9007199254740991"},
	} {
		got := resolve(c.ns, c.spec, entries, scheduled)
		if !strings.HasPrefix(got.refusal, c.refusal) || (c.refusal == "") != (got.refusal == "") || !strings.HasPrefix(got.wait, c.wait) || (c.wait == "") != (got.wait == "") {
			t.Errorf("%s: refusal %q, wait %q; want %q, %q", c.what, got.refusal, got.wait, c.refusal, c.wait)
		}
		if c.refusal == "" && got.name != c.spec.ScenarioRef.Name {
			t.Errorf("%s: resolves to %q", c.what, got.name)
		}
	}
}

// TestClaimIsExclusive, on the sandbox's API server: two replicas that saw the same version of a
// new DrillRun both try to claim it; the API server takes one status write, refuses the other
// (a conflict), and only the replica whose claim stood starts the run, under the id the status
// names.
func TestClaimIsExclusive(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the sandbox")
	}
	sb := sandboxtest.Shared(t, sandbox.Options{})
	dyn, err := dynamic.NewForConfig(sb.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := installCRD(t, dyn)
	res := dyn.Resource(v1alpha1.DrillRunResource).Namespace(ns)
	dr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "firedrill.dev/v1alpha1", "kind": "DrillRun",
		"metadata": map[string]any{"name": "claimed-once"}, "spec": map[string]any{"scenarioRef": map[string]any{"name": "from-file"}}}}
	seen, err := res.Create(t.Context(), dr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	file := "/etc/firedrill/scenarios/from-file.yaml"
	var mu sync.Mutex
	var started []string
	replica := func() *RunController {
		return NewRunController(dyn, RunsOptions{Namespace: ns,
			Entries: func() []schedule.Entry {
				return []schedule.Entry{{File: file, Scenario: &scenarios.Scenario{Metadata: scenarios.Metadata{Name: "from-file"}}}}
			},
			Scheduled: func() []schedule.Status { return []schedule.Status{{Name: "from-file", File: file}} },
			Start: func(_ context.Context, name string, tr schedule.Trigger) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				started = append(started, tr.ID)
				return tr.ID, nil
			}})
	}
	a, b := replica(), replica()
	if err := a.reconcile(t.Context(), seen); err != nil {
		t.Fatal(err)
	}
	if err := b.reconcile(t.Context(), seen.DeepCopy()); err != nil {
		t.Fatalf("the losing claim is no error, only nothing to do: %v", err)
	}
	got, err := res.Get(t.Context(), "claimed-once", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := unstructured.NestedString(got.Object, "status", "runID")
	phase, _, _ := unstructured.NestedString(got.Object, "status", "phase")
	if len(started) != 1 || started[0] != id || phase != string(v1alpha1.DrillRunRunning) {
		t.Errorf("runs started %v; the DrillRun is %s with run %q", started, phase, id)
	}
}
