package verify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// ObjectsMatchCheck proves that the restored objects of chosen resources are the backed-up ones:
// equal once what legitimately changes in a restore is left out (velero_diff.go lists it).
// Secrets are compared by the SHA-256 of each value; no value ever reaches a result, and a
// difference is reported by its path only. Not compared: what the restore leaves out on purpose
// (velero_skip.go), cluster-scoped items, and what the target's control plane makes for itself
// (derivedObject).
type ObjectsMatchCheck struct {
	checkName
	resources    []string
	ignoreFields []string
	ignore       []fieldPath
	// pageSize of the list requests: each resource is listed once per target namespace, in pages.
	pageSize int64
	// lenient: the resources are the defaults, not asked for by name; one of them may have nothing
	// to compare.
	lenient bool
}

var _ VeleroCheck = (*ObjectsMatchCheck)(nil)

// NewObjectsMatchCheck builds an objectsMatch check; resources default to configmaps and secrets.
// It fails on an ignoreFields path it cannot read.
func NewObjectsMatchCheck(name string, spec scenarios.ObjectsMatchCheck) (*ObjectsMatchCheck, error) {
	c := &ObjectsMatchCheck{checkName: newCheckName(name, scenarios.CheckObjectsMatch), pageSize: 2000}
	for _, r := range spec.Resources {
		if strings.TrimSpace(r) == "" {
			return nil, fmt.Errorf("objectsMatch.resources: empty resource name: write Velero's name, e.g. configmaps or deployments.apps")
		}
		c.resources = append(c.resources, strings.TrimSpace(r))
	}
	if len(c.resources) == 0 {
		c.resources, c.lenient = scenarios.DefaultObjectsMatchResources(), true
	}
	for i, f := range spec.IgnoreFields {
		p, err := scenarios.SplitFieldPath(f)
		if err != nil {
			return nil, fmt.Errorf("objectsMatch.ignoreFields[%d] %q: %w", i, f, err)
		}
		c.ignore = append(c.ignore, p)
		c.ignoreFields = append(c.ignoreFields, f)
	}
	return c, nil
}

// matchCount is the evidence of one resource.
type matchCount struct {
	Compared  int    `json:"compared"`
	Equal     int    `json:"equal"`
	Differing int    `json:"differing"`
	Missing   int    `json:"missing"`
	Skipped   int    `json:"skipped,omitempty"`
	Error     string `json:"error,omitempty"`
}

type matchResult struct {
	per                          map[string]*matchCount
	total                        matchCount
	firstDiffering, firstMissing []string
	notServed                    []string // chosen resources the target does not serve, with no items
}

// Run lists each chosen resource once per target namespace and compares every backed-up item of
// it with the restored object of the same name.
func (c *ObjectsMatchCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	ev := map[string]any{"resources": c.resources}
	if len(c.ignoreFields) > 0 {
		ev["ignoreFields"] = c.ignoreFields
	}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	cl := t.Cluster
	if err := cl.discover(ctx); err != nil {
		return unreachable(ev, t, err)
	}
	excluded := newExcludedSet(cl, t.ExcludedResources)
	res := &matchResult{per: map[string]*matchCount{}}
	qualify := len(targetNamespaces(t)) > 1
	selectors := servicesWithSelector(t)
	for _, name := range c.resources {
		if err := c.compareResource(ctx, cl, t, name, excluded, selectors, qualify, res); err != nil {
			return errorOutcome(ev, "%v", err)
		}
	}
	res.evidence(ev)
	return res.judge(ev, c.resources, c.lenient)
}

