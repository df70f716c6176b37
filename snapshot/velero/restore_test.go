package velero

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// createWithNodePort creates svc with an explicit, free nodePort on its first port; explicit
// nodePorts are the ones Velero keeps and isolation must remove.
func (e *env) createWithNodePort(t *testing.T, svc *corev1.Service) {
	t.Helper()
	for range 20 {
		svc.Spec.Ports[0].NodePort = int32(30000 + mrand.IntN(2700))
		err := e.kube.Create(context.Background(), svc)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "already allocated") {
			t.Fatal(err)
		}
	}
	t.Fatal("no free nodePort found")
}

func TestRestoreIsolatesTheCopy(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, 4*time.Minute)
	src := e.namespace(t, "prod", nil)

	lb := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "lb"}, Spec: corev1.ServiceSpec{
		Type:     corev1.ServiceTypeLoadBalancer,
		Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}},
		ExternalTrafficPolicy:         corev1.ServiceExternalTrafficPolicyLocal,
		LoadBalancerSourceRanges:      []string{"192.0.2.0/24"},
		LoadBalancerClass:             ptr.To("example.com/no-such-lb"),
		AllocateLoadBalancerNodePorts: ptr.To(true),
		ExternalIPs:                   []string{"192.0.2.10"},
	}}
	e.createWithNodePort(t, lb)
	np := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "np"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
	e.createWithNodePort(t, np)
	e.create(t,
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "ext"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 443}}, ExternalIPs: []string{"192.0.2.11"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "headless"}, Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Port: 5432}}}},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "nightly"}, Spec: batchv1.CronJobSpec{
			Schedule: "0 3 * * *", Suspend: ptr.To(false),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "report", Image: "busybox"}}}}}}}},
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "web"}, Spec: networkingv1.IngressSpec{
			DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "lb", Port: networkingv1.ServiceBackendPort{Number: 80}}}}},
		&autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: src, Name: "web"}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}, MaxReplicas: 5}},
		configMap(src, "settings", map[string]string{"currency": "EUR"}),
	)
	// A cluster-scoped object in the backup that is gone from the cluster: a restore into the source
	// cluster must not bring it back (safety rule 3).
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "firedrill-test-" + e.runID}}
	e.create(t, role)

	backup := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "iso-" + e.runID},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{src}, IncludeClusterResources: ptr.To(true),
			IncludedResources: []string{"*"}, SnapshotVolumes: ptr.To(false)}}
	e.rawBackup(t, backup, velerov1.BackupPhaseCompleted)
	if err := e.kube.Delete(ctx, role); err != nil {
		t.Fatal(err)
	}
	items, err := e.velo.BackupContents(ctx, backup.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(items, func(it Item) bool {
		return it.Resource == "clusterroles.rbac.authorization.k8s.io" && it.Name == role.Name
	}) {
		t.Fatalf("the ClusterRole is not in the backup; the test proves nothing")
	}

	dst := e.scratch(t, "drill")
	var (
		mu    sync.Mutex
		calls [][2]int
	)
	name := "iso-" + e.runID
	info, err := e.velo.Restore(ctx, RestoreOptions{Name: name, Backup: backup.Name, NamespaceMapping: map[string]string{src: dst}},
		func(done, total int) { mu.Lock(); calls = append(calls, [2]int{done, total}); mu.Unlock() })
	t.Cleanup(func() { e.cleanupRestore(t, name) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore %+v; progress %v", info, calls)
	if info.Phase != "Completed" || info.ItemsRestored == 0 || info.ItemsRestored != info.TotalItems || len(calls) == 0 || calls[len(calls)-1] != [2]int{info.ItemsRestored, info.TotalItems} {
		t.Errorf("restore info %+v, progress %v", info, calls)
	}
	for _, want := range []string{"ingresses.networking.k8s.io", "horizontalpodautoscalers.autoscaling", "networkpolicies.networking.k8s.io", "httproutes.gateway.networking.k8s.io", "nodes", "events"} {
		if !slices.Contains(info.ExcludedResources, want) {
			t.Errorf("excluded resources %v lack %s", info.ExcludedResources, want)
		}
	}
	if info.IncludeClusterResources {
		t.Error("cluster resources included")
	}

	// LoadBalancer and NodePort Services came back as valid ClusterIP Services, nothing external left.
	for _, n := range []string{"lb", "np", "ext", "headless"} {
		var svc corev1.Service
		if err := e.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: n}, &svc); err != nil {
			t.Errorf("service %s not restored: %v", n, err)
			continue
		}
		s := svc.Spec
		if s.Type != corev1.ServiceTypeClusterIP || s.ExternalTrafficPolicy != "" || s.HealthCheckNodePort != 0 || len(s.ExternalIPs) > 0 ||
			s.LoadBalancerIP != "" || len(s.LoadBalancerSourceRanges) > 0 || s.LoadBalancerClass != nil || s.AllocateLoadBalancerNodePorts != nil {
			t.Errorf("service %s spec not isolated: %+v", n, s)
		}
		for _, p := range s.Ports {
			if p.NodePort != 0 {
				t.Errorf("service %s port %s keeps nodePort %d", n, p.Name, p.NodePort)
			}
		}
		if n == "headless" && s.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("headless service got clusterIP %q", s.ClusterIP)
		}
		if n != "headless" && (s.ClusterIP == "" || s.ClusterIP == corev1.ClusterIPNone) {
			t.Errorf("service %s has no cluster IP: %q", n, s.ClusterIP)
		}
	}
	var restoredLB corev1.Service
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "lb"}, &restoredLB); err == nil {
		if len(restoredLB.Spec.Ports) != 2 || restoredLB.Spec.Ports[0].TargetPort.IntValue() != 8080 || restoredLB.Spec.Ports[1].Protocol != corev1.ProtocolUDP {
			t.Errorf("lb ports changed beyond isolation: %+v", restoredLB.Spec.Ports)
		}
	}
	// The source is untouched.
	if err := e.kube.Get(ctx, client.ObjectKeyFromObject(lb), lb); err != nil || lb.Spec.Type != corev1.ServiceTypeLoadBalancer || lb.Spec.Ports[0].NodePort == 0 {
		t.Errorf("source service changed: %+v %v", lb.Spec, err)
	}

	var cj batchv1.CronJob
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "nightly"}, &cj); err != nil {
		t.Errorf("cronjob not restored: %v", err)
	} else if cj.Spec.Suspend == nil || !*cj.Spec.Suspend {
		t.Errorf("cronjob restored with suspend %v", cj.Spec.Suspend)
	}
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "web"}, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
		t.Errorf("ingress restored: %v", err)
	}
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "web"}, &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
		t.Errorf("HPA restored: %v", err)
	}
	var cm corev1.ConfigMap
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "settings"}, &cm); err != nil || cm.Data["currency"] != "EUR" {
		t.Errorf("configmap: %v %v", cm.Data, err)
	}
	if err := e.kube.Get(ctx, client.ObjectKey{Name: role.Name}, &rbacv1.ClusterRole{}); !apierrors.IsNotFound(err) {
		t.Errorf("cluster-scoped ClusterRole came back into the source cluster: %v", err)
	}

	// Velero's own account of what it did agrees.
	restored, err := e.velo.RestoredItems(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]string{}
	for _, it := range restored {
		byKey[it.GroupVersionKind+" "+it.Namespace+"/"+it.Name] = it.Action
	}
	if a := byKey["v1/Service "+dst+"/lb"]; a != "created" {
		t.Errorf("lb service: action %q in %v", a, byKey)
	}
	for k := range byKey {
		if strings.Contains(k, "Ingress") || strings.Contains(k, "ClusterRole ") || strings.Contains(k, "HorizontalPodAutoscaler") {
			t.Errorf("restore list has %s", k)
		}
	}

	// The rules live in a labelled ConfigMap next to the Restore, and both go at cleanup.
	var rules corev1.ConfigMap
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: info.ModifierConfigMap}, &rules); err != nil {
		t.Fatal(err)
	}
	if rules.Labels[LabelRun] != e.runID || rules.Labels[LabelManagedBy] != ManagedBy {
		t.Errorf("modifier ConfigMap labels %v", rules.Labels)
	}
	if err := e.velo.DeleteRestore(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := e.kube.Get(ctx, client.ObjectKeyFromObject(&rules), &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("modifier ConfigMap after DeleteRestore: %v", err)
	}
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: name}, &velerov1.Restore{}); !apierrors.IsNotFound(err) {
		t.Errorf("restore after DeleteRestore: %v", err)
	}
}

