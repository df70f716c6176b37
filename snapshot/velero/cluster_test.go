package velero

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// TestRestoreIntoSecondCluster backs up in the shared sandbox (A) and restores in a second one (B)
// whose Velero reads the same bucket through a ReadOnly BackupStorageLocation: the restore.cluster
// target.
func TestRestoreIntoSecondCluster(t *testing.T) {
	t.Parallel()
	a := sharedEnv(t)
	b := newEnv(t, sandboxtest.Start(t, sandbox.Options{Velero: true, VeleroStorage: a.sb.S3(), VeleroReadOnly: true}))
	b.runID = a.runID
	b.velo = b.velo.ForRun(a.runID)
	ctx := ctxFor(t, 4*time.Minute)

	loc, err := b.velo.CheckLocation(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !loc.ReadOnly {
		t.Fatalf("B's location is not ReadOnly: %+v", loc)
	}

	src := a.namespace(t, "shop", nil)
	a.create(t, configMap(src, "settings", map[string]string{"currency": "EUR"}),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "db"}, StringData: map[string]string{"password": "s3cret"}},
		deployment(src, "web", 1))
	backup := a.backup(t, src)

	start := time.Now()
	synced, err := b.velo.WaitForBackup(ctx, backup.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup synced into B after %s", time.Since(start).Round(time.Second))
	if synced.Phase != "Completed" || synced.ItemsBackedUp != backup.ItemsBackedUp {
		t.Errorf("synced backup %+v, source %+v", synced, backup)
	}

	dst := b.scratch(t, "drill")
	name := "second-" + b.runID
	info, err := b.velo.Restore(ctx, RestoreOptions{Name: name, Backup: backup.Name, NamespaceMapping: map[string]string{src: dst}}, nil)
	t.Cleanup(func() { b.cleanupRestore(t, name) })
	if err != nil {
		t.Fatal(err)
	}
	if info.Phase != "Completed" {
		t.Errorf("restore %+v", info)
	}
	var cm corev1.ConfigMap
	if err := b.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "settings"}, &cm); err != nil || cm.Data["currency"] != "EUR" {
		t.Errorf("configmap in B: %v %v", cm.Data, err)
	}
	var sec corev1.Secret
	if err := b.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "db"}, &sec); err != nil || string(sec.Data["password"]) != "s3cret" {
		t.Errorf("secret in B: %v", err)
	}
	if err := b.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "web"}, deployment(dst, "web", 1)); err != nil {
		t.Errorf("deployment in B: %v", err)
	}
	// Nothing of it in A but the source.
	if err := a.kube.Get(ctx, client.ObjectKey{Name: dst}, &corev1.Namespace{}); err == nil {
		t.Errorf("scratch namespace %s exists in A", dst)
	}
	// B reads the contents through its own Velero, without bucket credentials.
	items, err := b.velo.BackupContents(ctx, backup.Name)
	if err != nil || len(items) != backup.ItemsBackedUp {
		t.Errorf("contents through B: %d items, %v", len(items), err)
	}
	// A ReadOnly location protects the backup from B's deletions.
	err = b.velo.DeleteBackup(ctx, backup.Name)
	if err == nil || !strings.Contains(err.Error(), "read-only mode") {
		t.Errorf("DeleteBackup through a ReadOnly location: %v", err)
	}
	if _, err := a.velo.GetBackup(ctx, backup.Name); err != nil {
		t.Errorf("backup in A after B's refused delete: %v", err)
	}
}
