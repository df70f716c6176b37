package verify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// mapNamespace is the namespace a backed-up namespace was restored into: its mapping, else the
// same name (Velero restores unmapped namespaces under their own name).
func mapNamespace(t *VeleroTarget, ns string) string {
	if m, ok := t.NamespaceMapping[ns]; ok && m != "" {
		return m
	}
	if m, ok := t.Reachable[ns]; ok && m != "" {
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

// Cluster is the cluster a backup was restored into, as the checks reach it. A drill builds it
// once per run (NewCluster), or a test from fake clients; discovery happens once, when a check
// first needs it.
type Cluster struct {
	// Config reaches the cluster; its Host names the cluster in messages. Checks use it for what
	// the clients below do not do, such as exec into pods.
	Config    *rest.Config
	Kube      kubernetes.Interface
	Dynamic   dynamic.Interface
	Metadata  metadata.Interface
	Discovery discovery.DiscoveryInterface

	mu     sync.Mutex
	mapper meta.RESTMapper
	// resources are the listable namespaced resources, in their preferred versions.
	resources []apiResource
}

// NewCluster builds the clients of the cluster cfg reaches, with a rate limit fit for listing
// whole namespaces. It makes no request.
func NewCluster(cfg *rest.Config) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 100, 200
	}
	c := &Cluster{Config: cfg}
	var err error
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.Metadata, err = metadata.NewForConfig(cfg); err != nil {
		return nil, err
	}
	dcfg := rest.CopyConfig(cfg)
	if dcfg.Timeout == 0 {
		dcfg.Timeout = discoveryTimeout
	}
	if c.Discovery, err = discovery.NewDiscoveryClientForConfig(dcfg); err != nil {
		return nil, err
	}
	return c, nil
}

// host names the cluster in messages.
func (c *Cluster) host() string {
	if c.Config == nil {
		return "the restored cluster"
	}
	return c.Config.Host
}

type apiResource struct {
	gvr schema.GroupVersionResource
	gvk schema.GroupVersionKind
}

// discoveryTimeout bounds discovery, so that an unreachable cluster is an error in seconds rather
// than when the caller's context ends.
const discoveryTimeout = 30 * time.Second

// discover learns, once, the RESTMapper that turns Velero's resource names ("deployments.apps")
// into API resources, and the listable namespaced resources. An error means the cluster could not
// be reached or asked; it is not remembered, so a later check asks again.
func (c *Cluster) discover(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mapper != nil {
		return nil
	}
	type result struct {
		groups []*restmapper.APIGroupResources
		err    error
	}
	done := make(chan result, 1)
	go func() {
		// Groups whose discovery fails (aggregated APIs without a backend) are left out, not fatal.
		g, err := restmapper.GetAPIGroupResources(c.Discovery)
		done <- result{g, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.err != nil {
		return fmt.Errorf("discovery: %w", r.err)
	}
	var resources []apiResource
	for _, g := range r.groups {
		v := g.Group.PreferredVersion.Version
		for _, res := range g.VersionedResources[v] {
			if !res.Namespaced || strings.Contains(res.Name, "/") || !slices.Contains(res.Verbs, "list") {
				continue
			}
			gv := schema.GroupVersion{Group: g.Group.Name, Version: v}
			resources = append(resources, apiResource{gvr: gv.WithResource(res.Name), gvk: gv.WithKind(res.Kind)})
		}
	}
	c.mapper, c.resources = restmapper.NewDiscoveryRESTMapper(r.groups), resources
	return nil
}

// unreachable is the outcome when the restored cluster could not be asked.
func unreachable(ev map[string]any, t *VeleroTarget, err error) Outcome {
	return errorOutcome(ev, "restored cluster unreachable at %s: %v", t.Cluster.host(), err)
}

// resolved is a Velero resource name resolved against the target's API.
type resolved struct {
	gvr        schema.GroupVersionResource
	gvk        schema.GroupVersionKind
	namespaced bool
}

// resolve turns a resource as Velero names it ("deployments.apps", "configmaps", "ingresses") into
// the resource the target serves, in its preferred version.
func (c *Cluster) resolve(resource string) (resolved, error) {
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

func newExcludedSet(c *Cluster, excluded []string) excludedSet {
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
