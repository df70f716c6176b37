package verify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// ObjectsServedCheck asks the scratch kube-apiserver for every object the snapshot holds: the
// server must be ready, discovery must work, and every object must be listed under its resource.
type ObjectsServedCheck struct {
	checkName
	namespaces []string
	// wait bounds how long readiness and discovery may take to settle: a kube-apiserver that just
	// started on restored data serves custom resources only once their CRDs are established.
	wait time.Duration
}

var _ EtcdCheck = (*ObjectsServedCheck)(nil)

// NewObjectsServedCheck builds an objectsServed check; no namespaces means all objects, cluster-
// scoped ones included.
func NewObjectsServedCheck(name string, spec scenarios.ObjectsServedCheck) *ObjectsServedCheck {
	return &ObjectsServedCheck{checkName: newCheckName(name, scenarios.CheckObjectsServed), namespaces: spec.Namespaces, wait: 30 * time.Second}
}

// listPage is the page size of list requests to the scratch apiserver.
const listPage = 500

// Run compares what the restored etcd holds, at the restored revision, with what the API serves.
func (c *ObjectsServedCheck) Run(ctx context.Context, t *EtcdTarget) Outcome {
	ev := map[string]any{}
	if len(c.namespaces) > 0 {
		ev["namespaces"] = c.namespaces
	}
	if t.APIServer == nil {
		return errorOutcome(ev, "objectsServed needs the scratch kube-apiserver: set restore.scratchEtcd.apiServer")
	}
	if t.Restored == nil {
		return noRestore(ev)
	}
	cfg := rest.CopyConfig(t.APIServer)
	cfg.QPS, cfg.Burst = 100, 200
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return errorOutcome(ev, "client of the scratch kube-apiserver: %v", err)
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return errorOutcome(ev, "client of the scratch kube-apiserver: %v", err)
	}
	if out, ok := c.ready(ctx, dc, ev); !ok {
		return out
	}

	snap, err := c.snapshotObjects(ctx, t)
	if err != nil {
		return errorOutcome(ev, "read the objects of the restored etcd: %v", err)
	}
	ev["revision"], ev["undecodable"], ev["notDecrypted"] = snap.revision, snap.undecodable, snap.encrypted

	served, failures, err := c.discover(ctx, dc, snap)
	if err != nil {
		return failedOutcome(ev, "discovery of the scratch kube-apiserver failed: %v", err)
	}
	if len(failures) > 0 {
		ev["discoveryFailures"] = failures
	}
	cmp := c.compare(ctx, mc, snap, served, failures)
	cmp.evidence(ev)
	return c.judge(ev, snap, cmp, failures)
}

// ready polls /readyz until it answers ok or the wait is over.
func (c *ObjectsServedCheck) ready(ctx context.Context, dc *discovery.DiscoveryClient, ev map[string]any) (Outcome, bool) {
	deadline := time.Now().Add(c.wait)
	for {
		var code int
		res := dc.RESTClient().Get().AbsPath("/readyz").Param("verbose", "true").Do(ctx)
		body, err := res.StatusCode(&code).Raw()
		if err == nil && code == 200 {
			ev["ready"] = true
			return Outcome{}, true
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			ev["ready"] = false
			if code == 0 {
				return errorOutcome(ev, "scratch kube-apiserver unreachable at %s: %v", dc.RESTClient().Get().URL().Host, err), false
			}
			return failedOutcome(ev, "scratch kube-apiserver not ready after %s (HTTP %d): %s; see its log", c.wait, code, failingChecks(body)), false
		}
		sleep(ctx, time.Second)
	}
}

// failingChecks picks the "[-]name failed" lines of a verbose /readyz answer.
func failingChecks(body []byte) string {
	var out []string
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "[-]") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	if len(out) == 0 {
		return "no failing check named"
	}
	return strings.Join(out, ", ")
}

