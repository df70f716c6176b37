package coverage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// fakeVelero is one cluster's Velero objects: discovery and the join are pure logic over them.
type fakeVelero struct {
	schedules  []Schedule
	backups    []Backup
	namespaces []Namespace
	err        error
}

func (f *fakeVelero) Schedules(context.Context, string) ([]Schedule, error) {
	return f.schedules, f.err
}
func (f *fakeVelero) Backups(context.Context, string) ([]Backup, error) { return f.backups, f.err }
func (f *fakeVelero) Namespaces(context.Context) ([]Namespace, error)   { return f.namespaces, nil }

func connectTo(v Velero) Connector {
	return func(Source) (Cluster, error) { return Cluster{Name: "prod", ID: "https://prod:6443", Velero: v}, nil }
}

func latestFrom(name, schedule string) *scenarios.Scenario {
	return &scenarios.Scenario{Metadata: scenarios.Metadata{Name: name}, Spec: scenarios.Spec{Backup: scenarios.Backup{
		Velero: &scenarios.VeleroBackup{Namespace: "velero", LatestFrom: &scenarios.VeleroLatestFrom{Schedule: schedule}}}}}
}

var now = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func shop() *fakeVelero {
	return &fakeVelero{
		schedules: []Schedule{
			{Name: "shop-nightly", IncludedNamespaces: []string{"shop"}, Cron: "0 2 * * *"},
			{Name: "db-nightly", IncludedNamespaces: []string{"db"}, Cron: "0 3 * * *"},
			{Name: "everything", Cron: "0 4 * * 0", ExcludedNamespaces: []string{"kube-system"}},
			{Name: "ci", IncludedNamespaces: []string{"ci"}, Annotations: map[string]string{ExcludeAnnotation: "test data, recreated by CI"}},
		},
		backups: []Backup{
			{Name: "shop-nightly-1", Schedule: "shop-nightly", Phase: "Completed", Started: now.Add(-2 * time.Hour)},
			{Name: "shop-nightly-0", Schedule: "shop-nightly", Phase: "Failed", Started: now.Add(-26 * time.Hour)},
			{Name: "by-hand", Phase: "Completed", Started: now.Add(-48 * time.Hour), IncludedNamespaces: []string{"shop"}},
			{Name: "drill-x", Phase: "Completed", ByFiredrill: true},
			{Name: "gone-1", Schedule: "gone", Phase: "Completed", Started: now.Add(-72 * time.Hour)},
		},
		namespaces: []Namespace{{Name: "shop"}, {Name: "db"}, {Name: "ci"}, {Name: "kube-system"},
			{Name: "drill-abc-shop", Scratch: true}},
	}
}

func find(t *testing.T, r *Result, kind Kind, name string) Item {
	t.Helper()
	for _, it := range r.Items {
		if it.Kind == kind && it.Name == name {
			return it
		}
	}
	t.Fatalf("no item %s %s in %+v", kind, name, r.Items)
	return Item{}
}

func TestDiscoverAndJoin(t *testing.T) {
	t.Parallel()
	scs := []*scenarios.Scenario{latestFrom("shop", "shop-nightly"), latestFrom("db", "db-nightly")}
	scs[1].Metadata.Annotations = map[string]string{WindowAnnotation: "7d"}
	inv := Discover(context.Background(), scs, DiscoverOptions{Connect: connectTo(shop()), Default: Source{VeleroNamespace: "velero"}})
	if len(inv.Problems) > 0 {
		t.Fatalf("problems: %v", inv.Problems)
	}
	latest := map[string]Latest{
		"shop": {Drill: &Drill{ID: "r2", Scenario: "shop", Result: drill.Failed, At: now.Add(-time.Hour)},
			Passed: &Drill{ID: "r1", Scenario: "shop", Result: drill.Passed, At: now.Add(-24 * time.Hour)}},
		"db": {Drill: &Drill{ID: "r3", Scenario: "db", Result: drill.Passed, At: now.Add(-10 * 24 * time.Hour)},
			Passed: &Drill{ID: "r3", Scenario: "db", Result: drill.Passed, At: now.Add(-10 * 24 * time.Hour)}},
	}
	res := Join(inv, latest, JoinOptions{Now: now, Within: 30 * 24 * time.Hour})

	s := find(t, res, KindSchedule, "shop-nightly")
	if s.Status != Covered || s.LastPassed.ID != "r1" || s.LastDrill.ID != "r2" || s.Backups != 1 || !s.LatestBackup.Equal(now.Add(-2*time.Hour)) {
		t.Errorf("shop-nightly: %+v", s)
	}
	d := find(t, res, KindSchedule, "db-nightly")
	if d.Status != NotCovered || d.WindowFrom != "scenario db" || !strings.Contains(d.Reason, "no drill passed within 7d") {
		t.Errorf("db-nightly (passed 10 days ago, window 7d): %+v", d)
	}
	e := find(t, res, KindSchedule, "everything")
	if e.Status != NotCovered || e.Reason != "no scenario drills it" || e.WindowFrom != "default (--within)" {
		t.Errorf("everything: %+v", e)
	}
	if c := find(t, res, KindSchedule, "ci"); c.Status != Excluded || c.Excluded != "test data, recreated by CI" {
		t.Errorf("ci: %+v", c)
	}
	if g := find(t, res, KindSchedule, "gone"); !strings.Contains(g.Note, "no longer exists") || g.Backups != 1 {
		t.Errorf("gone: %+v", g)
	}
	if b := find(t, res, KindBackup, "by-hand"); b.Status != NotCovered {
		t.Errorf("by-hand: %+v", b)
	}
	// Namespaces: shop covered through shop-nightly; db not (10 days > 7d); the scratch one is
	// never an item, and "everything" backs up every other namespace but kube-system.
	if ns := find(t, res, KindNamespace, "shop"); ns.Status != Covered {
		t.Errorf("namespace shop: %+v", ns)
	}
	for _, it := range res.Items {
		if it.Name == "drill-abc-shop" || it.Name == "drill-x" || (it.Kind == KindNamespace && it.Name == "kube-system") {
			t.Errorf("item that is not one: %+v", it)
		}
	}
	// Not covered first, excluded last.
	if res.Items[0].Status != NotCovered || res.Items[len(res.Items)-1].Status != Excluded {
		t.Errorf("order: first %s, last %s", res.Items[0].Status, res.Items[len(res.Items)-1].Status)
	}
	n := res.Covered + res.NotCovered
	if res.Ratio == nil || *res.Ratio != float64(res.Covered)/float64(n) || res.Excluded != 1 {
		t.Errorf("ratio %v, covered %d, not %d, excluded %d", res.Ratio, res.Covered, res.NotCovered, res.Excluded)
	}
}

