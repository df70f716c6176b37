package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// TestRBACForReal deploys the base's ServiceAccount, RBAC and admission policy to the sandbox for
// real, and with a token of that ServiceAccount — nothing else — runs an etcd drill, a Velero
// drill and `serve` with --leader-elect (a run triggered through the API, a DrillRun): they pass
// under the policy. The same identity is then refused what firedrill has no business with, by
// RBAC and by the policy (admission_test.go), and admitted what firedrill does.
func TestRBACForReal(t *testing.T) {
	if firedrillBin == "" {
		t.Skip("-short: no firedrill binary")
	}
	sb := deploySandbox(t)
	admin := kubectlFor(t, sb.Kubeconfig())

	// The identity and its admission policy, as the base deploys them.
	var ident bytes.Buffer
	for _, o := range kustomize(t, "kustomize/base").objs {
		switch kindOf(o) {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
			"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "CustomResourceDefinition":
		case "ConfigMap":
			if get(o, "metadata", "name") != "firedrill-admission" {
				continue
			}
			// The sandbox node runs only the images imported into it.
			o["data"].(map[string]any)["probeImage"] = probeImage
		default:
			continue
		}
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&ident, "---\n%s", b)
	}
	admin(ident.Bytes(), "apply", "--server-side", "--field-manager=firedrill-test", "-f", "-")
	token := strings.TrimSpace(string(admin(nil, "create", "token", "firedrill", "-n", "firedrill-system", "--duration=2h")))
	kubeconfig := tokenKubeconfig(t, sb, token)
	as := kubectlFor(t, kubeconfig)
	if who := string(as(nil, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")); who != "system:serviceaccount:firedrill-system:firedrill" {
		t.Fatalf("the kubeconfig authenticates as %q", who)
	}
	// Everything below runs under the policy: the drills pass with it.
	waitForPolicy(t, kubeconfig)

	// The demo shop, deployed by an admin, is what both drills back up.
	admin(readFile(t, "../hack/demo/shop.yaml"), "apply", "-f", "-")
	admin(nil, "-n", "shop", "rollout", "status", "deployment/web", "--timeout=5m")
	admin(nil, "-n", "shop", "rollout", "status", "statefulset/orders", "--timeout=5m")
	admin(nil, "-n", "shop", "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data-orders-0", "--timeout=5m")
	// The orders the Velero drill's checks count, placed through the app as the demo does.
	admin(nil, "-n", "shop", "exec", "orders-0", "--", "/orders", "add", "--db", "/data/orders.db", "--count", "42")

	tmp := t.TempDir()
	env := []string{"KUBECONFIG=" + kubeconfig, "FIREDRILL_BIN_DIR=" + sb.BinDir(), "TMPDIR=" + tmp,
		"FIREDRILL_HISTORY=" + filepath.Join(tmp, "history.db"), "FIREDRILL_PROBE_IMAGE=" + probeImage}
	etcdScenario := strings.ReplaceAll(string(readFile(t, "../hack/demo/etcd-drill.yaml")), "@ETCD_ENDPOINT@", sb.EtcdEndpoints()[0])

	// Sequential on purpose: the Velero drill writes its canary into shop, which the etcd drill
	// compares with the live etcd.
	t.Run("etcd drill", func(t *testing.T) {
		drillPasses(t, env, writeTemp(t, "etcd-drill.yaml", etcdScenario))
	})
	t.Run("velero drill", func(t *testing.T) {
		drillPasses(t, env, writeTemp(t, "velero-drill.yaml", string(readFile(t, "../hack/demo/velero-drill.yaml"))))
	})
	t.Run("serve with leader election", func(t *testing.T) {
		servePasses(t, env, strings.Replace(etcdScenario, "name: demo-control-plane", "name: rbac-serve", 1), admin)
	})
	t.Run("refused", func(t *testing.T) {
		refusals(t, kubeconfig, as, admin, env)
	})
	t.Run("refused by admission", func(t *testing.T) {
		admissionRefusals(t, kubeconfig, sb.Kubeconfig())
	})
	t.Run("admitted", func(t *testing.T) {
		admitted(t, kubeconfig, sb.Kubeconfig())
	})
}

