package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scratch"
)

func veleroNamespace(t *testing.T, sb *sandbox.Sandbox, prefix string) (string, kubernetes.Interface) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(sb.RESTConfig())
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}) })
	for _, name := range []string{"settings", "features"} {
		if _, err := cs.CoreV1().ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return ns.Name, cs
}

func TestVeleroRunPlanAndJSON(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	env, _ := drillEnv(t, sb)
	env = append(env, "KUBECONFIG="+sb.Kubeconfig())
	ns, _ := veleroNamespace(t, sb, "clishop")
	file := writeFile(t, t.TempDir(), "velero.yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: cli-%s}
spec:
  backup: {velero: {create: {includedNamespaces: [%s], deleteAfter: true}}}
  restore: {scratchNamespace: {isolation: {allowDNS: true}}}
  checks:
    - {objectsRestored: {}}
    - {objectsMatch: {}}
    - {canary: {}}
`, ns, ns))
	plan := firedrill(t, env, "plan", file)
	for _, want := range []string{"Preflight: ok", "create Velero backup firedrill-<run id> of namespaces " + ns, ns + " → drill-", "NetworkPolicy firedrill-deny-all", "and DNS",
		"ResourceQuota firedrill-quota: cpu=4, memory=8Gi, pods=50", "CronJobs restored suspended", "not restored: ", "ingresses.networking.k8s.io", "ConfigMap firedrill-canary in " + ns} {
		if !strings.Contains(plan.stdout, want) {
			t.Errorf("plan lacks %q:\n%s%s", want, plan.stdout, plan.stderr)
		}
	}
	run := firedrill(t, env, "run", file, "-o", "json")
	if run.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", run.code, run.stdout, run.stderr)
	}
	var rec struct {
		ID     string `json:"id"`
		Result string `json:"result"`
		Backup struct {
			Kind  string `json:"kind"`
			Items int    `json:"items"`
		} `json:"backup"`
		Checks []struct{ Name, Result string } `json:"checks"`
	}
	if err := json.Unmarshal([]byte(run.stdout), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Result != "passed" || rec.Backup.Kind != "velero-backup" || rec.Backup.Items == 0 || len(rec.Checks) != 3 {
		t.Errorf("record %+v", rec)
	}
	for _, want := range []string{"creating backup", "scratch namespaces ready and isolated", "deleting scratch namespaces"} {
		if !strings.Contains(run.stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, run.stderr)
		}
	}
}

func TestRestoreVeleroAndJanitor(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	// A TMPDIR of its own: the janitor also removes work directories of crashed runs there.
	env := []string{"KUBECONFIG=" + sb.Kubeconfig(), "TMPDIR=" + t.TempDir()}
	ns, cs := veleroNamespace(t, sb, "clirestore")
	ctx := context.Background()
	// A backup as a team would have made it.
	backup := "team-" + ns
	out, err := runKubectl(sb, "apply", "-f", "-")(fmt.Sprintf(`apiVersion: velero.io/v1
kind: Backup
metadata: {name: %s, namespace: velero}
spec: {includedNamespaces: [%s]}
`, backup, ns))
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	waitBackup(t, sb, backup)

	// Onto an existing namespace: refused before anything is written, exit 2.
	r := firedrill(t, env, "restore", "velero", backup, "--namespace-mapping", ns+":"+ns)
	if r.code != exitUsage || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("restore onto an existing namespace: exit %d\n%s", r.code, r.stderr)
	}
	target := "restored-" + ns
	r = firedrill(t, env, "restore", "velero", backup, "--namespace-mapping", ns+":"+target, "--keep-for", "2s", "-o", "json")
	if r.code != 0 {
		t.Fatalf("restore velero: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got, err := cs.CoreV1().ConfigMaps(target).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "settings" {
		t.Fatalf("restored configmap: %v %v", got, err)
	}
	tns, err := cs.CoreV1().Namespaces().Get(ctx, target, metav1.GetOptions{})
	if err != nil || tns.Labels[scratch.LabelManagedBy] != scratch.ManagedBy || tns.Labels[scratch.LabelRun] == "" {
		t.Fatalf("target namespace not labelled as firedrill's: %v %v", tns.Labels, err)
	}
	if _, err := cs.NetworkingV1().NetworkPolicies(target).Get(ctx, scratch.NetworkPolicyName, metav1.GetOptions{}); err != nil {
		t.Errorf("no isolation policy: %v", err)
	}

	// A namespace that is not firedrill's, expired annotation and all, is never the janitor's.
	decoy, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "decoy-",
		Annotations: map[string]string{scratch.AnnotationExpires: "2000-01-01T00:00:00Z"}, Labels: map[string]string{scratch.LabelRun: "x"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), decoy.Name, metav1.DeleteOptions{}) })
	time.Sleep(2500 * time.Millisecond)
	dry := firedrill(t, env, "janitor", "--dry-run")
	if dry.code != 0 || !strings.Contains(dry.stdout, "Would delete") || !strings.Contains(dry.stdout, target) || strings.Contains(dry.stdout, decoy.Name) {
		t.Fatalf("janitor --dry-run: exit %d\n%s%s", dry.code, dry.stdout, dry.stderr)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, target, metav1.GetOptions{}); err != nil {
		t.Fatalf("dry run deleted %s: %v", target, err)
	}
	j := firedrill(t, env, "janitor")
	if j.code != 0 || !strings.Contains(j.stdout, "Deleted") || !strings.Contains(j.stdout, target) {
		t.Fatalf("janitor: exit %d\n%s%s", j.code, j.stdout, j.stderr)
	}
	if n, err := cs.CoreV1().Namespaces().Get(ctx, target, metav1.GetOptions{}); err == nil && n.DeletionTimestamp == nil {
		t.Errorf("janitor did not delete %s", target)
	}
	if n, err := cs.CoreV1().Namespaces().Get(ctx, decoy.Name, metav1.GetOptions{}); err != nil || n.DeletionTimestamp != nil {
		t.Errorf("janitor touched the decoy %s: %v", decoy.Name, err)
	}
}

// runKubectl returns a function running the pinned kubectl against sb with stdin.
func runKubectl(sb *sandbox.Sandbox, args ...string) func(stdin string) (string, error) {
	return func(stdin string) (string, error) {
		cmd := exec.Command(filepath.Join(sb.BinDir(), "kubectl"), append([]string{"--kubeconfig", sb.Kubeconfig()}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

func waitBackup(t *testing.T, sb *sandbox.Sandbox, name string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, _ := exec.Command(filepath.Join(sb.BinDir(), "kubectl"), "--kubeconfig", sb.Kubeconfig(), "-n", "velero", "get", "backup", name, "-o", "jsonpath={.status.phase}").Output()
		switch string(out) {
		case "Completed":
			return
		case "Failed", "PartiallyFailed", "FailedValidation":
			t.Fatalf("backup %s ended %s", name, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("backup %s not Completed: %q", name, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
