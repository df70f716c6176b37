package velerodrill_test

import (
	"context"
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
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/drilltest"
	"github.com/firedrill-dev/firedrill/drill/velerodrill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

var writeScenario = testkit.WriteScenario

// velero is the package's shared sandbox: Velero with its node-agent on a real node (so restored
// pods run, and fail for real), kube-router enforcing NetworkPolicy, and one kwok node, tainted,
// for the pods a test wants on a node without node-agent.
func velero(t testing.TB) *sandbox.Sandbox {
	return sandboxtest.Shared(t, sandbox.Options{Velero: true, RealNode: true, NetworkPolicy: true, Nodes: 1})
}

// onKwok pins a pod spec to the sandbox's fake node.
func onKwok(spec *corev1.PodSpec) {
	spec.NodeSelector = map[string]string{"type": "kwok"}
	spec.Tolerations = []corev1.Toleration{{Key: sandbox.FakeNodeTaint.Key, Value: sandbox.FakeNodeTaint.Value, Effect: sandbox.FakeNodeTaint.Effect}}
}

// namespace creates a namespace named prefix-<random> for tb alone, deleted when it ends, and
// returns a client of the sandbox.
func namespace(tb testing.TB, sb *sandbox.Sandbox, prefix string) (client.Client, *corev1.Namespace) {
	tb.Helper()
	c, err := client.New(sb.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		tb.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Delete(context.Background(), ns) })
	return c, ns
}

// shop creates a namespace shaped like a real application: the kinds a restore must bring back
// and those the isolation must change or leave out. Its pods run on the real node.
func shop(t *testing.T, sb *sandbox.Sandbox, prefix string) (string, client.Client) {
	t.Helper()
	c, ns := namespace(t, sb, prefix)
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "settings"}, Data: map[string]string{"currency": "EUR"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "db"}, StringData: map[string]string{"password": "hunter2-velero"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: sandbox.ProbeImage, ImagePullPolicy: corev1.PullNever,
					Args: []string{"serve", "--addr", ":8080", "--body", "shop"}}}}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "report"}, Spec: batchv1.CronJobSpec{
			Schedule: "0 2 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure, Containers: []corev1.Container{{Name: "r", Image: sandbox.ProbeImage,
					ImagePullPolicy: corev1.PullNever, Args: []string{"sleep", "1s"}}}}}}}}},
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
	return (&drill.Runner{Progress: p, WorkRoot: t.TempDir()}).Run(ctx, sc, velerodrill.New(velerodrill.Options{Kubeconfig: sb.Kubeconfig()}))
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

// createScenario backs up namespace ns with Velero now and restores it into a scratch namespace
// of the same cluster, running every Velero check.
func createScenario(sb *sandbox.Sandbox, ns string) string {
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: velero-%s}
spec:
  timeout: 10m
  objectives: {rto: 5m, rpo: 1h}
  source: {kubeconfig: %s}
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
    - {name: a job runs, job: {image: "firedrill.local/probe:1", command: [/firedrill-probe, sleep, 1s], timeout: 2m}}
`, ns, sb.Kubeconfig(), ns)
}

// backupOf makes a Velero backup of ns, waits for it to complete and deletes it with the test.
func backupOf(t *testing.T, sb *sandbox.Sandbox, c client.Client, ns string) *velerov1.Backup {
	t.Helper()
	backup := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "b-" + ns},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{ns}}}
	if err := c.Create(context.Background(), backup); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Create(context.Background(), &velerov1.DeleteBackupRequest{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, GenerateName: backup.Name + "-"},
			Spec: velerov1.DeleteBackupRequestSpec{BackupName: backup.Name}})
	})
	testkit.Eventually(t, 2*time.Minute, "backup "+backup.Name+" completes", func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(backup), backup); err != nil {
			return err
		}
		if backup.Status.Phase != velerov1.BackupPhaseCompleted {
			return fmt.Errorf("phase %q", backup.Status.Phase)
		}
		return nil
	})
	return backup
}

// The driver contract (drill/drilltest) on the real sandbox with Velero.
func TestVeleroDriverContract(t *testing.T) {
	t.Parallel()
	sb := velero(t)
	c, err := client.New(sb.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{} // scenario → the namespace it backs up
	drilltest.Run(t, drilltest.Harness{
		Driver: velerodrill.New(velerodrill.Options{}),
		Good: func(t *testing.T) *scenarios.Scenario {
			ns, _ := shop(t, sb, "shop")
			sources["velero-"+ns] = ns
			return writeScenario(t, createScenario(sb, ns))
		},
		Corrupt: func(t *testing.T) *scenarios.Scenario {
			// A completed backup whose tarball in the object store was damaged since: Velero
			// still lists it as Completed.
			ns, _ := shop(t, sb, "corrupt")
			b := backupOf(t, sb, c, ns)
			tarball := filepath.Join(sb.Dir(), "s3", sb.S3().Bucket, "backups", b.Name, b.Name+".tar.gz")
			data, err := os.ReadFile(tarball)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tarball, data[:len(data)/2], 0o644); err != nil {
				t.Fatal(err)
			}
			return writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: corrupt-%s}
spec:
  source: {kubeconfig: %s}
  backup: {velero: {name: %s}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
`, ns, sb.Kubeconfig(), b.Name))
		},
		Unreachable: func(t *testing.T) *scenarios.Scenario {
			kc := filepath.Join(t.TempDir(), "kubeconfig")
			if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: gone, context: {cluster: gone, user: u}}]
