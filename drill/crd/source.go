// Package crd is `firedrill serve --scenarios-from cluster`: Scenario resources
// (firedrill.dev/v1alpha1, api/v1alpha1) watched with an informer, validated on every change by
// the validator `firedrill scenario validate` runs, handed to the scheduler beside the scenario
// files, and their status written back by the leader.
//
// A cluster scenario is known by its metadata.name, in the history, the API, metrics and
// labels, like a file's: the names of files and of Scenarios in every namespace are one set.
// Files come first, then Scenarios oldest first; a Scenario whose name is taken is not
// scheduled and says so in its Ready condition.
package crd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// FilePrefix starts the schedule.Entry.File of a cluster scenario, followed by namespace/name:
// the API and the dashboard show it where a file scenario shows its path.
const FilePrefix = "scenarios.firedrill.dev/"

// debounce gathers the events of one apply (several Scenarios at once) into one update.
const debounce = 200 * time.Millisecond

// Source keeps the Scenario resources of the cluster (of Namespace, or all namespaces).
type Source struct {
	client    dynamic.Interface
	namespace string
	log       *slog.Logger
	changed   chan struct{}

	mu    sync.Mutex
	items map[string]*item // by namespace/name
}

// item is what the source knows of one Scenario resource.
type item struct {
	namespace, name string
	created         time.Time
	generation      int64
	obj             *unstructured.Unstructured // the newest version seen, status included
	doc             []byte                     // the document last validated
	entry           schedule.Entry
	// problem is the validator's verdict on the current generation ("" when it is valid).
	problem string
	// takenBy names the scenario that holds this one's name ("" when it is scheduled).
	takenBy string
}

func (it *item) key() string { return it.namespace + "/" + it.name }

// NewSource returns a Source of Scenarios in namespace ("" for all); nothing is read until
// Load or Run.
func NewSource(client dynamic.Interface, namespace string, log *slog.Logger) *Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{client: client, namespace: namespace, log: log, items: map[string]*item{}, changed: make(chan struct{}, 1)}
}

// Load lists the Scenarios once. It fails when they cannot be listed: the CRD is not installed,
// or RBAC does not allow it.
func (s *Source) Load(ctx context.Context) error {
	list, err := s.client.Resource(v1alpha1.ScenarioResource).Namespace(s.namespace).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("list Scenarios: %w: install the Scenario CRD (deploy/kustomize/base/crds/)", err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("list Scenarios: %w: grant list and watch on scenarios.firedrill.dev (deploy/RBAC.md)", err)
	case err != nil:
		return fmt.Errorf("list Scenarios: %w", err)
	}
	for i := range list.Items {
		s.set(&list.Items[i])
	}
	return nil
}

// Run watches the Scenarios and calls update after every change (debounced) until ctx is done.
func (s *Source) Run(ctx context.Context, update func()) error {
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.client, 0, s.namespace, nil)
	inf := factory.ForResource(v1alpha1.ScenarioResource).Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.observe(o, false) },
		UpdateFunc: func(_, o any) { s.observe(o, false) },
		DeleteFunc: func(o any) { s.observe(o, true) },
	}); err != nil {
		return fmt.Errorf("watch Scenarios: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	// Scenarios deleted between Load and the informer's list.
	s.mu.Lock()
	for k := range s.items {
		if _, ok, _ := inf.GetStore().GetByKey(k); !ok {
			delete(s.items, k)
		}
	}
	s.mu.Unlock()
	update()
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
			timer.Reset(debounce)
		case <-timer.C:
			update()
		}
	}
}

func (s *Source) observe(o any, deleted bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o, deleted = d.Obj, true
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	if deleted {
		s.mu.Lock()
		delete(s.items, u.GetNamespace()+"/"+u.GetName())
		s.mu.Unlock()
	} else if !s.set(u) {
		return
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// set validates u when its document changed; it reports whether anything did.
func (s *Source) set(u *unstructured.Unstructured) bool {
	doc, docErr := document(u)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := u.GetNamespace() + "/" + u.GetName()
	old := s.items[k]
	if old != nil && old.generation == u.GetGeneration() && string(old.doc) == string(doc) {
		old.obj = u // a status write, or metadata the scenario does not read
		return false
	}
	it := &item{namespace: u.GetNamespace(), name: u.GetName(), created: u.GetCreationTimestamp().Time, generation: u.GetGeneration(), doc: doc, obj: u}
	if old != nil {
		it.takenBy = old.takenBy // until the next Merge decides again
	}
	var sc *scenarios.Scenario
	err := docErr
	if err == nil {
		sc, err = load(doc)
	}
	it.entry = schedule.Entry{File: FilePrefix + k, Scenario: sc, LoadedAt: time.Now()}
	if err != nil {
		it.problem = problemText(err)
		it.entry.Err = errors.New(it.problem)
		if old != nil {
			// The last valid version stays scheduled, as a file's does.
			it.entry.Scenario, it.entry.LoadedAt = old.entry.Scenario, old.entry.LoadedAt
		}
		s.log.Error("Scenario does not validate", "scenario", k, "err", it.problem, "lastValidStaysScheduled", it.entry.Scenario != nil)
	} else {
		s.log.Info("Scenario loaded", "scenario", k, "generation", it.generation)
	}
	s.items[k] = it
	return true
}

// Merge returns files' entries followed by the cluster's, oldest Scenario first. A Scenario
// whose name a file or an older Scenario has is left out of the schedule (its entry has Err
// and no scenario), and its status will say who has the name.
func (s *Source) Merge(files []schedule.Entry) []schedule.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	owner := map[string]string{}
	for _, e := range files {
		if e.Scenario != nil {
			owner[e.Scenario.Metadata.Name] = e.File
		}
	}
	items := make([]*item, 0, len(s.items))
	for _, it := range s.items {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b *item) int {
		return cmp.Or(a.created.Compare(b.created), cmp.Compare(a.key(), b.key()))
	})
	out := slices.Clone(files)
	for _, it := range items {
		e := it.entry
		it.takenBy = ""
		if e.Scenario != nil {
			name := e.Scenario.Metadata.Name
			if holder, taken := owner[name]; taken {
				it.takenBy = holder
				e.Err = fmt.Errorf("metadata.name %q is also the name of %s: scenario names are one set across files and namespaces; rename this Scenario", name, holder)
				e.Scenario = nil
			} else {
				owner[name] = e.File
			}
		}
		out = append(out, e)
	}
	return out
}

// items returns a snapshot of what Merge last decided, for the status writer.
func (s *Source) snapshot() []item {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]item, 0, len(s.items))
	for _, it := range s.items {
		out = append(out, *it)
	}
	return out
}

// object is the Scenario resource namespace/name as the Source last saw it; nil when it has
// none.
func (s *Source) object(key string) *unstructured.Unstructured {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it := s.items[key]; it != nil {
		return it.obj
	}
	return nil
}
