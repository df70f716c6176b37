package scratch

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestJanitor is not parallel: a janitor pass covers the whole cluster, and the parallel tests
// (paused until the sequential ones end) must not have namespaces it could judge.
func TestJanitor(t *testing.T) {
	c := cluster(t)
	m := New(c)
	ctx := context.Background()
	run := unique("run")
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)

	expired, kept := unique("drill-expired"), unique("drill-kept")
	prepare(t, m, run, []string{expired, kept}, quotaIso("5"), inAnHour())
	if err := m.Extend(ctx, run, []string{expired}, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Both labels but no readable expiry: a crashed older run; the grace decides.
	noExpiry, badExpiry := unique("drill-noexpiry"), unique("drill-badexpiry")
	both := map[string]string{LabelManagedBy: ManagedBy, LabelRun: run}
	plainNamespace(t, c, noExpiry, both, nil)
	plainNamespace(t, c, badExpiry, both, map[string]string{AnnotationExpires: "tomorrow"})
	// Expired by the annotation, but not firedrill's: never deleted.
	plain, onlyRun, onlyManaged := unique("plain"), unique("only-run"), unique("only-managed")
	expiredAnn := map[string]string{AnnotationExpires: past}
	plainNamespace(t, c, plain, nil, expiredAnn)
	plainNamespace(t, c, onlyRun, map[string]string{LabelRun: run}, expiredAnn)
	plainNamespace(t, c, onlyManaged, map[string]string{LabelManagedBy: ManagedBy}, expiredAnn)
	time.Sleep(time.Second) // creation times have whole seconds: make the new ones older than the grace

	ours := []string{expired, kept, noExpiry, badExpiry, plain, onlyRun, onlyManaged}
	want := []string{badExpiry, expired, noExpiry}
	slices.Sort(want)
	opts := JanitorOptions{Grace: time.Millisecond, DryRun: true}

	dry, err := m.Janitor(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := namesAmong(dry, ours); !slices.Equal(got, want) {
		t.Errorf("dry run would delete %v, want %v", got, want)
	}
	assertIntact(t, c, ours...)

	opts.DryRun = false
	deleted, err := m.Janitor(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := namesAmong(deleted, ours); !slices.Equal(got, want) {
		t.Errorf("deleted %v, want %v (as the dry run said)", got, want)
	}
	assertGone(t, c, want...)
	assertIntact(t, c, kept, plain, onlyRun, onlyManaged, "default", "kube-system")

	// A second pass finds nothing of ours.
	again, err := m.Janitor(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := namesAmong(again, ours); len(got) > 0 {
		t.Errorf("second pass deleted %v", got)
	}
}

func namesAmong(nss []Namespace, among []string) []string {
	var out []string
	for _, n := range nss {
		if slices.Contains(among, n.Name) {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

func TestListAndExtend(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	m := New(c)
	ctx := context.Background()
	run, name := unique("run"), unique("drill-list")
	expires := inAnHour()
	before := time.Now().Add(-time.Second)
	prepare(t, m, run, []string{name}, quotaIso("5"), expires)
	plain, onlyManaged := unique("plain"), unique("only-managed")
	plainNamespace(t, c, plain, nil, nil)
	plainNamespace(t, c, onlyManaged, map[string]string{LabelManagedBy: ManagedBy}, nil)

	got := find(t, m, name)
	if got.Run != run || got.Scenario != "shop-velero" || !got.Expires.Equal(expires) || got.Terminating || got.Created.Before(before.Truncate(time.Second)) {
		t.Errorf("List: %+v", got)
	}
	all, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if n.Name == plain || n.Name == onlyManaged || n.Name == "default" {
			t.Errorf("List reports %s, which is not a scratch namespace", n.Name)
		}
	}

	// keepFor: the run extends its own namespaces.
	later := expires.Add(24 * time.Hour)
	if err := m.Extend(ctx, run, []string{name}, later); err != nil {
		t.Fatal(err)
	}
	if got := find(t, m, name); !got.Expires.Equal(later) {
		t.Errorf("expiry after Extend = %v, want %v", got.Expires, later)
	}
	// Another run, or a list with a namespace that is not scratch, changes nothing.
	if err := m.Extend(ctx, unique("run"), []string{name}, later.Add(time.Hour)); !errors.Is(err, ErrNotScratch) {
		t.Errorf("Extend by another run = %v, want ErrNotScratch", err)
	}
	if err := m.Extend(ctx, run, []string{name, plain}, later.Add(time.Hour)); !errors.Is(err, ErrNotScratch) {
		t.Errorf("Extend with %s = %v, want ErrNotScratch", plain, err)
	}
	if got := find(t, m, name); !got.Expires.Equal(later) {
		t.Errorf("expiry changed by a refused Extend: %v, want %v", got.Expires, later)
	}
	if err := m.Confirm(ctx, run, []string{name, plain, unique("missing")}); !errors.Is(err, ErrNotScratch) {
		t.Errorf("Confirm with a plain and a missing namespace = %v, want ErrNotScratch", err)
	} else {
		t.Logf("as expected: %v", err)
	}
	if err := m.Delete(ctx, run, []string{name}); err != nil {
		t.Fatal(err)
	}
}

func find(t *testing.T, m *Manager, name string) Namespace {
	t.Helper()
	all, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("List does not report %s", name)
	return Namespace{}
}
