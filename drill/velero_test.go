package drill_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
)

// shop creates a namespace shaped like a real application: the kinds a restore must bring back
// and those the isolation must change or leave out.
func shop(t *testing.T, sb *sandbox.Sandbox, prefix string) (string, client.Client) {
	t.Helper()
	c, err := client.New(sb.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background(), ns) })
	labels := map[string]string{"app": "web"}
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "settings"}, Data: map[string]string{"currency": "EUR"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "db"}, StringData: map[string]string{"password": "hunter2-velero"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}}},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "report"}, Spec: batchv1.CronJobSpec{
			Schedule: "0 2 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure, Containers: []corev1.Container{{Name: "r", Image: "busybox"}}}}}}}},
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: networkingv1.IngressSpec{
			DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return ns.Name, c
}

func runVelero(t *testing.T, ctx context.Context, sc *scenarios.Scenario, sb *sandbox.Sandbox, p drill.Progress) (*drill.Record, error) {
	t.Helper()
	d, err := drill.NewVeleroDriver(sc, drill.VeleroOptions{Kubeconfig: sb.Kubeconfig()})
	if err != nil {
		t.Fatal(err)
	}
	return (&drill.Runner{Progress: p, WorkRoot: t.TempDir()}).Run(ctx, sc, d)
}

// scratchLeft lists the scratch namespaces of a run that still exist.
func scratchLeft(t *testing.T, sb *sandbox.Sandbox, runID string) []string {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(sb.RESTConfig())
	list, err := cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: scratch.LabelRun + "=" + runID})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range list.Items {
		out = append(out, n.Name+"("+string(n.Status.Phase)+")")
	}
	return out
}

func TestVeleroDrillCreatePasses(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	ns, c := shop(t, sb, "shop")
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: velero-%s}
spec:
  timeout: 10m
  objectives: {rto: 5m, rpo: 1h}
  backup:
    velero:
      create: {includedNamespaces: [%s], deleteAfter: true}
  restore:
    scratchNamespace: {}
  checks:
    - {name: every object restored, objectsRestored: {}}
    - {name: config identical, objectsMatch: {resources: [configmaps, secrets]}}
    - {name: workloads ready, workloadsReady: {timeout: 3m}}
    - {name: data is fresh, canary: {}}
    - {name: db answers, job: {image: "postgres:16", command: [psql, -c, "select 1"], timeout: 2m}}