func TestJoinReasons(t *testing.T) {
	t.Parallel()
	failed := &Drill{ID: "f", Scenario: "a", Result: drill.Failed, At: now.Add(-time.Hour)}
	for _, tc := range []struct {
		name   string
		latest Latest
		since  time.Time
		want   Status
		reason string
	}{
		{"never drilled", Latest{}, time.Time{}, NotCovered, "never drilled"},
		{"only failed", Latest{Drill: failed}, time.Time{}, NotCovered, "never passed: its newest drill f"},
		{"passed, then failed", Latest{Drill: failed, Passed: &Drill{ID: "p", Scenario: "a", Result: drill.Passed, At: now.Add(-2 * time.Hour)}}, time.Time{}, Covered, ""},
		{"passed before the period", Latest{Passed: &Drill{ID: "p", Scenario: "a", Result: drill.Passed, At: now.Add(-48 * time.Hour)}}, now.Add(-24 * time.Hour), NotCovered, "no drill passed in the period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.latest.Passed != nil && tc.latest.Drill == nil {
				tc.latest.Drill = tc.latest.Passed
			}
			inv := &Inventory{Items: []Item{{Kind: KindEtcdDir, Name: "/backups", Scenarios: []string{"a"}}}}
			latest := map[string]Latest{}
			if tc.latest.Drill != nil {
				latest["a"] = tc.latest
			}
			it := Join(inv, latest, JoinOptions{Now: now, Since: tc.since}).Items[0]
			if it.Status != tc.want || !strings.Contains(it.Reason, tc.reason) {
				t.Errorf("got %s %q, want %s containing %q", it.Status, it.Reason, tc.want, tc.reason)
			}
		})
	}
}

func TestDiscoverEtcdSourcesAndProblems(t *testing.T) {
	t.Parallel()
	etcd := func(name string, b scenarios.EtcdBackup) *scenarios.Scenario {
		return &scenarios.Scenario{Metadata: scenarios.Metadata{Name: name}, Spec: scenarios.Spec{Backup: scenarios.Backup{Etcd: &b}}}
	}
	scs := []*scenarios.Scenario{
		etcd("dir-a", scenarios.EtcdBackup{LatestFrom: &scenarios.EtcdLatestFrom{Dir: "/var/backups/etcd"}}),
		etcd("dir-b", scenarios.EtcdBackup{LatestFrom: &scenarios.EtcdLatestFrom{Dir: "/var/backups/etcd"}}),
		etcd("s3", scenarios.EtcdBackup{LatestFrom: &scenarios.EtcdLatestFrom{S3: &scenarios.S3Source{Bucket: "b", Prefix: "etcd/"}}}),
		etcd("take", scenarios.EtcdBackup{Take: &scenarios.EtcdTake{Endpoints: []string{"https://a:2379", "https://b:2379"}}}),
		latestFrom("shop", "shop-nightly"),
	}
	broken := &fakeVelero{err: errors.New("connection refused")}
	inv := Discover(context.Background(), scs, DiscoverOptions{Connect: connectTo(broken)})
	if len(inv.Items) != 3 {
		t.Fatalf("items: %+v", inv.Items)
	}
	if it := inv.Items[0]; it.Kind != KindEtcdDir || strings.Join(it.Scenarios, ",") != "dir-a,dir-b" {
		t.Errorf("one directory, two scenarios: %+v", it)
	}
	if it := inv.Items[1]; it.Kind != KindEtcdS3 || it.Name != "s3://b/etcd/" {
		t.Errorf("s3: %+v", it)
	}
	if it := inv.Items[2]; it.Kind != KindEtcdEndpoints || it.Name != "https://a:2379,https://b:2379" {
		t.Errorf("endpoints: %+v", it)
	}
	if len(inv.Problems) != 1 || !strings.Contains(inv.Problems[0], "connection refused") {
		t.Errorf("an unreachable Velero is a problem of the answer: %v", inv.Problems)
	}
}

func TestRunsKeepsNewest(t *testing.T) {
	t.Parallel()
	var r Runs
	r.Before = now
	r.Add("a", "s", drill.Passed, now.Add(-3*time.Hour))
	r.Add("b", "s", drill.Failed, now.Add(-2*time.Hour))
	r.Add("c", "s", drill.Skipped, now.Add(-time.Hour))
	r.Add("d", "s", drill.Passed, now.Add(time.Hour)) // after the period
	r.Add("e", "s", drill.Passed, now.Add(-4*time.Hour))
	l, _ := r.Latest(context.Background(), []string{"s", "other"})
	if len(l) != 1 || l["s"].Drill.ID != "b" || l["s"].Passed.ID != "a" {
		t.Errorf("latest: %+v %+v", l["s"].Drill, l["s"].Passed)
	}
}
