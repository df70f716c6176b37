package janitor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/scratch"
)

// fakeKind stands for kind's clusters: no container engine runs here (kind needs Docker or Podman).
type fakeKind struct {
	mu       sync.Mutex
	clusters map[string][]corev1.Node // nil nodes: the cluster does not answer
	deleted  []string
}

func (f *fakeKind) List() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for name := range f.clusters {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakeKind) Nodes(_ context.Context, name string) ([]corev1.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	nodes, ok := f.clusters[name]
	if !ok || nodes == nil {
		return nil, errors.New("connection refused")
	}
	return nodes, nil
}

func (f *fakeKind) Delete(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.clusters, name)
	f.deleted = append(f.deleted, name)
	return nil
}

func kindNode(name string, created time.Time, labels map[string]string, expires time.Time) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, CreationTimestamp: metav1.NewTime(created)}}
	if !expires.IsZero() {
		n.Annotations = map[string]string{scratch.AnnotationExpires: scratch.FormatExpiry(expires)}
	}
	return n
}

func TestKindDue(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	j := scratch.Judge{Now: now, Grace: 24 * time.Hour, RunnerGone: func(run string) bool { return run == "crashed" }}
	ours := func(run string) map[string]string {
		return map[string]string{scratch.LabelManagedBy: scratch.ManagedBy, scratch.LabelRun: run}
	}
	onlyRun := func(run string) map[string]string { return map[string]string{scratch.LabelRun: run} }
	hour := time.Hour
	for _, tc := range []struct {
		name    string
		nodes   []corev1.Node
		run     string
		want    string
		expires time.Time
	}{
		{"expired", []corev1.Node{kindNode("cp", now.Add(-2*hour), ours("r1"), now.Add(-hour))}, "r1", scratch.DueExpired, now.Add(-hour)},
		{"not yet expired", []corev1.Node{kindNode("cp", now.Add(-2*hour), ours("r1"), now.Add(hour))}, "r1", "", now.Add(hour)},
		{"kept: the latest expiry counts", []corev1.Node{kindNode("cp", now.Add(-2*hour), ours("r1"), now.Add(-hour)),
			kindNode("w", now.Add(-2*hour), ours("r1"), now.Add(hour))}, "r1", "", now.Add(hour)},
		{"no expiry, older than the grace", []corev1.Node{kindNode("cp", now.Add(-25*hour), ours("r1"), time.Time{})}, "r1", scratch.DueNoExpiry, time.Time{}},
		{"no expiry, young", []corev1.Node{kindNode("cp", now.Add(-hour), ours("r1"), time.Time{})}, "r1", "", time.Time{}},
		{"runner gone, not yet expired", []corev1.Node{kindNode("cp", now, ours("crashed"), now.Add(hour))}, "crashed", scratch.DueRunnerGone, now.Add(hour)},
		{"creation cut short, runner gone", []corev1.Node{kindNode("cp", now, onlyRun("crashed"), time.Time{})}, "crashed", scratch.DueRunnerGone, time.Time{}},
		{"creation cut short, runner unknown", []corev1.Node{kindNode("cp", now.Add(-90*24*hour), onlyRun("r1"), time.Time{})}, "r1", "", time.Time{}},
		{"not firedrill's", []corev1.Node{kindNode("cp", now.Add(-90*24*hour), nil, now.Add(-hour))}, "", "", time.Time{}},
		{"managed by another", []corev1.Node{kindNode("cp", now.Add(-90*24*hour), map[string]string{scratch.LabelManagedBy: scratch.ManagedBy}, now.Add(-hour))}, "", "", time.Time{}},
		{"nodes of two runs", []corev1.Node{kindNode("cp", now.Add(-2*hour), ours("r1"), now.Add(-hour)),
			kindNode("w", now.Add(-2*hour), ours("r2"), now.Add(-hour))}, "", "", time.Time{}},
		{"one node not labelled", []corev1.Node{kindNode("cp", now.Add(-2*hour), ours("crashed"), now.Add(-hour)),
			kindNode("w", now.Add(-2*hour), nil, time.Time{})}, "", "", time.Time{}},
		{"no nodes", nil, "", "", time.Time{}},
	} {
		run, why, expires := kindDue(tc.nodes, j)
		if run != tc.run || why != tc.want || !expires.Equal(tc.expires) {
			t.Errorf("%s: kindDue = %q, %q, %v; want %q, %q, %v", tc.name, run, why, expires, tc.run, tc.want, tc.expires)
		}
	}
}

func TestSweepKind(t *testing.T) {
	t.Parallel()
	now := time.Now()
	dead := deadRunner(t)
	root := t.TempDir()
	makeWorkDir(t, root, "20260101-000000-crashed", dead, nil)
	ours := func(run string) map[string]string {
		return map[string]string{scratch.LabelManagedBy: scratch.ManagedBy, scratch.LabelRun: run}
	}
	k := &fakeKind{clusters: map[string][]corev1.Node{
		"firedrill-expired": {kindNode("cp", now.Add(-2*time.Hour), ours("20260101-000000-expired"), now.Add(-time.Minute))},
		"firedrill-running": {kindNode("cp", now.Add(-time.Minute), ours("20260101-000000-running"), now.Add(time.Hour))},
		"firedrill-crashed": {kindNode("cp", now.Add(-time.Minute), map[string]string{scratch.LabelRun: "20260101-000000-crashed"}, time.Time{})},
		"firedrill-old":     {kindNode("cp", now.Add(-90*24*time.Hour), nil, now.Add(-time.Hour))}, // someone's, named like ours
		"down":              nil,
	}}
	j, err := New(Config{WorkRoot: root, Alive: history.ProcessAlive, Kind: k})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"firedrill-expired": scratch.DueExpired, "firedrill-crashed": scratch.DueRunnerGone}
	dry, err := j.Sweep(context.Background(), Options{DryRun: true})
	if err == nil {
		t.Error("a cluster that does not answer is not an error")
	}
	if got := kindReasons(dry.Items); !mapsEqual(got, want) {
		t.Errorf("dry run: %v, want %v", got, want)
	}
	if len(k.deleted) != 0 {
		t.Errorf("dry run deleted %v", k.deleted)
	}
	rep, _ := j.Sweep(context.Background(), Options{})
	if got := kindReasons(rep.Items); !mapsEqual(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	slices.Sort(k.deleted)
	if !slices.Equal(k.deleted, []string{"firedrill-crashed", "firedrill-expired"}) {
		t.Errorf("deleted %v", k.deleted)
	}
	// The crashed run's cluster is gone; now its work directory goes too.
	if n := len(kindReasons(rep.Items)); n != 2 || len(rep.Items) != 3 || rep.Items[2].Kind != KindWorkDir {
		t.Errorf("items %+v: want the two clusters, then the crashed run's work directory", rep.Items)
	}
}

func kindReasons(items []Item) map[string]string {
	out := map[string]string{}
	for _, it := range items {
		if it.Kind == KindKindCluster {
			out[it.Name] = it.Reason
		}
	}
	return out
}
