package verify

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// The sandbox's kube-apiserver serves every object of a snapshot of its own etcd: in chosen
// namespaces and in all of them, with what it writes for itself ignored and what was created
// after the snapshot reported, not failed.
func TestObjectsServed(t *testing.T) {
	sb := sharedSandbox(t)
	ctx := context.Background()
	f := makeObjects(t, sb.RESTConfig(), "verify-served")
	r := restoreCopy(t, sb.EtcdEndpoints())
	target := &EtcdTarget{Restored: r.Client, APIServer: sb.RESTConfig(), Snapshot: etcdsnap.Report{Revision: r.Status.Revision}}

	cs := kubernetes.NewForConfigOrDie(sb.RESTConfig())
	_, err := cs.CoreV1().ConfigMaps(f.Namespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-snapshot"}}, metav1.CreateOptions{})
	must(t, err)

	o := NewObjectsServedCheck("", scenarios.ObjectsServedCheck{Namespaces: []string{f.Namespace}}).Run(ctx, target)
	t.Log(o.Message)
	if o.Status != StatusPassed {
		t.Fatalf("want passed, got %s: %s", o.Status, o.Message)
	}
	assertNoSecret(t, o, f.SecretValue)
	per := o.Evidence["perResource"].(map[string]*kindResult)
	for res, want := range map[string]int{"configmaps": 4, "secrets": 1, "deployments.apps": 1, "replicasets.apps": 1, "pods": 2, "widgets.verify.firedrill.dev": 1, "namespaces": 1} {
		if kr := per[res]; kr == nil || kr.Snapshot != want || kr.Missing != 0 {
			t.Errorf("%s: want %d in the snapshot, all served, got %+v", res, want, kr)
		}
	}
	if kr := per["configmaps"]; kr.Served != 5 || kr.Extra != 1 || !strings.Contains(o.Message, "objects served but not in the snapshot (1): configmaps "+f.Namespace+"/after-snapshot") {
		t.Errorf("want the configmap created after the snapshot reported as extra, got %+v: %s", kr, o.Message)
	}
	if _, ok := per["clusterroles.rbac.authorization.k8s.io"]; ok {
		t.Errorf("cluster-scoped objects compared although namespaces were chosen")
	}

	o = NewObjectsServedCheck("", scenarios.ObjectsServedCheck{}).Run(ctx, target)
	t.Log(o.Message)
	if o.Status != StatusPassed {
		t.Fatalf("all namespaces: want passed, got %s: %s", o.Status, o.Message)
	}
	per = o.Evidence["perResource"].(map[string]*kindResult)
	for _, res := range []string{"clusterroles.rbac.authorization.k8s.io", "apiservices.apiregistration.k8s.io", "customresourcedefinitions.apiextensions.k8s.io", "nodes", "flowschemas.flowcontrol.apiserver.k8s.io"} {
		if kr := per[res]; kr == nil || kr.Snapshot == 0 || kr.Missing != 0 {
			t.Errorf("%s: want in the snapshot and served, got %+v", res, kr)
		}
	}
	if _, ok := per["componentstatuses"]; ok {
		t.Errorf("componentstatuses compared, but they are never stored")
	}
	if o.Evidence["ignored"].(int) == 0 {
		t.Errorf("want events and kube-system leases ignored, got %v", o.Evidence)
	}
}

// Objects the snapshot holds that the API does not serve under their key fail the check, named:
// one the API has never heard of, and one stored under another name than its own.
func TestObjectsServedMissing(t *testing.T) {
	sb := sharedSandbox(t)
	ctx := context.Background()
	f := makeObjects(t, sb.RESTConfig(), "verify-missing")
	src := newEtcd(t)
	copyKeys(t, etcdClient(t, sb.EtcdEndpoints()), src, "/registry/")
	cod, err := newCodec()
	must(t, err)
	cm := func(ns, name string) string {
		return encodeProtobuf(t, cod, &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	}
	for k, v := range map[string]string{
		"/registry/configmaps/" + f.Namespace + "/ghost":   cm(f.Namespace, "ghost"),
		"/registry/configmaps/" + f.Namespace + "/renamed": cm(f.Namespace, "app-config"),
	} {
		_, err := src.Put(ctx, k, v)
		must(t, err)
	}
	r := restoreCopy(t, src.Endpoints())
	target := &EtcdTarget{Restored: r.Client, APIServer: sb.RESTConfig(), Snapshot: etcdsnap.Report{Revision: r.Status.Revision}}

	o := NewObjectsServedCheck("", scenarios.ObjectsServedCheck{Namespaces: []string{f.Namespace}}).Run(ctx, target)
	t.Log(o.Message)
	if o.Status != StatusFailed {
		t.Fatalf("want failed, got %s: %s", o.Status, o.Message)
	}
	for _, want := range []string{
		// 14: the namespace, 4 configmaps and the 2 written here, a secret, a deployment, its
		// replicaset and 2 pods, a widget and the default serviceaccount.
		"2 of 14 objects of the snapshot (namespaces verify-missing) are not served",
		"configmaps verify-missing/ghost", "configmaps verify-missing/renamed",
		"/registry/configmaps/verify-missing/renamed holds ConfigMap verify-missing/app-config",
	} {
		if !strings.Contains(o.Message, want) {
			t.Errorf("message lacks %q", want)
		}
	}
	if o.Evidence["missing"] != 2 || o.Evidence["keyMismatches"] != int64(1) {
		t.Errorf("evidence: %v", o.Evidence)
	}
}

// Without a scratch apiserver, or with one that does not answer, the check could not be done.
func TestObjectsServedNoAPIServer(t *testing.T) {
	cli := newEtcd(t)
	o := NewObjectsServedCheck("", scenarios.ObjectsServedCheck{}).Run(context.Background(), &EtcdTarget{Restored: cli})
	if o.Status != StatusError || !strings.Contains(o.Message, "restore.scratchEtcd.apiServer") {
		t.Fatalf("want error naming the setting, got %s: %s", o.Status, o.Message)
	}
	c := NewObjectsServedCheck("", scenarios.ObjectsServedCheck{})
	c.wait = 0
	cfg := restConfigFor("https://" + freeAddr(t))
	o = c.Run(context.Background(), &EtcdTarget{Restored: cli, APIServer: cfg})
	if o.Status != StatusError || !strings.Contains(o.Message, "unreachable") {
		t.Fatalf("want error for an unreachable apiserver, got %s: %s", o.Status, o.Message)
	}
}
