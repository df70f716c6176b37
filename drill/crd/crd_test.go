package crd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/deploy"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// resource is a Scenario as the API server returns it, with what a file does not have:
// namespace, kubectl's annotation, status, resourceVersion.
func resource(t testing.TB, ns, name, schedule string, created time.Time) *unstructured.Unstructured {
	t.Helper()
	var o map[string]any
	doc := `apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata:
  name: ` + name + `
  namespace: ` + ns + `
  resourceVersion: "42"
  labels: {team: platform}
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}", firedrill.dev/controls: "A.8.13"}
spec:
  schedule: "` + schedule + `"
  backup: {etcd: {take: {endpoints: ["http://127.0.0.1:2379"]}}}
  restore: {scratchEtcd: {}}
  checks: [{name: keys, etcdKeys: {prefix: /registry/, min: 1}}]
status: {observedGeneration: 1}
`
	if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: o}
	u.SetGeneration(1) // JSON numbers decode as float64 here; the API's client gives int64
	u.SetCreationTimestamp(metav1.NewTime(created))
	return u
}

func TestDocumentIsTheScenarioFile(t *testing.T) {
	t.Parallel()
	s := NewSource(nil, "", nil)
	s.set(resource(t, "ops", "etcd-daily", "@daily", time.Now()))
	s.set(resource(t, "ops", "bad", "every tuesday", time.Now()))
	items := map[string]item{}
	for _, it := range s.snapshot() {
		items[it.name] = it
	}
	sc := items["etcd-daily"].entry.Scenario
	if items["etcd-daily"].problem != "" || sc == nil {
		t.Fatalf("a valid Scenario: %q", items["etcd-daily"].problem)
	}
	// What the validator read is the file's document: its name, labels and annotations (not
	// kubectl's), defaults applied.
	if sc.Metadata.Name != "etcd-daily" || sc.Metadata.Labels["team"] != "platform" || sc.Metadata.Annotations["firedrill.dev/controls"] != "A.8.13" ||
		len(sc.Metadata.Annotations) != 1 || sc.Spec.Timeout.Duration != scenarios.DefaultTimeout {
		t.Errorf("loaded %+v", sc.Metadata)
	}
	if p := items["bad"].problem; !strings.HasPrefix(p, `spec.schedule: "every tuesday" is not a schedule`) || items["bad"].entry.Scenario != nil {
		t.Errorf("an invalid Scenario: %q", p)
	}
	if e := items["bad"].entry; e.Err == nil || e.File != FilePrefix+"ops/bad" {
		t.Errorf("its entry: %+v", e)
	}

	// A change that breaks it keeps the last valid version; a status write is no change.
	broken := resource(t, "ops", "etcd-daily", "every tuesday", time.Now())
	broken.SetGeneration(2)
	if !s.set(broken) {
		t.Fatal("a new generation was not a change")
	}
	statusOnly := broken.DeepCopy()
	statusOnly.Object["status"] = map[string]any{"observedGeneration": int64(2)}
	statusOnly.SetResourceVersion("43")
	if s.set(statusOnly) {
		t.Error("a status write counted as a change of the scenario")
	}
	for _, it := range s.snapshot() {
		if it.name == "etcd-daily" && (it.problem == "" || it.entry.Scenario != sc || it.obj.GetResourceVersion() != "43") {
			t.Errorf("after a breaking edit: problem %q, last valid kept %v, newest object %s", it.problem, it.entry.Scenario == sc, it.obj.GetResourceVersion())
		}
	}
}

func TestMergeNamesAreOneSet(t *testing.T) {
	t.Parallel()
	s := NewSource(nil, "", nil)
	t0 := time.Now().Add(-time.Hour)
	s.set(resource(t, "b-team", "shared", "@daily", t0.Add(time.Minute)))
	s.set(resource(t, "a-team", "shared", "@daily", t0)) // older: keeps the name
	s.set(resource(t, "a-team", "file-too", "@daily", t0))
	s.set(resource(t, "a-team", "own", "@daily", t0.Add(2*time.Minute)))
	file := schedule.Entry{File: "/etc/firedrill/scenarios/file-too.yaml", Scenario: &scenarios.Scenario{Metadata: scenarios.Metadata{Name: "file-too"}}}

	got := s.Merge([]schedule.Entry{file})
	scheduled := map[string]string{}
	for _, e := range got {
		if e.Scenario != nil {
			scheduled[e.Scenario.Metadata.Name] = e.File
		}
	}
	want := map[string]string{"file-too": file.File, "shared": FilePrefix + "a-team/shared", "own": FilePrefix + "a-team/own"}
	if len(got) != 5 || len(scheduled) != len(want) {
		t.Fatalf("merged %d entries, scheduled %v", len(got), scheduled)
	}
	for name, f := range want {
		if scheduled[name] != f {
			t.Errorf("%s is scheduled from %q, want %q", name, scheduled[name], f)
		}
	}
	for _, it := range s.snapshot() {
		var holder string
		switch it.key() {
		case "b-team/shared":
			holder = FilePrefix + "a-team/shared"
		case "a-team/file-too":
			holder = file.File
		}
		if it.takenBy != holder {
			t.Errorf("%s: taken by %q, want %q", it.key(), it.takenBy, holder)
		}
	}
}

// runs is a history of fixed records, newest first.
type runs []drill.Record

func (r runs) List(_ context.Context, f history.Filter) ([]drill.Record, error) {
	var out []drill.Record
	for _, rec := range r {
		if rec.Scenario == f.Scenario {
			out = append(out, rec)
		}
	}
	return out, nil
}