// compareResource compares every backed-up item of one chosen resource. An error means the
// comparison could not be made (a list failed).
func (c *ObjectsMatchCheck) compareResource(ctx context.Context, cl *Cluster, t *VeleroTarget, name string, excluded excludedSet, selectors map[string]bool, qualify bool, res *matchResult) error {
	want := groupResource(name)
	r, rerr := cl.resolve(name)
	if rerr == nil {
		want = r.gvr.GroupResource()
	}
	mc := &matchCount{}
	res.per[want.String()] = mc
	// The items of this resource, by target namespace, in name order.
	byNS := map[string][]velero.Item{}
	resolvedAs := map[string]bool{}
	for _, it := range t.Items {
		is, ok := resolvedAs[it.Resource]
		if !ok {
			gr := groupResource(it.Resource)
			is = gr == want
			if !is && rerr == nil && gr.Group == "" {
				if ir, err := cl.resolve(it.Resource); err == nil {
					is = ir.gvr.GroupResource() == want
				}
			}
			resolvedAs[it.Resource] = is
		}
		if !is {
			continue
		}
		if it.Namespace == "" || notRestoredReason(it, want, excluded) != "" || derivedObject(it, want, selectors) {
			mc.Skipped++
			continue
		}
		ns := mapNamespace(t, it.Namespace)
		byNS[ns] = append(byNS[ns], it)
	}
	if rerr != nil {
		n := 0
		for _, items := range byNS {
			n += len(items)
		}
		if n == 0 {
			res.notServed = append(res.notServed, name)
			delete(res.per, want.String())
			return nil
		}
		mc.Error = "not served by the restored cluster (is its CustomResourceDefinition installed there?)"
	}
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		items := byNS[ns]
		slices.SortFunc(items, func(a, b velero.Item) int { return strings.Compare(a.Name, b.Name) })
		var restored map[string]*unstructured.Unstructured
		if rerr == nil {
			var err error
			restored, err = c.list(ctx, cl, r, items, ns)
			if err != nil {
				return fmt.Errorf("list %s in %s of the restored cluster: %w", want, ns, err)
			}
		}
		gk := r.gvk.GroupKind()
		static := staticIgnores(gk, c.ignore)
		for _, it := range items {
			mc.Compared++
			label := kindLabel(it, gk)
			if qualify {
				label += " " + ns + "/" + it.Name
			} else {
				label += " " + it.Name
			}
			got := restored[it.Name]
			if got == nil {
				mc.Missing++
				if len(res.firstMissing) < maxListed {
					res.firstMissing = append(res.firstMissing, label)
				}
				continue
			}
			if it.Object == nil {
				return fmt.Errorf("backup item %s %s/%s has no object to compare", it.Resource, it.Namespace, it.Name)
			}
			n, paths := diffObjects(gk, static, it.Object.Object, got.Object)
			if n == 0 {
				mc.Equal++
				continue
			}
			mc.Differing++
			if len(res.firstDiffering) < maxListed {
				res.firstDiffering = append(res.firstDiffering, label+": "+paths)
			}
		}
	}
	return nil
}

var (
	grEndpoints      = schema.GroupResource{Resource: "endpoints"}
	grEndpointSlices = schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}
)

// derivedObject says whether a backed-up object is one the target's control plane makes for
// itself, so that comparing it proves nothing about the backup: the ConfigMap kube-root-ca.crt
// (the target's controller made its own before the restore, which leaves it alone), the Endpoints
// of a Service with a selector, and EndpointSlices the endpointslice controller manages (both
// list the addresses of the new Pods).
func derivedObject(it velero.Item, gr schema.GroupResource, selectors map[string]bool) bool {
	switch gr {
	case grConfigMaps:
		return it.Name == rootCAConfigMap
	case grEndpoints:
		return selectors[identity(it.Namespace, it.Name)]
	case grEndpointSlices:
		return it.Object != nil && it.Object.GetLabels()["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
	}
	return false
}

// servicesWithSelector are the backed-up Services (namespace/name) whose Endpoints the control
// plane maintains.
func servicesWithSelector(t *VeleroTarget) map[string]bool {
	out := map[string]bool{}
	for _, it := range t.Items {
		if groupResource(it.Resource) != (schema.GroupResource{Resource: "services"}) || it.Object == nil {
			continue
		}
		if sel, _ := nestedField(it.Object.Object, "spec", "selector").(map[string]any); len(sel) > 0 {
			out[identity(it.Namespace, it.Name)] = true
		}
	}
	return out
}

// list reads one resource of one namespace, in the version of the backed-up items when the target
// serves it (so that no conversion shows as a difference).
func (c *ObjectsMatchCheck) list(ctx context.Context, cl *Cluster, r resolved, items []velero.Item, ns string) (map[string]*unstructured.Unstructured, error) {
	gvr := r.gvr
	if len(items) > 0 && items[0].Object != nil {
		if gv, err := schema.ParseGroupVersion(items[0].Object.GetAPIVersion()); err == nil && gv.Group == gvr.Group && gv.Version != gvr.Version {
			if _, err := cl.mapper.RESTMapping(r.gvk.GroupKind(), gv.Version); err == nil {
				gvr.Version = gv.Version
			}
		}
	}
	out := make(map[string]*unstructured.Unstructured, len(items))
	opts := metav1.ListOptions{Limit: c.pageSize}
	for {
		l, err := cl.Dynamic.Resource(gvr).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			out[l.Items[i].GetName()] = &l.Items[i]
		}
		if l.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = l.GetContinue()
	}
}

