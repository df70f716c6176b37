package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/firedrill-dev/firedrill/drill/velerodrill"
	"github.com/firedrill-dev/firedrill/internal/probepod"
	"github.com/firedrill-dev/firedrill/sandbox"
)

// The admission policy (kustomize/base/admission.yaml, the chart's templates/admission.yaml)
// refuses the ServiceAccount what RBAC grants but firedrill never does. These run inside
// TestRBACForReal, on the sandbox, with the ServiceAccount's token and the policy as deployed.

// policyDenied is how the API server words a refusal by the policy.
const policyDenied = "ValidatingAdmissionPolicy 'firedrill' with binding 'firedrill' denied request: rule "

// probeImage is the only image of a pod outside a scratch namespace in TestRBACForReal: the
// sandbox node's probe image, which the test writes into the deployed settings (in a real
// deployment they hold velerodrill.DefaultProbeImage: TestHelmAndKustomizeAdmissionAgree).
const probeImage = sandbox.ProbeImage

// waitForPolicy waits until the API server enforces the policy for the ServiceAccount: a
// policy, its binding and its parameters take effect a moment after they are created.
func waitForPolicy(t *testing.T, kubeconfig string) {
	kubectl := tool(t, "kubectl", "make sandbox-bin")
	poll(t, 2*time.Minute, "the admission policy to be enforced", func() (bool, string) {
		_, errOut, err := runErr(nil, kubectl, "--kubeconfig", kubeconfig, "-n", "kube-system", "create", "job",
			"firedrill-policy-wait", "--image=busybox", "--dry-run=server", "--", "true")
		return err != nil && strings.Contains(string(errOut), policyDenied+"jobs-in-scratch-only:"), fmt.Sprint(err, " ", string(errOut))
	})
}

// probePod is a pod of the shape internal/probepod gives volumeData's manifest probe: the shape
// the policy lets firedrill create outside its scratch namespaces. Each refusal below changes
// one thing of it.
const probePod = `apiVersion: v1
kind: Pod
metadata:
  generateName: firedrill-probe-manifest-
  namespace: shop
  labels: {app.kubernetes.io/managed-by: firedrill, firedrill.dev/run: admission-test, firedrill.dev/probe: manifest}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
    - name: probe
      image: ` + probeImage + `
      command: [/firedrill-probe]
      args: [manifest, /volume]
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsUser: 0
        capabilities: {drop: [ALL], add: [DAC_READ_SEARCH]}
      volumeMounts: [{name: data, mountPath: /volume, readOnly: true}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: data-orders-0, readOnly: true}
`

// variant is probePod with old replaced by new; old must be there, or the variant would test
// nothing.
func variant(t *testing.T, old, new string) []byte {
	t.Helper()
	if !strings.Contains(probePod, old) {
		t.Fatalf("probePod has no %q", old)
	}
	return []byte(strings.Replace(probePod, old, new, 1))
}

// refusal is one request the ServiceAccount makes that the policy must refuse, with the rule
// whose message must come back.
type refusal struct {
	what, rule string
	stdin      []byte
	args       []string
}

