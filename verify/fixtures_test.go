package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// widgets is the custom resource the fixtures create: custom resources are stored as JSON.
var widgetGVR = schema.GroupVersionResource{Group: "verify.firedrill.dev", Version: "v1", Resource: "widgets"}

// fixture is what makeObjects created in a namespace of its own, through the real API.
type fixture struct {
	Namespace   string
	ConfigMaps  []string
	Secret      string
	SecretValue string // random, so a test can search every output for it
	Deployment  string
	Widget      string
}

// makeObjects creates, through the API, a namespace with configmaps, a secret, a deployment
// (which the controllers turn into a replicaset and pods on kwok's nodes) and a custom resource.
func makeObjects(t testing.TB, cfg *rest.Config, ns string) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(cfg)
	f := &fixture{Namespace: ns, Secret: "db-password", Deployment: "web", Widget: "gizmo", SecretValue: "s3cr3t-" + randomHex(t)}
	must(t, create(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})))
	for _, name := range []string{"app-config", "feature-flags", "empty"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}}}
		if name != "empty" {
			cm.Data = map[string]string{"mode": "production", "replicas": "3"}
		}
		must(t, create(cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})))
		f.ConfigMaps = append(f.ConfigMaps, name)
	}
	must(t, create(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: f.Secret},
		Data:       map[string][]byte{"password": []byte(f.SecretValue)},
	}, metav1.CreateOptions{})))
	labels := map[string]string{"app": "web"}
	must(t, create(cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: f.Deployment},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}, metav1.CreateOptions{})))
	ensureWidgetCRD(t, ctx, cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "verify.firedrill.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": f.Widget},
		"spec":     map[string]any{"size": int64(3), "color": "blue"},
	}}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := dyn.Resource(widgetGVR).Namespace(ns).Create(ctx, w, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), nil // 404 until the CRD is served
	}); err != nil {
		t.Fatalf("create widget: %v", err)
	}
	// Wait for the controllers, so a snapshot taken now holds the pods too.
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, f.Deployment, metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 2, nil
	}); err != nil {
		t.Fatalf("deployment %s/%s not ready: %v", ns, f.Deployment, err)
	}
	return f
}

func ensureWidgetCRD(t testing.TB, ctx context.Context, cfg *rest.Config) {
	t.Helper()
	ac := apiextensionsclient.NewForConfigOrDie(cfg)
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.verify.firedrill.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "verify.firedrill.dev",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
	must(t, create(ac.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{})))
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := ac.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("CRD not established: %v", err)
	}
}

// create turns "already exists" into success, so fixtures can be made twice.
func create[T any](_ T, err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// assertNoSecret fails when the secret appears, plain or base64, in an outcome.
func assertNoSecret(t testing.TB, o Outcome, secret string) {
	t.Helper()
	b, err := json.Marshal(o.Evidence)
	if err != nil {
		t.Fatalf("evidence does not marshal to JSON: %v", err)
	}
	all := o.Message + "\n" + string(b)
	for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
		if strings.Contains(all, form) {
			t.Fatalf("the secret value appears in the outcome: %s", all)
		}
	}
}

// evidenceJSON round-trips evidence through JSON, as the run record stores it.
func evidenceJSON(t testing.TB, o Outcome) map[string]any {
	t.Helper()
	b, err := json.Marshal(o.Evidence)
	if err != nil {
		t.Fatalf("evidence does not marshal to JSON: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// encodeProtobuf encodes obj as kube-apiserver stores it (k8s\x00 + envelope); obj's TypeMeta
// must be set.
func encodeProtobuf(t testing.TB, cod *codec, obj runtime.Object) string {
	t.Helper()
	var b bytes.Buffer
	if err := cod.proto.Encode(obj, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func restConfigFor(host string) *rest.Config {
	return &rest.Config{Host: host, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}