// kindLabel names the kind of an object in a message: "configmap", "deployment".
func kindLabel(it velero.Item, gk schema.GroupKind) string {
	k := gk.Kind
	if k == "" && it.Object != nil {
		k = it.Object.GetKind()
	}
	if k == "" {
		k = it.Resource
	}
	return strings.ToLower(k)
}

func (res *matchResult) evidence(ev map[string]any) {
	per := map[string]matchCount{}
	for r, mc := range res.per {
		per[r] = *mc
		res.total.Compared += mc.Compared
		res.total.Equal += mc.Equal
		res.total.Differing += mc.Differing
		res.total.Missing += mc.Missing
		res.total.Skipped += mc.Skipped
	}
	ev["perResource"] = per
	ev["compared"], ev["equal"], ev["differing"] = res.total.Compared, res.total.Equal, res.total.Differing
	ev["missing"], ev["skipped"] = res.total.Missing, res.total.Skipped
	if len(res.firstDiffering) > 0 {
		ev["firstDiffering"] = res.firstDiffering
	}
	if len(res.firstMissing) > 0 {
		ev["firstMissing"] = res.firstMissing
	}
	if len(res.notServed) > 0 {
		ev["notServed"] = res.notServed
	}
}

func (res *matchResult) judge(ev map[string]any, resources []string, lenient bool) Outcome {
	var problems, notes []string
	if res.total.Differing > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d restored objects differ from the backup: %s",
			res.total.Differing, res.total.Compared-res.total.Missing, listedWith(res.firstDiffering, res.total.Differing, "; ")))
	}
	if res.total.Missing > 0 {
		p := fmt.Sprintf("%d of %d backed-up objects are not in the restored namespaces: %s", res.total.Missing, res.total.Compared, listed(res.firstMissing, res.total.Missing))
		var why []string
		for _, r := range slices.Sorted(maps.Keys(res.per)) {
			if e := res.per[r].Error; e != "" {
				why = append(why, r+": "+e)
			}
		}
		if len(why) > 0 {
			p += " (" + strings.Join(why, "; ") + ")"
		}
		problems = append(problems, p)
	}
	if res.total.Skipped > 0 {
		notes = append(notes, fmt.Sprintf("%d not compared because the restore leaves them out on purpose", res.total.Skipped))
	}
	if len(res.notServed) > 0 {
		notes = append(notes, fmt.Sprintf("not served by the restored cluster and not in the backup: %s", strings.Join(res.notServed, ", ")))
	}
	if len(problems) > 0 {
		return failedOutcome(ev, "%s", strings.Join(append(problems, notes...), "; "))
	}
	if res.total.Compared == 0 {
		return failedOutcome(ev, "%s", strings.Join(append([]string{fmt.Sprintf("the backup holds no %s to compare: nothing to prove (choose resources it holds in objectsMatch.resources)", strings.Join(resources, ", "))}, notes...), "; "))
	}
	// Each resource asked for must have been compared: one of which nothing was would otherwise
	// pass on nothing beside the others.
	var empty []string
	for _, r := range slices.Sorted(maps.Keys(res.per)) {
		if res.per[r].Compared == 0 {
			empty = append(empty, r)
		}
	}
	if len(empty) > 0 && !lenient {
		return failedOutcome(ev, "%s", strings.Join(append([]string{fmt.Sprintf("the backup holds no %s to compare: nothing proves they came back (remove them from objectsMatch.resources if the application has none)", strings.Join(empty, ", "))}, notes...), "; "))
	}
	var per []string
	for _, r := range slices.Sorted(maps.Keys(res.per)) {
		if n := res.per[r].Equal; n > 0 {
			per = append(per, fmt.Sprintf("%d %s", n, r))
		}
	}
	msg := fmt.Sprintf("all %d restored objects equal the backed-up ones (%s)", res.total.Equal, strings.Join(per, ", "))
	return passedOutcome(ev, "%s", strings.Join(append([]string{msg}, notes...), "; "))
}

// listedWith is listed with another separator.
func listedWith(first []string, total int, sep string) string {
	s := strings.Join(first, sep)
	if total > len(first) {
		s += fmt.Sprintf("%sand %d more", sep, total-len(first))
	}
	return s
}
