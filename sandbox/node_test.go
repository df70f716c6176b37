package sandbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// realNode is the package's one real-node sandbox: Velero with node-agent, and NetworkPolicy
// enforced.
func realNode(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	return sandboxtest.Shared(t, sandbox.Options{RealNode: true, Velero: true, NetworkPolicy: true})
}

// kubectl runs the pinned kubectl against sb and returns its output.
func kubectl(t *testing.T, sb *sandbox.Sandbox, args ...string) (string, error) {
	t.Helper()
	cmd := osexec.Command(filepath.Join(sb.BinDir(), "kubectl"), append([]string{"--kubeconfig", sb.Kubeconfig()}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// probePod is a pod of the probe image on the real node running firedrill-probe with args.
func probePod(ns, name string, restart corev1.RestartPolicy, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "probe", Image: sandbox.ProbeImage, ImagePullPolicy: corev1.PullNever, Args: args,
			}},
		},
	}
}

func withVolume(p *corev1.Pod, claim string) *corev1.Pod {
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	return p
}

func claim(ns, name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

func create(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func waitPod(t *testing.T, c client.Client, ns, name string, want corev1.PodPhase) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	eventually(t, 3*time.Minute, fmt.Sprintf("pod %s/%s %s", ns, name, want), func() error {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			return err
		}
		if p.Status.Phase != want {
			return fmt.Errorf("phase %s %v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		return nil
	})
	return &p
}

// probeJSON runs firedrill-probe in a running pod (kubectl exec, through the API server to the
// kubelet) and decodes its answer.
func probeJSON(t *testing.T, sb *sandbox.Sandbox, ns, pod string, args ...string) map[string]any {
	t.Helper()
	out, err := kubectl(t, sb, append([]string{"exec", "-n", ns, pod, "-c", "probe", "--", "/firedrill-probe"}, args...)...)
	if err != nil {
		t.Fatalf("exec %v in %s/%s: %v\n%s", args, ns, pod, err, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("exec %v: not JSON: %v\n%s", args, err, out)
	}
	return m
}

func TestRealNodeIsReadyAndOnlyItsOwn(t *testing.T) {
	t.Parallel()
	sb := realNode(t)
	c := newClient(t, sb)
	var n corev1.Node
	if err := c.Get(context.Background(), client.ObjectKey{Name: sandbox.RealNodeName}, &n); err != nil {
		t.Fatal(err)
	}
	st := sb.State().RealNode
	if st == nil || st.Name != n.Name || n.Labels["firedrill.dev/node"] != "real" || n.Annotations["kwok.x-k8s.io/node"] != "" {
		t.Fatalf("node %s labels %v annotations %v, state %+v", n.Name, n.Labels, n.Annotations, st)
	}
	var internal string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			internal = a.Address
		}
	}
	if internal != st.IP {
		t.Errorf("InternalIP %q, want %s", internal, st.IP)
	}
	// Nothing of the sandbox listens on every interface or is reachable at the machine's address.
	if !strings.HasPrefix(sb.State().APIServer, "https://"+st.IP+":") || !strings.HasPrefix(sb.S3().URL, "http://"+st.IP+":") {
		t.Errorf("API server %s and S3 %s are not on the node address %s", sb.State().APIServer, sb.S3().URL, st.IP)
	}
	out, _ := osexec.Command("ss", "-Hltn").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && (strings.HasPrefix(f[3], "0.0.0.0:") || strings.HasPrefix(f[3], "*:") || strings.HasPrefix(f[3], "[::]:")) {
			for _, p := range sb.State().Processes {
				if pidsListen(p.PGID, f[3]) {
					t.Errorf("%s listens on every interface: %s", p.Name, l)
				}
			}
		}
	}
}

// pidsListen reports whether a process of group pgid owns a listening socket on addr (ss -p).
func pidsListen(pgid int, addr string) bool {
	out, _ := osexec.Command("ss", "-Hltnp", "sport", "= :"+addr[strings.LastIndex(addr, ":")+1:]).CombinedOutput()
	for _, pid := range groupPids(pgid) {
		if strings.Contains(string(out), fmt.Sprintf("pid=%d,", pid)) {
			return true
		}
	}
	return false
}

func groupPids(pgid int) []int {
	out, _ := osexec.Command("pgrep", "-g", fmt.Sprint(pgid)).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var p int
		fmt.Sscan(f, &p)
		pids = append(pids, p)
	}
	return pids
}