func admissionRefusals(t *testing.T, kubeconfig, adminKubeconfig string) {
	kubectl := tool(t, "kubectl", "make sandbox-bin")
	admin := kubectlFor(t, adminKubeconfig)
	suffix := fmt.Sprint(time.Now().UnixNano())
	// Objects that are not firedrill's, made by an admin: kube-system/aws-auth (EKS's map of
	// IAM roles to cluster users), a ConfigMap of the shop, a namespace with one of firedrill's
	// two labels and a ConfigMap there named as the canary but without firedrill's labels, and
	// a scratch namespace of firedrill's for the host-access refusals.
	decoy, scratchNS := "decoy-admission-"+suffix, "drill-admission-"+suffix
	admin([]byte(fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: aws-auth, namespace: kube-system}
data: {mapRoles: "- rolearn: arn:aws:iam::111122223333:role/nodes\n  groups: [system:nodes]\n"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-owned-%[1]s, namespace: shop}
data: {owner: shop}
---
apiVersion: v1
kind: Namespace
metadata:
  name: %[2]s
  labels: {firedrill.dev/run: "x"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: firedrill-canary, namespace: %[2]s}
data: {owner: someone else}
---
apiVersion: v1
kind: Namespace
metadata:
  name: %[3]s
  labels: {firedrill.dev/run: admission, app.kubernetes.io/managed-by: firedrill}
`, suffix, decoy, scratchNS)), "apply", "-f", "-")
	t.Cleanup(func() {
		admin(nil, "delete", "namespace", decoy, scratchNS, "--wait=false", "--ignore-not-found")
		admin(nil, "-n", "shop", "delete", "configmap", "shop-owned-"+suffix, "--ignore-not-found")
		admin(nil, "-n", "kube-system", "delete", "configmap", "aws-auth", "--ignore-not-found")
	})
	shopPod := strings.Fields(string(admin(nil, "-n", "shop", "get", "pods", "-o", "jsonpath={.items[*].metadata.name}")))
	if len(shopPod) == 0 {
		t.Fatal("no pod in shop to try deleting")
	}
	awsAuth := edited(t, admin(nil, "-n", "kube-system", "get", "configmap", "aws-auth", "-o", "json"), func(o map[string]any) {
		o["data"].(map[string]any)["mapRoles"] = "- rolearn: arn:aws:iam::111122223333:role/attacker\n  groups: [system:masters]\n"
	})
	shopAsScratch := edited(t, admin(nil, "get", "namespace", "shop", "-o", "json"), func(o map[string]any) {
		l := o["metadata"].(map[string]any)["labels"].(map[string]any)
		l["app.kubernetes.io/managed-by"], l["firedrill.dev/run"] = "firedrill", "x"
	})
	ownSettings := edited(t, admin(nil, "-n", "firedrill-system", "get", "configmap", "firedrill-admission", "-o", "json"), func(o map[string]any) {
		o["data"].(map[string]any)["probeImage"] = "busybox"
	})

	job := func(ns string) []string {
		return []string{"-n", ns, "create", "job", "firedrill-check-" + suffix, "--image=busybox", "--", "true"}
	}
	hostJob := fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: host-%s, namespace: %s}
spec:
  template:
    spec:
      restartPolicy: Never
      hostNetwork: true
      containers: [{name: c, image: busybox, securityContext: {privileged: true}}]
`, suffix, scratchNS)
	for _, r := range []refusal{
		{what: "create a Job in kube-system", rule: "jobs-in-scratch-only", args: job("kube-system")},
		{what: "a drill Job in serve's namespace of another image", rule: "jobs-in-scratch-only",
			stdin: runnerJob(suffix, "busybox", true), args: []string{"create", "--dry-run=server", "-f", "-"}},
		{what: "a Job of firedrill's image in serve's namespace without a drill Job's labels", rule: "jobs-in-scratch-only",
			stdin: runnerJob(suffix, runnerImage, false), args: []string{"create", "--dry-run=server", "-f", "-"}},
		{what: "create a Job in a namespace without firedrill's labels", rule: "jobs-in-scratch-only", args: job("shop")},
		{what: "create a Job in a namespace with one of firedrill's labels", rule: "jobs-in-scratch-only", args: job(decoy)},
		{what: "create a Pod in kube-system", rule: "pods-in-scratch-only", args: []string{"-n", "kube-system", "run", "x-" + suffix, "--image=busybox"}},
		{what: "create a Pod in a namespace without firedrill's labels", rule: "pods-in-scratch-only", args: []string{"-n", "shop", "run", "x-" + suffix, "--image=busybox"}},
		{what: "delete a Pod that is not firedrill's (dry run)", rule: "pods-in-scratch-only", args: []string{"-n", "shop", "delete", "pod", shopPod[0], "--dry-run=server"}},
		{what: "a probe pod that mounts its volume writable", rule: "probe-read-only",
			stdin: variant(t, "mountPath: /volume, readOnly: true", "mountPath: /volume, readOnly: false"), args: []string{"create", "-f", "-"}},
		{what: "a probe pod whose claim is not readOnly", rule: "probe-read-only",
			stdin: variant(t, "claimName: data-orders-0, readOnly: true", "claimName: data-orders-0"), args: []string{"create", "-f", "-"}},
		{what: "a probe pod with a hostPath volume", rule: "probe-read-only",
			stdin: variant(t, "persistentVolumeClaim: {claimName: data-orders-0, readOnly: true}", "hostPath: {path: /}"), args: []string{"create", "-f", "-"}},
		{what: "a probe pod of another image", rule: "probe-image",
			stdin: variant(t, "image: "+probeImage, "image: busybox"), args: []string{"create", "-f", "-"}},
		{what: "a probe pod with a service account token", rule: "probe-no-credentials",
			stdin: variant(t, "automountServiceAccountToken: false", "automountServiceAccountToken: true"), args: []string{"create", "-f", "-"}},
		{what: "a probe pod with a Secret in its environment", rule: "probe-no-credentials",
			stdin: variant(t, "      args: [manifest, /volume]\n", "      args: [manifest, /volume]\n      envFrom: [{secretRef: {name: db-credentials}}]\n"), args: []string{"create", "-f", "-"}},
		{what: "a hostPath pod in a scratch namespace", rule: "no-host-access",
			stdin: []byte(strings.Replace(strings.Replace(probePod, "namespace: shop", "namespace: "+scratchNS, 1),
				"persistentVolumeClaim: {claimName: data-orders-0, readOnly: true}", "hostPath: {path: /}", 1)), args: []string{"create", "-f", "-"}},
		{what: "a privileged Job on the host network in a scratch namespace", rule: "no-host-access", stdin: []byte(hostJob), args: []string{"create", "-f", "-"}},
		{what: "update kube-system/aws-auth", rule: "configmaps-canary-and-modifier-only", stdin: awsAuth, args: []string{"replace", "-f", "-"}},
		{what: "delete kube-system/aws-auth", rule: "configmaps-canary-and-modifier-only", args: []string{"-n", "kube-system", "delete", "configmap", "aws-auth"}},
		{what: "delete a ConfigMap that is not firedrill's", rule: "configmaps-canary-and-modifier-only", args: []string{"-n", "shop", "delete", "configmap", "shop-owned-" + suffix}},
		{what: "delete a ConfigMap named firedrill-canary without firedrill's labels", rule: "configmaps-canary-and-modifier-only", args: []string{"-n", decoy, "delete", "configmap", "firedrill-canary"}},
		{what: "create a ConfigMap in Velero's namespace that is not a restore's modifier", rule: "configmaps-canary-and-modifier-only",
			args: []string{"-n", "velero", "create", "configmap", "firedrill-x-isolation", "--from-literal=a=b"}},
		{what: "change the policy's own settings (firedrill-system/firedrill-admission)", rule: "configmaps-canary-and-modifier-only", stdin: ownSettings, args: []string{"replace", "-f", "-"}},
		{what: "delete Velero's namespace (dry run)", rule: "scratch-namespaces-only", args: []string{"delete", "namespace", "velero", "--dry-run=server"}},
		{what: "delete a namespace with one of firedrill's labels", rule: "scratch-namespaces-only", args: []string{"delete", "namespace", decoy, "--wait=false"}},
		{what: "label a user's namespace as scratch", rule: "scratch-namespaces-only", stdin: shopAsScratch, args: []string{"replace", "-f", "-"}},
	} {
		_, errOut, err := runErr(r.stdin, kubectl, append([]string{"--kubeconfig", kubeconfig}, r.args...)...)
		if want := policyDenied + r.rule + ":"; err == nil || !strings.Contains(string(errOut), want) {
			t.Errorf("%s (kubectl %s) as the ServiceAccount: %v %s; want refused with %q", r.what, strings.Join(r.args, " "), err, errOut, want)
		}
	}
	// exec, which RBAC grants everywhere, only into pods of a scratch namespace.
	_, errOut, err := runErr(nil, kubectl, "--kubeconfig", kubeconfig, "-n", "shop", "exec", shopPod[0], "--", "true")
	if want := "ValidatingAdmissionPolicy 'firedrill-exec' with binding 'firedrill-exec' denied request: rule exec-scratch-only:"; err == nil || !strings.Contains(string(errOut), want) {
		t.Errorf("exec into shop/%s as the ServiceAccount: %v %s; want refused with %q", shopPod[0], err, errOut, want)
	}
	// Nothing was changed on the way.
	if got := string(admin(nil, "-n", "kube-system", "get", "configmap", "aws-auth", "-o", "jsonpath={.data.mapRoles}")); strings.Contains(got, "attacker") {
		t.Errorf("aws-auth was changed: %s", got)
	}
	admin(nil, "-n", "shop", "get", "configmap", "shop-owned-"+suffix)
	admin(nil, "-n", decoy, "get", "configmap", "firedrill-canary")
}

