package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var overlays = []string{"kustomize/base", "kustomize/overlays/ha", "kustomize/overlays/etcd-access", "prometheus", "grafana"}

func helmValues(t testing.TB) []string {
	files, err := filepath.Glob("helm/firedrill/ci/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("helm ci values files: %v %v", files, err)
	}
	return files
}

// render is one rendered manifest set: where it came from and its objects.
type render struct {
	name string
	yaml []byte
	objs []map[string]any
}

func kustomize(t testing.TB, dir string) render {
	t.Helper()
	out := run(t, nil, tool(t, "kubectl", "make sandbox-bin"), "kustomize", dir)
	return render{"kustomize " + dir, out, splitYAML(t, out)}
}

func helmTemplate(t testing.TB, values string) render {
	t.Helper()
	out := run(t, nil, tool(t, "helm", "make sandbox-bin builds it from hack/tools/helm"),
		"template", "firedrill", "helm/firedrill", "--namespace", "firedrill-system", "--values", values)
	return render{"helm -f " + values, out, splitYAML(t, out)}
}

func splitYAML(t testing.TB, b []byte) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		var o map[string]any
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, clip(doc))
		}
		if len(o) > 0 {
			objs = append(objs, o)
		}
	}
	if len(objs) == 0 {
		t.Fatalf("nothing rendered:\n%s", clip(b))
	}
	return objs
}

func allRenders(t testing.TB) []render {
	var rs []render
	for _, d := range overlays {
		rs = append(rs, kustomize(t, d))
	}
	for _, v := range helmValues(t) {
		rs = append(rs, helmTemplate(t, v))
	}
	return rs
}

// get walks a decoded object: get(o, "spec", "template", "spec").
func get(o any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := o.(map[string]any)
			o = m[k]
		case int:
			l, _ := o.([]any)
			if k >= len(l) {
				return nil
			}
			o = l[k]
		}
	}
	return o
}

func kindOf(o map[string]any) string { s, _ := o["kind"].(string); return s }

// TestManifestsAreLocked checks, on every rendering, what the issue promises of the pod and
// the RBAC; the API server's dry-run (below) cannot see these.
func TestManifestsAreLocked(t *testing.T) {
	t.Parallel()
	for _, r := range allRenders(t) {
		t.Run(r.name, func(t *testing.T) {
			kinds := map[string]int{}
			for _, o := range r.objs {
				kinds[kindOf(o)]++
				// deploy/README.md's uninstall selects by this label.
				if get(o, "metadata", "labels", "app.kubernetes.io/name") != "firedrill" {
					t.Errorf("%s %v lacks the label app.kubernetes.io/name=firedrill", kindOf(o), get(o, "metadata", "name"))
				}
				switch kindOf(o) {
				case "Deployment":
					checkDeployment(t, o)
				case "ClusterRole", "Role":
					checkRules(t, o)
				case "ClusterRoleBinding", "RoleBinding":
					if ref := get(o, "roleRef", "name"); ref == "cluster-admin" || ref == "admin" || ref == "edit" {
						t.Errorf("%s binds %v", kindOf(o), ref)
					}
				}
			}
			if strings.HasSuffix(r.name, "grafana") {
				if kinds["ConfigMap"] != 1 || len(r.objs) != 1 {
					t.Errorf("kinds %v", kinds)
				}
				return
			}
			if strings.HasSuffix(r.name, "prometheus") {
				if kinds["PrometheusRule"] != 1 || kinds["ServiceMonitor"] != 1 {
					t.Errorf("kinds %v", kinds)
				}
				return
			}
			for _, k := range []string{"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "ConfigMap", "NetworkPolicy"} {
				if kinds[k] == 0 {
					t.Errorf("no %s rendered", k)
				}
			}
			checkAdmission(t, r, !strings.Contains(r.name, "no-admission"))
		})
	}
}

