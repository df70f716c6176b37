package verify

import (
	"bytes"
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Every way kube-apiserver stores a value is told apart and decoded with Kubernetes' own codecs.
func TestCodecClasses(t *testing.T) {
	t.Parallel()
	cod, err := newCodec()
	must(t, err)
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app"}, Data: map[string]string{"a": "b"}}
	var cborValue bytes.Buffer
	must(t, cod.cbor.Encode(cm, &cborValue))
	unknown := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "gadgets.example.com/v1", Kind: "Gadget"}, Raw: []byte{0x0a, 0x00}}
	unknownValue, err := unknown.Marshal()
	must(t, err)

	for _, tc := range []struct {
		name, key, value string
		class            valueClass
		kind, ns, obj    string
		provider         string
	}{
		{"protobuf", "/registry/configmaps/shop/app", encodeProtobuf(t, cod, cm), classObject, "ConfigMap", "shop", "app", ""},
		{"CBOR", "/registry/configmaps/shop/app", cborValue.String(), classObject, "ConfigMap", "shop", "app", ""},
		{"JSON built-in", "/registry/apiregistration.k8s.io/apiservices/v1.apps", `{"kind":"APIService","apiVersion":"apiregistration.k8s.io/v1","metadata":{"name":"v1.apps"},"spec":{"group":"apps","version":"v1","groupPriorityMinimum":17800,"versionPriority":15}}`, classObject, "APIService", "", "v1.apps", ""},
		{"JSON custom resource", "/registry/example.com/widgets/shop/w", `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"spec":{"size":3}}`, classObject, "Widget", "shop", "w", ""},
		{"protobuf of an unknown kind", "/registry/gadgets.example.com/gadgets/g", "k8s\x00" + string(unknownValue), classUnknownKind, "Gadget", "", "", ""},
		{"encrypted", "/registry/secrets/shop/db", "k8s:enc:aescbc:v1:key1:\x01\x02\x03", classEncrypted, "", "", "", "aescbc"},
		{"compaction bookkeeping", "compact_rev_key", "123", classNotObject, "", "", "", ""},
		{"garbage", "/registry/configmaps/shop/x", "\x00\x01garbage", classUndecodable, "", "", "", ""},
		{"JSON without kind", "/registry/configmaps/shop/x", `{"metadata":{"name":"x"}}`, classUndecodable, "", "", "", ""},
		{"JSON custom resource without metadata", "/registry/example.com/widgets/shop/w", `{"apiVersion":"example.com/v1","kind":"Widget"}`, classUndecodable, "", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := cod.Decode(context.Background(), tc.key, []byte(tc.value), decodeBuffer{})
			if d.Class != tc.class || d.GVK.Kind != tc.kind || d.Namespace != tc.ns || d.Name != tc.obj || d.Provider != tc.provider {
				t.Fatalf("got %+v", d)
			}
		})
	}

	// A reused object carries nothing over from the one decoded before it.
	buf := decodeBuffer{}
	full := cm.DeepCopy()
	full.Labels = map[string]string{"tier": "db"}
	cod.Decode(context.Background(), "/registry/configmaps/shop/app", []byte(encodeProtobuf(t, cod, full)), buf)
	bare := &corev1.ConfigMap{TypeMeta: cm.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: "other"}}
	d := cod.Decode(context.Background(), "/registry/configmaps/shop/other", []byte(encodeProtobuf(t, cod, bare)), buf)
	if got := buf["configmaps"].(*corev1.ConfigMap); d.Namespace != "" || got.Labels != nil || got.Data != nil {
		t.Fatalf("reused object kept old fields: %+v", got)
	}
}