`, ns, ns))
	var notes notes
	rec, err := runVelero(t, context.Background(), sc, sb, &notes)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Result != drill.Passed {
		t.Fatalf("result %s: %s\nsteps %+v\nchecks %+v\nnotes %v", rec.Result, rec.Message, rec.Steps, rec.Checks, notes.lines)
	}
	if rec.Backup.Kind != "velero-backup" || rec.Backup.Name != "firedrill-"+rec.ID || rec.Backup.Items == 0 || rec.RPOSeconds == nil || rec.RTOSeconds == nil {
		t.Errorf("backup %+v RTO %v RPO %v", rec.Backup, rec.RTOSeconds, rec.RPOSeconds)
	}
	if left := scratchLeft(t, sb, rec.ID); len(left) > 0 {
		t.Errorf("scratch namespaces left: %v", left)
	}
	if tg := rec.Target; tg == nil || tg.Kind != "scratchNamespace" || !strings.HasPrefix(tg.Namespaces[ns], "drill-"+rec.ID+"-") || tg.Kept {
		t.Errorf("target %+v", rec.Target)
	}
	ctx := context.Background()
	var backup velerov1.Backup
	if err := c.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: rec.Backup.Name}, &backup); !apierrors.IsNotFound(err) {
		t.Errorf("backup not deleted (deleteAfter): %v", err)
	}
	var restores velerov1.RestoreList
	if err := c.List(ctx, &restores, client.InNamespace(sandbox.VeleroNamespace), client.MatchingLabels{scratch.LabelRun: rec.ID}); err != nil || len(restores.Items) != 0 {
		t.Errorf("restores left: %d %v", len(restores.Items), err)
	}
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: scenarios.CanaryConfigMap}, &cm); !apierrors.IsNotFound(err) {
		t.Errorf("canary left in the source namespace: %v", err)
	}
	// The source is untouched: its Service is still a LoadBalancer.
	var svc corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &svc); err != nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("source service changed: %v %v", svc.Spec.Type, err)
	}
	if strings.Contains(fmt.Sprintf("%+v", rec), "hunter2-velero") {
		t.Error("a secret value is in the record")
	}
}

func TestVeleroDrillKeepsNamespacesOnFailureAndJanitorTakesThem(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	ns, _ := shop(t, sb, "keep")
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: keep-%s}
spec:
  objectives: {rto: 1ms}   # no restore is that fast: the drill fails on its objective
  backup: {velero: {create: {includedNamespaces: [%s], deleteAfter: true}}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
  cleanup: {policy: OnSuccess, keepFor: 1s}
`, ns, ns))
	rec, err := runVelero(t, context.Background(), sc, sb, drill.NopProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Result != drill.Failed || !strings.Contains(rec.Message, "objective RTO not met") {
		t.Fatalf("result %s %q, want failed on the RTO objective", rec.Result, rec.Message)
	}
	if left := scratchLeft(t, sb, rec.ID); len(left) != 1 {
		t.Fatalf("OnSuccess did not keep the scratch namespace of a failed drill: %v", left)
	}
	time.Sleep(1500 * time.Millisecond)
	cs := kubernetes.NewForConfigOrDie(sb.RESTConfig())
	gone, err := scratch.New(cs).Janitor(context.Background(), scratch.JanitorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range gone {
		found = found || g.Run == rec.ID
	}
	if !found {
		t.Errorf("janitor did not delete the expired kept namespace of %s: %+v", rec.ID, gone)
	}
}

func TestVeleroDrillRefusesExistingTarget(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	ns, c := shop(t, sb, "exists")
	// The "second cluster" is the same sandbox here: a fixed target name is allowed there, and the
	// target exists, so nothing may be written.
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: exists-%s}
spec:
  backup: {velero: {create: {includedNamespaces: [%s]}}}
  restore:
    cluster: {kubeconfig: %s, namespaceMapping: {%s: %s}}
  checks: [{objectsRestored: {}}]
`, ns, ns, sb.Kubeconfig(), ns, ns))
	rec, err := runVelero(t, context.Background(), sc, sb, drill.NopProgress{})
	if !drill.IsRefusal(err) || rec.Result != drill.Error || !strings.Contains(rec.Message, "namespace "+ns+" exists") {
		t.Fatalf("err %v, result %s %q: want a refusal", err, rec.Result, rec.Message)
	}
	var backups velerov1.BackupList
	if err := c.List(context.Background(), &backups, client.InNamespace(sandbox.VeleroNamespace), client.MatchingLabels{scratch.LabelRun: rec.ID}); err != nil || len(backups.Items) != 0 {
		t.Errorf("a refused drill created backups: %d %v", len(backups.Items), err)
	}
}

func TestVeleroDrillUnavailableLocationIsAnError(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	ns, c := shop(t, sb, "bsl")
	s3 := sb.S3()
	bsl := &velerov1.BackupStorageLocation{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "broken-" + ns},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "aws",
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "no-such-bucket"}},
			Config:      map[string]string{"region": s3.Region, "s3ForcePathStyle": "true", "s3Url": s3.URL}},
	}
	if err := c.Create(context.Background(), bsl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background(), bsl) })
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(bsl), bsl); err == nil && bsl.Status.Phase == velerov1.BackupStorageLocationPhaseUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("location never became Unavailable: %+v", bsl.Status)
		}
		time.Sleep(time.Second)
	}
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: bsl-%s}
spec:
  backup: {velero: {create: {includedNamespaces: [%s], storageLocation: %s}}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
`, ns, ns, bsl.Name))
	rec, err := runVelero(t, context.Background(), sc, sb, drill.NopProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Result != drill.Error || !strings.Contains(rec.Message, "Unavailable") || !strings.Contains(rec.Message, bsl.Name) {
		t.Fatalf("result %s %q, want error naming the unavailable location", rec.Result, rec.Message)
	}
}

func TestVeleroDrillPartiallyFailedBackupFails(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	ns, c := shop(t, sb, "partial")
	// A running pod whose volume is opted in to file-system backup: without Velero's node-agent
	// that item fails for real.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db", Annotations: map[string]string{"backup.velero.io/backup-volumes": "data"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:16", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}},
	}
	if err := c.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for pod.Status.Phase != corev1.PodRunning {
		if time.Now().After(deadline) {
			t.Fatal("pod never ran")
		}
		time.Sleep(250 * time.Millisecond)
		c.Get(context.Background(), client.ObjectKeyFromObject(pod), pod)
	}
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: partial-%s}
spec:
  backup: {velero: {create: {includedNamespaces: [%s], deleteAfter: true}}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
`, ns, ns))
	rec, err := runVelero(t, context.Background(), sc, sb, drill.NopProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Result != drill.Failed || !strings.Contains(rec.Message, "PartiallyFailed") || !strings.Contains(rec.Message, "daemonset pod not found") {
		t.Fatalf("result %s %q, want failed with the backup's first error", rec.Result, rec.Message)
	}
	if rec.Checks[0].Result != drill.Skipped {
		t.Errorf("check ran on a failed backup: %+v", rec.Checks[0])
	}
}

func TestVeleroDrillInterruptedMidRestoreLeavesNoScratch(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	ns, _ := shop(t, sb, "ctrlc")
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: ctrlc-%s}
spec:
  backup: {velero: {create: {includedNamespaces: [%s], deleteAfter: true}}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
`, ns, ns))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &notes{on: func(s string) {
		if strings.HasPrefix(s, "scratch namespaces ready") {
			time.AfterFunc(500*time.Millisecond, cancel)
		}
	}}
	rec, err := runVelero(t, ctx, sc, sb, p)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Result != drill.Aborted {
		t.Fatalf("result %s %q; notes %v", rec.Result, rec.Message, p.lines)
	}
	if left := scratchLeft(t, sb, rec.ID); len(left) > 0 {
		t.Errorf("scratch namespaces left after the interrupt: %v", left)
	}
}