// snapshotSet is what the restored etcd holds, per kind: the identities ("namespace/name", or
// "name" when cluster-scoped) taken from the keys, which is where the API looks objects up.
type snapshotSet struct {
	revision               int64
	byKind                 map[schema.GroupKind]map[string]bool
	undecodable, encrypted int64
	ignored                int64
	// Objects whose stored name or namespace is not the one of their key: the API cannot serve
	// them under the key's name.
	mismatched      int64
	firstMismatched []string
}

func (c *ObjectsServedCheck) snapshotObjects(ctx context.Context, t *EtcdTarget) (*snapshotSet, error) {
	rr, err := restoredRevision(ctx, t)
	if err != nil {
		return nil, err
	}
	cod, err := newCodec()
	if err != nil {
		return nil, err
	}
	if t.EncryptionConfig != "" {
		d, err := loadDecryption(ctx, t.EncryptionConfig)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		cod.decryption = d
	}
	inNS := map[string]bool{}
	for _, ns := range c.namespaces {
		inNS[ns] = true
	}
	s := &snapshotSet{revision: rr.Rev, byKind: map[schema.GroupKind]map[string]bool{}}
	var mu sync.Mutex
	visit := func(key string, d decodedValue) {
		if d.Class != classObject && d.Class != classUnknownKind {
			return
		}
		gk := d.GVK.GroupKind()
		ns, name := objectPath(key, d.Namespace != "")
		keep := len(inNS) == 0 || (ns != "" && inNS[ns]) || (gk == schema.GroupKind{Kind: "Namespace"} && inNS[name])
		if !keep {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ignoredBothWays(gk, ns) {
			s.ignored++
			return
		}
		if d.Class == classObject && (name != d.Name || ns != d.Namespace) {
			s.mismatched++
			if len(s.firstMismatched) < maxListed {
				s.firstMismatched = append(s.firstMismatched, fmt.Sprintf("%s holds %s %s", key, gk.Kind, identity(d.Namespace, d.Name)))
			}
		}
		if s.byKind[gk] == nil {
			s.byKind[gk] = map[string]bool{}
		}
		s.byKind[gk][identity(ns, name)] = true
	}
	decode := func(ctx context.Context, key string, value []byte, buf decodeBuffer) decodedValue {
		if internalDirs[storageDir(key)] {
			return decodedValue{Class: classNotObject}
		}
		return cod.Decode(ctx, key, value, buf)
	}
	st, err := decodeAll(ctx, etcdSource(t.Restored, storageRoot, rr.Rev), runtime.GOMAXPROCS(0), decode, visit)
	if err != nil {
		return nil, err
	}
	s.undecodable, s.encrypted = st.undecodable, st.encrypted
	slices.Sort(s.firstMismatched)
	return s, nil
}

func identity(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// servedResource is a listable resource of the API, in its preferred version.
type servedResource struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

// discover finds the listable resources, again and again until every kind of the snapshot is
// served or the wait is over. Groups whose discovery fails are returned, not fatal: aggregated
// APIs have no backend behind a scratch apiserver.
func (c *ObjectsServedCheck) discover(ctx context.Context, dc *discovery.DiscoveryClient, snap *snapshotSet) (map[schema.GroupKind]servedResource, map[string]string, error) {
	deadline := time.Now().Add(c.wait)
	for {
		lists, err := dc.ServerPreferredResources()
		failures := map[string]string{}
		var partial *discovery.ErrGroupDiscoveryFailed
		switch {
		case errors.As(err, &partial):
			for gv, e := range partial.Groups {
				failures[gv.String()] = e.Error()
			}
		case err != nil:
			if ctx.Err() != nil || time.Now().After(deadline) {
				return nil, nil, err
			}
			sleep(ctx, time.Second)
			continue
		}
		served := map[schema.GroupKind]servedResource{}
		for _, l := range lists {
			gv, err := schema.ParseGroupVersion(l.GroupVersion)
			if err != nil {
				continue
			}
			for _, r := range l.APIResources {
				if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
					continue
				}
				served[gv.WithKind(r.Kind).GroupKind()] = servedResource{gvr: gv.WithResource(r.Name), namespaced: r.Namespaced}
			}
		}
		complete := true
		for gk := range snap.byKind {
			if _, ok := served[gk]; !ok {
				complete = false
			}
		}
		if complete || ctx.Err() != nil || time.Now().After(deadline) {
			return served, failures, nil
		}
		sleep(ctx, time.Second)
	}
}

// kindResult compares one kind.
type kindResult struct {
	Resource string `json:"-"`
	Snapshot int    `json:"snapshot"`
	Served   int    `json:"served"`
	Missing  int    `json:"missing,omitempty"`
	Extra    int    `json:"extra,omitempty"`
	Error    string `json:"error,omitempty"`
}

type comparison struct {
	kinds                      map[schema.GroupKind]*kindResult
	missing, extra             int
	firstMissing, firstExtra   []string
	snapshotTotal, servedTotal int
	ignored                    int
}

func (c *ObjectsServedCheck) compare(ctx context.Context, mc metadata.Interface, snap *snapshotSet, served map[schema.GroupKind]servedResource, failures map[string]string) *comparison {
	out := &comparison{kinds: map[schema.GroupKind]*kindResult{}, ignored: int(snap.ignored)}
	for gk := range snap.byKind {
		out.kinds[gk] = &kindResult{Resource: gk.String()}
	}
	for gk, r := range served {
		if out.kinds[gk] == nil {
			out.kinds[gk] = &kindResult{}
		}
		out.kinds[gk].Resource = r.gvr.GroupResource().String()
	}
	for _, gk := range slices.SortedFunc(maps.Keys(out.kinds), func(a, b schema.GroupKind) int { return strings.Compare(a.String(), b.String()) }) {
		kr := out.kinds[gk]
		want := snap.byKind[gk]
		kr.Snapshot = len(want)
		out.snapshotTotal += len(want)
		have := map[string]bool{}
		r, ok := served[gk]
		switch {
		case !ok:
			kr.Error = "not served: the API does not offer this kind"
			if f, bad := failures[gk.Group]; bad {
				kr.Error = "not served: discovery of its group failed: " + f
			}
		default:
			var err error
			have, err = c.list(ctx, mc, r)
			if err != nil {
				kr.Error = "list: " + err.Error()
			}
		}
		for id := range have {
			ns, name, _ := strings.Cut(id, "/")
			if name == "" {
				ns, name = "", ns
			}
			if ignoredBothWays(gk, ns) {
				delete(have, id)
				out.ignored++
			}
		}
		kr.Served = len(have)
		out.servedTotal += len(have)
		for _, id := range slices.Sorted(maps.Keys(want)) {
			if !have[id] {
				kr.Missing++
				out.missing++
				if len(out.firstMissing) < maxListed {
					out.firstMissing = append(out.firstMissing, kr.Resource+" "+id)
				}
			}
		}
		for _, id := range slices.Sorted(maps.Keys(have)) {
			ns, name, _ := strings.Cut(id, "/")
			if name == "" {
				ns, name = "", ns
			}
			if want[id] || ignoredExtra(gk, ns, name) {
				continue
			}
			kr.Extra++
			out.extra++
			if len(out.firstExtra) < maxListed {
				out.firstExtra = append(out.firstExtra, kr.Resource+" "+id)
			}
		}
		if kr.Snapshot == 0 && kr.Served == 0 && kr.Error == "" {
			delete(out.kinds, gk)
		}
	}
	return out
}

// list returns the identities of the objects served for r, in the chosen namespaces, page by page
// through the metadata API (no object bodies, no Secret data).
func (c *ObjectsServedCheck) list(ctx context.Context, mc metadata.Interface, r servedResource) (map[string]bool, error) {
	out := map[string]bool{}
	var scopes []string // namespaces to list; "" is all
	switch {
	case len(c.namespaces) == 0:
		scopes = []string{""}
	case r.namespaced:
		scopes = c.namespaces
	case r.gvr.GroupResource() == schema.GroupResource{Resource: "namespaces"}:
		scopes = []string{""}
	default:
		return out, nil // cluster-scoped objects are outside the chosen namespaces
	}
	inNS := map[string]bool{}
	for _, ns := range c.namespaces {
		inNS[ns] = true
	}
	for _, ns := range scopes {
		opts := metav1.ListOptions{Limit: listPage}
		for {
			l, err := mc.Resource(r.gvr).Namespace(ns).List(ctx, opts)
			if err != nil {
				return out, err
			}
			for _, it := range l.Items {
				if !r.namespaced && len(inNS) > 0 && !inNS[it.Name] {
					continue
				}
				out[identity(it.Namespace, it.Name)] = true
			}
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
		}
	}
	return out, nil
}

func (cmp *comparison) evidence(ev map[string]any) {
	perResource := map[string]*kindResult{}
	for _, kr := range cmp.kinds {
		perResource[kr.Resource] = kr
	}
	ev["perResource"] = perResource
	ev["snapshotObjects"], ev["servedObjects"] = cmp.snapshotTotal, cmp.servedTotal
	ev["missing"], ev["extra"], ev["ignored"] = cmp.missing, cmp.extra, cmp.ignored
	if len(cmp.firstMissing) > 0 {
		ev["firstMissing"] = cmp.firstMissing
	}
	if len(cmp.firstExtra) > 0 {
		ev["firstExtra"] = cmp.firstExtra
	}
}

func (c *ObjectsServedCheck) judge(ev map[string]any, snap *snapshotSet, cmp *comparison, failures map[string]string) Outcome {
	where := "all namespaces"
	if len(c.namespaces) > 0 {
		where = "namespaces " + strings.Join(c.namespaces, ", ")
	}
	var problems, notes []string
	if cmp.missing > 0 {
		var why []string
		for _, kr := range cmp.kinds {
			if kr.Error != "" && kr.Missing > 0 {
				why = append(why, kr.Resource+": "+kr.Error)
			}
		}
		slices.Sort(why)
		p := fmt.Sprintf("%d of %d objects of the snapshot (%s) are not served by the scratch kube-apiserver: %s", cmp.missing, cmp.snapshotTotal, where, strings.Join(cmp.firstMissing, ", "))
		if len(why) > 0 {
			p += " (" + strings.Join(why, "; ") + ")"
		}
		problems = append(problems, p)
	}
	if snap.mismatched > 0 {
		ev["keyMismatches"], ev["firstKeyMismatches"] = snap.mismatched, snap.firstMismatched
		problems = append(problems, fmt.Sprintf("objects stored under a key that is not their namespace/name, which the API cannot serve under that key (%d): %s", snap.mismatched, strings.Join(snap.firstMismatched, ", ")))
	}
	if cmp.extra > 0 {
		notes = append(notes, fmt.Sprintf("objects served but not in the snapshot (%d): %s", cmp.extra, strings.Join(cmp.firstExtra, ", ")))
	}
	if len(failures) > 0 {
		notes = append(notes, fmt.Sprintf("discovery failed for %s (aggregated APIs have no backend behind a scratch apiserver)", strings.Join(slices.Sorted(maps.Keys(failures)), ", ")))
	}
	if n := snap.undecodable + snap.encrypted; n > 0 {
		notes = append(notes, fmt.Sprintf("keys not compared because they do not decode or decrypt (%d): see etcdObjectsDecode", n))
	}
	if len(problems) > 0 {
		return failedOutcome(ev, "%s", strings.Join(append(problems, notes...), "; "))
	}
	if cmp.snapshotTotal == 0 {
		return failedOutcome(ev, "%s", strings.Join(append([]string{fmt.Sprintf("the snapshot holds no objects in %s: nothing to prove (wrong namespaces?)", where)}, notes...), "; "))
	}
	msg := fmt.Sprintf("all %d objects of the snapshot (%s, %d kinds) are served by the scratch kube-apiserver", cmp.snapshotTotal, where, len(snap.byKind))
	return passedOutcome(ev, "%s", strings.Join(append([]string{msg}, notes...), "; "))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
