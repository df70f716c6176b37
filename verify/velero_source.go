package verify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// sourceGap is what the backup lacks of the live source: objects in a backed-up namespace that
// existed before the backup started, still exist, and the backup's own rules select.
type sourceGap struct {
	// Compared counts the live objects the backup should hold; Missing those it does not.
	Compared int `json:"compared"`
	Missing  int `json:"missing"`
	// Newer: created since the backup started, not counted against it.
	Newer int `json:"newer"`
	// ExcludedByLabel: labelled velero.io/exclude-from-backup=true, left out by Velero by design.
	ExcludedByLabel int               `json:"excludedByLabel,omitempty"`
	PerResource     map[string]int    `json:"missingPerResource,omitempty"`
	FirstMissing    []string          `json:"firstMissing,omitempty"`
	LabelExcluded   []string          `json:"firstExcludedByLabel,omitempty"`
	Causes          []string          `json:"likelyCauses,omitempty"`
	ListErrors      map[string]string `json:"listErrors,omitempty"`
	// NotListable are resources firedrill may not list in the source: not compared.
	NotListable []string       `json:"notListable,omitempty"`
	all         map[string]int // live objects per resource that the backup should hold
}

const excludeFromBackupLabel = "velero.io/exclude-from-backup"

// compareWithSource lists the backed-up namespaces of the live source and looks every object the
// backup should hold up in the backup's contents. Events are left out: controllers write them all
// the time and restores never bring them back.
func compareWithSource(ctx context.Context, t *VeleroTarget, workers int) (*sourceGap, error) {
	src, b := t.Source, t.Backup
	if err := src.discover(ctx); err != nil {
		return nil, err
	}
	included := newExcludedSet(src, slices.Concat(b.IncludedResources, b.IncludedNamespaceScopedResources))
	if len(b.IncludedResources) == 0 && len(b.IncludedNamespaceScopedResources) == 0 {
		included.all = true
	}
	excluded := newExcludedSet(src, slices.Concat(b.ExcludedResources, b.ExcludedNamespaceScopedResources))
	var selectors []labels.Selector
	for _, ls := range append([]*metav1.LabelSelector{b.LabelSelector}, b.OrLabelSelectors...) {
		if ls == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return nil, fmt.Errorf("the backup's label selector: %w", err)
		}
		selectors = append(selectors, sel)
	}
	inBackup := map[string]bool{}
	for _, it := range t.Items {
		inBackup[groupResource(it.Resource).String()+" "+identity(it.Namespace, it.Name)] = true
	}
	started := b.Started.Truncate(time.Second)
	gap := &sourceGap{PerResource: map[string]int{}, ListErrors: map[string]string{}, all: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(workers, 1))
	for _, ns := range slices.Sorted(maps.Keys(t.NamespaceMapping)) {
		for _, r := range src.resources {
			gr := r.gvr.GroupResource()
			if gr.Resource == "events" && (gr.Group == "" || gr.Group == "events.k8s.io") {
				continue
			}
			if !included.has(gr) || excluded.has(gr) {
				continue
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				l, err := listSourceMetadata(ctx, src, r.gvr, ns)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case apierrors.IsForbidden(err):
					gap.NotListable = append(gap.NotListable, gr.String())
					return
				case err != nil:
					gap.ListErrors[gr.String()] = err.Error()
					return
				}
				for _, o := range l {
					if o.DeletionTimestamp != nil || len(selectors) > 0 && !slices.ContainsFunc(selectors, func(s labels.Selector) bool { return s.Matches(labels.Set(o.Labels)) }) {
						continue
					}
					if !o.CreationTimestamp.Time.Before(started) {
						gap.Newer++
						continue
					}
					id := gr.String() + " " + identity(ns, o.Name)
					if o.Labels[excludeFromBackupLabel] == "true" {
						gap.ExcludedByLabel++
						gap.LabelExcluded = append(gap.LabelExcluded, id)
						continue
					}
					gap.Compared++
					gap.all[gr.String()]++
					if !inBackup[id] {
						gap.Missing++
						gap.PerResource[gr.String()]++
						gap.FirstMissing = append(gap.FirstMissing, id)
					}
				}
			})
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	slices.Sort(gap.NotListable)
	gap.NotListable = slices.Compact(gap.NotListable)
	slices.Sort(gap.FirstMissing)
	slices.Sort(gap.LabelExcluded)
	gap.FirstMissing = gap.FirstMissing[:min(len(gap.FirstMissing), maxListed)]
	gap.LabelExcluded = gap.LabelExcluded[:min(len(gap.LabelExcluded), maxListed)]
	for _, r := range slices.Sorted(maps.Keys(gap.PerResource)) {
		if gap.PerResource[r] == gap.all[r] {
			gap.Causes = append(gap.Causes, fmt.Sprintf("the backup holds none of the %d %s: a filter the scenario does not show left them out (a Schedule's excludedResources, a resource policy), or Velero could not list them", gap.all[r], r))
		} else {
			gap.Causes = append(gap.Causes, fmt.Sprintf("%d of %d %s are missing: Velero failed on them (velero backup logs %s) or the backup was changed in storage since", gap.PerResource[r], gap.all[r], r, t.BackupName))
		}
	}
	return gap, nil
}

// listSourceMetadata lists one resource of a namespace through the metadata API: no bodies, no
// Secret data.
func listSourceMetadata(ctx context.Context, cl *Cluster, gvr schema.GroupVersionResource, ns string) ([]metav1.PartialObjectMetadata, error) {
	var out []metav1.PartialObjectMetadata
	opts := metav1.ListOptions{Limit: listPage}
	for {
		l, err := cl.Metadata.Resource(gvr).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, l.Items...)
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

// message says what the gap is, in one sentence.
func (g *sourceGap) message() string {
	msg := fmt.Sprintf("the backup lacks %d of the %d objects that were in the source before it started and still are: %s",
		g.Missing, g.Compared, listed(g.FirstMissing, g.Missing))
	if len(g.Causes) > 0 {
		msg += " (" + strings.Join(g.Causes, "; ") + ")"
	}
	return msg
}
