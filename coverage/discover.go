package coverage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// Source is a cluster as a scenario's spec.source or the command line names it, with the
// namespace its Velero runs in.
type Source struct {
	Kubeconfig, Context string
	// VeleroNamespace is where Velero runs; default scenarios.DefaultVeleroNamespace.
	VeleroNamespace string
}

// Cluster is a cluster a Source reaches.
type Cluster struct {
	// Name is how items name it: its kubeconfig context.
	Name string
	// ID tells clusters apart: the API server's URL, so that two kubeconfigs reaching one server
	// are one cluster.
	ID     string
	Velero Velero
}

// Connector resolves a Source to its cluster without contacting it.
type Connector func(Source) (Cluster, error)

// Velero lists what discovery reads of a cluster: the Velero objects in one namespace, and the
// cluster's namespaces.
type Velero interface {
	Schedules(ctx context.Context, namespace string) ([]Schedule, error)
	Backups(ctx context.Context, namespace string) ([]Backup, error)
	Namespaces(ctx context.Context) ([]Namespace, error)
}

// ErrNoVelero is returned by a Velero whose cluster does not serve Velero's resources.
var ErrNoVelero = errors.New("velero is not installed (no velero.io resources)")

// Schedule is a Velero Schedule.
type Schedule struct {
	Name string
	// IncludedNamespaces as in its template; empty or "*" means every namespace.
	IncludedNamespaces, ExcludedNamespaces []string
	Cron                                   string
	Paused                                 bool
	Annotations                            map[string]string
}

// Backup is a Velero Backup.
type Backup struct {
	Name string
	// Schedule made it (label velero.io/schedule-name); empty for a backup made by hand.
	Schedule           string
	Phase              string
	Started            time.Time
	IncludedNamespaces []string
	// ByFiredrill: firedrill made it for a drill (its labels say so); such backups are not items.
	ByFiredrill bool
	Annotations map[string]string
}

// Namespace is a namespace of the cluster.
type Namespace struct {
	Name string
	// Scratch: firedrill made it for a drill; never an item.
	Scratch     bool
	Annotations map[string]string
}

// DiscoverOptions say where to look besides the scenarios.
type DiscoverOptions struct {
	// Connect resolves clusters; nil: no Velero items are discovered, only etcd sources.
	Connect Connector
	// Default is the cluster of the command line (--kubeconfig, --context; else KUBECONFIG,
	// ~/.kube/config or in-cluster) with the Velero namespace to look in. Its Velero is
	// discovered whether or not a scenario names it, and it is the cluster of Velero scenarios
	// without spec.source.
	Default Source
	// Override makes Default the cluster of every Velero scenario, spec.source or not, as
	// `firedrill run --kubeconfig/--context` does.
	Override bool
}

// Inventory is what there is to drill and which scenarios drill what: Discover's answer, which
// Join completes with the history.
type Inventory struct {
	Items []Item
	// Problems are what could not be discovered (an unreachable cluster, a bad annotation): the
	// answer is incomplete.
	Problems []string
	// Notes are facts worth saying that do not make the answer incomplete.
	Notes []string
}

