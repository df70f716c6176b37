package verify

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// ObjectsRestoredCheck proves that every object of the backup that the restore should bring back
// is in the target, with its namespace mapped; what Velero leaves out by design is counted apart
// (see velero_skip.go for the exact rules).
type ObjectsRestoredCheck struct {
	checkName
	workers int // concurrent list requests
}

var _ VeleroCheck = (*ObjectsRestoredCheck)(nil)

// NewObjectsRestoredCheck builds an objectsRestored check; it has no settings.
func NewObjectsRestoredCheck(name string, _ scenarios.ObjectsRestoredCheck) *ObjectsRestoredCheck {
	return &ObjectsRestoredCheck{checkName: newCheckName(name, scenarios.CheckObjectsRestored), workers: 8}
}

// restoredCount is the evidence of one resource. InBackup = Restored + Missing + Excluded +
// Replaced.
type restoredCount struct {
	InBackup int `json:"inBackup"`
	Restored int `json:"restored"`
	Missing  int `json:"missing"`
	// Excluded: left out on purpose (evidence "notRestored" says why).
	Excluded int `json:"excluded"`
	// Replaced: restored, then replaced by its controller under another name.
	Replaced int `json:"replaced,omitempty"`
	// Extra: in a target namespace, not in the backup (and not made by the control plane).
	Extra int    `json:"extra,omitempty"`
	Error string `json:"error,omitempty"`
}

// presentObject is what the metadata API says of an object in a target namespace.
type presentObject struct {
	uid    types.UID
	labels map[string]string
	owners []metav1.OwnerReference
}

// namespaceObjects is every object of one target namespace, by kind and name.
type namespaceObjects struct {
	byKind map[schema.GroupKind]map[string]presentObject
	uids   map[types.UID]bool
}

func (n *namespaceObjects) has(gk schema.GroupKind, name string) bool {
	_, ok := n.byKind[gk][name]
	return ok
}

// Run lists every namespaced resource of every target namespace once (through the metadata API:
// no object bodies, no Secret data) and looks each backed-up item up.
func (c *ObjectsRestoredCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	ev := map[string]any{}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	namespaces := targetNamespaces(t)
	ev["namespaces"] = namespaceEvidence(t)
	cl := t.Cluster
	if err := cl.discover(ctx); err != nil {
		return unreachable(ev, t, err)
	}
	exists := map[string]bool{}
	for _, ns := range namespaces {
		_, err := cl.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case err == nil:
			exists[ns] = true
		case !apierrors.IsNotFound(err):
			return errorOutcome(ev, "read namespace %s of the restored cluster: %v", ns, err)
		}
	}
	present, listErrs := c.listAll(ctx, cl, slices.DeleteFunc(slices.Clone(namespaces), func(ns string) bool { return !exists[ns] }))
	if ctx.Err() != nil {
		return errorOutcome(ev, "list the restored namespaces: %v", ctx.Err())
	}
	tl := c.tally(cl, t, exists, present, listErrs)
	tl.evidence(ev)
	out := tl.judge(ev, namespaces)
	// What the backup silently left out would pass the comparison above: compare it with the
	// live source too, when the source and the backup's start are known.
	if t.Source == nil || t.Backup == nil || t.Backup.Started.IsZero() {
		return out
	}
	gap, err := compareWithSource(ctx, t, c.workers)
	switch {
	case err != nil:
		return errorOutcome(ev, "%s; but the backup could not be compared with the live source: %v", out.Message, err)
	case gap.Missing > 0:
		ev["source"] = gap
		return failedOutcome(ev, "%s; and %s", gap.message(), out.Message)
	}
	ev["source"] = gap
	note := fmt.Sprintf("the backup holds all %d objects that were in the source before it started", gap.Compared)
	if gap.Newer > 0 {
		note += fmt.Sprintf(" (%d created since are not counted)", gap.Newer)
	}
	if gap.ExcludedByLabel > 0 {
		note += fmt.Sprintf("; %d are labelled %s=true and left out by design: %s", gap.ExcludedByLabel, excludeFromBackupLabel, listed(gap.LabelExcluded, gap.ExcludedByLabel))
	}
	if len(gap.NotListable) > 0 {
		note += fmt.Sprintf("; not compared, firedrill may not list them in the source: %s", strings.Join(gap.NotListable, ", "))
	}
	if len(gap.ListErrors) > 0 {
		return errorOutcome(ev, "%s; %s; but some source resources could not be listed: %v", out.Message, note, gap.ListErrors)
	}
	out.Message += "; " + note
	out.Evidence = ev
	return out
}