func TestRestoreCollectsWarnings(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, 4*time.Minute)
	src := e.namespace(t, "shop", nil)
	e.create(t, configMap(src, "settings", map[string]string{"currency": "EUR"}), configMap(src, "features", nil))
	backup := e.backup(t, src)
	dst := e.scratch(t, "drill")
	// Something already in the scratch namespace under the same name, with other data: Velero keeps
	// it and warns.
	e.create(t, configMap(dst, "settings", map[string]string{"currency": "USD"}))
	name := "warn-" + e.runID
	info, err := e.velo.Restore(ctx, RestoreOptions{Name: name, Backup: backup.Name, NamespaceMapping: map[string]string{src: dst}}, nil)
	t.Cleanup(func() { e.cleanupRestore(t, name) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("warnings: %q", info.FirstWarnings)
	if info.Phase != "Completed" || info.Warnings < 1 || len(info.FirstWarnings) == 0 || info.ResultsErr != nil {
		t.Fatalf("info %+v", info)
	}
	if !slices.ContainsFunc(info.FirstWarnings, func(w string) bool {
		return strings.HasPrefix(w, "namespace "+dst+": ") && strings.Contains(w, "ConfigMap:settings already exists")
	}) {
		t.Errorf("no warning about the existing configmap: %q", info.FirstWarnings)
	}
}

func TestRestorePartiallyFailedReportsErrors(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, 4*time.Minute)
	src := e.namespace(t, "shop", nil)
	e.create(t, configMap(src, "settings", map[string]string{"currency": "EUR"}))
	backup := e.backup(t, src)
	dst := e.scratch(t, "drill")
	// A quota the copy does not fit in, as a too small scratch quota would be.
	testkit.Eventually(t, time.Minute, "kube-root-ca.crt in "+dst, func() error {
		return e.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "kube-root-ca.crt"}, &corev1.ConfigMap{})
	})
	e.create(t, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: dst, Name: "tiny"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/configmaps": resource.MustParse("1")}}})
	testkit.Eventually(t, time.Minute, "quota counted", func() error {
		var q corev1.ResourceQuota
		if err := e.kube.Get(ctx, client.ObjectKey{Namespace: dst, Name: "tiny"}, &q); err != nil {
			return err
		}
		if _, ok := q.Status.Used["count/configmaps"]; !ok {
			return errors.New("not yet")
		}
		return nil
	})
	name := "partial-" + e.runID
	info, err := e.velo.Restore(ctx, RestoreOptions{Name: name, Backup: backup.Name, NamespaceMapping: map[string]string{src: dst}}, nil)
	t.Cleanup(func() { e.cleanupRestore(t, name) })
	t.Log(err)
	var re *RestoreError
	if !errors.As(err, &re) || !errors.Is(err, ErrRestoreFailed) {
		t.Fatalf("got %v, want *RestoreError", err)
	}
	if re.Phase != "PartiallyFailed" || re.Errors < 1 || len(re.FirstErrors) == 0 || info == nil || info.Name != name {
		t.Fatalf("error %+v info %+v", re, info)
	}
	if !strings.Contains(re.FirstErrors[0], "exceeded quota") || !strings.HasPrefix(re.FirstErrors[0], "namespace "+dst+": ") {
		t.Errorf("first error %q", re.FirstErrors[0])
	}
}