current-context: gone
`), 0o600); err != nil {
				t.Fatal(err)
			}
			return writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: unreachable}
spec:
  source: {kubeconfig: %s}
  backup: {velero: {create: {includedNamespaces: [shop]}}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
`, kc))
		},
		Leftovers: func(t *testing.T, rec *drill.Record) []string {
			ctx := context.Background()
			left := scratchLeft(t, sb, rec.ID)
			var restores velerov1.RestoreList
			if err := c.List(ctx, &restores, client.InNamespace(sandbox.VeleroNamespace), client.MatchingLabels{scratch.LabelRun: rec.ID}); err != nil {
				t.Fatal(err)
			}
			for _, r := range restores.Items {
				left = append(left, "restore "+r.Name)
			}
			if ns := sources[rec.Scenario]; ns != "" {
				var cm corev1.ConfigMap
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: scenarios.CanaryConfigMap}, &cm); !apierrors.IsNotFound(err) {
					left = append(left, "canary ConfigMap in "+ns)
				}
				var backup velerov1.Backup
				if err := c.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: "firedrill-" + rec.ID}, &backup); !apierrors.IsNotFound(err) {
					left = append(left, "backup firedrill-"+rec.ID+" (deleteAfter)")
				}
			}
			return left
		},
		AssertGood: func(t *testing.T, rec *drill.Record) {
			ns := sources[rec.Scenario]
			if rec.Backup.Kind != "velero-backup" || rec.Backup.Name != "firedrill-"+rec.ID || rec.Backup.Items == 0 {
				t.Errorf("backup %+v", rec.Backup)
			}
			if tg := rec.Target; tg == nil || tg.Kind != "scratchNamespace" || !strings.HasPrefix(tg.Namespaces[ns], "drill-"+rec.ID+"-") || tg.Kept {
				t.Errorf("target %+v", rec.Target)
			}
			// The source is untouched: its Service is still a LoadBalancer.
			var svc corev1.Service
			if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web"}, &svc); err != nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				t.Errorf("source service changed: %v %v", svc.Spec.Type, err)
			}
			if strings.Contains(fmt.Sprintf("%+v", rec), "hunter2-velero") {
				t.Error("a secret value is in the record")
			}
		},
		AssertUnreachable: func(t *testing.T, rec *drill.Record) {
			if !strings.Contains(rec.Message, "127.0.0.1:1") {
				t.Errorf("message %q does not name the cluster that did not answer", rec.Message)
			}
		},
		// The restore step creates the scratch namespaces (a second or so), then Velero restores.
		InterruptAfter: 2 * time.Second,
	})
}

func TestVeleroDrillKeepsNamespacesOnFailureAndJanitorTakesThem(t *testing.T) {
	t.Parallel()
	sb := velero(t)
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
	sb := velero(t)
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
	sb := velero(t)
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
	sb := velero(t)
	ns, c := shop(t, sb, "partial")
	// A running pod whose volume is opted in to file-system backup: without Velero's node-agent
	// that item fails for real.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db", Annotations: map[string]string{"backup.velero.io/backup-volumes": "data"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:16", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}},
	}
	// On the fake node: Velero's node-agent runs on the real node only, so this item fails.
	onKwok(&pod.Spec)
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
		p := &testkit.Notes{On: func(s string) {
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
			t.Fatalf("result %s %q, want failed: not finished in time; notes %v", rec.Result, rec.Message, p.Lines())
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
		p := &testkit.Notes{On: func(s string) {
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
	a := velero(t)
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