// runnerImage is firedrill's image as the policy's settings name it (jobImage), with a tag.
const runnerImage = "ghcr.io/firedrill-dev/firedrill:dev"

// runnerJob is a drill Job of serve --executor job (drill/jobexec) in serve's namespace, with
// image, and with or without the labels that make it one.
func runnerJob(suffix, image string, labelled bool) []byte {
	labels := "{app.kubernetes.io/managed-by: firedrill, firedrill.dev/component: drill-runner, firedrill.dev/run-id: r" + suffix + "}"
	if !labelled {
		labels = "{app: drill}"
	}
	return []byte(fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: firedrill-r%s, namespace: firedrill-system, labels: %s}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: drill, image: %s, args: [run-job]}]
`, suffix, labels, image))
}

// edited is a kubectl -o json object after f, for kubectl replace.
func edited(t *testing.T, b []byte, f func(map[string]any)) []byte {
	t.Helper()
	var o map[string]any
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	f(o)
	out, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// admitted: what firedrill does, the policy lets through with the same identity: the pod
// internal/probepod makes for volumeData in a source namespace (created and deleted), the shape
// the refusals start from, and Jobs, Pods and ConfigMaps of any kind in a scratch namespace
// the ServiceAccount creates and deletes.
func admitted(t *testing.T, kubeconfig, adminKubeconfig string) {
	as, admin := kubectlFor(t, kubeconfig), kubectlFor(t, adminKubeconfig)
	as([]byte(probePod), "create", "--dry-run=server", "-f", "-")
	// serve --executor job's drill Job in serve's namespace.
	as(runnerJob(fmt.Sprint(time.Now().UnixNano()), runnerImage, true), "create", "--dry-run=server", "-f", "-")

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("admission-%d", time.Now().UnixNano())
	// What counts is that the pod was created and then deleted.
	_, err = probepod.Run(context.Background(), kube, probepod.Pod{Namespace: "shop", Probe: "manifest", RunID: run, Image: probeImage,
		Args: []string{"manifest", "/volume"}, Claim: "data-orders-0", MountPath: "/volume", Timeout: 20 * time.Second})
	if err != nil && strings.Contains(err.Error(), "create manifest probe pod") {
		t.Fatalf("the volume manifest probe pod was refused: %v", err)
	}
	poll(t, time.Minute, "the probe pod to be deleted", func() (bool, string) {
		out := admin(nil, "-n", "shop", "get", "pods", "-l", probepod.LabelRun+"="+run, "-o", "name")
		return len(strings.TrimSpace(string(out))) == 0, string(out)
	})

	ns := "drill-admitted-" + fmt.Sprint(time.Now().UnixNano())
	as([]byte(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels: {firedrill.dev/run: admitted, app.kubernetes.io/managed-by: firedrill}
`, ns)), "create", "-f", "-")
	as(nil, "-n", ns, "create", "job", "firedrill-check", "--image=busybox", "--", "true")
	as(nil, "-n", ns, "delete", "job", "firedrill-check")
	as([]byte(strings.Replace(strings.Replace(probePod, "namespace: shop", "namespace: "+ns, 1), "image: "+probeImage, "image: busybox", 1)),
		"create", "--dry-run=server", "-f", "-")
	as(nil, "-n", ns, "create", "configmap", "restored-looking", "--from-literal=a=b")
	// The resource modifiers of an ordered drill's groups, in Velero's namespace.
	for _, name := range []string{"firedrill-" + run + "-isolation", "firedrill-" + run + "-database-isolation"} {
		as([]byte(fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: %s
  namespace: velero
  labels: {firedrill.dev/run: %q, app.kubernetes.io/managed-by: firedrill}
data: {a: b}
`, name, run)), "create", "-f", "-")
		as(nil, "-n", "velero", "delete", "configmap", name)
	}
	as(nil, "delete", "namespace", ns, "--wait=false")
}

// TestHelmAndKustomizeAdmissionAgree: the chart's policy, binding and settings are the
// kustomize base's, whose probe image is the one firedrill runs by default, and
// admissionPolicy.enabled=false leaves the policy out (and only it).
func TestHelmAndKustomizeAdmissionAgree(t *testing.T) {
	t.Parallel()
	admissionOf := func(r render) map[string]any {
		out := map[string]any{}
		for _, o := range r.objs {
			switch k := kindOf(o); {
			case k == "ValidatingAdmissionPolicy" || k == "ValidatingAdmissionPolicyBinding":
				// firedrill and firedrill-exec, in the chart as in the base.
				name := strings.TrimPrefix(fmt.Sprint(get(o, "metadata", "name")), "firedrill")
				out[k+name] = o["spec"]
			case k == "ConfigMap" && strings.HasSuffix(fmt.Sprint(get(o, "metadata", "name")), "-admission"):
				out[k] = o["data"]
			}
		}
		return out
	}
	k := admissionOf(kustomize(t, "kustomize/base"))
	h := admissionOf(helmTemplate(t, "helm/firedrill/ci/default-values.yaml"))
	if len(k) != 5 || !reflect.DeepEqual(k, h) {
		a, _ := json.MarshalIndent(k, "", " ")
		b, _ := json.MarshalIndent(h, "", " ")
		t.Fatalf("the admission policy differs: edit kustomize/base/admission.yaml and the chart's templates/admission.yaml the same way\nkustomize %s\nhelm      %s", a, b)
	}
	if img := get(k["ConfigMap"], "probeImage"); img != velerodrill.DefaultProbeImage {
		t.Errorf("the deployed probe image is %v, firedrill's default %s", img, velerodrill.DefaultProbeImage)
	}
	off := admissionOf(helmTemplate(t, "helm/firedrill/ci/no-admission-values.yaml"))
	if len(off) != 1 || off["ConfigMap"] == nil {
		t.Errorf("admissionPolicy.enabled=false: %v", off)
	}
}

// checkAdmission: a rendering with the policy binds it to the rendered ServiceAccount (the
// username its matchCondition names) with the rendered settings, and denies; serve's probe
// image comes from those settings, with or without the policy.
func checkAdmission(t *testing.T, r render, enabled bool) {
	byKind := map[string][]map[string]any{}
	for _, o := range r.objs {
		byKind[kindOf(o)] = append(byKind[kindOf(o)], o)
	}
	var settings map[string]any
	for _, o := range byKind["ConfigMap"] {
		if strings.HasSuffix(fmt.Sprint(get(o, "metadata", "name")), "-admission") {
			settings = o
		}
	}
	if settings == nil || get(settings, "data", "probeImage") == nil || get(settings, "data", "veleroNamespace") == nil {
		t.Fatalf("no ConfigMap *-admission with probeImage and veleroNamespace: %v", settings)
	}
	var probeEnv any
	for _, e := range get(byKind["Deployment"][0], "spec", "template", "spec", "containers", 0, "env").([]any) {
		if get(e, "name") == "FIREDRILL_PROBE_IMAGE" {
			probeEnv = get(e, "valueFrom", "configMapKeyRef")
		}
	}
	if want := map[string]any{"name": get(settings, "metadata", "name"), "key": "probeImage"}; !reflect.DeepEqual(probeEnv, want) {
		t.Errorf("serve's FIREDRILL_PROBE_IMAGE comes from %v, want %v", probeEnv, want)
	}
	if veleroNS := get(settings, "data", "veleroNamespace"); !slices.ContainsFunc(byKind["Role"], func(o map[string]any) bool { return get(o, "metadata", "namespace") == veleroNS }) {
		t.Errorf("veleroNamespace %v is not where the Velero Role is", veleroNS)
	}
	vaps, bindings := byKind["ValidatingAdmissionPolicy"], byKind["ValidatingAdmissionPolicyBinding"]
	if !enabled {
		if len(vaps)+len(bindings) != 0 {
			t.Errorf("admission policy rendered although disabled")
		}
		return
	}
	if len(vaps) != 2 || len(bindings) != 2 {
		t.Fatalf("%d ValidatingAdmissionPolicies, %d bindings; want two of each (the policy and firedrill-exec)", len(vaps), len(bindings))
	}
	sa := byKind["ServiceAccount"][0]
	user := fmt.Sprintf("system:serviceaccount:%v:%v", get(sa, "metadata", "namespace"), get(sa, "metadata", "name"))
	var vap, b map[string]any
	for _, v := range vaps {
		if cond := fmt.Sprint(get(v, "spec", "matchConditions", 0, "expression")); cond != `request.userInfo.username == "`+user+`"` {
			t.Errorf("the policy %v applies to %s, not to the ServiceAccount %s", get(v, "metadata", "name"), cond, user)
		}
		if get(v, "spec", "failurePolicy") != "Fail" {
			t.Errorf("the policy %v does not fail closed", get(v, "metadata", "name"))
		}
		if get(v, "spec", "paramKind") != nil {
			vap = v
		}
	}
	for _, x := range bindings {
		if !reflect.DeepEqual(get(x, "spec", "validationActions"), []any{"Deny"}) {
			t.Errorf("the binding %v does not deny", get(x, "metadata", "name"))
		}
		if vap != nil && get(x, "spec", "policyName") == get(vap, "metadata", "name") {
			b = x
		}
	}
	if vap == nil || b == nil {
		t.Fatalf("no policy with parameters, or no binding of it")
	}
	if get(b, "spec", "paramRef", "name") != get(settings, "metadata", "name") || get(b, "spec", "paramRef", "namespace") != get(settings, "metadata", "namespace") ||
		get(b, "spec", "paramRef", "parameterNotFoundAction") != "Deny" {
		t.Errorf("the binding does not deny with the policy and its settings:\n%v\n%v", get(b, "spec"), get(vap, "metadata"))
	}
}