func TestDesiredStatus(t *testing.T) {
	t.Parallel()
	s := NewSource(nil, "", nil)
	t0 := time.Now().Add(-time.Hour)
	s.set(resource(t, "ops", "passing", "@daily", t0))
	s.set(resource(t, "ops", "invalid", "every tuesday", t0))
	s.set(resource(t, "ops2", "passing", "@daily", t0.Add(time.Minute)))
	s.Merge(nil)
	started := time.Date(2026, 12, 4, 3, 0, 0, 500, time.UTC)
	rto, rpo := 92.4, 3.04
	w := NewStatusWriter(s, StatusOptions{Runs: runs{
		{ID: "r3", Scenario: "passing", Result: drill.Running},
		{ID: "r2", Scenario: "passing", Result: drill.Skipped},
		{ID: "r1", Scenario: "passing", Result: drill.Passed, Trigger: "schedule", StartedAt: started, RTOSeconds: &rto, RPOSeconds: &rpo, Hash: "abc"},
	}})
	next := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	got := map[string]v1alpha1.ScenarioStatus{}
	for _, it := range s.snapshot() {
		got[it.key()] = w.desired(t.Context(), it, next)
	}
	cond := func(st v1alpha1.ScenarioStatus, typ string) string {
		for _, c := range st.Conditions {
			if c.Type == typ {
				return string(c.Status) + " " + c.Reason
			}
		}
		return ""
	}
	ok := got["ops/passing"]
	if cond(ok, "Valid") != "True Validated" || cond(ok, "Ready") != "True Loaded" || cond(ok, "LastRunPassed") != "True Passed" ||
		ok.NextRunAt == nil || !ok.NextRunAt.Equal(&metav1.Time{Time: next}) || ok.ObservedGeneration != 1 {
		t.Errorf("a valid, passing Scenario: %+v", ok)
	}
	if lr := ok.LastRun; lr == nil || lr.ID != "r1" || lr.RTO != "1m32s" || lr.RPO != "3s" || lr.RecordHash != "abc" || !lr.StartedAt.Equal(&metav1.Time{Time: started.Truncate(time.Second)}) {
		t.Errorf("lastRun (running and skipped ones aside): %+v", ok.LastRun)
	}
	bad := got["ops/invalid"]
	if cond(bad, "Valid") != "False Invalid" || cond(bad, "Ready") != "False Invalid" || cond(bad, "LastRunPassed") != "Unknown NoRun" || bad.NextRunAt != nil {
		t.Errorf("an invalid Scenario: %+v", bad)
	}
	taken := got["ops2/passing"]
	if cond(taken, "Ready") != "False NameTaken" || taken.LastRun != nil || taken.NextRunAt != nil {
		t.Errorf("a Scenario whose name is taken: %+v", taken)
	}
}

// TestStatusWritesOnlyWhileLeadingRetryingConflicts, on the sandbox's API server: a follower
// writes nothing; the leader writes from the informer's copy, and when that copy is stale (the
// Scenario changed since) the conflict is retried on the newest version.
func TestStatusWritesOnlyWhileLeadingRetryingConflicts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the sandbox")
	}
	sb := sandboxtest.Shared(t, sandbox.Options{})
	dyn, err := dynamic.NewForConfig(sb.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := installCRD(t, dyn)
	res := dyn.Resource(v1alpha1.ScenarioResource).Namespace(ns)
	u := resource(t, ns, "leader-only", "@daily", time.Now())
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "resourceVersion")
	if _, err := res.Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src := NewSource(dyn, ns, nil)
	if err := src.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	src.Merge(nil)
	leading := false
	w := NewStatusWriter(src, StatusOptions{Runs: runs{}, Scheduled: func() []schedule.Status { return nil }, Leading: func() bool { return leading }})
	w.Pass(t.Context())
	got, err := res.Get(t.Context(), "leader-only", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Object["status"]; ok {
		t.Fatalf("a follower wrote a status: %v", got.Object["status"])
	}

	// Someone edits the Scenario's labels after serve's copy was taken: that copy's
	// resourceVersion is stale, so the first write conflicts.
	got.SetLabels(map[string]string{"team": "platform", "edited": "yes"})
	if _, err := res.Update(t.Context(), got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	leading = true
	w.Pass(t.Context())
	got, err = res.Get(t.Context(), "leader-only", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if valid, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions"); len(valid) != 3 || got.GetLabels()["edited"] != "yes" {
		t.Errorf("after the leader's pass: status %v, labels %v", got.Object["status"], got.GetLabels())
	}
}

// installCRD applies the generated CRDs (Scenario, DrillRun) and returns a new namespace,
// deleted at the end.
func installCRD(t testing.TB, dyn dynamic.Interface) string {
	t.Helper()
	if err := deploy.ApplyCRDs(t.Context(), dyn, "firedrill-test"); err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("crd-test-%d", time.Now().UnixNano()%1e9)
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	if _, err := dyn.Resource(namespaces).Create(t.Context(), nsObj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dyn.Resource(namespaces).Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := dyn.Resource(v1alpha1.ScenarioResource).Namespace(ns).List(t.Context(), metav1.ListOptions{Limit: 1})
		if err == nil {
			_, err = dyn.Resource(v1alpha1.DrillRunResource).Namespace(ns).List(t.Context(), metav1.ListOptions{Limit: 1})
		}
		if err == nil {
			return ns
		}
		if time.Now().After(deadline) {
			t.Fatalf("Scenarios not served after a minute: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