// A pod of a locally built image runs, serves a Service that another pod reaches by ClusterIP,
// its logs and exec work through the API server, and pods reach the API server and S3.
func TestRealNodeRunsPodsServicesLogsExec(t *testing.T) {
	t.Parallel()
	sb := realNode(t)
	c := newClient(t, sb)
	ns := createNamespace(t, c, "pods")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	create(t, c, probePod(ns, "web", corev1.RestartPolicyAlways, "serve", "-body", "hello from the real node"), svc)
	waitPod(t, c, ns, "web", corev1.PodRunning)
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	url := "http://" + svc.Spec.ClusterIP + "/"
	eventually(t, time.Minute, "service answers", func() error {
		out, err := kubectl(t, sb, "exec", "-n", ns, "web", "--", "/firedrill-probe", "http", "-timeout", "2s", url)
		if err != nil || !strings.Contains(out, `"body":"hello from the real node"`) {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	create(t, c, probePod(ns, "client", corev1.RestartPolicyNever, "http", url))
	waitPod(t, c, ns, "client", corev1.PodSucceeded)
	logs, err := kubectl(t, sb, "logs", "-n", ns, "client")
	if err != nil || !strings.Contains(logs, `"body":"hello from the real node"`) {
		t.Errorf("logs of the client pod: %v\n%s", err, logs)
	}
	// The "kubernetes" Service and the S3 server are reachable from the pod network.
	if m := probeJSON(t, sb, ns, "web", "tcp", "10.96.0.1:443"); m["connected"] != true {
		t.Errorf("API server from a pod: %v", m)
	}
	s3 := strings.TrimPrefix(sb.S3().URL, "http://")
	if m := probeJSON(t, sb, ns, "web", "tcp", s3); m["connected"] != true {
		t.Errorf("S3 from a pod: %v", m)
	}
}

// A PersistentVolumeClaim of the default StorageClass is a `local` volume whose data outlives
// the pod that wrote it.
func TestRealNodeVolumeSurvivesPod(t *testing.T) {
	t.Parallel()
	sb := realNode(t)
	c := newClient(t, sb)
	ns := createNamespace(t, c, "pvc")
	create(t, c, claim(ns, "data"), withVolume(probePod(ns, "writer", corev1.RestartPolicyNever, "fill", "-files", "3", "-size", "4096", "/data"), "data"))
	waitPod(t, c, ns, "writer", corev1.PodSucceeded)
	written, _ := kubectl(t, sb, "logs", "-n", ns, "writer")
	if err := c.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "writer"}}); err != nil {
		t.Fatal(err)
	}
	create(t, c, withVolume(probePod(ns, "reader", corev1.RestartPolicyNever, "manifest", "/data"), "data"))
	waitPod(t, c, ns, "reader", corev1.PodSucceeded)
	read, _ := kubectl(t, sb, "logs", "-n", ns, "reader")
	if digest(t, written) != digest(t, read) {
		t.Errorf("data changed:\nwritten %s\nread    %s", written, read)
	}
	var pvc corev1.PersistentVolumeClaim
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "data"}, &pvc); err != nil {
		t.Fatal(err)
	}
	var pv corev1.PersistentVolume
	if err := c.Get(context.Background(), client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil {
		t.Fatal(err)
	}
	if pv.Spec.Local == nil || pv.Spec.StorageClassName != sandbox.StorageClass {
		t.Errorf("PV %s is not a local volume of %s: %+v", pv.Name, sandbox.StorageClass, pv.Spec.PersistentVolumeSource)
	}
}

