package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
)

// On a real node whose network plugin does not enforce NetworkPolicy — no kube-router here — the
// deny-all policy of a scratch namespace is only a stored object: the isolation check must fail,
// not pass silently. (drill/velerodrill's tests show it passing where kube-router enforces it.)
func TestIsolationFailsWithoutEnforcement(t *testing.T) {
	sb := sandboxtest.Start(t, sandbox.Options{RealNode: true})
	kube := kubernetes.NewForConfigOrDie(sb.RESTConfig())
	ctx := context.Background()
	serve := func(ns string) {
		t.Helper()
		labels := map[string]string{"app": "web"}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: labels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "web", Image: sandbox.ProbeImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
					Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")}}}}}}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{
			Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		if _, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "live"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	serve("live")
	const run, copyNS = "isolation-1", "drill-isolation-1-live"
	iso := scratch.Isolation{DenyNetwork: true, Quota: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("10")}}
	if err := scratch.New(kube).Prepare(ctx, run, "isolation", []string{copyNS}, iso, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	serve(copyNS)
	testkit.Eventually(t, 2*time.Minute, "the live web pod is ready", func() error {
		return readyEndpoints(ctx, &VeleroTarget{Source: newTestCluster(t, sb.RESTConfig())}, "live", "web")
	})

	cl := newTestCluster(t, sb.RESTConfig())
	o := NewIsolationCheck("", scenarios.IsolationCheck{Service: "web", Timeout: scenarios.Duration{Duration: time.Minute}}).Run(ctx, &VeleroTarget{
		RunID: run, Cluster: cl, Source: cl, ProbeImage: sandbox.ProbeImage, NamespaceMapping: map[string]string{"live": copyNS},
	})
	if o.Status != StatusFailed || !strings.Contains(o.Message, "not isolated") || !strings.Contains(o.Message, "does not enforce NetworkPolicy") {
		t.Fatalf("%s: %s\nevidence %v", o.Status, o.Message, o.Evidence)
	}
	if o.Evidence["copyAnswered"] != true {
		t.Errorf("the copy did not answer: %v", o.Evidence)
	}
}