func TestRestoreRefusesWhatIsNotScratch(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, time.Minute)
	src := e.namespace(t, "prod", nil)
	other := e.namespace(t, "other", nil)
	otherRun := e.namespace(t, "otherrun", map[string]string{LabelManagedBy: ManagedBy, LabelRun: "another-run"})
	scratch := e.scratch(t, "drill")
	name := "refused-" + e.runID
	for what, tc := range map[string]struct {
		opts RestoreOptions
		want error
		msg  string
	}{
		"unlabelled namespace": {RestoreOptions{NamespaceMapping: map[string]string{src: other}}, ErrNotScratch, "lacks the labels"},
		"another run's":        {RestoreOptions{NamespaceMapping: map[string]string{src: otherRun}}, ErrNotScratch, "firedrill.dev/run=" + e.runID},
		"missing namespace":    {RestoreOptions{NamespaceMapping: map[string]string{src: "no-such-ns-" + e.runID}}, ErrNotScratch, "does not exist"},
		"onto itself":          {RestoreOptions{NamespaceMapping: map[string]string{src: src}}, ErrNotScratch, "maps onto itself"},
		"no mapping":           {RestoreOptions{}, ErrUsage, "no namespace mapping"},
		"two onto one":         {RestoreOptions{NamespaceMapping: map[string]string{src: scratch, other: scratch}}, ErrUsage, "both map to"},
		"cluster resources":    {RestoreOptions{NamespaceMapping: map[string]string{src: scratch}, IncludeClusterResources: true}, ErrUsage, "cluster-scoped"},
	} {
		tc.opts.Name, tc.opts.Backup = name, "any-backup"
		_, err := e.velo.Restore(ctx, tc.opts, nil)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want %v saying %q", what, err, tc.want, tc.msg)
		}
	}
	// Nothing was written.
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: name}, &velerov1.Restore{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Restore exists: %v", err)
	}
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: name + "-isolation"}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("a modifier ConfigMap exists: %v", err)
	}
	// Without a run id nothing is attempted at all.
	if _, err := e.velo.ForRun("").Restore(ctx, RestoreOptions{Backup: "b", NamespaceMapping: map[string]string{src: scratch}}, nil); !errors.Is(err, ErrUsage) {
		t.Errorf("no run id: %v", err)
	}
}

