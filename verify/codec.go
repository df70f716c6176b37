package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	apiregistrationv1beta1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1beta1"
)

// Prefixes by which kube-apiserver's storage tells how a value is encoded.
var (
	protobufPrefix  = []byte("k8s\x00")
	encryptedPrefix = []byte("k8s:enc:")
	cborPrefix      = []byte{0xd9, 0xd9, 0xf7} // self-described CBOR (CBORServingAndStorage)
)

// valueClass is what a stored value turned out to be.
type valueClass int

const (
	classObject      valueClass = iota // decoded into a registered Go type or an unstructured object
	classUnknownKind                   // a well-formed envelope of a kind this build does not know
	classEncrypted                     // encrypted at rest and not decrypted
	classNotObject                     // a key Kubernetes or firedrill keeps that is not an object
	classUndecodable                   // none of the above: the data is damaged
)

// decodedValue is the result of decoding one stored value. Reason never holds value bytes.
type decodedValue struct {
	Class     valueClass
	GVK       schema.GroupVersionKind
	Namespace string
	Name      string
	Provider  string // encryption provider, for encrypted values (also once decrypted)
	Decrypted bool
	Reason    string // why it is undecodable, or could not be decrypted
}

// codec decodes the values kube-apiserver writes to etcd with Kubernetes' own serializers, and
// decrypts values encrypted at rest when an EncryptionConfiguration is given. It is safe for
// concurrent use; scratch objects for reuse live in a decodeBuffer per goroutine.
type codec struct {
	scheme     *runtime.Scheme
	proto      *protobuf.Serializer
	json       *kjson.Serializer
	cbor       cbor.Serializer
	decryption *decryption // nil: encrypted values are only counted
	groups     map[string]string
}

// newCodec builds the decoding scheme: client-go's built-in types, CustomResourceDefinitions and
// APIServices, which is everything a kube-apiserver stores besides custom resources.
func newCodec() (*codec, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		apiextensionsv1.AddToScheme, apiextensionsv1beta1.AddToScheme,
		apiregistrationv1.AddToScheme, apiregistrationv1beta1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("build decoding scheme: %w", err)
		}
	}
	return &codec{
		scheme: s,
		proto:  protobuf.NewSerializer(s, s),
		json:   kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{}),
		cbor:   cbor.NewSerializer(s, s),
		groups: resourceGroups(s),
	}, nil
}

// decodeBuffer keeps the last protobuf object decoded per storage directory for reuse, so decoding
// millions of values does not allocate a fresh top-level object each time (protobuf resets the
// object first; JSON would merge into it, so JSON objects are never reused). One per goroutine.
type decodeBuffer map[string]runtime.Object

// Decode classifies and decodes the value stored at key.
func (c *codec) Decode(ctx context.Context, key string, value []byte, buf decodeBuffer) decodedValue {
	if isNotObjectKey(key) {
		return decodedValue{Class: classNotObject}
	}
	var d decodedValue
	if bytes.HasPrefix(value, encryptedPrefix) {
		d.Provider = encryptionProvider(value)
		if c.decryption == nil {
			d.Class = classEncrypted
			return d
		}
		plain, err := c.decryption.Decrypt(ctx, key, value, storageResource(key, c.groups))
		if err != nil {
			d.Class, d.Reason = classEncrypted, err.Error()
			return d
		}
		value, d.Decrypted = plain, true
	}
	dir := storageDir(key)
	obj, gvk, err := c.decodeObject(value, buf[dir])
	if err == nil && buf != nil && bytes.HasPrefix(value, protobufPrefix) {
		buf[dir] = obj
	}
	switch {
	case err == nil:
		d.Class = classObject
	case errors.Is(err, errUnknownKind):
		d.Class = classUnknownKind
	default:
		d.Class, d.Reason = classUndecodable, err.Error()
		return d
	}
	d.GVK = gvk
	if obj != nil {
		if m, err := meta.Accessor(obj); err == nil {
			d.Namespace, d.Name = m.GetNamespace(), m.GetName()
		}
	}
	return d
}

// errUnknownKind: the envelope is well formed but names a kind this build has no Go type for
// (a newer Kubernetes, an aggregated API's own storage).
var errUnknownKind = errors.New("kind not known to this build of firedrill")

func (c *codec) decodeObject(value []byte, into runtime.Object) (runtime.Object, schema.GroupVersionKind, error) {
	switch {
	case len(value) == 0:
		return nil, schema.GroupVersionKind{}, errors.New("empty value")
	case bytes.HasPrefix(value, protobufPrefix):
		return c.decodeTyped(c.proto, value, into, "protobuf")
	case bytes.HasPrefix(value, cborPrefix):
		return c.decodeTyped(c.cbor, value, nil, "CBOR")
	case value[0] == '{':
		return c.decodeJSON(value)
	}
	return nil, schema.GroupVersionKind{}, errors.New("not a Kubernetes object: neither protobuf (k8s\\x00), JSON, CBOR nor encrypted (k8s:enc:)")
}

func (c *codec) decodeTyped(dec runtime.Decoder, value []byte, into runtime.Object, format string) (runtime.Object, schema.GroupVersionKind, error) {
	obj, got, err := dec.Decode(value, nil, into)
	var gvk schema.GroupVersionKind
	if got != nil {
		gvk = *got
	}
	switch {
	case runtime.IsNotRegisteredError(err):
		return nil, gvk, errUnknownKind
	case err != nil:
		return nil, gvk, fmt.Errorf("%s: %s", format, decodeReason(err))
	case gvk.Kind == "":
		return nil, gvk, fmt.Errorf("%s: object without kind", format)
	}
	return obj, gvk, nil
}

// decodeJSON decodes custom resources (always JSON) and built-in types some clusters store as
// JSON (APIServices, or everything under --storage-media-type=application/json).
func (c *codec) decodeJSON(value []byte) (runtime.Object, schema.GroupVersionKind, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(value, &tm); err != nil {
		return nil, schema.GroupVersionKind{}, fmt.Errorf("JSON: %s", decodeReason(err))
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, schema.GroupVersionKind{}, errors.New("JSON object without apiVersion or kind")
	}
	gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
	if c.scheme.Recognizes(gvk) {
		obj, _, err := c.json.Decode(value, nil, nil)
		if err != nil {
			return nil, gvk, fmt.Errorf("JSON: %s", decodeReason(err))
		}
		return obj, gvk, nil
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(value); err != nil {
		return nil, gvk, fmt.Errorf("JSON: %s", decodeReason(err))
	}
	if _, ok := u.Object["metadata"].(map[string]any); !ok {
		return nil, gvk, errors.New("JSON object without metadata")
	}
	return u, gvk, nil
}

// decodeReason describes a decoding error without quoting the data: encoding/json's syntax errors
// quote the offending character, which could be a byte of a Secret.
func decodeReason(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("JSON field %q has the wrong type (%s)", typ.Field, typ.Type)
	}
	msg := err.Error()
	if strings.Contains(msg, "invalid character") {
		return "invalid JSON"
	}
	const maxReason = 200
	if len(msg) > maxReason {
		msg = msg[:maxReason] + "…"
	}
	return msg
}

// encryptionProvider is the provider named by an encrypted value: "k8s:enc:aescbc:v1:key1:…"
// is "aescbc", "k8s:enc:kms:v2:plugin:…" is "kms".
func encryptionProvider(value []byte) string {
	rest := value[len(encryptedPrefix):]
	if i := bytes.IndexByte(rest, ':'); i > 0 && i <= 32 {
		return string(rest[:i])
	}
	return "unknown"
}