func digest(t *testing.T, out string) string {
	t.Helper()
	var m struct {
		Digest string            `json:"digest"`
		Files  []json.RawMessage `json:"files"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &m); err != nil || m.Digest == "" || len(m.Files) == 0 {
		t.Fatalf("not a manifest with files: %v\n%s", err, out)
	}
	return m.Digest
}

// Velero's file-system backup (kopia, node-agent on the real node) of a PVC and an emptyDir, and
// a restore into a fresh namespace, bring every byte back.
func TestRealNodeVeleroFileSystemBackupRestoresData(t *testing.T) {
	t.Parallel()
	sb := realNode(t)
	c := newClient(t, sb)
	ns := createNamespace(t, c, "fsb")
	pod := withVolume(probePod(ns, "app", corev1.RestartPolicyAlways, "sleep"), "data")
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "cache", MountPath: "/cache"})
	create(t, c, claim(ns, "data"), pod)
	waitPod(t, c, ns, "app", corev1.PodRunning)
	want := probeJSON(t, sb, ns, "app", "fill", "-files", "20", "-size", "65536", "-seed", "42", "/data")["digest"]
	wantCache := probeJSON(t, sb, ns, "app", "fill", "-files", "2", "-size", "1000", "-seed", "9", "/cache")["digest"]

	backup := &velerov1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: ns},
		Spec:       velerov1.BackupSpec{IncludedNamespaces: []string{ns}, DefaultVolumesToFsBackup: ptr.To(true), StorageLocation: sandbox.BackupStorageLocation},
	}
	create(t, c, backup)
	waitPhase(t, c, backup, func() (string, bool) {
		return string(backup.Status.Phase), backup.Status.Phase == velerov1.BackupPhaseCompleted
	})
	var pvbs velerov1.PodVolumeBackupList
	if err := c.List(context.Background(), &pvbs, client.InNamespace(sandbox.VeleroNamespace), client.MatchingLabels{velerov1.BackupNameLabel: ns}); err != nil {
		t.Fatal(err)
	}
	if len(pvbs.Items) != 2 {
		t.Fatalf("%d PodVolumeBackups, want 2 (data and cache)", len(pvbs.Items))
	}

	if err := c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "namespace deleted", func() error {
		err := c.Get(context.Background(), client.ObjectKey{Name: ns}, &corev1.Namespace{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	restore := &velerov1.Restore{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: ns + "-restore"},
		Spec:       velerov1.RestoreSpec{BackupName: ns},
	}
	create(t, c, restore)
	waitPhase(t, c, restore, func() (string, bool) {
		return string(restore.Status.Phase), restore.Status.Phase == velerov1.RestorePhaseCompleted
	})
	waitPod(t, c, ns, "app", corev1.PodRunning)
	// Velero's restore helper leaves a marker in each volume it restored: not the application's data.
	if got := probeJSON(t, sb, ns, "app", "manifest", "-exclude", ".velero", "/data")["digest"]; got != want {
		t.Errorf("restored PVC digest %v, backed up %v", got, want)
	}
	if got := probeJSON(t, sb, ns, "app", "manifest", "-exclude", ".velero", "/cache")["digest"]; got != wantCache {
		t.Errorf("restored emptyDir digest %v, backed up %v", got, wantCache)
	}
}

// A deny-all NetworkPolicy in a namespace stops a connection that worked before it (kube-router's
// firewall enforces it); a namespace without a policy stays reachable.
func TestRealNodeEnforcesNetworkPolicy(t *testing.T) {
	t.Parallel()
	sb := realNode(t)
	c := newClient(t, sb)
	ns := createNamespace(t, c, "netpol")
	create(t, c, probePod(ns, "server", corev1.RestartPolicyAlways, "serve"), probePod(ns, "client", corev1.RestartPolicyAlways, "sleep"))
	server := waitPod(t, c, ns, "server", corev1.PodRunning)
	waitPod(t, c, ns, "client", corev1.PodRunning)
	addr := server.Status.PodIP + ":8080"
	if m := probeJSON(t, sb, ns, "client", "tcp", "-timeout", "3s", addr); m["connected"] != true {
		t.Fatalf("before any policy: %v", m)
	}
	create(t, c, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny-all"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	})
	eventually(t, time.Minute, "deny-all enforced", func() error {
		if m := probeJSON(t, sb, ns, "client", "tcp", "-timeout", "2s", addr); m["connected"] != false {
			return fmt.Errorf("still connects: %v", m)
		}
		return nil
	})
	// The policy selects ingress in its namespace only: the same client still reaches a server
	// in a namespace without one.
	other := createNamespace(t, c, "netpol-open")
	create(t, c, probePod(other, "server", corev1.RestartPolicyAlways, "serve"))
	open := waitPod(t, c, other, "server", corev1.PodRunning)
	if m := probeJSON(t, sb, ns, "client", "tcp", "-timeout", "3s", open.Status.PodIP+":8080"); m["connected"] != true {
		t.Errorf("a namespace without a policy is not reachable: %v", m)
	}
}
