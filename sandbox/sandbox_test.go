package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func newClient(t *testing.T, sb *sandbox.Sandbox) client.Client {
	t.Helper()
	c, err := client.New(sb.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls f until it returns nil or the timeout passes, then fails with f's last error.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %s: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func createNamespace(t *testing.T, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
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

func TestDeploymentBecomesAvailable(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	c := newClient(t, sb)
	ctx := context.Background()
	ns := createNamespace(t, c, "deploy")
	if err := c.Create(ctx, deployment(ns, "web", 3)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "deployment web available", func() error {
		var d appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &d); err != nil {
			return err
		}
		if d.Status.AvailableReplicas != 3 {
			return fmt.Errorf("availableReplicas %d of 3", d.Status.AvailableReplicas)
		}
		return nil
	})
	// The pods are real objects bound to the kwok node and reported Running by it.
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("want 3 pods, got %d", len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "kwok-node-0" || p.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s: node %q phase %q, want kwok-node-0 Running", p.Name, p.Spec.NodeName, p.Status.Phase)
		}
	}
}

func TestNamespaceDeletionCompletes(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	c := newClient(t, sb)
	ctx := context.Background()
	ns := createNamespace(t, c, "delete")
	if err := c.Create(ctx, deployment(ns, "web", 1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cfg"}, Data: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "namespace "+ns+" gone", func() error {
		var got corev1.Namespace
		err := c.Get(ctx, client.ObjectKey{Name: ns}, &got)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("phase %s", got.Status.Phase)
	})
}

func TestVeleroBackupAndRestoreIntoMappedNamespace(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	c := newClient(t, sb)
	ctx := context.Background()
	src := createNamespace(t, c, "shop")
	dst := src + "-restored"
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "settings"}, Data: map[string]string{"currency": "EUR"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "features"}, Data: map[string]string{"checkout": "on"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "db"}, StringData: map[string]string{"password": "s3cret"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "web"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}},
		deployment(src, "web", 2),
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	backup := &velerov1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "b-" + src},
		Spec:       velerov1.BackupSpec{IncludedNamespaces: []string{src}, StorageLocation: sandbox.BackupStorageLocation},
	}
	if err := c.Create(ctx, backup); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, c, backup, func() (string, bool) {
		return string(backup.Status.Phase), backup.Status.Phase == velerov1.BackupPhaseCompleted
	})
	if backup.Status.Progress == nil || backup.Status.Progress.ItemsBackedUp < len(objs) {
		t.Fatalf("backup progress %+v: want at least %d items", backup.Status.Progress, len(objs))
	}

	restore := &velerov1.Restore{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "r-" + src},
		Spec: velerov1.RestoreSpec{
			BackupName:       backup.Name,
			NamespaceMapping: map[string]string{src: dst},
		},
	}
	if err := c.Create(ctx, restore); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, c, restore, func() (string, bool) {
		return fmt.Sprintf("%s (errors %d, warnings %d)", restore.Status.Phase, restore.Status.Errors, restore.Status.Warnings),
			restore.Status.Phase == velerov1.RestorePhaseCompleted
	})

	for _, o := range objs {
		got := o.DeepCopyObject().(client.Object)
		if err := c.Get(ctx, client.ObjectKey{Namespace: dst, Name: o.GetName()}, got); err != nil {
			t.Errorf("%T %s not restored into %s: %v", o, o.GetName(), dst, err)
		}
	}
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: dst, Name: "settings"}, &cm); err == nil && cm.Data["currency"] != "EUR" {
		t.Errorf("restored configmap data %v, want currency=EUR", cm.Data)
	}
	var sec corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: dst, Name: "db"}, &sec); err == nil && string(sec.Data["password"]) != "s3cret" {
		t.Errorf("restored secret differs")
	}
}

// waitPhase re-reads o until done reports true, failing on a terminal phase that is not it.
func waitPhase(t *testing.T, c client.Client, o client.Object, done func() (string, bool)) {
	t.Helper()
	terminal := []string{"Failed", "PartiallyFailed", "FailedValidation"}
	eventually(t, 2*time.Minute, fmt.Sprintf("%T %s", o, o.GetName()), func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(o), o); err != nil {
			return err
		}
		phase, ok := done()
		if ok {
			return nil
		}
		for _, p := range terminal {
			if strings.HasPrefix(phase, p+" ") || phase == p {
				t.Fatalf("%T %s ended %s", o, o.GetName(), phase)
			}
		}
		return fmt.Errorf("phase %s", phase)
	})
}