// namespaceEvidence maps each backed-up namespace to the namespace it was restored into.
func namespaceEvidence(t *VeleroTarget) map[string]string {
	out := map[string]string{}
	for from := range t.NamespaceMapping {
		out[from] = mapNamespace(t, from)
	}
	for _, it := range t.Items {
		if it.Namespace != "" {
			out[it.Namespace] = mapNamespace(t, it.Namespace)
		}
	}
	return out
}

// listAll lists every namespaced resource (events aside) in every namespace, a few requests at a
// time. Errors are per "resource namespace".
func (c *ObjectsRestoredCheck) listAll(ctx context.Context, cl *Cluster, namespaces []string) (map[string]*namespaceObjects, map[schema.GroupKind]string) {
	present := map[string]*namespaceObjects{}
	for _, ns := range namespaces {
		present[ns] = &namespaceObjects{byKind: map[schema.GroupKind]map[string]presentObject{}, uids: map[types.UID]bool{}}
	}
	errs := map[schema.GroupKind]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(c.workers, 1))
	for _, ns := range namespaces {
		for _, r := range cl.resources {
			gk := r.gvk.GroupKind()
			if gk.Kind == "Event" && (gk.Group == "" || gk.Group == "events.k8s.io") {
				continue // written all the time by controllers; never restored
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				objs, err := listMetadata(ctx, cl, r.gvr, ns)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs[gk] = fmt.Sprintf("list %s in %s: %v", r.gvr.GroupResource(), ns, err)
					return
				}
				n := present[ns]
				if len(objs) > 0 && n.byKind[gk] == nil {
					n.byKind[gk] = map[string]presentObject{}
				}
				for name, o := range objs {
					n.byKind[gk][name] = o
					n.uids[o.uid] = true
				}
			})
		}
	}
	wg.Wait()
	return present, errs
}