// signalVelero sends sig to the sandbox's Velero server and its plugins.
func signalVelero(t *testing.T, sb *sandbox.Sandbox, sig syscall.Signal) {
	t.Helper()
	for _, p := range sb.State().Processes {
		if p.Name == "velero" {
			if err := syscall.Kill(-p.PGID, sig); err != nil {
				t.Error(err)
			}
			return
		}
	}
	t.Error("no velero process recorded")
}

// A private sandbox whose Velero is first hung (the restore cannot finish in time: failed), then
// stopped mid-drill (the drill cannot be carried out: error).
func TestVeleroDrillSlowAndStoppedVelero(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs the sandbox: skipped under -short")
	}
	sb := sandboxtest.Start(t, sandbox.Options{Velero: true})
	ns, c := shop(t, sb, "slow")
	backup := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "slow-" + ns},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{ns}}}
	if err := c.Create(context.Background(), backup); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for backup.Status.Phase != velerov1.BackupPhaseCompleted {
		if time.Now().After(deadline) {
			t.Fatalf("backup %s: %s", backup.Name, backup.Status.Phase)
		}
		time.Sleep(500 * time.Millisecond)
		c.Get(context.Background(), client.ObjectKeyFromObject(backup), backup)
	}

	t.Run("restore not finished in time fails", func(t *testing.T) {
		sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: slow-%s}
spec:
  timeout: 20s
  backup: {velero: {name: %s}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
`, ns, backup.Name))
		p := &notes{on: func(s string) {
			switch {
			case strings.HasPrefix(s, "scratch namespaces ready"):
				signalVelero(t, sb, syscall.SIGSTOP) // hung: accepts nothing, answers nothing
			case s == "step cleanup":
				signalVelero(t, sb, syscall.SIGCONT)
			}
		}}
		rec, err := runVelero(t, context.Background(), sc, sb, p)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Result != drill.Failed || !strings.Contains(rec.Message, "did not finish") {
			t.Fatalf("result %s %q, want failed: not finished in time; notes %v", rec.Result, rec.Message, p.lines)
		}
		if left := scratchLeft(t, sb, rec.ID); len(left) > 0 {
			t.Errorf("scratch namespaces left: %v", left)
		}
	})

	t.Run("velero stopped mid-drill is an error", func(t *testing.T) {
		sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: stopped-%s}
spec:
  backup: {velero: {name: %s}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
`, ns, backup.Name))
		p := &notes{on: func(s string) {
			if strings.HasPrefix(s, "scratch namespaces ready") {
				if err := sb.StopComponent("velero"); err != nil {
					t.Error(err)
				}
			}
		}}
		rec, err := runVelero(t, context.Background(), sc, sb, p)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Result != drill.Error || !strings.Contains(rec.Message, "Velero") {
			t.Fatalf("result %s %q, want an error naming Velero", rec.Result, rec.Message)
		}
		if left := scratchLeft(t, sb, rec.ID); len(left) > 0 {
			t.Errorf("scratch namespaces left: %v", left)
		}
	})
}

func TestVeleroDrillIntoSecondCluster(t *testing.T) {
	t.Parallel()
	a := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	if testing.Short() {
		t.Skip("needs the sandbox: skipped under -short")
	}
	b := sandboxtest.Start(t, sandbox.Options{Velero: true, VeleroStorage: a.S3(), VeleroReadOnly: true})
	ns, _ := shop(t, a, "dr")
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: dr-%s}
spec:
  timeout: 10m
  backup: {velero: {create: {includedNamespaces: [%s]}}}
  restore:
    cluster: {kubeconfig: %s}
  checks:
    - {objectsRestored: {}}
    - {objectsMatch: {}}
`, ns, ns, b.Kubeconfig()))
	rec, err := runVelero(t, context.Background(), sc, a, drill.NopProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Result != drill.Passed {
		t.Fatalf("result %s %q\nchecks %+v", rec.Result, rec.Message, rec.Checks)
	}
	if left := scratchLeft(t, b, rec.ID); len(left) > 0 {
		t.Errorf("scratch namespaces left in the second cluster: %v", left)
	}
	if left := scratchLeft(t, a, rec.ID); len(left) > 0 {
		t.Errorf("scratch namespaces created in the source cluster: %v", left)
	}
}

var (
	_ = errors.New
	_ = os.Stat
	_ = filepath.Join
)
