package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/deploy"
	"github.com/firedrill-dev/firedrill/sandbox"
)

// clusterScenarios are the Scenario resources of one namespace in a sandbox API server.
type clusterScenarios struct {
	dyn        dynamic.Interface
	kubeconfig string
	namespace  string
}

func (c *clusterScenarios) res() dynamic.ResourceInterface {
	return c.dyn.Resource(v1alpha1.ScenarioResource).Namespace(c.namespace)
}

// measureCluster starts a sandbox (API server and kwok, no real node), installs the CRDs as
// they ship and measures serve --scenarios-from cluster with sp.n Scenarios. The sandbox is stopped
// before it returns, whatever happened.
func measureCluster(ctx context.Context, sp spec, binDir string) (f figures, err error) {
	work, err := os.MkdirTemp("", "firedrill-bench-serve-cluster-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(work)
	fmt.Printf("\nstarting a sandbox API server in %s ...\n", work)
	sb, err := sandbox.Start(ctx, sandbox.Options{Dir: filepath.Join(work, "sandbox"), BinDir: binDir})
	if err != nil {
		return f, err
	}
	defer sb.Stop()
	dyn, err := dynamic.NewForConfig(sb.RESTConfig())
	if err != nil {
		return f, err
	}
	c := &clusterScenarios{dyn: dyn, kubeconfig: sb.Kubeconfig(), namespace: "firedrill-bench"}
	if err := c.install(ctx); err != nil {
		return f, err
	}
	sp.cluster = c
	return measure(ctx, sp)
}

var (
	namespaceResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// install applies the Scenario and DrillRun CRDs as they ship (waiting until they are served) and
// creates the namespace.
func (c *clusterScenarios) install(ctx context.Context) error {
	if err := deploy.ApplyCRDs(ctx, c.dyn, "firedrill-bench"); err != nil {
		return err
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": c.namespace}}}
	if _, err := c.dyn.Resource(namespaceResource).Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	return nil
}

// create makes the n generated scenarios Scenario resources, without status.
func (c *clusterScenarios) create(ctx context.Context, n, hour int) error {
	for i := range n {
		_, doc := scenario(i, hour)
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return err
		}
		u.SetNamespace(c.namespace)
		if _, err := c.res().Create(ctx, &u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Scenario %s: %w", u.GetName(), err)
		}
	}
	return nil
}

// waitStatuses polls until all n Scenarios have a status for their current generation with a
// Valid condition: what serve writes once it has loaded and scheduled them.
func (c *clusterScenarios) waitStatuses(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		list, err := c.res().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		done := 0
		for _, u := range list.Items {
			if statusWritten(u) {
				done++
			}
		}
		if done >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s, %d of %d Scenarios have a status for their generation", timeout, done, n)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func statusWritten(u unstructured.Unstructured) bool {
	gen, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	if gen != u.GetGeneration() {
		return false
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == v1alpha1.ConditionValid {
			return true
		}
	}
	return false
}

// countWrites watches the Scenarios from now on; the function it returns stops the watch and
// says how many times one was modified, and over how long. Nothing changes them but serve, so
// each is a status write.
func (c *clusterScenarios) countWrites(ctx context.Context) (func() (int, time.Duration, error), error) {
	list, err := c.res().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	w, err := c.res().Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var stopped atomic.Bool
	writes := make(chan int, 1)
	var watchErr error
	go func() {
		n := 0
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Modified, watch.Added, watch.Deleted:
				n++
			case watch.Error:
				if !stopped.Load() { // Stop itself ends the stream with an error event
					watchErr = fmt.Errorf("watching Scenarios: %v", ev.Object)
				}
			}
		}
		if !stopped.Load() && watchErr == nil {
			watchErr = errors.New("the watch of Scenarios ended before the idle measurement did: writes were not all counted; run again")
		}
		writes <- n
	}()
	return func() (int, time.Duration, error) {
		stopped.Store(true)
		w.Stop()
		n := <-writes
		return n, time.Since(start), watchErr
	}, nil
}

// printSideBySide prints serve with the same scenarios from files and from the cluster.
func printSideBySide(files, cl figures) {
	mib := func(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }
	cpu := func(f figures) string {
		return fmt.Sprintf("%.3f %%", 100*f.idleCPU.Seconds()/f.idleWall.Seconds())
	}
	ratio := func(a, b int64) string { return fmt.Sprintf("%.2f×", float64(b)/float64(a)) }
	perMin := float64(cl.idleWrites) / cl.writesWall.Minutes()
	fmt.Printf("firedrill serve with %d scenarios: files vs Scenario resources (--scenarios-from cluster, sandbox API server)\n", cl.n)
	fmt.Printf("  %-34s %12s %12s %8s\n", "", "files", "cluster", "ratio")
	fmt.Printf("  %-34s %10.2f s %10.2f s\n", "start-up to serving HTTP", files.startup.Seconds(), cl.startup.Seconds())
	fmt.Printf("  %-34s %12s %10.2f s %8s  (target < 30 s)\n", "start to every status written", "-", cl.allStatuses.Seconds(), "")
	fmt.Printf("  %-34s %12s %12s %8s  (target ≤ 1.5×)\n", "resident memory after start", mib(files.rssStart), mib(cl.rssStart), ratio(files.rssStart, cl.rssStart))
	fmt.Printf("  %-34s %12s %12s %8s\n", "resident memory after API", mib(files.rssAfter), mib(cl.rssAfter), ratio(files.rssAfter, cl.rssAfter))
	fmt.Printf("  %-34s %12s %12s\n", "idle CPU, share of one core", cpu(files), cpu(cl))
	fmt.Printf("  %-34s %12s %12.1f %8s  (%d over %s idle; target ~0)\n", "status writes per minute, idle", "-", perMin, "", cl.idleWrites, cl.writesWall.Round(time.Second))
	fmt.Printf("  %-34s %12s %12s\n", "GET /api/v1/scenarios p50", files.lat[len(files.lat)/2].Round(time.Microsecond), cl.lat[len(cl.lat)/2].Round(time.Microsecond))
}
