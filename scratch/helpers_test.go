package scratch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// cluster returns a client of the package's shared sandbox.
func cluster(t *testing.T) kubernetes.Interface {
	t.Helper()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	c, err := kubernetes.NewForConfig(sb.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unique returns prefix with a random suffix: the tests share one cluster.
func unique(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func quotaIso(pods string) Isolation {
	return Isolation{DenyNetwork: true, Quota: corev1.ResourceList{corev1.ResourcePods: resource.MustParse(pods)}}
}

func inAnHour() time.Time { return time.Now().Add(time.Hour).Truncate(time.Second) }

// prepare calls Prepare and removes the namespaces, whatever becomes of them, when t ends.
func prepare(t *testing.T, m *Manager, runID string, names []string, iso Isolation, expires time.Time) {
	t.Helper()
	removeAtEnd(t, m.client, names...)
	if err := m.Prepare(context.Background(), runID, "shop-velero", names, iso, expires); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
}

// plainNamespace creates a namespace the way a user would, not through scratch.
func plainNamespace(t *testing.T, c kubernetes.Interface, name string, labels, annotations map[string]string) {
	t.Helper()
	removeAtEnd(t, c, name)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
	if _, err := c.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// removeAtEnd deletes the namespaces directly when t ends, so a failing test leaves the shared
// cluster tidy; it does not wait.
func removeAtEnd(t *testing.T, c kubernetes.Interface, names ...string) {
	t.Cleanup(func() {
		for _, name := range names {
			err := c.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("remove namespace %s: %v", name, err)
			}
		}
	})
}

// assertIntact fails unless each namespace exists and is not being deleted.
func assertIntact(t *testing.T, c kubernetes.Interface, names ...string) {
	t.Helper()
	for _, name := range names {
		ns, err := c.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("namespace %s: %v", name, err)
			continue
		}
		if ns.DeletionTimestamp != nil {
			t.Errorf("namespace %s is being deleted", name)
		}
	}
}

// assertGone fails unless each namespace is gone right now (no waiting: the callers claim to wait).
func assertGone(t *testing.T, c kubernetes.Interface, names ...string) {
	t.Helper()
	for _, name := range names {
		ns, err := c.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			t.Errorf("namespace %s still exists (phase %s)", name, ns.Status.Phase)
		} else if !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s: %v", name, err)
		}
	}
}

// assertNoFiredrillObjects fails if namespace holds any of the isolation objects Prepare makes.
func assertNoFiredrillObjects(t *testing.T, c kubernetes.Interface, namespace string) {
	t.Helper()
	ctx := context.Background()
	nps, err := c.NetworkingV1().NetworkPolicies(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	qs, err := c.CoreV1().ResourceQuotas(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lrs, err := c.CoreV1().LimitRanges(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(nps.Items) + len(qs.Items) + len(lrs.Items); n > 0 {
		t.Errorf("namespace %s got %d NetworkPolicies, %d ResourceQuotas, %d LimitRanges; want none",
			namespace, len(nps.Items), len(qs.Items), len(lrs.Items))
	}
}

// pod is a minimal pod; kwok's nodes run it without pulling the image.
func pod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
}
