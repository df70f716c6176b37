package jobexec_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/jobexec"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

type gone struct{ runs []string }

func (g *gone) RunnerGone(run string, _ drill.RunnerInfo) { g.runs = append(g.runs, run) }
func (g *gone) Wake()                                     {}

// SweepOrphans deletes the drill Jobs whose run the history has finished (their serve died and
// the run was marked aborted) and hands those runs to the janitor; a Job whose run is still
// running in the history is left for the replica that follows it — on a follower — or handed
// to adopt on the leader.
func TestSweepOrphans(t *testing.T) {
	sb := sandboxtest.Start(t, sandbox.Options{})
	kube, err := kubernetes.NewForConfig(sb.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := fmt.Sprintf("fdorphans-%d", time.Now().UnixNano()%1e6)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	store, err := history.Open(ctx, filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sc := testkit.WriteScenario(t, `apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: orphans}
spec:
  backup: {etcd: {take: {endpoints: ["http://10.0.0.1:2379"]}}}
  restore: {scratchEtcd: {}}
  checks: [{etcdIntegrity: {}}]
`)
	now := time.Now().UTC()
	abandoned, alive := drill.NewRunID(now), drill.NewRunID(now.Add(time.Second))
	for _, id := range []string{abandoned, alive} {
		if err := store.Begin(ctx, &drill.Record{ID: id, Scenario: "orphans", Trigger: "api", Result: drill.Running, StartedAt: now}); err != nil {
			t.Fatal(err)
		}
		job, err := jobexec.BuildJob(jobexec.JobParams{Namespace: ns, Image: "firedrill.local/none:0", Scenario: sc, RunID: id, Trigger: "api"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	fin := now.Add(time.Minute)
	if err := store.Finish(ctx, &drill.Record{ID: abandoned, Scenario: "orphans", Trigger: "api", Result: drill.Aborted,
		Message: "runner gone", StartedAt: now, FinishedAt: &fin}); err != nil {
		t.Fatal(err)
	}

	jan := &gone{}
	ex, err := jobexec.New(jobexec.Options{Kube: kube, Namespace: ns, Image: "firedrill.local/none:0", Recorder: store, Janitor: jan})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := ex.SweepOrphans(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sw.Deleted, []string{jobexec.JobName(abandoned)}) || !slices.Equal(jan.runs, []string{abandoned}) || len(sw.Adopted) != 0 {
		t.Errorf("deleted %v, adopted %v, handed to the janitor %v; want only the Job of %s deleted", sw.Deleted, sw.Adopted, jan.runs, abandoned)
	}
	// The leader adopts the Job of the run still running: once, until adopt's run ends.
	var orphans []jobexec.Orphan
	adopt := func(o jobexec.Orphan) error { orphans = append(orphans, o); return nil }
	for range 2 {
		if sw, err = ex.SweepOrphans(ctx, store, adopt); err != nil {
			t.Fatal(err)
		}
	}
	if len(orphans) != 1 || orphans[0].Job != jobexec.JobName(alive) || orphans[0].Trigger.ID != alive || orphans[0].Trigger.Kind != "api" ||
		orphans[0].Scenario.Metadata.Name != "orphans" || orphans[0].Scenario.Spec.Backup.Etcd == nil {
		t.Errorf("adopted %+v; want the Job of %s once, with its scenario and trigger", orphans, alive)
	}
	if _, err := kube.BatchV1().Jobs(ns).Get(ctx, jobexec.JobName(alive), metav1.GetOptions{}); err != nil {
		t.Errorf("the Job of a run still running: %v", err)
	}
	j, err := kube.BatchV1().Jobs(ns).Get(ctx, jobexec.JobName(abandoned), metav1.GetOptions{})
	if err == nil && j.DeletionTimestamp == nil {
		t.Errorf("the orphaned Job is still there")
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	// Another replica finishes the run before this one follows it: the adopted run is left to
	// it (schedule.ErrNotOurs), and its Job, still running, deleted.
	fin2 := now.Add(2 * time.Minute)
	if err := store.Finish(ctx, &drill.Record{ID: alive, Scenario: "orphans", Trigger: "api", Result: drill.Passed, StartedAt: now, FinishedAt: &fin2}); err != nil {
		t.Fatal(err)
	}
	o := orphans[0]
	rec, err := ex.Adopt(o, store)(ctx, o.Scenario, o.Trigger)
	if !errors.Is(err, schedule.ErrNotOurs) || rec == nil || rec.Result != drill.Passed {
		t.Errorf("adopting a run another replica finished: %+v, %v; want its record and ErrNotOurs", rec, err)
	}
	if j, err := kube.BatchV1().Jobs(ns).Get(ctx, o.Job, metav1.GetOptions{}); err == nil && j.DeletionTimestamp == nil {
		t.Errorf("the Job of a run finished elsewhere is still there")
	}
}