// deploySandbox is the package's shared sandbox: Velero and a real node that enforces
// NetworkPolicy, which the demo's Velero drill needs (its data checks run pods).
func deploySandbox(t *testing.T) *sandbox.Sandbox {
	return sandboxtest.Shared(t, sandbox.Options{Velero: true, RealNode: true, NetworkPolicy: true, Nodes: 1})
}

// tokenKubeconfig writes a kubeconfig for the sandbox's API server that holds only token.
func tokenKubeconfig(t *testing.T, sb *sandbox.Sandbox, token string) string {
	rc := sb.RESTConfig()
	ca := rc.TLSClientConfig.CAData
	if len(ca) == 0 && rc.TLSClientConfig.CAFile != "" {
		ca = readFile(t, rc.TLSClientConfig.CAFile)
	}
	if len(ca) == 0 {
		t.Fatal("the sandbox's REST config has no CA")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sandbox"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: ca}
	cfg.AuthInfos["firedrill"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["firedrill"] = &clientcmdapi.Context{Cluster: "sandbox", AuthInfo: "firedrill", Namespace: "firedrill-system"}
	cfg.CurrentContext = "firedrill"
	p := filepath.Join(t.TempDir(), "firedrill-sa.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeTemp(t *testing.T, name, content string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func firedrill(env []string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(firedrillBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		e.WriteString(err.Error())
	}
	return o.String(), e.String(), code
}

type runRecord struct {
	ID     string `json:"id"`
	Result string `json:"result"`
	Error  string `json:"error"`
	Checks []struct {
		Name, Result, Message string
	} `json:"checks"`
}

func drillPasses(t *testing.T, env []string, file string) {
	out, errOut, code := firedrill(env, "run", file, "-o", "json")
	var rec runRecord
	if err := json.Unmarshal([]byte(out), &rec); err != nil || code != 0 || rec.Result != "passed" {
		t.Fatalf("run %s as the ServiceAccount: exit %d, result %q (%v)\n%s\n%s", filepath.Base(file), code, rec.Result, err, clip([]byte(out)), clip([]byte(errOut)))
	}
	if strings.Contains(strings.ToLower(errOut), "forbidden") {
		t.Errorf("the drill passed but was refused something on the way:\n%s", errOut)
	}
	t.Logf("%s: %s, %d checks passed", filepath.Base(file), rec.Result, len(rec.Checks))
}

var servingAddr = regexp.MustCompile(`serving HTTP.*addr=(127\.0\.0\.1:\d+)`)

func servePasses(t *testing.T, env []string, scenario string, admin func([]byte, ...string) []byte) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rbac-serve.yaml"), []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	const token = "rbac-test-token"
	tokenFile := writeTemp(t, "token", token+"\n")
	lease := fmt.Sprintf("firedrill-rbac-%d", time.Now().UnixNano())
	// The same scenario as a Scenario resource under another name: serve watches it and writes
	// its status with this identity.
	admin([]byte(strings.Replace(scenario, "name: rbac-serve", "name: rbac-cluster", 1)), "-n", "firedrill-system", "apply", "-f", "-")
	t.Cleanup(func() {
		admin(nil, "-n", "firedrill-system", "delete", "scenario", "rbac-cluster", "--ignore-not-found")
	})
	cmd := exec.Command(firedrillBin, "serve", "--scenarios", dir, "--scenarios-from", "files,cluster", "--listen", "127.0.0.1:0", "--token-file", tokenFile,
		"--history", filepath.Join(t.TempDir(), "history.db"), "--leader-elect", "--lease-namespace", "firedrill-system",
		"--lease-name", lease, "--janitor-interval", "1m")
	cmd.Env = append(os.Environ(), env...)
	var stderr testkit.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	})

	// The address (port 0 picks one), then leadership.
	var base string
	poll(t, 2*time.Minute, "serve to listen", func() (bool, string) {
		if m := servingAddr.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
			return true, ""
		}
		return false, stderr.String()
	})
	poll(t, 2*time.Minute, "serve to hold the Lease", func() (bool, string) {
		var s struct{ Leader bool }
		body, err := httpDo("GET", base+"/api/v1/scenarios", "", &s)
		return err == nil && s.Leader, fmt.Sprint(body, err, "\n", stderr.String())
	})
	var trig struct{ ID string }
	if body, err := httpDo("POST", base+"/api/v1/scenarios/rbac-serve/runs", token, &trig); err != nil || trig.ID == "" {
		t.Fatalf("trigger a run: %v %s\n%s", err, body, stderr.String())
	}
	var rec runRecord
	poll(t, 10*time.Minute, "the triggered run to finish", func() (bool, string) {
		body, err := httpDo("GET", base+"/api/v1/runs/"+trig.ID, "", &rec)
		return err == nil && rec.Result != "" && rec.Result != "running", body
	})
	if rec.Result != "passed" {
		t.Errorf("the run triggered through serve: %+v\n%s", rec, stderr.String())
	}
	poll(t, 2*time.Minute, "the leader to write the Scenario's status", func() (bool, string) {
		out := admin(nil, "-n", "firedrill-system", "get", "scenario", "rbac-cluster", "-o", `jsonpath={.status.conditions[?(@.type=="Valid")].status}`)
		return string(out) == "True", string(out) + "\n" + stderr.String()
	})
	// A DrillRun an admin creates is claimed, run and followed with this identity.
	admin([]byte("apiVersion: firedrill.dev/v1alpha1\nkind: DrillRun\nmetadata: {name: rbac-drillrun}\nspec: {scenarioRef: {name: rbac-cluster}}\n"),
		"-n", "firedrill-system", "create", "-f", "-")
	t.Cleanup(func() {
		admin(nil, "-n", "firedrill-system", "delete", "drillrun", "rbac-drillrun", "--ignore-not-found")
	})
	poll(t, 10*time.Minute, "the DrillRun to finish", func() (bool, string) {
		out := admin(nil, "-n", "firedrill-system", "get", "drillrun", "rbac-drillrun", "-o", "jsonpath={.status.phase} {.status.result} {.status.recordHash}")
		return strings.HasPrefix(string(out), "Finished "), string(out) + "\n" + stderr.String()
	})
	if out := strings.Fields(string(admin(nil, "-n", "firedrill-system", "get", "drillrun", "rbac-drillrun", "-o", "jsonpath={.status.result} {.status.recordHash}"))); len(out) != 2 || out[0] != "passed" {
		t.Errorf("the DrillRun run by the ServiceAccount: %v\n%s", out, stderr.String())
	}
	// The Lease was created by the ServiceAccount, in firedrill's namespace.
	if holder := string(admin(nil, "-n", "firedrill-system", "get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}")); holder == "" {
		t.Errorf("Lease %s has no holder", lease)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("serve exited with %v after SIGTERM\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("serve did not stop after SIGTERM\n%s", stderr.String())
	}
	if s := strings.ToLower(stderr.String()); strings.Contains(s, "forbidden") {
		t.Errorf("serve was refused something (janitor, Lease, drill):\n%s", stderr.String())
	}
}

