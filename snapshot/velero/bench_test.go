package velero

import (
	"context"
	"fmt"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// BenchmarkBackupRestore2000 compares, on a 2,000-object namespace, firedrill's backup + restore
// (CreateBackup, WaitBackup, Restore with isolation and scratch checks, results) with Velero's own:
// the same Backup and Restore objects created bare and polled every 100 ms. The target is an
// overhead of at most 10% or 3 s; "overhead-s" and "ratio" report it.
func BenchmarkBackupRestore2000(b *testing.B) {
	sb := sandboxtest.Shared(b, sandbox.Options{Velero: true})
	kc, err := client.New(sb.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	vc, err := New(sb.RESTConfig(), sandbox.VeleroNamespace)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	src := "bench-" + randHex(3)
	if err := kc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: src}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = kc.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: src}})
	})
	for i := range 1990 {
		if err := kc.Create(ctx, configMap(src, fmt.Sprintf("cm-%04d", i), map[string]string{"i": fmt.Sprint(i)})); err != nil {
			b.Fatal(err)
		}
	}
	scratch := func(runID string) string {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-" + randHex(4), Labels: map[string]string{LabelManagedBy: ManagedBy, LabelRun: runID}}}
		if err := kc.Create(ctx, ns); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = kc.Delete(context.Background(), ns) })
		return ns.Name
	}
	poll := func(o client.Object, done func() bool) {
		for {
			if err := kc.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				b.Fatal(err)
			}
			if done() {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	var bare, ours time.Duration
	for b.Loop() {
		b.StopTimer()
		runID := "bench" + randHex(3)
		dstBare, dstOurs := scratch(runID), scratch(runID)
		b.StartTimer()

		t0 := time.Now()
		bk := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "bare-" + runID},
			Spec: velerov1.BackupSpec{IncludedNamespaces: []string{src}}}
		if err := kc.Create(ctx, bk); err != nil {
			b.Fatal(err)
		}
		poll(bk, func() bool { return backupTerminal(bk.Status.Phase) })
		rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "bare-" + runID},
			Spec: velerov1.RestoreSpec{BackupName: bk.Name, NamespaceMapping: map[string]string{src: dstBare}, IncludedNamespaces: []string{src}}}
		if err := kc.Create(ctx, rs); err != nil {
			b.Fatal(err)
		}
		poll(rs, func() bool { return restoreTerminal(rs.Status.Phase) })
		bare += time.Since(t0)

		c := vc.ForRun(runID)
		t0 = time.Now()
		name := "ours-" + runID
		if _, err := c.CreateBackup(ctx, name, scenarios.VeleroCreate{IncludedNamespaces: []string{src}}, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := c.WaitBackup(ctx, name, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Restore(ctx, RestoreOptions{Name: name, Backup: name, NamespaceMapping: map[string]string{src: dstOurs}}, nil); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)

		b.StopTimer()
		_ = c.DeleteRestore(ctx, name)
		_ = c.DeleteBackup(ctx, name)
		_ = kc.Delete(ctx, rs)
		_ = kc.Create(ctx, &velerov1.DeleteBackupRequest{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, GenerateName: "bench-"},
			Spec: velerov1.DeleteBackupRequestSpec{BackupName: bk.Name}})
		b.StartTimer()
	}
	b.ReportMetric(bare.Seconds()/float64(b.N), "velero-s/op")
	b.ReportMetric(ours.Seconds()/float64(b.N), "firedrill-s/op")
	b.ReportMetric((ours-bare).Seconds()/float64(b.N), "overhead-s/op")
	b.ReportMetric(ours.Seconds()/bare.Seconds(), "ratio")
}
