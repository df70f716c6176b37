package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/deploy"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/crd"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// TestDrillRuns, on the sandbox's API server with the service's own history, scheduler and
// spool (the test driver drills): a DrillRun runs its Scenario and its status ends where the
// history's record does, hash included, as the Scenario's lastRun; one naming nothing runnable
// fails at once saying why; its spec cannot change; a scheduled run of a Scenario gets a
// DrillRun, and those are pruned to the limit while one a person created stays.
func TestDrillRuns(t *testing.T) {
	t.Parallel()
	dyn, restCfg := drillRunCluster(t)
	ns := testNamespace(t, dyn, "drillruns")
	createScenario(t, dyn, ns, scenario("adhoc", "", "pass"))

	dir := t.TempDir()
	writeFile(t, dir, "from-file.yaml", scenario("from-file", "", "pass"))
	store := openSQLite(t)
	var log testkit.Buffer
	cfg := testConfig(t, store, dir, newHooks(), &log)
	cfg.Kube = func() (*rest.Config, error) { return restCfg, nil }
	cfg.ClusterScenarios = &ClusterScenarios{Namespace: ns, DrillRunHistoryLimit: 2}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t.Context(), t, svc)
	runs := dyn.Resource(v1alpha1.DrillRunResource).Namespace(ns)
	defer func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", log.String())
			if list, err := runs.List(context.Background(), metav1.ListOptions{}); err == nil {
				for _, d := range list.Items {
					t.Logf("DrillRun %s: labels %v, annotations %v, status %v", d.GetName(), d.GetLabels(), d.GetAnnotations(), d.Object["status"])
				}
			}
		}
	}()

	// A DrillRun of the namespace's Scenario, with a seed and a label for the record.
	createDrillRun(t, dyn, ns, "adhoc-1", map[string]any{"scenarioRef": map[string]any{"name": "adhoc"}, "seed": int64(4181102), "labels": map[string]any{"change": "CHG-1"}})
	st := finished(t, dyn, ns, "adhoc-1")
	rec, err := store.Get(t.Context(), st.RunID)
	if err != nil {
		t.Fatalf("the DrillRun's run %q is not in the history: %v", st.RunID, err)
	}
	if st.Phase != v1alpha1.DrillRunFinished || st.Result != "passed" || st.RecordHash == "" || st.RecordHash != rec.Hash || st.Trigger != "drillrun" || len(st.Steps) != len(rec.Steps) {
		t.Errorf("status %+v disagrees with the record %s (%s, hash %s, %d steps)", st, rec.ID, rec.Result, rec.Hash, len(rec.Steps))
	}
	if rec.Trigger != "drillrun" || rec.Operator != "drillrun/"+ns+"/adhoc-1" || rec.Labels["change"] != "CHG-1" || rec.Labels["drill"] != "pass" {
		t.Errorf("the record: trigger %q, operator %q, labels %v", rec.Trigger, rec.Operator, rec.Labels)
	}
	if sel := rec.Backup.Selection; sel == nil || sel.Seed == nil || *sel.Seed != 4181102 || !sel.SeedGiven {
		t.Errorf("the seed did not reach the drill: %+v", sel)
	}
	testkit.EventuallyTrue(t, time.Minute, "the Scenario's lastRun names the DrillRun's record", func() bool {
		u, err := dyn.Resource(v1alpha1.ScenarioResource).Namespace(ns).Get(t.Context(), "adhoc", metav1.GetOptions{})
		h, _, _ := unstructured.NestedString(u.Object, "status", "lastRun", "recordHash")
		return err == nil && h == rec.Hash
	})

	// Its spec is one run: it cannot change.
	u, err := runs.Get(t.Context(), "adhoc-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(u.Object, "from-file", "spec", "scenarioRef", "name")
	if _, err := runs.Update(t.Context(), u, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "spec cannot change") {
		t.Errorf("changing a DrillRun's spec: %v", err)
	}

	// A scenario file runs too; nothing runnable fails at once, saying why and running nothing.
	createDrillRun(t, dyn, ns, "file-1", map[string]any{"scenarioRef": map[string]any{"name": "from-file"}})
	createDrillRun(t, dyn, ns, "nope-1", map[string]any{"scenarioRef": map[string]any{"name": "nope"}})
	createDrillRun(t, dyn, ns, "labels-1", map[string]any{"scenarioRef": map[string]any{"name": "adhoc"}, "labels": map[string]any{"drill": "fail"}})
	if st := finished(t, dyn, ns, "file-1"); st.Result != "passed" {
		t.Errorf("a DrillRun of a scenario file: %+v", st)
	}
	for name, want := range map[string]string{
		"nope-1":   `no scenario "nope": no Scenario of that name in namespace ` + ns,
		"labels-1": `spec.labels[drill]: the scenario's label drill is "pass"`,
	} {
		st := finished(t, dyn, ns, name)
		if st.Phase != v1alpha1.DrillRunFailed || !strings.HasPrefix(st.Message, want) || st.RunID != "" {
			t.Errorf("%s: %+v; want Failed with %q", name, st, want)
		}
		if ran := runsBy(t, store, "drillrun/"+ns+"/"+name); len(ran) != 0 {
			t.Errorf("%s ran: %+v", name, ran)
		}
	}

	// Scheduled runs. A DrillRun a person made with the labels serve gives its own is theirs:
	// it runs (once) and is never pruned.
	mine := map[string]any{"scenarioRef": map[string]any{"name": "sched"}}
	createScenario(t, dyn, ns, scenario("sched", "@every 1s", "pass"))
	createDrillRunLabelled(t, dyn, ns, "sched-mine", mine, map[string]any{crd.LabelScenario: "sched", crd.LabelTrigger: "schedule"})
	testkit.EventuallyTrue(t, 2*time.Minute, "five scheduled runs of sched", func() bool {
		scheduled, err := store.List(t.Context(), history.Filter{Scenario: "sched", Result: drill.Passed})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range scheduled {
			if r.Trigger == "schedule" {
				n++
			}
		}
		return n >= 5
	})
	// No more scheduled runs: what is kept stays put.
	if _, err := dyn.Resource(v1alpha1.ScenarioResource).Namespace(ns).Patch(t.Context(), "sched", types.MergePatchType, []byte(`{"spec":{"schedule":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var names []string
	testkit.EventuallyTrue(t, time.Minute, "two DrillRuns of scheduled runs kept, and the one a person made", func() bool {
		list, err := runs.List(t.Context(), metav1.ListOptions{LabelSelector: crd.LabelScenario + "=sched," + crd.LabelTrigger + "=schedule"})
		if err != nil {
			t.Fatal(err)
		}
		names = nil
		for _, d := range list.Items {
			if p, _, _ := unstructured.NestedString(d.Object, "status", "phase"); p != string(v1alpha1.DrillRunFinished) {
				return false
			}
			names = append(names, d.GetName())
		}
		return len(names) == 3
	})
	for _, name := range names {
		st := finished(t, dyn, ns, name)
		rec, err := store.Get(t.Context(), st.RunID)
		if err != nil || st.Result != "passed" || st.RecordHash != rec.Hash {
			t.Errorf("DrillRun %s: %+v; its record: %v %v", name, st, rec, err)
			continue
		}
		switch {
		case name == "sched-mine":
			if rec.Trigger != "drillrun" {
				t.Errorf("sched-mine ran as %q", rec.Trigger)
			}
		case rec.Trigger != "schedule" || rec.ScheduledFor == nil || name != fmt.Sprintf("sched-%d", rec.ScheduledFor.Unix()):
			t.Errorf("DrillRun %s stands for run %s (%s, scheduled for %v)", name, rec.ID, rec.Trigger, rec.ScheduledFor)
		case len(runsBy(t, store, "drillrun/"+ns+"/"+name)) != 0:
			t.Errorf("the DrillRun of a scheduled run, %s, ran the scenario again", name)
		}
	}
	if !strings.Contains(strings.Join(names, " "), "sched-mine") {
		t.Errorf("the DrillRun a person created was pruned: %v", names)
	}
}

// TestDrillRunRunsOnce: two replicas see the same DrillRuns, and each runs exactly once, under
// the id its status names. With leader election only the leader acts; without it both do (the
// worst case of two leaders), and a DrillRun's claim — a status write on the version the replica
// saw — is what keeps the second from running it too.
func TestDrillRunRunsOnce(t *testing.T) {
	t.Parallel()
	for _, elect := range []bool{true, false} {
		t.Run(fmt.Sprintf("leader election %v", elect), func(t *testing.T) {
			t.Parallel()
			runsOnce(t, elect)
		})
	}
}

func runsOnce(t *testing.T, elect bool) {
	dyn, restCfg := drillRunCluster(t)
	ns := testNamespace(t, dyn, "drillruns-once")
	store := openSQLite(t)
	const n = 6
	for i := range n {
		createScenario(t, dyn, ns, scenario(fmt.Sprintf("once-%d", i), "", "pass"))
	}
	var logs [2]testkit.Buffer
	var svcs [2]*Service
	for i := range logs {
		cfg := testConfig(t, store, "", newHooks(), &logs[i])
		cfg.Kube = func() (*rest.Config, error) { return restCfg, nil }
		cfg.ClusterScenarios = &ClusterScenarios{Namespace: ns, DrillRunHistoryLimit: 10}
		if elect {
			cfg.LeaderElection = &LeaderElection{Namespace: ns, Name: "firedrill", Identity: fmt.Sprintf("replica-%d", i),
				LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: time.Second}
		}
		svc, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		svcs[i] = svc
		start(t.Context(), t, svc)
	}
	defer func() {
		if t.Failed() {
			t.Logf("replica 0:\n%s\nreplica 1:\n%s", logs[0].String(), logs[1].String())
		}
	}()
	leader := -1
	if elect {
		testkit.EventuallyTrue(t, time.Minute, "a replica leads", func() bool {
			for i, s := range svcs {
				if s.elector.Leading() {
					leader = i
					return true
				}
			}
			return false
		})
	}
	for i := range n {
		createDrillRun(t, dyn, ns, fmt.Sprintf("once-%d", i), map[string]any{"scenarioRef": map[string]any{"name": fmt.Sprintf("once-%d", i)}})
	}
	for i := range n {
		name := fmt.Sprintf("once-%d", i)
		st := finished(t, dyn, ns, name)
		ran := runsBy(t, store, "drillrun/"+ns+"/"+name)
		if len(ran) != 1 || st.RunID != ran[0].ID || st.RecordHash != ran[0].Hash || st.Result != "passed" {
			t.Errorf("DrillRun %s: status %+v; runs %d", name, st, len(ran))
		}
	}
	var started [2]int
	for i := range logs {
		started[i] = strings.Count(logs[i].String(), `msg="DrillRun started"`)
	}
	t.Logf("replica 0 started %d DrillRuns, replica 1 %d", started[0], started[1])
	if elect && started[1-leader] != 0 {
		t.Errorf("the follower, replica %d, started %d DrillRuns", 1-leader, started[1-leader])
	}
}

// drillRunCluster is the sandbox's API server with the Scenario and DrillRun CRDs applied.
func drillRunCluster(t *testing.T) (dynamic.Interface, *rest.Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs the sandbox")
	}
	sb := sandboxtest.Shared(t, sandbox.Options{})
	dyn, err := dynamic.NewForConfig(sb.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := deploy.ApplyCRDs(t.Context(), dyn, "firedrill-test"); err != nil {
		t.Fatal(err)
	}
	return dyn, sb.RESTConfig()
}

// testNamespace creates a namespace deleted when the test ends.
func testNamespace(t *testing.T, dyn dynamic.Interface, prefix string) string {
	t.Helper()
	nsRes := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	if _, err := dyn.Resource(nsRes).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dyn.Resource(nsRes).Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	return ns
}

// createScenario creates a scenario file's document as a Scenario in ns.
func createScenario(t *testing.T, dyn dynamic.Interface, ns, doc string) {
	t.Helper()
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(v1alpha1.ScenarioResource).Namespace(ns).Create(t.Context(), &obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createDrillRun(t *testing.T, dyn dynamic.Interface, ns, name string, spec map[string]any) {
	t.Helper()
	createDrillRunLabelled(t, dyn, ns, name, spec, nil)
}

func createDrillRunLabelled(t *testing.T, dyn dynamic.Interface, ns, name string, spec, labels map[string]any) {
	t.Helper()
	md := map[string]any{"name": name}
	if labels != nil {
		md["labels"] = labels
	}
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "firedrill.dev/v1alpha1", "kind": "DrillRun", "metadata": md, "spec": spec}}
	if _, err := dyn.Resource(v1alpha1.DrillRunResource).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// finished waits until the DrillRun is done (Finished or Failed) and returns its status.
func finished(t *testing.T, dyn dynamic.Interface, ns, name string) v1alpha1.DrillRunStatus {
	t.Helper()
	var st v1alpha1.DrillRunStatus
	testkit.EventuallyTrue(t, 2*time.Minute, "DrillRun "+name+" done", func() bool {
		u, err := dyn.Resource(v1alpha1.DrillRunResource).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			t.Fatalf("DrillRun %s is gone", name)
		} else if err != nil {
			t.Fatal(err)
		}
		var dr v1alpha1.DrillRun
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dr); err != nil {
			t.Fatal(err)
		}
		st = dr.Status
		return st.Phase == v1alpha1.DrillRunFinished || st.Phase == v1alpha1.DrillRunFailed
	})
	return st
}

// runsBy are the history's runs that operator asked for.
func runsBy(t *testing.T, store *history.Store, operator string) []drill.Record {
	t.Helper()
	all, err := store.List(t.Context(), history.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []drill.Record
	for _, r := range all {
		if r.Operator == operator {
			out = append(out, r)
		}
	}
	return out
}
