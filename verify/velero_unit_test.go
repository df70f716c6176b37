package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// obj builds an unstructured object from nested maps, as JSON decoding makes them.
func obj(kind string, fields map[string]any) map[string]any {
	o := map[string]any{"apiVersion": "v1", "kind": kind}
	for k, v := range fields {
		o[k] = v
	}
	return o
}

func backedUpMeta(name string, extra map[string]any) map[string]any {
	m := map[string]any{"name": name, "namespace": "shop", "uid": "u-1", "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z",
		"managedFields": []any{map[string]any{"manager": "kubectl"}}}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func restoredMeta(name string, extra map[string]any) map[string]any {
	m := map[string]any{"name": name, "namespace": "drill-1-shop", "uid": "u-2", "resourceVersion": "99", "creationTimestamp": "2026-01-02T00:00:00Z",
		"labels": map[string]any{"velero.io/backup-name": "b", "velero.io/restore-name": "r"}}
	for k, v := range extra {
		if k == "labels" {
			for lk, lv := range v.(map[string]any) {
				m["labels"].(map[string]any)[lk] = lv
			}
			continue
		}
		m[k] = v
	}
	return m
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// What legitimately changes in a restore is left out; everything else that differs is named by
// its path, never with a value.
func TestDiffObjects(t *testing.T) {
	t.Parallel()
	ctrl := map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "a", "controller": true}
	for _, tc := range []struct {
		name   string
		gk     schema.GroupKind
		ignore []string
		a, b   map[string]any
		want   string // "" when equal
	}{
		{"configmap restored as is", gkConfigMap, nil,
			obj("ConfigMap", map[string]any{"metadata": backedUpMeta("c", nil), "data": map[string]any{"currency": "EUR"}}),
			obj("ConfigMap", map[string]any{"metadata": restoredMeta("c", nil), "data": map[string]any{"currency": "EUR"}}), ""},
		{"configmap value changed, key added and removed", gkConfigMap, nil,
			obj("ConfigMap", map[string]any{"metadata": backedUpMeta("c", nil), "data": map[string]any{"currency": "EUR", "old": "x", "tls.mode": "on"}}),
			obj("ConfigMap", map[string]any{"metadata": restoredMeta("c", nil), "data": map[string]any{"currency": "USD", "new": "y", "tls.mode": "on"}}),
			"data.currency: differs, data.old: only in the backup, data.new: only in the restored object"},
		{"label added by hand", gkConfigMap, nil,
			obj("ConfigMap", map[string]any{"metadata": backedUpMeta("c", nil)}),
			obj("ConfigMap", map[string]any{"metadata": restoredMeta("c", map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "x"}})}),
			"metadata.labels[app.kubernetes.io/name]: only in the restored object"},
		{"ignoreFields", gkConfigMap, []string{"metadata.annotations[example.com/checksum]", "data.*"},
			obj("ConfigMap", map[string]any{"metadata": backedUpMeta("c", map[string]any{"annotations": map[string]any{"example.com/checksum": "1"}}), "data": map[string]any{"a": "1"}}),
			obj("ConfigMap", map[string]any{"metadata": restoredMeta("c", map[string]any{"annotations": map[string]any{"example.com/checksum": "2"}}), "data": map[string]any{"a": "2"}}), ""},
		{"secret by digest", schema.GroupKind{Kind: "Secret"}, nil,
			obj("Secret", map[string]any{"metadata": backedUpMeta("s", nil), "type": "Opaque", "data": map[string]any{"password": b64("hunter2"), "user": b64("shop")}}),
			obj("Secret", map[string]any{"metadata": restoredMeta("s", nil), "type": "Opaque", "data": map[string]any{"password": b64("hunter3"), "user": b64("shop")}}),
			"data.password: differs"},
		{"service turned into ClusterIP by the isolation", gkService, nil,
			obj("Service", map[string]any{"metadata": backedUpMeta("web", nil), "spec": map[string]any{"type": "NodePort", "clusterIP": "10.0.0.1", "clusterIPs": []any{"10.0.0.1"},
				"externalTrafficPolicy": "Cluster", "ports": []any{map[string]any{"port": int64(80), "nodePort": int64(30080)}}}}),
			obj("Service", map[string]any{"metadata": restoredMeta("web", nil), "spec": map[string]any{"type": "ClusterIP", "clusterIP": "10.0.0.9", "clusterIPs": []any{"10.0.0.9"},
				"ports": []any{map[string]any{"port": 80.0}}}}), ""},
		{"service type changed otherwise", gkService, nil,
			obj("Service", map[string]any{"metadata": backedUpMeta("web", nil), "spec": map[string]any{"type": "LoadBalancer"}}),
			obj("Service", map[string]any{"metadata": restoredMeta("web", nil), "spec": map[string]any{"type": "NodePort"}}), "spec.type: differs"},
		{"headless service keeps None", gkService, nil,
			obj("Service", map[string]any{"metadata": backedUpMeta("db", nil), "spec": map[string]any{"clusterIP": "None"}}),
			obj("Service", map[string]any{"metadata": restoredMeta("db", nil), "spec": map[string]any{"clusterIP": "10.0.0.3"}}), "spec.clusterIP: differs"},
		{"cronjob suspended by the isolation", schema.GroupKind{Group: "batch", Kind: "CronJob"}, nil,
			obj("CronJob", map[string]any{"metadata": backedUpMeta("n", nil), "spec": map[string]any{"schedule": "0 3 * * *", "suspend": false}}),
			obj("CronJob", map[string]any{"metadata": restoredMeta("n", nil), "spec": map[string]any{"schedule": "0 3 * * *", "suspend": true}}), ""},
		{"cronjob resumed", schema.GroupKind{Group: "batch", Kind: "CronJob"}, nil,
			obj("CronJob", map[string]any{"metadata": backedUpMeta("n", nil), "spec": map[string]any{"suspend": true}}),
			obj("CronJob", map[string]any{"metadata": restoredMeta("n", nil), "spec": map[string]any{"suspend": false}}), "spec.suspend: differs"},
		{"owner references dropped by Velero, or adopted by a new owner", schema.GroupKind{Kind: "Pod"}, nil,
			obj("Pod", map[string]any{"metadata": backedUpMeta("p", map[string]any{"ownerReferences": []any{ctrl}}), "spec": map[string]any{"nodeName": "n1", "priority": int64(0)}}),
			obj("Pod", map[string]any{"metadata": restoredMeta("p", nil), "spec": map[string]any{"nodeName": "n2"}}), ""},
		{"owner reference to another owner", schema.GroupKind{Kind: "Pod"}, nil,
			obj("Pod", map[string]any{"metadata": backedUpMeta("p", map[string]any{"ownerReferences": []any{ctrl}})}),
			obj("Pod", map[string]any{"metadata": restoredMeta("p", map[string]any{"ownerReferences": []any{
				map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-2", "uid": "b", "controller": true}}})}),
			"metadata.ownerReferences[0].name: differs"},
		{"pod token volumes", schema.GroupKind{Kind: "Pod"}, nil,
			obj("Pod", map[string]any{"metadata": backedUpMeta("p", nil), "spec": map[string]any{
				"volumes":    []any{map[string]any{"name": "data"}, map[string]any{"name": "kube-api-access-abcde"}},
				"containers": []any{map[string]any{"name": "c", "volumeMounts": []any{map[string]any{"name": "kube-api-access-abcde"}}}}}}),
			obj("Pod", map[string]any{"metadata": restoredMeta("p", nil), "spec": map[string]any{
				"volumes":    []any{map[string]any{"name": "data"}, map[string]any{"name": "kube-api-access-xyz12"}},
				"containers": []any{map[string]any{"name": "c", "volumeMounts": []any{map[string]any{"name": "kube-api-access-xyz12"}}}}}}), ""},
		{"job selector with a new controller uid", schema.GroupKind{Group: "batch", Kind: "Job"}, nil,
			obj("Job", map[string]any{"metadata": backedUpMeta("j", map[string]any{"labels": map[string]any{"batch.kubernetes.io/controller-uid": "a", "job-name": "j"}}),
				"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"batch.kubernetes.io/controller-uid": "a"}}}}),
			obj("Job", map[string]any{"metadata": restoredMeta("j", map[string]any{"labels": map[string]any{"batch.kubernetes.io/controller-uid": "b", "job-name": "j"}}),
				"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"batch.kubernetes.io/controller-uid": "b"}}}}), ""},
		{"list lengths", gkConfigMap, nil,
			obj("X", map[string]any{"metadata": backedUpMeta("x", nil), "spec": map[string]any{"items": []any{"a", "b"}}}),
			obj("X", map[string]any{"metadata": restoredMeta("x", nil), "spec": map[string]any{"items": []any{"a"}}}),
			"spec.items: 2 items in the backup, 1 restored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var user []fieldPath
			for _, f := range tc.ignore {
				p, err := scenarios.SplitFieldPath(f)
				must(t, err)
				user = append(user, p)
			}
			n, got := diffObjects(tc.gk, staticIgnores(tc.gk, user), tc.a, tc.b)
			if got != tc.want || (n == 0) != (tc.want == "") {
				t.Errorf("got %d differences %q, want %q", n, got, tc.want)
			}
			for _, secret := range []string{"hunter", b64("hunter2"), b64("hunter3"), "EUR", "USD"} {
				if strings.Contains(got, secret) {
					t.Errorf("value %q in %q", secret, got)
				}
			}
		})
	}
}

func TestNotRestoredReason(t *testing.T) {
	t.Parallel()
	item := func(resource, ns, name string, o map[string]any) velero.Item {
		return velero.Item{Resource: resource, Namespace: ns, Name: name, Object: &unstructured.Unstructured{Object: o}}
	}
	excluded := newExcludedSet(nil, []string{"ingresses.networking.k8s.io"})
	for _, tc := range []struct {
		it   velero.Item
		want string
	}{
		{item("configmaps", "shop", "c", map[string]any{}), ""},
		{item("namespaces", "", "shop", map[string]any{}), ""},
		{item("persistentvolumes", "", "pv-1", map[string]any{}), skipClusterScoped},
		{item("ingresses.networking.k8s.io", "shop", "web", map[string]any{}), skipExcluded},
		{item("events", "shop", "e", map[string]any{}), skipNeverRestored},
		{item("events.events.k8s.io", "shop", "e", map[string]any{}), skipNeverRestored},
		{item("pods", "shop", "done", map[string]any{"status": map[string]any{"phase": "Succeeded"}}), skipCompleted},
		{item("pods", "shop", "run", map[string]any{"status": map[string]any{"phase": "Running"}}), ""},
		{item("pods", "shop", "m", map[string]any{"metadata": map[string]any{"annotations": map[string]any{"kubernetes.io/config.mirror": "x"}}}), skipMirrorPod},
		{item("jobs.batch", "shop", "j", map[string]any{"status": map[string]any{"completionTime": "2026-01-01T00:00:00Z"}}), skipCompleted},
		{item("secrets", "shop", "app-token-x1", map[string]any{"type": "kubernetes.io/service-account-token",
			"metadata": map[string]any{"annotations": map[string]any{"kubernetes.io/service-account.name": "app"}}}), skipServiceAccountToken},
		{item("secrets", "shop", "long-lived", map[string]any{"type": "kubernetes.io/service-account-token",
			"metadata": map[string]any{"annotations": map[string]any{"kubernetes.io/service-account.name": "app"}}}), ""},
	} {
		if got := notRestoredReason(tc.it, groupResource(tc.it.Resource), excluded); got != tc.want {
			t.Errorf("%s %s/%s: got %q, want %q", tc.it.Resource, tc.it.Namespace, tc.it.Name, got, tc.want)
		}
	}
}

func TestNewVeleroChecks(t *testing.T) {
	t.Parallel()
	checks, err := NewVeleroChecks([]scenarios.Check{
		{ObjectsRestored: &scenarios.ObjectsRestoredCheck{}},
		{Name: "config", ObjectsMatch: &scenarios.ObjectsMatchCheck{}},
		{WorkloadsReady: &scenarios.WorkloadsReadyCheck{}},
		{Job: &scenarios.JobCheck{Image: "postgres:16"}},
		{Canary: &scenarios.CanaryCheck{}},
	})
	must(t, err)
	var names []string
	for _, c := range checks {
		names = append(names, c.Name()+"/"+c.Type())
	}
	if want := "objectsRestored/objectsRestored config/objectsMatch workloadsReady/workloadsReady job/job canary/canary"; strings.Join(names, " ") != want {
		t.Errorf("got %v", names)
	}
	m := checks[1].(*ObjectsMatchCheck)
	if !slices.Equal(m.resources, []string{"configmaps", "secrets"}) {
		t.Errorf("objectsMatch default resources: %v", m.resources)
	}
	if w := checks[2].(*WorkloadsReadyCheck); w.timeout != scenarios.DefaultWorkloadsTimeout {
		t.Errorf("workloadsReady default timeout: %v", w.timeout)
	}
	if j := checks[3].(*JobCheck); j.timeout != scenarios.DefaultJobTimeout {
		t.Errorf("job default timeout: %v", j.timeout)
	}

	_, err = NewVeleroChecks([]scenarios.Check{
		{},
		{ObjectsRestored: &scenarios.ObjectsRestoredCheck{}, Canary: &scenarios.CanaryCheck{}},
		{Name: "integrity", EtcdIntegrity: &scenarios.EtcdIntegrityCheck{}},
		{Job: &scenarios.JobCheck{}},
		{Canary: &scenarios.CanaryCheck{Key: "/x"}},
		{ObjectsMatch: &scenarios.ObjectsMatchCheck{IgnoreFields: []string{"a..b"}}},
	})
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"check 1: no check type set", "check 2: several check types", "check 3 (integrity): etcdIntegrity does not check a Velero backup",
		"check 4: job.image is required", "check 5: canary.key", "check 6: objectsMatch.ignoreFields[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// Without a restored cluster, or with one that does not answer, no check can be carried out.
func TestVeleroChecksWithoutTarget(t *testing.T) {
	t.Parallel()
	checks, err := NewVeleroChecks([]scenarios.Check{
		{ObjectsRestored: &scenarios.ObjectsRestoredCheck{}},
		{ObjectsMatch: &scenarios.ObjectsMatchCheck{}},
		{WorkloadsReady: &scenarios.WorkloadsReadyCheck{}},
		{Job: &scenarios.JobCheck{Image: "busybox"}},
		{Canary: &scenarios.CanaryCheck{}},
	})
	must(t, err)
	mapping := map[string]string{"shop": "drill-1-shop"}
	for _, c := range checks {
		o := c.Run(context.Background(), &VeleroTarget{NamespaceMapping: mapping, Canaries: map[string]string{"shop": "n"}})
		if o.Status != StatusError || !strings.Contains(o.Message, "restore step did not complete") {
			t.Errorf("%s without a cluster: want error, got %s: %s", c.Name(), o.Status, o.Message)
		}
		o = c.Run(context.Background(), &VeleroTarget{NamespaceMapping: mapping, Canaries: map[string]string{"shop": "n"},
			Cluster: newTestCluster(t, restConfigFor("https://"+freeAddr(t)))})
		if o.Status != StatusError {
			t.Errorf("%s with an unreachable cluster: want error, got %s: %s", c.Name(), o.Status, o.Message)
		}
		t.Logf("%s: %s", c.Name(), o.Message)
	}
	o := checks[4].Run(context.Background(), &VeleroTarget{NamespaceMapping: mapping})
	if o.Status != StatusError || !strings.Contains(o.Message, "no canary was written") {
		t.Errorf("canary without canaries: got %s: %s", o.Status, o.Message)
	}
}

func TestReadTail(t *testing.T) {
	t.Parallel()
	long := bytes.Repeat([]byte("0123456789"), 10_000)
	got, truncated, err := readTail(bytes.NewReader(long), 1000)
	if err != nil || !truncated || !bytes.Equal(got, long[len(long)-1000:]) {
		t.Errorf("long: %d bytes, truncated %v, %v", len(got), truncated, err)
	}
	got, truncated, err = readTail(strings.NewReader("short"), 1000)
	if err != nil || truncated || string(got) != "short" {
		t.Errorf("short: %q %v %v", got, truncated, err)
	}
}
