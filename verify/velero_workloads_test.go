package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// newNamespace creates a namespace of the test's own, deleted when the test ends.
func newNamespace(t testing.TB, cs kubernetes.Interface, prefix string) string {
	t.Helper()
	ns := prefix + "-" + randomHex(t)[:6]
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must(t, err)
	deleteNamespaceAtEnd(t, cs, ns)
	return ns
}

func claim(name string, class *string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeClaimSpec{
		StorageClassName: class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
}

func simpleDeployment(name string, nodeSelector map[string]string) *appsv1.Deployment {
	l := map[string]string{"app": name}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: l},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l}, Spec: corev1.PodSpec{
			NodeSelector: nodeSelector, Containers: []corev1.Container{{Name: "c", Image: "nginx:1.27"}}}}}}
}

// Workloads that cannot become ready are each named with why, next to those that are: a
// Deployment whose pods cannot be scheduled, a claim of a StorageClass that does not exist and a
// Job that failed; the claim of the default StorageClass binds and the other Deployment is ready.
func TestWorkloadsReadyNamesBlockers(t *testing.T) {
	sb := veleroSandbox(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(fastConfig(sb))
	ns := newNamespace(t, cs, "vwl")
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, simpleDeployment("stuck", map[string]string{"disktype": "none"}), metav1.CreateOptions{})
	must(t, err)
	_, err = cs.AppsV1().Deployments(ns).Create(ctx, simpleDeployment("fine", nil), metav1.CreateOptions{})
	must(t, err)
	_, err = cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("cache", ptr.To("fast")), metav1.CreateOptions{})
	must(t, err)
	_, err = cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("data", nil), metav1.CreateOptions{})
	must(t, err)
	_, err = cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "once"}, Spec: batchv1.JobSpec{
		BackoffLimit: ptr.To[int32](0), ActiveDeadlineSeconds: ptr.To[int64](1),
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, NodeSelector: map[string]string{"disktype": "none"},
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}, metav1.CreateOptions{})
	must(t, err)

	target := &VeleroTarget{Cluster: newTestCluster(t, sb.RESTConfig()), NamespaceMapping: map[string]string{"app": ns}}
	o := NewWorkloadsReadyCheck("", scenarios.WorkloadsReadyCheck{Timeout: scenarios.Duration{Duration: 8 * time.Second}}).Run(ctx, target)
	t.Logf("%s: %s", o.Status, o.Message)
	if o.Status != StatusFailed {
		t.Fatalf("want failed, got %s", o.Status)
	}
	for _, want := range []string{
		// A failed Job will not get better: the wait ends before the timeout.
		"workloads failed: ", "deployment stuck: 0/1 available",
		"pod stuck-", "unschedulable: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector",
		"pvc cache: Pending (StorageClass fast does not exist)",
		"job once: failed (DeadlineExceeded: ",
	} {
		if !strings.Contains(o.Message, want) {
			t.Errorf("message lacks %q", want)
		}
	}
	for _, unwanted := range []string{"deployment fine", "pvc data"} {
		if strings.Contains(o.Message, unwanted) {
			t.Errorf("message names %q, which is ready", unwanted)
		}
	}
	ev := evidenceJSON(t, o)
	per := ev["perKind"].(map[string]any)
	for kind, want := range map[string][2]float64{"deployments": {1, 2}, "persistentvolumeclaims": {1, 2}, "jobs": {0, 1}} {
		if k := per[kind].(map[string]any); k["ready"] != want[0] || k["total"] != want[1] {
			t.Errorf("%s: want %v/%v ready, got %v", kind, want[0], want[1], k)
		}
	}
	if ev["seconds"].(float64) >= 8 || len(ev["blocking"].([]any)) != 4 {
		t.Errorf("evidence: %v", ev)
	}

	// A namespace the restore did not create is a failure of its own.
	o = NewWorkloadsReadyCheck("", scenarios.WorkloadsReadyCheck{}).Run(ctx, &VeleroTarget{Cluster: newTestCluster(t, sb.RESTConfig()), NamespaceMapping: map[string]string{"app": ns + "-gone"}})
	if o.Status != StatusFailed || !strings.Contains(o.Message, "restored namespaces do not exist: "+ns+"-gone") {
		t.Errorf("missing namespace: got %s: %s", o.Status, o.Message)
	}
}

// Workloads created just before the check are waited for: the check passes once the controllers,
// the scheduler and the volume provisioner are done, and says how long that took.
func TestWorkloadsReadyWaits(t *testing.T) {
	sb := veleroSandbox(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(fastConfig(sb))
	ns := newNamespace(t, cs, "vwait")
	d := simpleDeployment("web", nil)
	d.Spec.Replicas = ptr.To[int32](3)
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	must(t, err)
	_, err = cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim("data", nil), metav1.CreateOptions{})
	must(t, err)
	o := NewWorkloadsReadyCheck("", scenarios.WorkloadsReadyCheck{Timeout: scenarios.Duration{Duration: time.Minute}}).
		Run(ctx, &VeleroTarget{Cluster: newTestCluster(t, sb.RESTConfig()), NamespaceMapping: map[string]string{"app": ns}})
	t.Logf("%s: %s", o.Status, o.Message)
	ev := evidenceJSON(t, o)
	if o.Status != StatusPassed || !strings.Contains(o.Message, "1/1 deployments, 3/3 pods, 1/1 persistentvolumeclaims") {
		t.Fatalf("want passed, got %s: %s", o.Status, o.Message)
	}
	if ev["polls"].(float64) < 2 || ev["seconds"].(float64) <= 0 {
		t.Errorf("want the check to have waited, got %v", ev)
	}
}
