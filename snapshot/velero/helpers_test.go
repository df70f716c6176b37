package velero

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// env is one test's view of a sandbox: a Velero client for its own run and a plain client.
type env struct {
	sb    *sandbox.Sandbox
	kube  client.Client
	velo  *Client
	runID string
}

func newEnv(t *testing.T, sb *sandbox.Sandbox) *env {
	t.Helper()
	kc, err := client.New(sb.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	vc, err := New(sb.RESTConfig(), sandbox.VeleroNamespace)
	if err != nil {
		t.Fatal(err)
	}
	runID := "t" + randHex(4)
	return &env{sb: sb, kube: kc, velo: vc.ForRun(runID), runID: runID}
}

func sharedEnv(t *testing.T) *env {
	t.Helper()
	return newEnv(t, sandboxtest.Shared(t, sandbox.Options{Velero: true}))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace with a random suffix and deletes it when the test ends.
func (e *env) namespace(t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-" + randHex(3), Labels: labels}}
	if err := e.kube.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.kube.Delete(context.Background(), ns) })
	return ns.Name
}

// scratch creates a namespace carrying this run's labels, as the scratch package will.
func (e *env) scratch(t *testing.T, prefix string) string {
	t.Helper()
	return e.namespace(t, prefix, map[string]string{LabelManagedBy: ManagedBy, LabelRun: e.runID})
}

func (e *env) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := e.kube.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// backup backs up namespaces through the package under test and waits for Completed.
func (e *env) backup(t *testing.T, namespaces ...string) *BackupInfo {
	t.Helper()
	name := "b-" + e.runID + "-" + randHex(2)
	ctx := ctxFor(t, 3*time.Minute)
	if _, err := e.velo.CreateBackup(ctx, name, scenarios.VeleroCreate{IncludedNamespaces: namespaces}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cleanupBackup(t, name) })
	info, err := e.velo.WaitBackup(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func (e *env) cleanupBackup(t *testing.T, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.velo.DeleteBackup(ctx, name); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

func (e *env) cleanupRestore(t *testing.T, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.velo.DeleteRestore(ctx, name); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

func configMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}
}

// rawBackup creates a Velero Backup directly (as a team's own tooling would) and waits for phase.
func (e *env) rawBackup(t *testing.T, b *velerov1.Backup, want velerov1.BackupPhase) {
	t.Helper()
	b.Namespace = sandbox.VeleroNamespace
	e.create(t, b)
	t.Cleanup(func() {
		if b.Status.Phase == velerov1.BackupPhaseFailedValidation {
			_ = e.kube.Delete(context.Background(), b)
			return
		}
		// Not firedrill's, so DeleteBackup refuses it: remove it the way an operator would.
		_ = e.kube.Create(context.Background(), &velerov1.DeleteBackupRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, GenerateName: "test-cleanup-"},
			Spec:       velerov1.DeleteBackupRequestSpec{BackupName: b.Name}})
	})
	testkit.Eventually(t, 2*time.Minute, "backup "+b.Name+" "+string(want), func() error {
		if err := e.kube.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		if b.Status.Phase != want {
			if backupTerminal(b.Status.Phase) {
				t.Fatalf("backup %s ended %s, want %s", b.Name, b.Status.Phase, want)
			}
			return fmt.Errorf("phase %q", b.Status.Phase)
		}
		return nil
	})
}
