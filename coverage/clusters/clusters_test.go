package clusters

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// TestKubeReadsVelero reads a real API server with Velero's CRDs: a Schedule's template and
// pause, a Backup a Schedule made and one firedrill made, a scratch namespace, annotations.
func TestKubeReadsVelero(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	cl, err := Connect(coverage.Source{Kubeconfig: sb.Kubeconfig()})
	if err != nil {
		t.Fatal(err)
	}
	if cl.Name == "" || cl.ID != sb.RESTConfig().Host {
		t.Errorf("cluster %q at %q, want the context's name at %s", cl.Name, cl.ID, sb.RESTConfig().Host)
	}
	kc := cl.Velero.(*Kube).c
	ctx := context.Background()
	// Velero's own namespace is not where these go: Velero's controllers would act on them.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cov-velero-"}}
	scratchNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "drill-cov-",
		Labels: map[string]string{labelManagedBy: managedBy, labelRun: "r1"}, Annotations: map[string]string{coverage.ExcludeAnnotation: "x"}}}
	for _, o := range []client.Object{ns, scratchNS} {
		if err := kc.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kc.Delete(context.Background(), o) })
	}
	objs := []client.Object{
		&velerov1.Schedule{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: ns.Name, Annotations: map[string]string{coverage.WindowAnnotation: "7d"}},
			Spec: velerov1.ScheduleSpec{Schedule: "0 3 * * *", Paused: true, Template: velerov1.BackupSpec{IncludedNamespaces: []string{"shop"}, ExcludedNamespaces: []string{"tmp"}}}},
		&velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "nightly-1", Namespace: ns.Name, Labels: map[string]string{velerov1.ScheduleNameLabel: "nightly"}},
			Spec: velerov1.BackupSpec{IncludedNamespaces: []string{"shop"}}},
		&velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "firedrill-r1", Namespace: ns.Name, Labels: map[string]string{labelManagedBy: managedBy}}},
	}
	for _, o := range objs {
		if err := kc.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	k := cl.Velero
	scheds, err := k.Schedules(ctx, ns.Name)
	if err != nil || len(scheds) != 1 {
		t.Fatalf("schedules: %v %+v", err, scheds)
	}
	s := scheds[0]
	if s.Name != "nightly" || s.Cron != "0 3 * * *" || !s.Paused || s.IncludedNamespaces[0] != "shop" || s.ExcludedNamespaces[0] != "tmp" || s.Annotations[coverage.WindowAnnotation] != "7d" {
		t.Errorf("schedule: %+v", s)
	}
	backups, err := k.Backups(ctx, ns.Name)
	if err != nil || len(backups) != 2 {
		t.Fatalf("backups: %v %+v", err, backups)
	}
	for _, b := range backups {
		switch b.Name {
		case "nightly-1":
			if b.Schedule != "nightly" || b.ByFiredrill || b.Started.IsZero() {
				t.Errorf("nightly-1: %+v", b)
			}
		case "firedrill-r1":
			if !b.ByFiredrill || b.Schedule != "" {
				t.Errorf("firedrill-r1: %+v", b)
			}
		}
	}
	nss, err := k.Namespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, n := range nss {
		switch n.Name {
		case ns.Name:
			seen++
			if n.Scratch {
				t.Errorf("%s is not a scratch namespace", n.Name)
			}
		case scratchNS.Name:
			seen++
			if !n.Scratch || n.Annotations[coverage.ExcludeAnnotation] != "x" {
				t.Errorf("scratch namespace: %+v", n)
			}
		}
	}
	if seen != 2 {
		t.Errorf("namespaces: %+v", nss)
	}
}

// A cluster without Velero's resources says so, so that discovery can tell "no Velero here"
// from a failure.
func TestKubeWithoutVelero(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	cl, err := Connect(coverage.Source{Kubeconfig: sb.Kubeconfig()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Velero.Schedules(context.Background(), "velero"); !errors.Is(err, coverage.ErrNoVelero) {
		t.Errorf("schedules without Velero: %v, want ErrNoVelero", err)
	}
}

func TestConnectWithoutKubeconfig(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "kubeconfig")
	if _, err := Connect(coverage.Source{Kubeconfig: missing}); err == nil {
		t.Error("a kubeconfig that does not exist connected")
	}
}
