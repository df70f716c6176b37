package velerodrill_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/sandbox"
)

// An application over two namespaces restored in order: the database's group first, and the
// app's only once the database answers; the app's own check asks the database restored before it.
func TestVeleroDrillRestoresGroupsInOrder(t *testing.T) {
	t.Parallel()
	sb := velero(t)
	db, _ := orderShop(t, sb, "ordered-db", false)
	c, app := namespace(t, sb, "ordered-app")
	ctx := context.Background()
	web := deploymentOf(app.Name, "web", corev1.Container{Name: "web", Image: sandbox.ProbeImage, ImagePullPolicy: corev1.PullNever,
		Args: []string{"serve", "--body", "app"}})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: app.Name, Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	for _, o := range []client.Object{web, svc} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	scenario := func(name, dbPort string) string {
		return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s-%s}
spec:
  timeout: 15m
  source: {kubeconfig: %s}
  backup:
    velero:
      create: {includedNamespaces: [%s, %s], defaultVolumesToFsBackup: true, deleteAfter: true}
  restore:
    scratchNamespace: {}
    order:
      - name: database
        namespaces: [%s]
        checks:
          - {name: database answers, tcp: {service: orders, port: %s, timeout: 1m}}
      - name: app
        namespaces: [%s]
        checks:
          - {name: app ready, workloadsReady: {timeout: 3m}}
          # The app's group checks the database's copy, which only the group before it restored.
          - {name: orders readable, http: {namespace: %s, service: orders, port: 8080, path: /orders/stats, expect: {bodyPattern: '"count":42,'}}}
  checks:
    - {name: everything restored, objectsRestored: {}}
`, name, db, sb.Kubeconfig(), db, app.Name, db, dbPort, app.Name, db)
	}

	rec := runData(t, sb, scenario("ordered", "8080"))
	if rec.Result != drill.Passed {
		t.Fatalf("result %s: %s\nsteps %+v\nchecks %+v", rec.Result, rec.Message, rec.Steps, rec.Checks)
	}
	var steps []string
	for _, s := range rec.Steps {
		steps = append(steps, s.Label())
	}
	if want := "preflight backup restore (database) verify (database) restore (app) verify (app) verify cleanup record"; strings.Join(steps, " ") != want {
		t.Errorf("steps %s\n want %s", strings.Join(steps, " "), want)
	}
	for _, ck := range rec.Checks {
		want := map[string]string{"database answers": "database", "app ready": "app", "orders readable": "app", "everything restored": ""}[ck.Name]
		if ck.Group != want || ck.Result != drill.Passed {
			t.Errorf("check %s: group %q %s, want group %q passed", ck.Name, ck.Group, ck.Result, want)
		}
	}
	if rec.RTOSeconds == nil || rec.Target == nil || len(rec.Target.Namespaces) != 2 {
		t.Errorf("RTO %v, target %+v", rec.RTOSeconds, rec.Target)
	}

	// The database's check fails: the app is never restored, and the record says why.
	rec = runData(t, sb, scenario("stops", "9090"))
	if rec.Result != drill.Failed || !strings.Contains(rec.Message, `stopped at group database: check "database answers" failed`) {
		t.Fatalf("result %s: %s", rec.Result, rec.Message)
	}
	for _, s := range rec.Steps {
		if s.Group == "app" && (s.Name != drill.StepRestore || s.Result != drill.Skipped || !strings.Contains(s.Message, "stopped at group database")) {
			t.Errorf("step %s: %s %q, want the app's restore skipped naming the database", s.Label(), s.Result, s.Message)
		}
	}
	for _, ck := range rec.Checks {
		if ck.Group != "database" && (ck.Result != drill.Skipped || !strings.Contains(ck.Message, "stopped at group database")) {
			t.Errorf("check %s: %s %q, want skipped naming the database", ck.Name, ck.Result, ck.Message)
		}
	}
	var restores []string
	for _, n := range rec.Steps {
		if n.Name == drill.StepRestore && n.Result == drill.Passed {
			restores = append(restores, n.Group)
		}
	}
	if strings.Join(restores, ",") != "database" {
		t.Errorf("restored groups %v, want the database only", restores)
	}
}
