package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// veleroSandbox is the package's cluster with a real Velero server and S3 server.
func veleroSandbox(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	return sandboxtest.Shared(t, sandbox.Options{Velero: true})
}

// fastConfig is a config of the sandbox with a rate limit that does not slow fixtures down.
func fastConfig(sb *sandbox.Sandbox) *rest.Config {
	cfg := sb.RESTConfig()
	cfg.QPS, cfg.Burst = 1000, 2000
	return cfg
}

// shop is what makeShop created in a source namespace.
type shop struct {
	Namespace      string
	SecretValue    string
	Nonce          string
	DeploymentName string
}

// makeShop creates, through the API, a namespace as teams have them: configuration, a secret,
// services (one NodePort, which the isolation turns into ClusterIP), an Ingress (which the
// isolation leaves out), a Deployment, a StatefulSet
// with a volume of the default StorageClass, a Job that completes, a CronJob, and the canary
// ConfigMap a drill writes before the backup. It waits until the controllers are done.
func makeShop(t testing.TB, cfg *rest.Config, ns string) *shop {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(cfg)
	s := &shop{Namespace: ns, SecretValue: "pw-" + randomHex(t), Nonce: "nonce-" + randomHex(t), DeploymentName: "web"}
	must(t, create(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})))
	deleteNamespaceAtEnd(t, cs, ns)
	web := map[string]string{"app": "web"}
	db := map[string]string{"app": "db"}
	for _, err := range []error{
		create(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app-config", Labels: web,
			Annotations: map[string]string{"example.com/checksum": "abc"}},
			Data: map[string]string{"currency": "EUR", "tls.mode": "strict", "replicas": "3"}}, metav1.CreateOptions{})),
		create(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "features"},
			Data: map[string]string{"checkout": "on"}, BinaryData: map[string][]byte{"logo": {0, 1, 2}}}, metav1.CreateOptions{})),
		create(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: VeleroCanaryConfigMap},
			Data: map[string]string{VeleroCanaryKey: s.Nonce}}, metav1.CreateOptions{})),
		create(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			Data: map[string][]byte{"password": []byte(s.SecretValue), "user": []byte("shop")}}, metav1.CreateOptions{})),
		create(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{Selector: web, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})),
		create(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "public"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: web, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})),
		create(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: db, Ports: []corev1.ServicePort{{Port: 5432}}}}, metav1.CreateOptions{})),
		create(cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: s.DeploymentName},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: web},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: web},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27",
						EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}}}}}}}},
			metav1.CreateOptions{})),
		create(cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: db},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: db},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:16",
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}}}}}},
				VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"},
					Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
						Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}}}},
			metav1.CreateOptions{})),
		create(cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "migrate", Image: "busybox", Command: []string{"true"}}}}}}}, metav1.CreateOptions{})),
		create(cs.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}, metav1.CreateOptions{})),
		create(cs.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
			Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "report", Image: "busybox"}}}}}}}}, metav1.CreateOptions{})),
	} {
		must(t, err)
	}
	waitWorkloads(t, ctx, cs, ns)
	return s
}

// waitWorkloads waits until the Deployments and StatefulSets of ns are ready, its claims bound
// and its Jobs complete, so that a backup taken now holds a settled namespace.
func waitWorkloads(t testing.TB, ctx context.Context, cs kubernetes.Interface, ns string) {
	t.Helper()
	var state string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var notReady []string
		deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, d := range deps.Items {
			if d.Status.AvailableReplicas != *d.Spec.Replicas {
				notReady = append(notReady, "deployment "+d.Name)
			}
		}
		stss, _ := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		for _, s := range stss.Items {
			if s.Status.ReadyReplicas != *s.Spec.Replicas {
				notReady = append(notReady, "statefulset "+s.Name)
			}
		}
		pvcs, _ := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		for _, p := range pvcs.Items {
			if p.Status.Phase != corev1.ClaimBound {
				notReady = append(notReady, "pvc "+p.Name)
			}
		}
		jobs, _ := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		for _, j := range jobs.Items {
			if j.Status.CompletionTime == nil {
				notReady = append(notReady, "job "+j.Name)
			}
		}
		state = strings.Join(notReady, ", ")
		return len(notReady) == 0, nil
	})
	if err != nil {
		t.Fatalf("namespace %s not settled: %s: %v", ns, state, err)
	}
}

func deleteNamespaceAtEnd(t testing.TB, cs kubernetes.Interface, ns string) {
	t.Cleanup(func() {
		err := cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("delete namespace %s: %v", ns, err)
		}
	})
}

