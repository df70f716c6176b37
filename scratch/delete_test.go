package scratch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Delete is tried on namespaces that are not this run's scratch namespaces, each named together
// with one that is: it refuses, names the culprit, and deletes neither.
func TestDeleteRefusesWhatIsNotScratch(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	m := New(c)
	ctx := context.Background()
	run := unique("run")
	mine := unique("drill-mine")
	prepare(t, m, run, []string{mine}, quotaIso("5"), inAnHour())

	plain, onlyRun, onlyManaged, helm := unique("plain"), unique("only-run"), unique("only-managed"), unique("helm")
	plainNamespace(t, c, plain, nil, nil)
	plainNamespace(t, c, onlyRun, map[string]string{LabelRun: run}, nil)
	plainNamespace(t, c, onlyManaged, map[string]string{LabelManagedBy: ManagedBy}, nil)
	plainNamespace(t, c, helm, map[string]string{LabelManagedBy: "Helm", LabelRun: run}, nil)
	otherRun, theirs := unique("run"), unique("drill-theirs")
	prepare(t, m, otherRun, []string{theirs}, quotaIso("5"), inAnHour())

	for _, victim := range []string{plain, onlyRun, onlyManaged, helm, theirs, "default", "kube-system"} {
		err := m.Delete(ctx, run, []string{mine, victim})
		if !errors.Is(err, ErrNotScratch) {
			t.Errorf("Delete of %s: err = %v, want ErrNotScratch", victim, err)
			continue
		}
		if !strings.Contains(err.Error(), "namespace "+victim+" ") || !strings.Contains(err.Error(), "nothing deleted") {
			t.Errorf("error %q does not name %s or say nothing was deleted", err, victim)
		}
	}
	assertIntact(t, c, mine, plain, onlyRun, onlyManaged, helm, theirs, "default", "kube-system")

	// The other run's namespace is deleted by that run, and a name that does not exist counts
	// as deleted.
	if err := m.Delete(ctx, otherRun, []string{theirs, unique("never-made")}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, c, theirs)
	assertIntact(t, c, mine)
	if err := m.Delete(ctx, run, []string{mine}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, c, mine)
}

// When ctx ends before Kubernetes has finished deleting, the error names what is still
// terminating; a later Delete picks up the namespace already being deleted and waits.
func TestDeleteNamesWhatIsStillTerminating(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	m := New(c)
	ctx := context.Background()
	run, name := unique("run"), unique("drill-stuck")
	prepare(t, m, run, []string{name}, quotaIso("5"), inAnHour())

	// A finalizer nobody removes holds up the namespace's deletion, as a stuck controller would.
	cms := c.CoreV1().ConfigMaps(name)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "held", Finalizers: []string{"firedrill.dev/test-hold"}}}
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	release := func() {
		held, err := cms.Get(ctx, "held", metav1.GetOptions{})
		if err != nil {
			return
		}
		held.Finalizers = nil
		if _, err := cms.Update(ctx, held, metav1.UpdateOptions{}); err != nil {
			t.Errorf("release finalizer: %v", err)
		}
	}
	t.Cleanup(release)

	short, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	err := m.Delete(short, run, []string{name})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still terminating: "+name) {
		t.Fatalf("err = %v, want deadline exceeded naming %s", err, name)
	}
	t.Logf("as expected: %v", err)

	release()
	long, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.Delete(long, run, []string{name}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, c, name)
}

// A namespace that changes between the check and the delete is checked again: the delete
// carries the checked UID and resourceVersion, so the apiserver refuses it for a changed one.
func TestDeleteRechecksAChangedNamespace(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	m := New(c)
	ctx := context.Background()
	run := unique("run")
	relabelled, extended := unique("drill-relabelled"), unique("drill-extended")
	prepare(t, m, run, []string{relabelled, extended}, quotaIso("5"), inAnHour())

	// Someone takes the namespace over after Delete checked it.
	stale, err := c.CoreV1().Namespaces().Get(ctx, relabelled, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	taken := stale.DeepCopy()
	delete(taken.Labels, LabelManagedBy)
	if _, err := c.CoreV1().Namespaces().Update(ctx, taken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.deleteOne(ctx, stale, deletableBy(run)); !errors.Is(err, ErrNotScratch) {
		t.Errorf("delete of a namespace relabelled since the check: err = %v, want ErrNotScratch", err)
	}

	// The janitor listed a namespace as expired; the run extended it before the delete.
	if err := m.Extend(ctx, run, []string{extended}, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	listed, err := c.CoreV1().Namespaces().Get(ctx, extended, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Extend(ctx, run, []string{extended}, inAnHour()); err != nil {
		t.Fatal(err)
	}
	if err := m.deleteOne(ctx, listed, janitorCheck(Judge{Now: time.Now()})); !errors.Is(err, errNotDue) {
		t.Errorf("janitor delete of a namespace extended since listing: err = %v, want errNotDue", err)
	}
	assertIntact(t, c, relabelled, extended)
}
