package crd

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// benchScenarios is how many Scenarios BenchmarkStatusOfManyScenarios keeps in the cluster.
const benchScenarios = 500

// BenchmarkStatusOfManyScenarios: with 500 Scenarios in the sandbox's API server (every tenth
// invalid), how long serve takes from listing them to every status written, and what a pass over
// an unchanged cluster writes afterwards (writes/idle-pass: it must be 0, or status writes
// would loop). Each iteration starts from Scenarios without status.
func BenchmarkStatusOfManyScenarios(b *testing.B) {
	sb := sandboxtest.Shared(b, sandbox.Options{})
	dyn, err := dynamic.NewForConfig(sb.RESTConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	ns := installCRD(b, dyn)
	res := dyn.Resource(v1alpha1.ScenarioResource).Namespace(ns)
	for i := range benchScenarios {
		sched := "@daily"
		if i%10 == 9 {
			sched = "every tuesday"
		}
		u := resource(b, ns, fmt.Sprintf("bench-%03d", i), sched, time.Now())
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "resourceVersion")
		if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	store, err := history.Open(ctx, filepath.Join(b.TempDir(), "history.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()

	var total time.Duration
	var idleWrites int
	for b.Loop() {
		b.StopTimer()
		clearStatuses(b, res)
		b.StartTimer()
		start := time.Now()
		src := NewSource(dyn, ns, nil)
		if err := src.Load(ctx); err != nil {
			b.Fatal(err)
		}
		entries := src.Merge(nil)
		next := time.Now().Add(time.Hour)
		w := NewStatusWriter(src, StatusOptions{Runs: store, Scheduled: func() []schedule.Status {
			out := make([]schedule.Status, 0, len(entries))
			for _, e := range entries {
				out = append(out, schedule.Status{File: e.File, NextRun: next})
			}
			return out
		}})
		w.Pass(ctx)
		total += time.Since(start)
		b.StopTimer()
		before := versions(b, res)
		for _, u := range before.items {
			if _, ok := u.Object["status"]; !ok {
				b.Fatalf("%s has no status after a pass", u.GetName())
			}
		}
		// A second pass, on the informer's view as Run would see it: the newest objects.
		if err := src.Load(ctx); err != nil {
			b.Fatal(err)
		}
		w.Pass(ctx)
		after := versions(b, res)
		for name, rv := range before.rv {
			if after.rv[name] != rv {
				idleWrites++
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/all-statuses")
	b.ReportMetric(float64(idleWrites)/float64(b.N), "writes/idle-pass")
}

var namespaces = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// clearStatuses removes every Scenario's status, as before serve first saw them.
func clearStatuses(b *testing.B, res dynamic.ResourceInterface) {
	list, err := res.List(b.Context(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range list.Items {
		u := &list.Items[i]
		if _, ok := u.Object["status"]; !ok {
			continue
		}
		delete(u.Object, "status")
		if _, err := res.UpdateStatus(b.Context(), u, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

type listed struct {
	items []unstructured.Unstructured
	rv    map[string]string
}

func versions(b *testing.B, res dynamic.ResourceInterface) listed {
	list, err := res.List(b.Context(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if len(list.Items) != benchScenarios {
		b.Fatalf("%d Scenarios listed, want %d", len(list.Items), benchScenarios)
	}
	l := listed{items: list.Items, rv: map[string]string{}}
	for _, u := range list.Items {
		l.rv[u.GetName()] = u.GetResourceVersion()
	}
	return l
}