// backupItems reads what a Velero backup of ns holds, from the API as Velero does: every
// namespaced resource of ns in its preferred version, the Namespace itself and the
// PersistentVolumes of its claims (which Velero adds as cluster-scoped items).
func backupItems(t testing.TB, cfg *rest.Config, ns string) []velero.Item {
	t.Helper()
	ctx := context.Background()
	dc := discovery.NewDiscoveryClientForConfigOrDie(cfg)
	lists, err := dc.ServerPreferredResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	var items []velero.Item
	add := func(resource string, u unstructured.Unstructured) {
		items = append(items, velero.Item{Resource: resource, Namespace: u.GetNamespace(), Name: u.GetName(), Object: &u})
	}
	for _, l := range lists {
		for _, r := range l.APIResources {
			if !r.Namespaced || strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue
			}
			gvr := mustGV(t, l.GroupVersion).WithResource(r.Name)
			got, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatalf("list %s: %v", gvr, err)
			}
			for _, u := range got.Items {
				add(gvr.GroupResource().String(), u)
			}
		}
	}
	nsObj, err := dyn.Resource(corev1.SchemeGroupVersion.WithResource("namespaces")).Get(ctx, ns, metav1.GetOptions{})
	must(t, err)
	add("namespaces", *nsObj)
	for _, it := range slices.Clone(items) {
		if it.Resource != "persistentvolumeclaims" {
			continue
		}
		if v, _ := nestedString(it.Object.Object, "spec", "volumeName"); v != "" {
			pv, err := dyn.Resource(corev1.SchemeGroupVersion.WithResource("persistentvolumes")).Get(ctx, v, metav1.GetOptions{})
			must(t, err)
			add("persistentvolumes", *pv)
		}
	}
	return items
}

func mustGV(t testing.TB, s string) schema.GroupVersion {
	t.Helper()
	gv, err := schema.ParseGroupVersion(s)
	must(t, err)
	return gv
}

// isolationModifiers are Velero resource modifiers doing what a drill's isolation does to a
// restored copy: CronJobs suspended, NodePort and LoadBalancer Services turned into ClusterIP,
// and claims let go of the source's volume so that a new one is provisioned.
const isolationModifiers = `version: v1
resourceModifierRules:
- conditions: {groupResource: cronjobs.batch}
  mergePatches: [{patchData: '{"spec":{"suspend":true}}'}]
- conditions:
    groupResource: services
    matches: [{path: /spec/type, value: NodePort}]
  mergePatches: [{patchData: '{"spec":{"type":"ClusterIP","externalTrafficPolicy":null}}'}]
- conditions: {groupResource: persistentvolumeclaims}
  mergePatches: [{patchData: '{"spec":{"volumeName":null}}'}]
`

// isolationExcluded are the resources a drill's isolation leaves out of the restore.
var isolationExcluded = []string{"ingresses.networking.k8s.io", "horizontalpodautoscalers.autoscaling"}

// veleroRestore backs src up with the sandbox's Velero and restores it into dst, with cluster
// resources excluded and the isolation's changes, as scratch-namespace drills restore. It returns
// the backup's and the restore's names.
func veleroRestore(t testing.TB, sb *sandbox.Sandbox, src, dst string) (string, string) {
	t.Helper()
	c, err := client.New(fastConfig(sb), client.Options{Scheme: sandbox.Scheme()})
	must(t, err)
	backup := &velerov1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "b-" + src},
		Spec:       velerov1.BackupSpec{IncludedNamespaces: []string{src}, StorageLocation: sandbox.BackupStorageLocation},
	}
	must(t, c.Create(context.Background(), backup))
	waitVelero(t, c, backup, func() (string, bool) {
		return string(backup.Status.Phase), backup.Status.Phase == velerov1.BackupPhaseCompleted
	})
	mods := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "isolation-" + src},
		Data: map[string]string{"rules.yaml": isolationModifiers}}
	must(t, c.Create(context.Background(), mods))
	return backup.Name, restoreBackup(t, sb, c, backup.Name, map[string]string{src: dst}, mods.Name)
}

// restoreBackup restores a backup with a namespace mapping and cluster resources excluded, with
// the resource modifiers of a ConfigMap when named, and returns the restore's name.
func restoreBackup(t testing.TB, sb *sandbox.Sandbox, c client.Client, backup string, mapping map[string]string, modifiers string) string {
	t.Helper()
	restore := &velerov1.Restore{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, GenerateName: "r-" + backup + "-"},
		Spec:       velerov1.RestoreSpec{BackupName: backup, NamespaceMapping: mapping, IncludeClusterResources: ptr.To(false)},
	}
	if modifiers != "" {
		restore.Spec.ResourceModifier = &corev1.TypedLocalObjectReference{Kind: "configmap", Name: modifiers}
		restore.Spec.ExcludedResources = isolationExcluded
	}
	must(t, c.Create(context.Background(), restore))
	waitVelero(t, c, restore, func() (string, bool) {
		return fmt.Sprintf("%s (errors %d, warnings %d)", restore.Status.Phase, restore.Status.Errors, restore.Status.Warnings),
			restore.Status.Phase == velerov1.RestorePhaseCompleted
	})
	for _, dst := range mapping {
		deleteNamespaceAtEnd(t, kubernetes.NewForConfigOrDie(sb.RESTConfig()), dst)
	}
	return restore.Name
}

// waitVelero re-reads o until done reports true, failing on a terminal phase that is not it.
func waitVelero(t testing.TB, c client.Client, o client.Object, done func() (string, bool)) {
	t.Helper()
	var phase string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			return false, nil
		}
		var ok bool
		phase, ok = done()
		for _, p := range []string{"Failed", "PartiallyFailed", "FailedValidation"} {
			if phase == p || strings.HasPrefix(phase, p+" ") {
				return false, fmt.Errorf("%T %s ended %s", o, o.GetName(), phase)
			}
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%T %s: %v (phase %s)", o, o.GetName(), err, phase)
	}
}

// newTestCluster builds the clients of cfg's cluster, as a drill does once per run.
func newTestCluster(tb testing.TB, cfg *rest.Config) *Cluster {
	tb.Helper()
	c, err := NewCluster(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