func checkDeployment(t *testing.T, d map[string]any) {
	pod := get(d, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true || get(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("pod securityContext: %v", get(pod, "securityContext"))
	}
	c := get(pod, "containers", 0)
	if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false ||
		!reflect.DeepEqual(get(c, "securityContext", "capabilities", "drop"), []any{"ALL"}) {
		t.Errorf("container securityContext: %v", get(c, "securityContext"))
	}
	if req, lim := get(c, "resources", "requests"), get(c, "resources", "limits"); req == nil || !reflect.DeepEqual(req, lim) {
		t.Errorf("requests %v != limits %v: not Guaranteed", req, lim)
	}
	if get(c, "readinessProbe", "httpGet", "path") != "/readyz" || get(c, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Errorf("probes: %v %v", get(c, "readinessProbe"), get(c, "livenessProbe"))
	}
	args := fmt.Sprint(get(c, "args"))
	for _, want := range []string{"serve", "--scenarios=/etc/firedrill/scenarios", "--scenarios-from=files,cluster", "--listen=0.0.0.0:8080", "--token-file="} {
		if !strings.Contains(args, want) {
			t.Errorf("args %s lack %s", args, want)
		}
	}
	// Every file a flag names is in a volume the container mounts (a Secret the chart only
	// references must still be mounted to be read).
	var mounts []string
	for _, m := range get(c, "volumeMounts").([]any) {
		mounts = append(mounts, fmt.Sprint(get(m, "mountPath"))+"/")
	}
	tls := false
	for _, a := range get(c, "args").([]any) {
		flag, path, ok := strings.Cut(fmt.Sprint(a), "=")
		if !ok || !strings.HasPrefix(path, "/") || flag == "--listen" {
			continue
		}
		if !slices.ContainsFunc(mounts, func(m string) bool { return strings.HasPrefix(path+"/", m) }) {
			t.Errorf("%s names %s, which no volume mount holds (mounts %v)", flag, path, mounts)
		}
		tls = tls || flag == "--tls-cert-file"
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if scheme := get(c, probe, "httpGet", "scheme"); tls != (scheme == "HTTPS") {
			t.Errorf("%s scheme %v with TLS %v", probe, scheme, tls)
		}
	}
	replicas, _ := get(d, "spec", "replicas").(float64)
	if replicas > 1 && (!strings.Contains(args, "--leader-elect") || strings.Contains(args, "--history=/")) {
		t.Errorf("%v replicas need --leader-elect and a shared history: %s", replicas, args)
	}
}

func checkRules(t *testing.T, role map[string]any) {
	rules, _ := role["rules"].([]any)
	if len(rules) == 0 {
		t.Errorf("%s %v has no rules", kindOf(role), get(role, "metadata", "name"))
	}
	for _, r := range rules {
		for _, field := range []string{"apiGroups", "resources", "verbs"} {
			for _, v := range get(r, field).([]any) {
				if v == "*" {
					t.Errorf("%s %v: wildcard in %s: %v", kindOf(role), get(role, "metadata", "name"), field, r)
				}
				if field == "verbs" && slices.Contains([]any{"escalate", "bind", "impersonate"}, v) {
					t.Errorf("%s %v grants %v", kindOf(role), get(role, "metadata", "name"), v)
				}
				if field == "apiGroups" && v == "apiextensions.k8s.io" {
					t.Errorf("%s %v touches CRDs", kindOf(role), get(role, "metadata", "name"))
				}
			}
		}
		if slices.Contains(get(r, "apiGroups").([]any), any("rbac.authorization.k8s.io")) {
			for _, v := range get(r, "verbs").([]any) {
				if v != "get" && v != "list" {
					t.Errorf("%s %v writes RBAC objects: %v", kindOf(role), get(role, "metadata", "name"), r)
				}
			}
		}
	}
}

// TestHelmAndKustomizeRBACAgree: the chart's roles are the same rules as the kustomize base's.
func TestHelmAndKustomizeRBACAgree(t *testing.T) {
	t.Parallel()
	rulesOf := func(r render) map[string]any {
		out := map[string]any{}
		for _, o := range r.objs {
			if k := kindOf(o); k == "ClusterRole" || k == "Role" {
				ns, _ := get(o, "metadata", "namespace").(string)
				out[k+"/"+ns+"/"+get(o, "metadata", "name").(string)] = o["rules"]
			}
		}
		return out
	}
	k := rulesOf(kustomize(t, "kustomize/base"))
	h := rulesOf(helmTemplate(t, "helm/firedrill/ci/default-values.yaml"))
	if len(k) != 3 || !reflect.DeepEqual(k, h) {
		t.Fatalf("RBAC differs:\nkustomize %v\nhelm      %v", k, h)
	}
}

// TestHelmPrometheusRuleIsTheRuleFile: the chart's PrometheusRule embeds the plain rule file.
func TestHelmPrometheusRuleIsTheRuleFile(t *testing.T) {
	t.Parallel()
	r := helmTemplate(t, "helm/firedrill/ci/monitoring-values.yaml")
	for _, o := range r.objs {
		if kindOf(o) == "PrometheusRule" {
			if !reflect.DeepEqual(get(o, "spec", "groups"), groupsOf(t, readFile(t, ruleGroups))) {
				t.Fatalf("the chart's PrometheusRule differs from %s", ruleGroups)
			}
			return
		}
	}
	t.Fatal("no PrometheusRule rendered with prometheusRule.enabled")
}

// TestScenariosInManifestsValidate runs `firedrill scenario validate` on every scenario the
// renderings ship in their ConfigMaps.
func TestScenariosInManifestsValidate(t *testing.T) {
	t.Parallel()
	if firedrillBin == "" {
		t.Skip("-short: no firedrill binary")
	}
	n := 0
	for _, r := range allRenders(t) {
		// One directory per rendering: each is one serve's set, where names must be unique.
		dir := t.TempDir()
		files := 0
		for _, o := range r.objs {
			if kindOf(o) != "ConfigMap" || !strings.Contains(fmt.Sprint(get(o, "metadata", "name")), "scenarios") {
				continue
			}
			for file, content := range get(o, "data").(map[string]any) {
				files++
				if err := os.WriteFile(filepath.Join(dir, file), []byte(content.(string)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if files > 0 {
			n++
			run(t, nil, firedrillBin, "scenario", "validate", dir)
		}
	}
	if n < 6 {
		t.Fatalf("only %d renderings ship scenarios", n)
	}
}

// TestDryRunOnAPIServer applies every rendering with server-side dry-run to the sandbox's API
// server: schema, defaults and admission as a real cluster would. The Prometheus Operator's
// CRDs are installed first from a trimmed copy (testdata/monitoring-crds.yaml) so that its
// kinds are checked too; the Namespace is created for real (dry-run objects in a namespace that
// does not exist are refused).
func TestDryRunOnAPIServer(t *testing.T) {
	sb := deploySandbox(t)
	kubectl := kubectlFor(t, sb.Kubeconfig())
	kubectl(nil, "apply", "--server-side", "-f", "testdata/monitoring-crds.yaml")
	kubectl(nil, "wait", "--for=condition=Established", "--timeout=2m",
		"crd/prometheusrules.monitoring.coreos.com", "crd/servicemonitors.monitoring.coreos.com")
	kubectl(nil, "apply", "--server-side", "-f", "kustomize/base/namespace.yaml")
	waitDiscovery(t, kubectl)
	for _, r := range allRenders(t) {
		t.Run(r.name, func(t *testing.T) {
			out := kubectl(r.yaml, "apply", "--server-side", "--dry-run=server", "--field-manager=firedrill-test", "-f", "-")
			n := strings.Count(string(out), "(server dry run)")
			if n != len(r.objs) {
				t.Errorf("%d of %d objects applied:\n%s", n, len(r.objs), out)
			}
		})
	}
	// The dry-run has teeth: a misspelt field is refused (strict field validation), in a
	// built-in kind and in the Operator's.
	for _, bad := range []struct{ dir, from, to string }{
		{"kustomize/base", "readOnlyRootFilesystem:", "readOnlyRootFileSystem:"},
		{"prometheus", "expr:", "exprr:"},
	} {
		y := bytes.Replace(kustomize(t, bad.dir).yaml, []byte(bad.from), []byte(bad.to), 1)
		_, errOut, err := runErr(y, tool(t, "kubectl", "make sandbox-bin"), "--kubeconfig", sb.Kubeconfig(),
			"apply", "--server-side", "--dry-run=server", "--field-manager=firedrill-test", "-f", "-")
		if err == nil || !strings.Contains(string(errOut), strings.TrimSuffix(bad.to, ":")) {
			t.Errorf("%s with %s: dry-run accepted it (%v) %s", bad.dir, bad.to, err, errOut)
		}
	}
}

// waitDiscovery waits until the API server serves the freshly installed kinds.
func waitDiscovery(t *testing.T, kubectl func([]byte, ...string) []byte) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out := kubectl(nil, "api-resources", "--api-group=monitoring.coreos.com", "-o", "name")
		if strings.Contains(string(out), "prometheusrules") && strings.Contains(string(out), "servicemonitors") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("monitoring.coreos.com kinds not served after 2 minutes: %s", out)
		}
		time.Sleep(time.Second)
	}
}

// kubectlFor returns a kubectl runner for a kubeconfig that fails the test on error.
func kubectlFor(t testing.TB, kubeconfig string) func(stdin []byte, args ...string) []byte {
	bin := tool(t, "kubectl", "make sandbox-bin")
	return func(stdin []byte, args ...string) []byte {
		t.Helper()
		return run(t, stdin, bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	}
}

// TestHelmLint: the chart passes `helm lint --strict` with every ci values file.
func TestHelmLint(t *testing.T) {
	t.Parallel()
	helm := tool(t, "helm", "make sandbox-bin builds it from hack/tools/helm")
	for _, v := range helmValues(t) {
		run(t, nil, helm, "lint", "--strict", "helm/firedrill", "--values", v)
	}
	// A chart that cannot work is refused at render time, with the reason.
	_, errOut, err := runErr(nil, helm, "template", "x", "helm/firedrill", "--set", "leaderElection.enabled=true")
	if err == nil || !strings.Contains(string(errOut), "needs history.store=postgres") {
		t.Errorf("two replicas on SQLite rendered: %v %s", err, errOut)
	}
	_, errOut, err = runErr(nil, helm, "template", "x", "helm/firedrill", "--kube-version", "1.29.0")
	if err == nil || !strings.Contains(string(errOut), "admissionPolicy needs Kubernetes 1.30") {
		t.Errorf("the admission policy rendered for Kubernetes 1.29: %v %s", err, errOut)
	}
	run(t, nil, helm, "template", "x", "helm/firedrill", "--kube-version", "1.29.0", "--set", "admissionPolicy.enabled=false")
}
