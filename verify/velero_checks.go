package verify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/scenarios"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// NewVeleroChecks builds the checks of a scenario whose backup is a Velero backup, in order.
// Every problem of every check is reported, not only the first.
func NewVeleroChecks(scenarioName string, checks []scenarios.Check) ([]VeleroCheck, error) {
	out := make([]VeleroCheck, 0, len(checks))
	var errs []error
	for i, c := range checks {
		ck, err := newVeleroCheck(c)
		if err != nil {
			label := fmt.Sprintf("check %d", i+1)
			if c.Name != "" {
				label += fmt.Sprintf(" (%s)", c.Name)
			}
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		out = append(out, ck)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", scenarioName, err)
	}
	return out, nil
}

func newVeleroCheck(c scenarios.Check) (VeleroCheck, error) {
	var set, etcdOnly []string
	var ck VeleroCheck
	var err error
	if c.ObjectsRestored != nil {
		set = append(set, scenarios.CheckObjectsRestored)
		ck = NewObjectsRestoredCheck(c.Name, *c.ObjectsRestored)
	}
	if c.ObjectsMatch != nil {
		set = append(set, scenarios.CheckObjectsMatch)
		ck, err = NewObjectsMatchCheck(c.Name, *c.ObjectsMatch)
	}
	if c.WorkloadsReady != nil {
		set = append(set, scenarios.CheckWorkloadsReady)
		ck = NewWorkloadsReadyCheck(c.Name, *c.WorkloadsReady)
	}
	if c.Job != nil {
		set = append(set, scenarios.CheckJob)
		ck, err = NewJobCheck(c.Name, *c.Job)
	}
	if c.Canary != nil {
		set = append(set, scenarios.CheckCanary)
		ck, err = NewVeleroCanaryCheck(c.Name, *c.Canary)
	}
	for _, e := range []struct {
		typ string
		on  bool
	}{
		{scenarios.CheckEtcdIntegrity, c.EtcdIntegrity != nil},
		{scenarios.CheckEtcdObjectsDecode, c.EtcdObjectsDecode != nil},
		{scenarios.CheckEtcdKeys, c.EtcdKeys != nil},
		{scenarios.CheckEtcdMatchesLive, c.EtcdMatchesLive != nil},
		{scenarios.CheckObjectsServed, c.ObjectsServed != nil},
	} {
		if e.on {
			set, etcdOnly = append(set, e.typ), append(etcdOnly, e.typ)
		}
	}
	switch {
	case len(set) == 0:
		return nil, errors.New("no check type set: give one of objectsRestored, objectsMatch, workloadsReady, job, canary")
	case len(set) > 1:
		return nil, fmt.Errorf("several check types set (%v): give one per check", set)
	case len(etcdOnly) > 0:
		return nil, fmt.Errorf("%s checks an etcd snapshot; this scenario drills a Velero backup", etcdOnly[0])
	case err != nil:
		return nil, err
	}
	return ck, nil
}

// mapNamespace is the namespace a backed-up namespace was restored into: its mapping, else the
// same name (Velero restores unmapped namespaces under their own name).
func mapNamespace(t *VeleroTarget, ns string) string {
	if m, ok := t.NamespaceMapping[ns]; ok && m != "" {
		return m
	}
	return ns
}

// targetNamespaces are the namespaces the backup was restored into, sorted: every mapped
// namespace and the (mapped) namespace of every namespaced item.
func targetNamespaces(t *VeleroTarget) []string {
	set := map[string]bool{}
	for from := range t.NamespaceMapping {
		set[mapNamespace(t, from)] = true
	}
	for _, it := range t.Items {
		if it.Namespace != "" {
			set[mapNamespace(t, it.Namespace)] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// noTarget is the outcome of a check that needs the restored cluster when there is none.
func noTarget(ev map[string]any) Outcome {
	return errorOutcome(ev, "no restored cluster to check: the restore step did not complete")
}

// clientConfig copies the target's config with a rate limit fit for listing whole namespaces.
func clientConfig(t *VeleroTarget) *rest.Config {
	cfg := rest.CopyConfig(t.Config)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 100, 200
	}
	return cfg
}

// veleroCluster is what a check uses of the cluster a backup was restored into.
type veleroCluster struct {
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	meta   metadata.Interface
	mapper meta.RESTMapper
	// resources are the listable namespaced resources, in their preferred versions.
	resources []apiResource
}

type apiResource struct {
	gvr schema.GroupVersionResource
	gvk schema.GroupVersionKind
}

// discoveryTimeout bounds discovery, so that an unreachable cluster is an error in seconds rather
// than when the caller's context ends.
const discoveryTimeout = 30 * time.Second

// connectVelero builds the clients and, through discovery, the RESTMapper that turns Velero's
// resource names ("deployments.apps") into API resources. An error means the cluster could not be
// reached or asked.
func connectVelero(ctx context.Context, t *VeleroTarget) (*veleroCluster, error) {
	cfg := clientConfig(t)
	c := &veleroCluster{}
	var err error
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.meta, err = metadata.NewForConfig(cfg); err != nil {
		return nil, err
	}
	dcfg := rest.CopyConfig(cfg)
	if dcfg.Timeout == 0 {
		dcfg.Timeout = discoveryTimeout
	}
	dc, err := discovery.NewDiscoveryClientForConfig(dcfg)
	if err != nil {
		return nil, err
	}
	type result struct {
		groups []*restmapper.APIGroupResources
		err    error
	}
	done := make(chan result, 1)
	go func() {
		// Groups whose discovery fails (aggregated APIs without a backend) are left out, not fatal.
		g, err := restmapper.GetAPIGroupResources(dc)
		done <- result{g, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, fmt.Errorf("discovery: %w", r.err)
	}
	c.mapper = restmapper.NewDiscoveryRESTMapper(r.groups)
	for _, g := range r.groups {
		v := g.Group.PreferredVersion.Version
		for _, res := range g.VersionedResources[v] {
			if !res.Namespaced || strings.Contains(res.Name, "/") || !slices.Contains(res.Verbs, "list") {
				continue
			}
			gv := schema.GroupVersion{Group: g.Group.Name, Version: v}
			c.resources = append(c.resources, apiResource{gvr: gv.WithResource(res.Name), gvk: gv.WithKind(res.Kind)})
		}
	}
	return c, nil
}

// unreachable is the outcome when connectVelero failed.
func unreachable(ev map[string]any, t *VeleroTarget, err error) Outcome {
	return errorOutcome(ev, "restored cluster unreachable at %s: %v", t.Config.Host, err)
}

// resolved is a Velero resource name resolved against the target's API.
type resolved struct {
	gvr        schema.GroupVersionResource
	gvk        schema.GroupVersionKind
	namespaced bool
}

// resolve turns a resource as Velero names it ("deployments.apps", "configmaps", "ingresses") into
// the resource the target serves, in its preferred version.
func (c *veleroCluster) resolve(resource string) (resolved, error) {
	gr := schema.ParseGroupResource(resource)
	gvr, err := c.mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return resolved{}, err
	}
	gvk, err := c.mapper.KindFor(gvr)
	if err != nil {
		return resolved{}, err
	}
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return resolved{}, err
	}
	return resolved{gvr: gvr, gvk: gvk, namespaced: m.Scope.Name() == meta.RESTScopeNameNamespace}, nil
}

// groupResource is a Velero resource name as a GroupResource, without asking the API: Velero
// writes core resources without a group ("configmaps") and others as "plural.group".
func groupResource(resource string) schema.GroupResource {
	return schema.ParseGroupResource(strings.ToLower(strings.TrimSpace(resource)))
}

// excludedSet matches resources against the restore's excluded resources, by name as Velero
// writes them and, when the API knows them, as the resource they resolve to ("ingresses" excludes
// "ingresses.networking.k8s.io").
type excludedSet struct {
	all   bool
	names map[schema.GroupResource]bool
}

func newExcludedSet(c *veleroCluster, excluded []string) excludedSet {
	s := excludedSet{names: map[schema.GroupResource]bool{}}
	for _, e := range excluded {
		if strings.TrimSpace(e) == "*" {
			s.all = true
			continue
		}
		s.names[groupResource(e)] = true
		if c != nil {
			if r, err := c.resolve(e); err == nil {
				s.names[r.gvr.GroupResource()] = true
			}
		}
	}
	return s
}

func (s excludedSet) has(gr schema.GroupResource) bool { return s.all || s.names[gr] }
