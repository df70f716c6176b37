package velerodrill_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/velerodrill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
)

// BenchmarkFileSystemDrillOverhead drills a 1 GiB volume (1,000 files of 1 MiB) backed up with
// Velero's file-system backup and reports what the drill adds to Velero's own backup and restore
// time (status start to completion of each): overhead-% is (drill wall time − Velero's time) /
// Velero's time, once with objectsRestored alone (firedrill's orchestration) and once with
// volumeData (which reads the 1 GiB before the backup and after the restore); and
// overhead-to-verified-%, the same until the checks passed, without the cleanup (Kubernetes
// deleting the scratch namespaces, Velero the backup with deleteAfter). Target ≤ 10 %.
func BenchmarkFileSystemDrillOverhead(b *testing.B) {
	sb := velero(b)
	c, ns := namespace(b, sb, "bench")
	ctx := context.Background()
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "holder"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "probe", Image: sandbox.ProbeImage, ImagePullPolicy: corev1.PullNever, Args: []string{"sleep"},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}
	for _, o := range []client.Object{pvc, pod} {
		if err := c.Create(ctx, o); err != nil {
			b.Fatal(err)
		}
	}
	testkit.Eventually(b, 3*time.Minute, "the holder pod runs", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		if pod.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", pod.Status.Phase)
		}
		return nil
	})
	if out, err := exec.Command(filepath.Join(sb.BinDir(), "kubectl"), "--kubeconfig", sb.Kubeconfig(), "exec", "-n", ns.Name, "holder", "--",
		"/firedrill-probe", "fill", "--files", "1000", "--size", "1048576", "/data").CombinedOutput(); err != nil {
		b.Fatalf("fill the volume: %v: %s", err, out)
	}
	for _, bc := range []struct{ name, checks string }{
		{"objectsRestored", "    - {objectsRestored: {}}\n"},
		{"volumeData", "    - {objectsRestored: {}}\n    - {volumeData: {timeout: 20m}}\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var overhead, verified float64
			for range b.N {
				sc := writeScenario(b, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: bench-%s}
spec:
  timeout: 40m
  source: {kubeconfig: %s}
  backup: {velero: {create: {includedNamespaces: [%s], defaultVolumesToFsBackup: true, deleteAfter: true}}}
  restore: {scratchNamespace: {}}
  checks:
%s`, ns.Name, sb.Kubeconfig(), ns.Name, bc.checks))
				id := drill.NewRunID(time.Now())
				watch := watchVelero(c, id)
				start := time.Now()
				rec, err := (&drill.Runner{ID: id, WorkRoot: b.TempDir()}).Run(ctx, sc, velerodrill.New(velerodrill.Options{ProbeImage: sandbox.ProbeImage}))
				wall := time.Since(start)
				v := watch()
				if err != nil || rec.Result != drill.Passed {
					b.Fatalf("%v: %s %s", err, rec.Result, rec.Message)
				}
				if v <= 0 {
					b.Fatal("Velero's backup and restore times were not seen")
				}
				overhead += 100 * (wall - v).Seconds() / v.Seconds()
				// Until every check passed, without the cleanup (Kubernetes deleting the scratch
				// namespaces, Velero the backup): the part a restore in earnest would wait for.
				for _, st := range rec.Steps {
					if st.Name == drill.StepVerify && st.FinishedAt != nil {
						verified += 100 * (st.FinishedAt.Sub(rec.StartedAt) - v).Seconds() / v.Seconds()
					}
				}
				var steps []string
				for _, st := range rec.Steps {
					if st.FinishedAt != nil {
						steps = append(steps, fmt.Sprintf("%s %.1fs", st.Name, st.FinishedAt.Sub(st.StartedAt).Seconds()))
					}
				}
				b.Logf("%s: drill %.1fs, Velero %.1fs; steps: %s", bc.name, wall.Seconds(), v.Seconds(), strings.Join(steps, ", "))
				b.ReportMetric(v.Seconds(), "velero-s")
				b.ReportMetric(wall.Seconds(), "drill-s")
			}
			b.ReportMetric(overhead/float64(b.N), "overhead-%")
			b.ReportMetric(verified/float64(b.N), "overhead-to-verified-%")
		})
	}
}

// watchVelero follows the Backup and Restore of run id while it goes on (the drill deletes them
// at cleanup) and, when called, returns how long Velero took for both by their own status.
func watchVelero(c client.Client, id string) func() time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	var backup, restore time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var bk velerov1.Backup
			if err := c.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: "firedrill-" + id}, &bk); err == nil &&
				bk.Status.StartTimestamp != nil && bk.Status.CompletionTimestamp != nil {
				backup = bk.Status.CompletionTimestamp.Sub(bk.Status.StartTimestamp.Time)
			}
			var rs velerov1.RestoreList
			if err := c.List(ctx, &rs, client.InNamespace(sandbox.VeleroNamespace), client.MatchingLabels{"firedrill.dev/run": id}); err == nil {
				for _, r := range rs.Items {
					if r.Status.StartTimestamp != nil && r.Status.CompletionTimestamp != nil {
						restore = r.Status.CompletionTimestamp.Sub(r.Status.StartTimestamp.Time)
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return func() time.Duration {
		cancel()
		<-done
		return backup + restore
	}
}
