package scratch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Prepare makes labelled, annotated namespaces whose isolation objects are what the apiserver
// stores and enforces; Delete then returns only once they are gone.
func TestPrepareIsolatesAndDeleteWaits(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	m := New(c)
	ctx := context.Background()
	run := unique("run")
	names := []string{unique("drill-shop"), unique("drill-pay")}
	iso := Isolation{
		DenyNetwork:    true,
		Quota:          corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2"), corev1.ResourceCPU: resource.MustParse("1")},
		DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
	}
	expires := inAnHour()
	prepare(t, m, run, names, iso, expires)

	for _, name := range names {
		ns, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ns.Labels[LabelRun] != run || ns.Labels[LabelManagedBy] != ManagedBy {
			t.Errorf("%s labels = %v", name, ns.Labels)
		}
		if ns.Annotations[AnnotationScenario] != "shop-velero" || ns.Annotations[AnnotationExpires] != expires.UTC().Format(time.RFC3339) {
			t.Errorf("%s annotations = %v", name, ns.Annotations)
		}
		if ns.Status.Phase != corev1.NamespaceActive {
			t.Errorf("%s phase %s", name, ns.Status.Phase)
		}
		// The policy as the apiserver stored it, not as we sent it.
		np, err := c.NetworkingV1().NetworkPolicies(name).Get(ctx, NetworkPolicyName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		assertDenyAll(t, np, false)
		q, err := c.CoreV1().ResourceQuotas(name).Get(ctx, ResourceQuotaName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !quotaInForce(q) || q.Spec.Hard.Pods().Value() != 2 || q.Spec.Hard.Cpu().String() != "1" {
			t.Errorf("%s quota spec %v status %v", name, q.Spec.Hard, q.Status.Hard)
		}
	}
	if err := m.Confirm(ctx, run, names); err != nil {
		t.Errorf("Confirm: %v", err)
	}
	if err := m.Confirm(ctx, unique("run"), names); !errors.Is(err, ErrNotScratch) {
		t.Errorf("Confirm for another run = %v, want ErrNotScratch", err)
	}

	// Right after Prepare the quota is in force: its status is filled (else every pod would be
	// refused) and the LimitRange gives pods without requests the cpu the quota asks for.
	pods := c.CoreV1().Pods(names[0])
	for _, p := range []string{"p1", "p2"} {
		if _, err := pods.Create(ctx, pod(p), metav1.CreateOptions{}); err != nil {
			t.Fatalf("pod %s within the quota refused: %v", p, err)
		}
	}
	_, err := pods.Create(ctx, pod("p3"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "exceeded quota") {
		t.Fatalf("third pod beyond a quota of 2: err = %v, want forbidden, exceeded quota", err)
	}
	t.Logf("refused as expected: %v", err)

	start := time.Now()
	if err := m.Delete(ctx, run, names); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	t.Logf("Delete returned after %s", time.Since(start).Round(time.Millisecond))
	assertGone(t, c, names...)
}

func TestPrepareAllowDNS(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	m := New(c)
	ctx := context.Background()
	run, name := unique("run"), unique("drill-dns")
	// A cpu quota without DefaultRequest: pods that request no cpu are refused. This is why
	// Isolation.DefaultRequest exists.
	iso := Isolation{DenyNetwork: true, AllowDNS: true,
		Quota: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("5"), corev1.ResourceCPU: resource.MustParse("1")}}
	prepare(t, m, run, []string{name}, iso, inAnHour())

	np, err := c.NetworkingV1().NetworkPolicies(name).Get(ctx, NetworkPolicyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertDenyAll(t, np, true)
	if _, err := c.CoreV1().LimitRanges(name).Get(ctx, LimitRangeName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("LimitRange without DefaultRequest: err = %v, want not found", err)
	}
	_, err = c.CoreV1().Pods(name).Create(ctx, pod("p1"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("pod without a cpu request under a cpu quota: err = %v, want forbidden", err)
	}
	if err := m.Delete(ctx, run, []string{name}); err != nil {
		t.Fatal(err)
	}
}

func TestPrepareWithoutDenyNetwork(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	m := New(c)
	run, name := unique("run"), unique("drill-open")
	iso := quotaIso("5")
	iso.DenyNetwork = false
	prepare(t, m, run, []string{name}, iso, inAnHour())
	if _, err := c.NetworkingV1().NetworkPolicies(name).Get(context.Background(), NetworkPolicyName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("NetworkPolicy with DenyNetwork false: err = %v, want not found", err)
	}
	if err := m.Delete(context.Background(), run, []string{name}); err != nil {
		t.Fatal(err)
	}
}

// A mapping onto an existing namespace writes nothing at all: not the other, new namespaces,
// not isolation objects in the existing one, not its labels.
func TestPrepareRefusesExistingNamespace(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	m := New(c)
	ctx := context.Background()
	run := unique("run")
	existing, fresh := unique("shop"), unique("drill-new")
	plainNamespace(t, c, existing, map[string]string{"team": "shop"}, nil)
	otherRun, otherScratch := unique("run"), unique("drill-other")
	prepare(t, m, otherRun, []string{otherScratch}, quotaIso("5"), inAnHour())
	removeAtEnd(t, c, fresh)

	for _, target := range []string{existing, "default", otherScratch} {
		err := m.Prepare(ctx, run, "shop-velero", []string{fresh, target}, quotaIso("5"), inAnHour())
		if !errors.Is(err, ErrExists) {
			t.Fatalf("Prepare onto %s: err = %v, want ErrExists", target, err)
		}
		want := "namespace " + target + " exists: a drill only restores into namespaces it creates; choose another namespaceMapping"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
		assertGone(t, c, fresh)
	}
	assertNoFiredrillObjects(t, c, existing)
	assertNoFiredrillObjects(t, c, "default")
	ns, err := c.CoreV1().Namespaces().Get(ctx, existing, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Labels) != 2 || ns.Labels["team"] != "shop" { // team and kubernetes.io/metadata.name
		t.Errorf("labels of %s changed: %v", existing, ns.Labels)
	}
	if got := ns.Annotations[AnnotationExpires]; got != "" {
		t.Errorf("%s got an expiry %q", existing, got)
	}
	// The other run's namespace keeps its own run and was not confirmed for this one.
	if err := m.Confirm(ctx, run, []string{otherScratch}); !errors.Is(err, ErrNotScratch) {
		t.Errorf("Confirm of another run's namespace = %v, want ErrNotScratch", err)
	}
}

// A failure half way through Prepare leaves nothing behind, and never removes a namespace that
// someone else made.
func TestPrepareRollsBackHalfWay(t *testing.T) {
	t.Parallel()
	c := cluster(t)

	t.Run("quota refused by the apiserver", func(t *testing.T) {
		t.Parallel()
		m := New(c)
		names := []string{unique("drill-a"), unique("drill-b")}
		removeAtEnd(t, c, names...)
		// Parses here, and the apiserver's validation refuses it after the namespace and its
		// NetworkPolicy exist.
		iso := Isolation{DenyNetwork: true, Quota: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("-1")}}
		err := m.Prepare(context.Background(), unique("run"), "shop", names, iso, inAnHour())
		if err == nil || !strings.Contains(err.Error(), "create ResourceQuota") {
			t.Fatalf("err = %v, want the apiserver refusing the quota", err)
		}
		t.Logf("refused as expected: %v", err)
		assertGone(t, c, names...)
	})

	t.Run("second name taken meanwhile", func(t *testing.T) {
		t.Parallel()
		m := New(c)
		first, second := unique("drill-a"), unique("drill-b")
		removeAtEnd(t, c, first)
		// Someone creates the second namespace after Prepare checked that it is free.
		m.beforeCreate = func(name string) {
			if name == second {
				plainNamespace(t, c, second, map[string]string{"owner": "someone"}, nil)
			}
		}
		err := m.Prepare(context.Background(), unique("run"), "shop", []string{first, second}, quotaIso("5"), inAnHour())
		if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "created by someone else") {
			t.Fatalf("err = %v, want ErrExists, created by someone else", err)
		}
		assertGone(t, c, first)
		assertIntact(t, c, second)
		assertNoFiredrillObjects(t, c, second)
	})

	t.Run("ctx ends half way", func(t *testing.T) {
		t.Parallel()
		m := New(c)
		names := []string{unique("drill-a"), unique("drill-b"), unique("drill-c")}
		removeAtEnd(t, c, names...)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		m.beforeCreate = func(name string) {
			if name == names[2] {
				cancel() // as Ctrl-C would, after two namespaces exist
			}
		}
		err := m.Prepare(ctx, unique("run"), "shop", names, quotaIso("5"), inAnHour())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertGone(t, c, names...)
	})
}