// httpDo sends a request and decodes a 2xx JSON answer into out; it returns the body.
func httpDo(method, url, token string, out any) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return string(b), fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return string(b), json.Unmarshal(b, out)
}

func poll(t *testing.T, limit time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", limit, what, clip([]byte(last)))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func refusals(t *testing.T, kubeconfig string, as, admin func([]byte, ...string) []byte, env []string) {
	kubectl := tool(t, "kubectl", "make sandbox-bin")
	canI := func(args ...string) string {
		out, _, _ := runErr(nil, kubectl, append([]string{"--kubeconfig", kubeconfig, "auth", "can-i"}, args...)...)
		return strings.TrimSpace(string(out))
	}
	for _, c := range [][]string{
		{"get", "secrets", "-n", "kube-system"},
		{"get", "secrets", "-n", "velero"},
		{"watch", "secrets", "-n", "velero"},
		{"create", "secrets", "-n", "firedrill-system"},
		{"create", "clusterroles"},
		{"create", "clusterrolebindings"},
		{"escalate", "clusterroles"},
		{"bind", "clusterroles"},
		{"impersonate", "serviceaccounts"},
		{"create", "nodes"},
		{"delete", "nodes"},
		{"create", "customresourcedefinitions.apiextensions.k8s.io"},
		{"create", "validatingwebhookconfigurations.admissionregistration.k8s.io"},
		{"create", "persistentvolumes"},
		{"create", "deployments.apps", "-n", "shop"},
		{"create", "backups.velero.io", "-n", "shop"},
		{"create", "leases.coordination.k8s.io", "-n", "kube-system"},
		{"patch", "deployments.apps", "-n", "shop"},
		{"update", "scenarios.firedrill.dev", "-n", "firedrill-system"},
		{"create", "scenarios.firedrill.dev", "-n", "firedrill-system"},
		{"delete", "scenarios.firedrill.dev", "-n", "firedrill-system"},
		{"update", "drillruns.firedrill.dev", "-n", "shop"},
		{"patch", "drillruns.firedrill.dev", "-n", "shop"},
	} {
		if got := canI(c...); got != "no" {
			t.Errorf("can-i %s: %q, want no", strings.Join(c, " "), got)
		}
	}
	// What drills need is allowed, including what RBAC cannot narrow: namespace deletion, and
	// Pods and Jobs in any namespace (the admission policy refuses them: admissionRefusals).
	for _, c := range [][]string{
		{"create", "namespaces"}, {"delete", "namespaces"}, {"create", "backups.velero.io", "-n", "velero"},
		{"create", "leases.coordination.k8s.io", "-n", "firedrill-system"}, {"list", "secrets", "-n", "shop"},
		{"create", "pods", "-n", "kube-system"}, {"create", "jobs.batch", "-n", "kube-system"},
		{"update", "configmaps", "-n", "kube-system"},
		{"watch", "scenarios.firedrill.dev", "-n", "shop"}, {"update", "scenarios.firedrill.dev", "--subresource=status", "-n", "shop"},
		{"watch", "drillruns.firedrill.dev", "-n", "shop"}, {"create", "drillruns.firedrill.dev", "-n", "shop"},
		{"delete", "drillruns.firedrill.dev", "-n", "shop"}, {"update", "drillruns.firedrill.dev", "--subresource=status", "-n", "shop"},
	} {
		if got := canI(c...); got != "yes" {
			t.Errorf("can-i %s: %q, want yes", strings.Join(c, " "), got)
		}
	}

	// Real requests, not only the authorizer's opinion.
	secrets := strings.Fields(string(admin(nil, "-n", "velero", "get", "secrets", "-o", "jsonpath={.items[*].metadata.name}")))
	if len(secrets) == 0 {
		t.Fatal("no Secret in velero to try reading")
	}
	for _, args := range [][]string{
		{"-n", "velero", "get", "secret", secrets[0]},
		{"create", "clusterrole", "firedrill-wants-more", "--verb=get", "--resource=secrets"},
		{"create", "namespace", "x", "--dry-run=server", "-o", "name", "--as=system:admin"},
		{"apply", "--server-side", "-f", "testdata/monitoring-crds.yaml", "--dry-run=server"},
	} {
		_, errOut, err := runErr(nil, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		if err == nil || !strings.Contains(strings.ToLower(string(errOut)), "forbidden") {
			t.Errorf("kubectl %s as the ServiceAccount: %v %s; want Forbidden", strings.Join(args, " "), err, errOut)
		}
	}

	// RBAC allows deleting namespaces; firedrill's label guard keeps it to its own (and the
	// admission policy: admissionRefusals). An expired namespace that is not firedrill's (one of
	// its two labels, not the other) survives the janitor run with this identity; a real expired
	// scratch namespace is deleted.
	suffix := fmt.Sprint(time.Now().UnixNano())
	decoy, ours := "decoy-"+suffix, "drill-rbac-"+suffix
	admin([]byte(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels: {firedrill.dev/run: "x"}
  annotations: {firedrill.dev/expires: "2000-01-01T00:00:00Z"}
---
apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels: {firedrill.dev/run: "rbac", app.kubernetes.io/managed-by: firedrill}
  annotations: {firedrill.dev/expires: "2000-01-01T00:00:00Z"}
`, decoy, ours)), "apply", "-f", "-")
	out, errOut, code := firedrill(env, "janitor")
	if code != 0 {
		t.Fatalf("janitor as the ServiceAccount: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, decoy) || !strings.Contains(out, ours) {
		t.Errorf("janitor: want %s deleted and %s left alone:\n%s", ours, decoy, out)
	}
	if phase := string(admin(nil, "get", "namespace", decoy, "-o", "jsonpath={.status.phase}")); phase != "Active" {
		t.Errorf("namespace %s, not firedrill's, is %q after the janitor", decoy, phase)
	}
	admin(nil, "delete", "namespace", decoy, "--wait=false")
}