func listMetadata(ctx context.Context, cl *Cluster, gvr schema.GroupVersionResource, ns string) (map[string]presentObject, error) {
	out := map[string]presentObject{}
	opts := metav1.ListOptions{Limit: listPage}
	for {
		l, err := cl.Metadata.Resource(gvr).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, it := range l.Items {
			out[it.Name] = presentObject{uid: it.UID, labels: it.Labels, owners: it.OwnerReferences}
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

type restoredTally struct {
	per                      map[string]*restoredCount
	notRestored              map[string]int
	total                    restoredCount
	firstMissing, firstExtra []string
	// unchecked: resources with items whose target could not be listed.
	unchecked map[string]string
	listErrs  map[string]string
}

func (c *ObjectsRestoredCheck) tally(cl *Cluster, t *VeleroTarget, exists map[string]bool, present map[string]*namespaceObjects, listErrs map[schema.GroupKind]string) *restoredTally {
	tl := &restoredTally{per: map[string]*restoredCount{}, notRestored: map[string]int{}, unchecked: map[string]string{}, listErrs: map[string]string{}}
	excluded := newExcludedSet(cl, t.ExcludedResources)
	count := func(resource string) *restoredCount {
		rc := tl.per[resource]
		if rc == nil {
			rc = &restoredCount{}
			tl.per[resource] = rc
		}
		return rc
	}
	type resolution struct {
		r   resolved
		err error
	}
	cache := map[string]resolution{}
	matched := map[string]map[schema.GroupKind]map[string]bool{}
	missing := func(rc *restoredCount, resource, id string) {
		rc.Missing++
		if len(tl.firstMissing) < maxListed {
			tl.firstMissing = append(tl.firstMissing, resource+" "+id)
		}
	}

	items := slices.Clone(t.Items)
	slices.SortFunc(items, func(a, b velero.Item) int {
		return cmp.Or(strings.Compare(a.Resource, b.Resource), strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	for _, it := range items {
		gr := groupResource(it.Resource)
		resource := gr.String()
		rc := count(resource)
		rc.InBackup++
		if why := notRestoredReason(it, gr, excluded); why != "" {
			rc.Excluded++
			tl.notRestored[why]++
			continue
		}
		if gr == grNamespaces {
			if to := mapNamespace(t, it.Name); exists[to] {
				rc.Restored++
			} else {
				missing(rc, resource, to)
			}
			continue
		}
		ns := mapNamespace(t, it.Namespace)
		res, ok := cache[it.Resource]
		if !ok {
			res.r, res.err = cl.resolve(it.Resource)
			cache[it.Resource] = res
		}
		switch {
		case res.err != nil:
			rc.Error = "not served by the restored cluster (is its CustomResourceDefinition installed there?)"
			missing(rc, resource, identity(ns, it.Name))
			continue
		case !exists[ns]:
			rc.Error = "namespace " + ns + " does not exist"
			missing(rc, resource, identity(ns, it.Name))
			continue
		}
		gk := res.r.gvk.GroupKind()
		if e, bad := listErrs[gk]; bad {
			rc.Error = e
			tl.unchecked[resource] = e
			continue
		}
		n := present[ns]
		if n.has(gk, it.Name) {
			rc.Restored++
			if matched[ns] == nil {
				matched[ns] = map[schema.GroupKind]map[string]bool{}
			}
			if matched[ns][gk] == nil {
				matched[ns][gk] = map[string]bool{}
			}
			matched[ns][gk][it.Name] = true
			continue
		}
		if replacedByController(it, n) {
			rc.Replaced++
			continue
		}
		missing(rc, resource, identity(ns, it.Name))
	}

	resourceOf := map[schema.GroupKind]string{}
	for _, r := range cl.resources {
		resourceOf[r.gvk.GroupKind()] = r.gvr.GroupResource().String()
	}
	for gk, e := range listErrs {
		tl.listErrs[resourceOf[gk]] = e
	}
	for _, ns := range slices.Sorted(maps.Keys(present)) {
		n := present[ns]
		for _, gk := range slices.SortedFunc(maps.Keys(n.byKind), func(a, b schema.GroupKind) int { return strings.Compare(a.String(), b.String()) }) {
			for _, name := range slices.Sorted(maps.Keys(n.byKind[gk])) {
				if matched[ns][gk][name] || createdInTarget(n, gk, name) {
					continue
				}
				resource := resourceOf[gk]
				rc := count(resource)
				rc.Extra++
				tl.total.Extra++
				if len(tl.firstExtra) < maxListed {
					tl.firstExtra = append(tl.firstExtra, resource+" "+identity(ns, name))
				}
			}
		}
	}
	for _, rc := range tl.per {
		tl.total.InBackup += rc.InBackup
		tl.total.Restored += rc.Restored
		tl.total.Missing += rc.Missing
		tl.total.Excluded += rc.Excluded
		tl.total.Replaced += rc.Replaced
	}
	return tl
}

// replacedByController says whether a backed-up item's controller exists in the target namespace
// (rule 7 of velero_skip.go).
func replacedByController(it velero.Item, n *namespaceObjects) bool {
	if it.Object == nil || n == nil {
		return false
	}
	for _, ref := range it.Object.GetOwnerReferences() {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil {
			continue
		}
		if n.has(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, ref.Name) {
			return true
		}
	}
	return false
}

// createdInTarget says whether an object of a target namespace that the backup does not hold was
// made there by the control plane or by firedrill (see velero_skip.go).
func createdInTarget(n *namespaceObjects, gk schema.GroupKind, name string) bool {
	o := n.byKind[gk][name]
	switch {
	case o.labels[managedByLabel] == managedByValue:
		return true
	case gk == gkConfigMap && name == rootCAConfigMap, gk == gkServiceAcct && name == "default":
		return true
	case gk == gkEndpoints && n.has(gkService, name):
		return true
	case gk == gkEndpointSl && o.labels["kubernetes.io/service-name"] != "" && n.has(gkService, o.labels["kubernetes.io/service-name"]):
		return true
	}
	for _, ref := range o.owners {
		if ref.Controller != nil && *ref.Controller && n.uids[ref.UID] {
			return true
		}
	}
	return false
}

func (tl *restoredTally) evidence(ev map[string]any) {
	per := map[string]restoredCount{}
	for r, rc := range tl.per {
		per[r] = *rc
	}
	ev["perResource"] = per
	ev["inBackup"], ev["restored"], ev["missing"] = tl.total.InBackup, tl.total.Restored, tl.total.Missing
	ev["excluded"], ev["replaced"], ev["extra"] = tl.total.Excluded, tl.total.Replaced, tl.total.Extra
	ev["notRestored"] = tl.notRestored
	if len(tl.firstMissing) > 0 {
		ev["firstMissing"] = tl.firstMissing
	}
	if len(tl.firstExtra) > 0 {
		ev["firstExtra"] = tl.firstExtra
	}
	if len(tl.listErrs) > 0 {
		ev["listErrors"] = tl.listErrs
	}
}

func (tl *restoredTally) judge(ev map[string]any, namespaces []string) Outcome {
	where := strings.Join(namespaces, ", ")
	expected := tl.total.InBackup - tl.total.Excluded
	var notes []string
	if tl.total.Excluded > 0 {
		var why []string
		for _, k := range slices.Sorted(maps.Keys(tl.notRestored)) {
			why = append(why, fmt.Sprintf("%d %s", tl.notRestored[k], skipWords[k]))
		}
		notes = append(notes, fmt.Sprintf("%d left out on purpose (%s)", tl.total.Excluded, strings.Join(why, ", ")))
	}
	if tl.total.Replaced > 0 {
		notes = append(notes, fmt.Sprintf("%d restored and then replaced by their controllers", tl.total.Replaced))
	}
	if tl.total.Extra > 0 {
		notes = append(notes, fmt.Sprintf("in the restored namespaces but not in the backup (%d): %s", tl.total.Extra, listed(tl.firstExtra, tl.total.Extra)))
	}
	tail := func(msg string) string { return strings.Join(append([]string{msg}, notes...), "; ") }
	if tl.total.Missing > 0 {
		var why []string
		for _, r := range slices.Sorted(maps.Keys(tl.per)) {
			if rc := tl.per[r]; rc.Missing > 0 && rc.Error != "" {
				why = append(why, r+": "+rc.Error)
			}
		}
		msg := fmt.Sprintf("%d of %d objects the restore should have brought back are missing from %s: %s", tl.total.Missing, expected, where, listed(tl.firstMissing, tl.total.Missing))
		if len(why) > 0 {
			msg += " (" + strings.Join(why, "; ") + ")"
		}
		return failedOutcome(ev, "%s", tail(msg))
	}
	if len(tl.unchecked) > 0 {
		var why []string
		for _, r := range slices.Sorted(maps.Keys(tl.unchecked)) {
			why = append(why, tl.unchecked[r])
		}
		return errorOutcome(ev, "could not look for every object of the backup: %s", strings.Join(why, "; "))
	}
	if expected == 0 {
		return failedOutcome(ev, "%s", tail(fmt.Sprintf("the backup holds no objects the restore should bring back (%d items): nothing to prove", tl.total.InBackup)))
	}
	return passedOutcome(ev, "%s", tail(fmt.Sprintf("all %d objects the restore should bring back are in %s", expected-tl.total.Replaced, where)))
}

// skipWords says each reason of notRestored in a message, after its count.
var skipWords = map[string]string{
	skipClusterScoped:       "cluster-scoped",
	skipExcluded:            "excluded by the restore",
	skipNeverRestored:       "of kinds Velero never restores (events, nodes, ...)",
	skipCompleted:           "completed pods or jobs (Velero skips them)",
	skipMirrorPod:           "mirror pods",
	skipServiceAccountToken: "service account tokens",
}

// listed joins the first items of a list and says how many more there are.
func listed(first []string, total int) string {
	s := strings.Join(first, ", ")
	if total > len(first) {
		s += fmt.Sprintf(" and %d more", total-len(first))
	}
	return s
}
