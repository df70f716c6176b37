package crd

import (
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// lastApplied is kubectl's copy of the object in an annotation: not the scenario's, and big.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// document is the scenario file a Scenario resource stands for: its name, labels and
// annotations, and its spec. It is what the validator reads, and what decides whether the
// scenario changed (status and resourceVersion aside).
func document(u *unstructured.Unstructured) ([]byte, error) {
	spec, _, err := unstructured.NestedMap(u.Object, "spec")
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	md := map[string]any{"name": u.GetName()}
	if l := u.GetLabels(); len(l) > 0 {
		md["labels"] = l
	}
	ann := u.GetAnnotations()
	delete(ann, lastApplied)
	if len(ann) > 0 {
		md["annotations"] = ann
	}
	doc := map[string]any{"apiVersion": scenarios.APIVersion, "kind": scenarios.Kind, "metadata": md}
	if spec != nil {
		doc["spec"] = spec
	}
	return json.Marshal(doc)
}

// load validates a Scenario resource's document exactly as `firedrill scenario validate`
// validates a file (JSON is YAML). Relative paths in it are resolved against serve's working
// directory: files a cluster scenario names are the serve pod's (mounted Secrets).
func load(doc []byte) (*scenarios.Scenario, error) {
	return scenarios.LoadBytes(doc, "")
}

// problemText is the validator's verdict for a condition: every problem's message, which names
// its field path, without the line numbers that only mean something in a file.
func problemText(err error) string {
	var msgs []string
	for _, p := range scenarios.Problems(err) {
		msgs = append(msgs, p.Message)
	}
	return clip(strings.Join(msgs, "; "), maxMessage)
}

// maxMessage keeps a condition's message readable (the API server allows 32 KiB).
const maxMessage = 4096

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