func TestStartRefusesARunningDir(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	_, err := sandbox.Start(context.Background(), sandbox.Options{Dir: sb.Dir(), Velero: true})
	if !errors.Is(err, sandbox.ErrAlreadyRunning) {
		t.Fatalf("second Start on %s: got %v, want ErrAlreadyRunning", sb.Dir(), err)
	}
	if !strings.Contains(err.Error(), "firedrill sandbox down --dir") {
		t.Errorf("error does not say how to stop it: %v", err)
	}
	// The running sandbox is untouched.
	if _, err := os.Stat(sb.Kubeconfig()); err != nil {
		t.Fatal(err)
	}
	if running := sb.State().Running(); len(running) != len(sb.State().Processes) {
		t.Errorf("running components after refused start: %v", running)
	}
}

// assertGone checks, rather than assumes, that every process group is empty and every port free.
func assertGone(t *testing.T, st sandbox.State) {
	t.Helper()
	if len(st.Processes) == 0 {
		t.Fatal("no processes recorded")
	}
	for _, p := range st.Processes {
		if err := syscall.Kill(-p.PGID, 0); !errors.Is(err, syscall.ESRCH) {
			// kill(0) also succeeds for zombies; tolerate them only if nothing is running.
			if members := liveMembers(p.PGID); len(members) > 0 {
				t.Errorf("%s: processes %v of group %d still alive", p.Name, members, p.PGID)
			}
		}
		for _, port := range p.Ports {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				t.Errorf("%s: port %d still taken: %v", p.Name, port, err)
				continue
			}
			l.Close()
		}
	}
}

func liveMembers(pgid int) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[0] != "Z" && f[2] == fmt.Sprint(pgid) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestStopLeavesNothingRunning(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Start(t, sandbox.Options{Velero: true})
	st := sb.State()
	names := make([]string, 0, len(st.Processes))
	for _, p := range st.Processes {
		names = append(names, p.Name)
	}
	for _, want := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "versitygw", "velero"} {
		if !slices.Contains(names, want) {
			t.Errorf("component %s not recorded; recorded: %v", want, names)
		}
	}
	if err := sb.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, st)
	if _, err := os.Stat(filepath.Join(sb.Dir(), "sandbox.json")); !os.IsNotExist(err) {
		t.Errorf("state file still there after Stop: %v", err)
	}
}

func TestCancelledContextStopsEverything(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs the sandbox: skipped under -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	sb, err := sandbox.Start(ctx, sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	st := sb.State()
	cancel()
	eventually(t, 30*time.Second, "sandbox stopped after cancel", func() error {
		for _, p := range st.Processes {
			if m := liveMembers(p.PGID); len(m) > 0 {
				return fmt.Errorf("%s still has %v", p.Name, m)
			}
		}
		return nil
	})
	_ = sb.Stop() // waits for the stop the cancel began
	assertGone(t, st)
}

func TestScratchAPIServerServesAnExistingEtcd(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	c := newClient(t, sb)
	ns := createNamespace(t, c, "scratch")
	if err := c.Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "seen"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api, err := sandbox.StartAPIServer(ctx, sandbox.APIServerOptions{Dir: t.TempDir(), BinDir: sb.BinDir(), EtcdEndpoints: sb.EtcdEndpoints()})
	if err != nil {
		t.Fatal(err)
	}
	st := api.State()
	sc, err := client.New(api.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := sc.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "seen"}, &cm); err != nil {
		t.Fatalf("scratch API server does not serve what the etcd holds: %v", err)
	}
	if api.URL() == sb.State().APIServer {
		t.Fatal("scratch API server is the sandbox's own")
	}
	if err := api.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, st)
}

func TestLookupBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kube-apiserver"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := sandbox.LookupBinary("", dir, "kube-apiserver"); err != nil || p != filepath.Join(dir, "kube-apiserver") {
		t.Errorf("default name in bin dir: %q %v", p, err)
	}
	if _, err := sandbox.LookupBinary("no-such-apiserver", dir, "kube-apiserver"); err == nil || !strings.Contains(err.Error(), "make sandbox-bin") {
		t.Errorf("missing binary: %v", err)
	}
	if p, err := sandbox.LookupBinary("sh", dir, "kube-apiserver"); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("PATH fallback: %q %v", p, err)
	}
	if _, err := sandbox.LookupBinary(filepath.Join(dir, "nope"), dir, "kube-apiserver"); err == nil {
		t.Error("a missing explicit path was accepted")
	}
}