// Scenarios returns the names of the scenarios that drill some item, sorted: the ones Join
// needs the history of.
func (inv *Inventory) Scenarios() []string {
	set := map[string]bool{}
	for i := range inv.Items {
		for _, s := range inv.Items[i].Scenarios {
			set[s] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Discover lists what there is to drill in the clusters of the scenarios and of o.Default, and
// the etcd sources the scenarios name, and records which scenario drills what:
//   - backup.velero.latestFrom.schedule covers that Schedule and the namespaces it backs up;
//   - backup.velero.name covers that backup (its Schedule, when one made it) and its namespaces;
//   - backup.velero.create covers its includedNamespaces;
//   - backup.etcd covers its latestFrom.dir, its latestFrom.s3 or its take.endpoints.
//
// A cluster that cannot be read is a problem in the answer, not an error: the rest is still
// discovered.
func Discover(ctx context.Context, scs []*scenarios.Scenario, o DiscoverOptions) *Inventory {
	d := &discovery{inv: &Inventory{}, items: map[Key]*Item{}, conns: map[[2]string]*connected{}}
	d.velero(ctx, scs, o)
	for _, sc := range scs {
		if e := sc.Spec.Backup.Etcd; e != nil {
			d.cover(d.item(etcdKey(e)), sc)
		}
	}
	d.windows(scs)
	for _, it := range d.items {
		d.inv.Items = append(d.inv.Items, *it)
	}
	slices.SortFunc(d.inv.Items, func(a, b Item) int { return compareItems(&a, &b) })
	return d.inv
}

type discovery struct {
	inv   *Inventory
	items map[Key]*Item
	conns map[[2]string]*connected // by kubeconfig and context
}

type connected struct {
	cluster Cluster
	err     error
}

// target is one Velero namespace of one cluster, and the scenarios that drill its backups.
type target struct {
	cluster   Cluster
	namespace string
	scenarios []*scenarios.Scenario
	// byDefault: o.Default named it; no scenario may.
	byDefault bool
}

func (d *discovery) problemf(format string, a ...any) {
	d.inv.Problems = append(d.inv.Problems, fmt.Sprintf(format, a...))
}

func (d *discovery) connect(c Connector, src Source) (Cluster, error) {
	k := [2]string{src.Kubeconfig, src.Context}
	if cc, ok := d.conns[k]; ok {
		return cc.cluster, cc.err
	}
	cl, err := c(src)
	d.conns[k] = &connected{cl, err}
	return cl, err
}

// velero discovers the Velero namespaces of o.Default and of the scenarios' clusters.
func (d *discovery) velero(ctx context.Context, scs []*scenarios.Scenario, o DiscoverOptions) {
	var targets []*target
	byKey := map[[2]string]*target{}
	add := func(cl Cluster, ns string) *target {
		ns = cmp.Or(ns, scenarios.DefaultVeleroNamespace)
		k := [2]string{cl.ID, ns}
		t := byKey[k]
		if t == nil {
			t = &target{cluster: cl, namespace: ns}
			byKey[k] = t
			targets = append(targets, t)
		}
		return t
	}
	if o.Connect == nil {
		for _, sc := range scs {
			if sc.Spec.Backup.Velero != nil {
				d.problemf("scenario %s: no Kubernetes configuration to discover its Velero backups with", sc.Metadata.Name)
			}
		}
		return
	}
	defaultErr := error(nil)
	if cl, err := d.connect(o.Connect, o.Default); err != nil {
		defaultErr = err
	} else {
		add(cl, o.Default.VeleroNamespace).byDefault = true
	}
	veleroScenarios := 0
	for _, sc := range scs {
		v := sc.Spec.Backup.Velero
		if v == nil {
			continue
		}
		veleroScenarios++
		src := o.Default
		if s := sc.Spec.Source; s != nil && !o.Override {
			src.Kubeconfig, src.Context = s.Kubeconfig, s.Context
		}
		cl, err := d.connect(o.Connect, src)
		if err != nil {
			d.problemf("scenario %s: its cluster: %v", sc.Metadata.Name, err)
			continue
		}
		t := add(cl, v.Namespace)
		t.scenarios = append(t.scenarios, sc)
	}
	if defaultErr != nil && veleroScenarios == 0 {
		d.inv.Notes = append(d.inv.Notes, fmt.Sprintf("no Velero schedules looked for: %v", defaultErr))
	}
	uniqueNames(targets)
	namespaces := map[string]*namespaceList{} // by cluster ID
	for _, t := range targets {
		nl := namespaces[t.cluster.ID]
		if nl == nil {
			nl = &namespaceList{}
			nl.items, nl.err = t.cluster.Velero.Namespaces(ctx)
			namespaces[t.cluster.ID] = nl
		}
		d.target(ctx, t, nl)
	}
}

type namespaceList struct {
	items    []Namespace
	err      error
	reported bool
}

// uniqueNames gives clusters that share a context name (two kubeconfigs, each with a context
// "admin") their API server's URL besides, so that their items stay apart.
func uniqueNames(targets []*target) {
	ids := map[string]map[string]bool{} // name -> cluster IDs
	for _, t := range targets {
		if ids[t.cluster.Name] == nil {
			ids[t.cluster.Name] = map[string]bool{}
		}
		ids[t.cluster.Name][t.cluster.ID] = true
	}
	for _, t := range targets {
		if len(ids[t.cluster.Name]) > 1 || t.cluster.Name == "" {
			t.cluster.Name = strings.TrimSpace(t.cluster.Name + " " + t.cluster.ID)
		}
	}
}

// target discovers one Velero namespace of a cluster and matches its scenarios.
func (d *discovery) target(ctx context.Context, t *target, nl *namespaceList) {
	where := fmt.Sprintf("cluster %s, Velero namespace %s", t.cluster.Name, t.namespace)
	schedules, err := t.cluster.Velero.Schedules(ctx, t.namespace)
	var backups []Backup
	if err == nil {
		backups, err = t.cluster.Velero.Backups(ctx, t.namespace)
	}
	if err != nil {
		if errors.Is(err, ErrNoVelero) && len(t.scenarios) == 0 {
			d.inv.Notes = append(d.inv.Notes, fmt.Sprintf("%s: %v", where, err))
			return
		}
		d.problemf("%s: %v", where, err)
		return
	}
	if nl.err != nil && !nl.reported {
		nl.reported = true
		d.problemf("cluster %s: list namespaces: %v", t.cluster.Name, nl.err)
	}
	nsByName := map[string]*Namespace{}
	for i := range nl.items {
		nsByName[nl.items[i].Name] = &nl.items[i]
	}
	namespaceItem := func(name string) *Item {
		it := d.item(Key{Kind: KindNamespace, Cluster: t.cluster.Name, Name: name})
		if ns := nsByName[name]; ns != nil {
			d.annotated(it, ns.Annotations, "Namespace")
		}
		return it
	}
	// The namespaces a schedule or backup backs up, as items.
	backsUp := func(included, excluded []string) []*Item {
		var out []*Item
		if len(included) == 0 || slices.Contains(included, "*") {
			for _, ns := range nl.items {
				if !ns.Scratch && !slices.Contains(excluded, ns.Name) {
					out = append(out, namespaceItem(ns.Name))
				}
			}
			return out
		}
		for _, name := range included {
			if !slices.Contains(excluded, name) {
				out = append(out, namespaceItem(name))
			}
		}
		return out
	}

	scheduleKey := func(name string) Key {
		return Key{Kind: KindSchedule, Cluster: t.cluster.Name, Namespace: t.namespace, Name: name}
	}
	scheduleNamespaces := map[string][]*Item{}
	for _, s := range schedules {
		it := d.item(scheduleKey(s.Name))
		it.Cron, it.Paused = s.Cron, s.Paused
		it.Namespaces = allOr(s.IncludedNamespaces)
		d.annotated(it, s.Annotations, "Schedule")
		scheduleNamespaces[s.Name] = backsUp(s.IncludedNamespaces, s.ExcludedNamespaces)
	}
	byName := map[string]*Backup{}
	gone := map[string]int{} // backups of schedules that no longer exist
	for i := range backups {
		b := &backups[i]
		byName[b.Name] = b
		if b.ByFiredrill {
			continue
		}
		if b.Schedule != "" {
			it := d.item(scheduleKey(b.Schedule))
			if _, ok := scheduleNamespaces[b.Schedule]; !ok {
				gone[b.Schedule]++
				it.Note = fmt.Sprintf("the Schedule no longer exists; %d of its backups remain", gone[b.Schedule])
			}
			if b.Phase == "Completed" {
				it.Backups++
				it.LatestBackup = later(it.LatestBackup, b.Started)
			}
			continue
		}
		if b.Phase != "Completed" && b.Phase != "PartiallyFailed" {
			continue // nothing a drill could restore
		}
		it := d.item(Key{Kind: KindBackup, Cluster: t.cluster.Name, Namespace: t.namespace, Name: b.Name})
		it.Namespaces = allOr(b.IncludedNamespaces)
		it.LatestBackup = later(nil, b.Started)
		d.annotated(it, b.Annotations, "Backup")
	}

	for _, sc := range t.scenarios {
		v := sc.Spec.Backup.Velero
		switch {
		case v.LatestFrom != nil:
			k := scheduleKey(v.LatestFrom.Schedule)
			if d.items[k] == nil {
				d.item(k).Note = "no such Schedule; scenario " + sc.Metadata.Name + " names it"
			}
			d.cover(d.items[k], sc)
			for _, ns := range scheduleNamespaces[v.LatestFrom.Schedule] {
				d.cover(ns, sc)
			}
		case v.Name != "":
			b := byName[v.Name]
			switch {
			case b == nil:
				it := d.item(Key{Kind: KindBackup, Cluster: t.cluster.Name, Namespace: t.namespace, Name: v.Name})
				it.Note = "no such backup; scenario " + sc.Metadata.Name + " names it"
				d.cover(it, sc)
				continue
			case b.ByFiredrill:
			case b.Schedule != "":
				d.cover(d.items[scheduleKey(b.Schedule)], sc)
			default:
				if it := d.items[Key{Kind: KindBackup, Cluster: t.cluster.Name, Namespace: t.namespace, Name: v.Name}]; it != nil {
					d.cover(it, sc)
				}
			}
			for _, ns := range backsUp(b.IncludedNamespaces, nil) {
				d.cover(ns, sc)
			}
		case v.Create != nil:
			for _, ns := range backsUp(v.Create.IncludedNamespaces, v.Create.ExcludedNamespaces) {
				d.cover(ns, sc)
			}
		}
	}
}

// allOr returns a backup's included namespaces, "*" when it names none.
func allOr(included []string) []string {
	if len(included) == 0 {
		return []string{"*"}
	}
	return slices.Clone(included)
}

func later(t *time.Time, u time.Time) *time.Time {
	if u.IsZero() || (t != nil && !u.After(*t)) {
		return t
	}
	u = u.UTC()
	return &u
}

// item returns the item of k, making it.
func (d *discovery) item(k Key) *Item {
	it := d.items[k]
	if it == nil {
		it = &Item{Kind: k.Kind, Cluster: k.Cluster, Namespace: k.Namespace, Name: k.Name, Scenarios: []string{}}
		d.items[k] = it
	}
	return it
}

// cover records that sc drills it.
func (d *discovery) cover(it *Item, sc *scenarios.Scenario) {
	if it != nil && !slices.Contains(it.Scenarios, sc.Metadata.Name) {
		it.Scenarios = append(it.Scenarios, sc.Metadata.Name)
		slices.Sort(it.Scenarios)
	}
}

// annotated applies an object's coverage annotations to its item.
func (d *discovery) annotated(it *Item, a map[string]string, kind string) {
	if r, ok := a[ExcludeAnnotation]; ok {
		it.Excluded = cmp.Or(strings.TrimSpace(r), "(no reason given)")
	}
	if v, ok := a[WindowAnnotation]; ok {
		w, err := parseWindow(v)
		if err != nil {
			d.problemf("%s %s: annotation %s: %v", kind, it.Key(), WindowAnnotation, err)
			return
		}
		it.window, it.WindowFrom = w, "annotation on the "+kind
	}
}

func parseWindow(v string) (time.Duration, error) {
	w, err := scenarios.ParseDuration(v)
	if err == nil && w <= 0 {
		err = fmt.Errorf("window %q must be longer than zero", v)
	}
	return w, err
}

// windows gives items without their own window the shortest of their scenarios'.
func (d *discovery) windows(scs []*scenarios.Scenario) {
	own := map[string]time.Duration{}
	for _, sc := range scs {
		v, ok := sc.Metadata.Annotations[WindowAnnotation]
		if !ok {
			continue
		}
		w, err := parseWindow(v)
		if err != nil {
			d.problemf("scenario %s: annotation %s: %v", sc.Metadata.Name, WindowAnnotation, err)
			continue
		}
		own[sc.Metadata.Name] = w
	}
	for _, it := range d.items {
		if it.WindowFrom != "" {
			continue
		}
		for _, name := range it.Scenarios {
			if w, ok := own[name]; ok && (it.window == 0 || w < it.window) {
				it.window, it.WindowFrom = w, "scenario "+name
			}
		}
	}
}

// etcdKey is the item of an etcd scenario's snapshot source.
func etcdKey(e *scenarios.EtcdBackup) Key {
	switch {
	case e.Take != nil:
		return Key{Kind: KindEtcdEndpoints, Name: strings.Join(e.Take.Endpoints, ",")}
	case e.LatestFrom != nil && e.LatestFrom.S3 != nil:
		s3 := e.LatestFrom.S3
		name := "s3://" + s3.Bucket + "/" + s3.Prefix
		if s3.Endpoint != "" {
			name += " at " + s3.Endpoint
		}
		return Key{Kind: KindEtcdS3, Name: name}
	case e.LatestFrom != nil:
		return Key{Kind: KindEtcdDir, Name: e.LatestFrom.Dir}
	}
	return Key{Kind: KindEtcdDir}
}
