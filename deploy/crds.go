// Package deploy holds firedrill's manifests (kustomize, Helm, Prometheus rules, Grafana, krew).
// Its Go side hands programs the CRDs as they ship, so that tests and benchmarks install exactly
// what an operator applies.
package deploy

import (
	"context"
	"embed"
	"fmt"
	"path"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
)

//go:embed kustomize/base/crds/*.yaml
var crds embed.FS

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ApplyCRDs server-side applies the Scenario and DrillRun CRDs of deploy/kustomize/base/crds
// as fieldManager, and waits until the API server serves both resources.
func ApplyCRDs(ctx context.Context, dyn dynamic.Interface, fieldManager string) error {
	const dir = "kustomize/base/crds"
	files, err := crds.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := crds.ReadFile(path.Join(dir, f.Name()))
		if err != nil {
			return err
		}
		var crd unstructured.Unstructured
		if err := yaml.Unmarshal(b, &crd.Object); err != nil {
			return fmt.Errorf("%s: %w", f.Name(), err)
		}
		if _, err := dyn.Resource(crdResource).Apply(ctx, crd.GetName(), &crd, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			return fmt.Errorf("installing CRD %s: %w", crd.GetName(), err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := dyn.Resource(v1alpha1.ScenarioResource).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			_, err = dyn.Resource(v1alpha1.DrillRunResource).List(ctx, metav1.ListOptions{Limit: 1})
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Scenario and DrillRun CRDs are applied but not served after a minute: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
