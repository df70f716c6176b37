package velero

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// TestVeleroStoppedMidRestore stops the Velero server of a private sandbox while a restore runs:
// the restore must end with an error naming Velero, not a bare timeout; so must a backup made
// while it is down, and a download.
func TestVeleroStoppedMidRestore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandboxtest.Start(t, sandbox.Options{Velero: true}))
	// Quicker than the defaults, so that the test does not wait 30 s per check.
	e.velo.stall, e.velo.probe = 3*time.Second, 5*time.Second
	src := e.namespace(t, "big", nil)
	e.manyConfigMaps(t, src, 300)
	backup := e.backup(t, src)
	dst := e.scratch(t, "drill")

	// Stop Velero as soon as the restore is InProgress.
	var stopped sync.WaitGroup
	stopped.Go(func() {
		testkit.Eventually(t, 2*time.Minute, "restore in progress", func() error {
			var r velerov1.Restore
			if err := e.kube.Get(context.Background(), client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: "mid-" + e.runID}, &r); err != nil {
				return err
			}
			if r.Status.Phase != velerov1.RestorePhaseInProgress {
				return errors.New(string(r.Status.Phase))
			}
			return nil
		})
		if err := e.sb.StopComponent("velero"); err != nil {
			t.Error(err)
		}
	})
	ctx := ctxFor(t, 2*time.Minute)
	start := time.Now()
	info, err := e.velo.Restore(ctx, RestoreOptions{Name: "mid-" + e.runID, Backup: backup.Name, NamespaceMapping: map[string]string{src: dst}}, nil)
	stopped.Wait()
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if info != nil && info.Phase == "Completed" {
		t.Fatal("the restore completed before Velero was stopped; the test proves nothing")
	}
	// Killed, Velero leaves the restore InProgress; stopped (SIGTERM, as here), it may first mark
	// it Failed as its plugins go. Either way the error says Velero is not running.
	var np *NotProcessingError
	if !errors.As(err, &np) || !errors.Is(err, ErrNotProcessing) {
		t.Fatalf("got %v, want ErrNotProcessing", err)
	}
	var re *RestoreError
	if errors.As(err, &re) {
		if !strings.Contains(err.Error(), "Velero server in namespace velero is not processing download requests: is it running?") {
			t.Errorf("message: %v", err)
		}
	} else if !strings.Contains(err.Error(), "Velero server in namespace velero is not processing restores: is it running?") ||
		!strings.Contains(err.Error(), "InProgress") {
		t.Errorf("message: %v", err)
	}
	if ctx.Err() != nil {
		t.Error("it took the whole context to notice")
	}

	// With Velero down, a new backup stays New and says so.
	name := "while-down-" + e.runID
	if _, err := e.velo.CreateBackup(ctx, name, scenarios.VeleroCreate{IncludedNamespaces: []string{src}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = e.velo.WaitBackup(ctx, name, nil)
	if !errors.As(err, &np) || !strings.Contains(err.Error(), "Velero server in namespace velero is not processing backups: is it running?") ||
		!strings.Contains(err.Error(), "New") {
		t.Errorf("backup while Velero is down: %v", err)
	}
	// Downloads too, bounded by the caller's context.
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := e.velo.BackupResults(dctx, backup.Name); !errors.As(err, &np) || !strings.Contains(err.Error(), "not processing download requests") {
		t.Errorf("download while Velero is down: %v", err)
	}
	if err := e.velo.Ping(ctx); !errors.As(err, &np) {
		t.Errorf("ping while Velero is down: %v", err)
	}
	// What the run created is still labelled, for whoever cleans up after Velero is back.
	var cm corev1.ConfigMap
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: "mid-" + e.runID + "-isolation"}, &cm); err != nil || cm.Labels[LabelRun] != e.runID {
		t.Errorf("modifier ConfigMap: %v %v", cm.Labels, err)
	}
}