// manyConfigMaps fills ns with n small ConfigMaps, so that Velero takes a few seconds over them.
func (e *env) manyConfigMaps(t *testing.T, ns string, n int) {
	t.Helper()
	for i := range n {
		e.create(t, configMap(ns, fmt.Sprintf("cm-%04d", i), map[string]string{"i": fmt.Sprint(i)}))
	}
}

// waitRestoreEnds lets a restore the test gave up on finish, so that deleting it is clean.
func (e *env) waitRestoreEnds(t *testing.T, name string) {
	testkit.Eventually(t, 3*time.Minute, "restore "+name+" ends", func() error {
		var r velerov1.Restore
		if err := e.kube.Get(context.Background(), client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: name}, &r); err != nil {
			return client.IgnoreNotFound(err)
		}
		if !restoreTerminal(r.Status.Phase) {
			return fmt.Errorf("phase %q", r.Status.Phase)
		}
		return nil
	})
}

func TestRestoreThatDoesNotFinishInTime(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	src := e.namespace(t, "big", nil)
	e.manyConfigMaps(t, src, 150)
	backup := e.backup(t, src)
	dst := e.scratch(t, "drill")
	name := "slow-" + e.runID
	t.Cleanup(func() { e.waitRestoreEnds(t, name); e.cleanupRestore(t, name) })
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	info, err := e.velo.Restore(ctx, RestoreOptions{Name: name, Backup: backup.Name, NamespaceMapping: map[string]string{src: dst}}, nil)
	t.Log(err)
	var nf *NotFinishedError
	if !errors.As(err, &nf) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want *NotFinishedError", err)
	}
	if !strings.Contains(err.Error(), "restore velero/"+name+" did not finish within 1.") || !strings.Contains(err.Error(), "items") {
		t.Errorf("message: %v", err)
	}
	if info == nil || info.Name != name {
		t.Errorf("info %+v does not name the restore for cleanup", info)
	}
}

func TestIsolationRulesDocument(t *testing.T) {
	t.Parallel()
	doc, err := IsolationModifiers(scenarios.Isolation{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"version: v1", "groupResource: cronjobs.batch", `{"spec":{"suspend":true}}`,
		"path: /spec/ports/15/protocol", `"type":"ClusterIP"`, "externalIPs"} {
		if !strings.Contains(doc, want) {
			t.Errorf("rules lack %q", want)
		}
	}
	off, _ := IsolationModifiers(scenarios.Isolation{SuspendCronJobs: ptr.To(false)})
	if strings.Contains(off, "cronjobs") {
		t.Error("cronjobs suspended although the scenario said not to")
	}
	ex := ExcludedResources(scenarios.Isolation{ExcludeResources: []string{"secrets", "ingresses.networking.k8s.io"}})
	if !slices.IsSorted(ex) || len(slices.Compact(slices.Clone(ex))) != len(ex) || !slices.Contains(ex, "secrets") {
		t.Errorf("excluded %v", ex)
	}
}
