package verify

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// A real Velero backup of a namespace as teams have them, restored into a mapped namespace with
// the isolation's changes, passes every Velero check; then each kind of damage to the restored
// copy fails the check that looks for it, naming what is wrong and never a secret value.
func TestVeleroChecksOnRealRestore(t *testing.T) {
	sb := veleroSandbox(t)
	cfg := fastConfig(sb)
	ctx := context.Background()
	src := "vshop-" + randomHex(t)[:6]
	dst := "drill-r1-" + src
	s := makeShop(t, cfg, src)
	backupName, restoreName := veleroRestore(t, sb, src, dst)
	target := &VeleroTarget{
		Scenario: "shop", RunID: "r1", Cluster: newTestCluster(t, sb.RESTConfig()),
		NamespaceMapping:  map[string]string{src: dst},
		Items:             backupItems(t, cfg, src),
		Canaries:          map[string]string{src: s.Nonce},
		ExcludedResources: isolationExcluded,
		BackupName:        backupName, RestoreName: restoreName,
	}
	checks, err := NewVeleroChecks([]scenarios.Check{
		{ObjectsRestored: &scenarios.ObjectsRestoredCheck{}},
		{ObjectsMatch: &scenarios.ObjectsMatchCheck{}},
		{Name: "every kind matches", ObjectsMatch: &scenarios.ObjectsMatchCheck{Resources: []string{
			"configmaps", "secrets", "services", "deployments.apps", "statefulsets.apps", "persistentvolumeclaims",
			"cronjobs.batch", "serviceaccounts"}}},
		{WorkloadsReady: &scenarios.WorkloadsReadyCheck{Timeout: scenarios.Duration{Duration: 2 * time.Minute}}},
		{Canary: &scenarios.CanaryCheck{}},
	})
	must(t, err)
	outcomes := map[string]Outcome{}
	for _, c := range checks {
		o := c.Run(ctx, target)
		t.Logf("%s: %s: %s", c.Name(), o.Status, o.Message)
		if o.Status != StatusPassed {
			t.Errorf("%s: want passed, got %s: %s", c.Name(), o.Status, o.Message)
		}
		assertNoSecret(t, o, s.SecretValue)
		outcomes[c.Name()] = o
	}
	if t.Failed() {
		t.FailNow()
	}

	// What Velero leaves out by design is counted, not missing.
	rev := evidenceJSON(t, outcomes[scenarios.CheckObjectsRestored])
	notRestored := rev["notRestored"].(map[string]any)
	if notRestored[skipClusterScoped] != 1.0 || notRestored[skipCompleted] != 2.0 || notRestored[skipExcluded] != 1.0 || notRestored[skipNeverRestored].(float64) < 1 {
		t.Errorf("want the volume cluster-scoped, the completed job and its pod skipped, the ingress excluded and events never restored, got %v", notRestored)
	}
	per := rev["perResource"].(map[string]any)
	for res, want := range map[string]float64{"configmaps": 4, "secrets": 1, "services": 3, "deployments.apps": 1, "replicasets.apps": 1,
		"statefulsets.apps": 1, "persistentvolumeclaims": 1, "cronjobs.batch": 1, "namespaces": 1, "serviceaccounts": 1} {
		if got := per[res].(map[string]any); got["restored"] != want || got["missing"] != 0.0 {
			t.Errorf("%s: want %v restored, got %v", res, want, got)
		}
	}
	// The endpointslice controller replaces the restored slices, sooner or later.
	if got := per["endpointslices.discovery.k8s.io"].(map[string]any); got["inBackup"] != 3.0 || got["missing"] != 0.0 {
		t.Errorf("endpointslices: want the 3 backed-up slices restored or replaced by the controller, got %v", got)
	}
	if got := per["pods"].(map[string]any); got["restored"] != 3.0 || got["excluded"] != 1.0 {
		t.Errorf("pods: want 3 restored and the completed one excluded, got %v", got)
	}
	if rev["extra"] != 0.0 {
		t.Errorf("want no extra objects, got %v", rev["firstExtra"])
	}
	mev := evidenceJSON(t, outcomes["every kind matches"])
	// 12: 3 configmaps, a secret, 3 services, a deployment, a statefulset, a claim, a cronjob, a
	// service account; kube-root-ca.crt is the target's own.
	if mev["equal"] != 12.0 {
		t.Errorf("every kind matches: %v", mev)
	}
	wev := evidenceJSON(t, outcomes[scenarios.CheckWorkloadsReady])
	if k := wev["perKind"].(map[string]any)["persistentvolumeclaims"].(map[string]any); k["ready"] != 1.0 {
		t.Errorf("want the restored claim bound, got %v", k)
	}

	run := func(c VeleroCheck) Outcome {
		t.Helper()
		o := c.Run(ctx, target)
		t.Logf("%s: %s: %s", c.Name(), o.Status, o.Message)
		assertNoSecret(t, o, s.SecretValue)
		return o
	}
	byName := map[string]VeleroCheck{}
	for _, c := range checks {
		byName[c.Name()] = c
	}
	cs := kubernetes.NewForConfigOrDie(cfg)

	t.Run("a listed kind with nothing to compare", func(t *testing.T) {
		// Endpoints are the target's own and the isolation leaves the ingress out: a scenario
		// that names them proves nothing about them, and says so by failing.
		c, err := NewObjectsMatchCheck("", scenarios.ObjectsMatchCheck{Resources: []string{"configmaps", "endpoints", "ingresses"}})
		must(t, err)
		o := run(c)
		want := "the backup holds no endpoints, ingresses.networking.k8s.io to compare"
		if o.Status != StatusFailed || !strings.Contains(o.Message, want) {
			t.Fatalf("want failed naming %q, got %s: %s", want, o.Status, o.Message)
		}
	})

	t.Run("changed configmap", func(t *testing.T) {
		cm, err := cs.CoreV1().ConfigMaps(dst).Get(ctx, "app-config", metav1.GetOptions{})
		must(t, err)
		cm.Data["currency"] = "USD"
		cm.Data["tls.mode"] = "off"
		_, err = cs.CoreV1().ConfigMaps(dst).Update(ctx, cm, metav1.UpdateOptions{})
		must(t, err)
		o := run(byName[scenarios.CheckObjectsMatch])
		want := "configmap app-config: data.currency: differs, data[tls.mode]: differs"
		if o.Status != StatusFailed || !strings.Contains(o.Message, want) {
			t.Fatalf("want failed naming %q, got %s: %s", want, o.Status, o.Message)
		}
		if strings.Contains(o.Message, "USD") || strings.Contains(o.Message, "EUR") {
			t.Errorf("values in the message: %s", o.Message)
		}
		if o.Evidence["differing"] != 1 {
			t.Errorf("evidence: %v", o.Evidence)
		}
		// The scenario's ignoreFields leave what it names out.
		c, err := NewObjectsMatchCheck("", scenarios.ObjectsMatchCheck{IgnoreFields: []string{"data.currency", "data[tls.mode]"}})
		must(t, err)
		if o := run(c); o.Status != StatusPassed {
			t.Errorf("with ignoreFields: want passed, got %s: %s", o.Status, o.Message)
		}
	})

	t.Run("changed secret", func(t *testing.T) {
		sec, err := cs.CoreV1().Secrets(dst).Get(ctx, "db", metav1.GetOptions{})
		must(t, err)
		changed := "pw-" + randomHex(t)
		sec.Data["password"] = []byte(changed)
		_, err = cs.CoreV1().Secrets(dst).Update(ctx, sec, metav1.UpdateOptions{})
		must(t, err)
		o := run(byName[scenarios.CheckObjectsMatch])
		if o.Status != StatusFailed || !strings.Contains(o.Message, "secret db: data.password: differs") {
			t.Fatalf("want failed naming the secret's key, got %s: %s", o.Status, o.Message)
		}
		assertNoSecret(t, o, changed)
		b, err := json.Marshal(o)
		must(t, err)
		for _, v := range []string{s.SecretValue, changed} {
			if strings.Contains(string(b), v) {
				t.Errorf("secret value in the marshalled outcome: %s", b)
			}
		}
	})

	t.Run("deleted object", func(t *testing.T) {
		must(t, cs.CoreV1().ConfigMaps(dst).Delete(ctx, "features", metav1.DeleteOptions{}))
		o := run(byName[scenarios.CheckObjectsRestored])
		want := "configmaps " + dst + "/features"
		if o.Status != StatusFailed || !strings.Contains(o.Message, "1 of ") || !strings.Contains(o.Message, want) {
			t.Fatalf("want failed naming %s, got %s: %s", want, o.Status, o.Message)
		}
		if per := o.Evidence["perResource"].(map[string]restoredCount); per["configmaps"].Missing != 1 {
			t.Errorf("evidence: %+v", per["configmaps"])
		}
		o = run(byName[scenarios.CheckObjectsMatch])
		if o.Status != StatusFailed || !strings.Contains(o.Message, "configmap features") {
			t.Errorf("objectsMatch: want the missing configmap named, got %s: %s", o.Status, o.Message)
		}
	})

	t.Run("canary", func(t *testing.T) {
		cm, err := cs.CoreV1().ConfigMaps(dst).Get(ctx, VeleroCanaryConfigMap, metav1.GetOptions{})
		must(t, err)
		cm.Data[VeleroCanaryKey] = "older"
		_, err = cs.CoreV1().ConfigMaps(dst).Update(ctx, cm, metav1.UpdateOptions{})
		must(t, err)
		o := run(byName[scenarios.CheckCanary])
		if o.Status != StatusFailed || !strings.Contains(o.Message, "holds another nonce") || !strings.Contains(o.Message, src+" (restored into "+dst+")") {
			t.Errorf("changed nonce: want failed naming the namespace, got %s: %s", o.Status, o.Message)
		}
		must(t, cs.CoreV1().ConfigMaps(dst).Delete(ctx, VeleroCanaryConfigMap, metav1.DeleteOptions{}))
		o = run(byName[scenarios.CheckCanary])
		if o.Status != StatusFailed || !strings.Contains(o.Message, "is not in the restored copy of "+src) {
			t.Errorf("deleted canary: want failed naming the namespace, got %s: %s", o.Status, o.Message)
		}
	})

	// Restored as Velero restores by default with cluster resources excluded, the claim keeps the
	// name of the source's volume and never binds: workloadsReady names it, and says why.
	t.Run("claim restored without its volume", func(t *testing.T) {
		c, err := client.New(cfg, client.Options{Scheme: sandbox.Scheme()})
		must(t, err)
		dst2 := "drill-r2-" + src
		restoreBackup(t, sb, c, backupName, map[string]string{src: dst2}, "")
		o := NewWorkloadsReadyCheck("", scenarios.WorkloadsReadyCheck{Timeout: scenarios.Duration{Duration: 5 * time.Second}}).
			Run(ctx, &VeleroTarget{Cluster: newTestCluster(t, sb.RESTConfig()), NamespaceMapping: map[string]string{src: dst2}, Items: target.Items})
		t.Logf("%s: %s", o.Status, o.Message)
		for _, want := range []string{"not ready after 5s", "statefulset db: 0/1 ready",
			"pvc data-db-0: Pending (it names volume pvc-", "which belongs to claim " + src + "/data-db-0; restored without its PersistentVolume",
			"pod db-0: unschedulable: "} {
			if o.Status != StatusFailed || !strings.Contains(o.Message, want) {
				t.Errorf("want failed with %q, got %s: %s", want, o.Status, o.Message)
			}
		}
		if strings.Contains(o.Message, "deployment web") {
			t.Errorf("a ready deployment named as blocking: %s", o.Message)
		}
	})
}
