package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fieldPath is a path into an object: map keys, list indexes in decimal, "*" for any key or index.
// ignoreFields are read with scenarios.SplitFieldPath, as validation reads them.
type fieldPath []string

// ignoreNode is a tree of paths left out of a comparison.
type ignoreNode struct {
	leaf     bool // everything from here down
	children map[string]*ignoreNode
	prefixes []string // child keys starting with one of these
}

func newIgnore(paths ...fieldPath) *ignoreNode {
	n := &ignoreNode{}
	for _, p := range paths {
		n.add(p)
	}
	return n
}

func (n *ignoreNode) child(k string) *ignoreNode {
	if n.children == nil {
		n.children = map[string]*ignoreNode{}
	}
	c := n.children[k]
	if c == nil {
		c = &ignoreNode{}
		n.children[k] = c
	}
	return c
}

func (n *ignoreNode) add(p fieldPath) {
	for _, k := range p {
		n = n.child(k)
	}
	n.leaf = true
}

// addPrefix ignores the keys under p that start with prefix.
func (n *ignoreNode) addPrefix(p fieldPath, prefix string) {
	for _, k := range p {
		n = n.child(k)
	}
	n.prefixes = append(n.prefixes, prefix)
}

// step descends from nodes into key k: the nodes that still apply, or ignored when k is left out.
func step(nodes []*ignoreNode, k string) (next []*ignoreNode, ignored bool) {
	for _, n := range nodes {
		for _, p := range n.prefixes {
			if strings.HasPrefix(k, p) {
				return nil, true
			}
		}
		for _, c := range []*ignoreNode{n.children[k], n.children["*"]} {
			if c == nil {
				continue
			}
			if c.leaf {
				return nil, true
			}
			next = append(next, c)
		}
	}
	return next, false
}

// maxPathsPerObject is how many differing paths of one object are named.
const maxPathsPerObject = 5

// differ compares a backed-up object with its restored copy and collects the differing paths,
// never values.
type differ struct {
	// secretData compares the values under data by their SHA-256 (Secrets).
	secretData bool
	// listFilter, when set, drops list entries that legitimately differ before comparing.
	listFilter func(path fieldPath, l []any) []any
	paths      []string
	n          int
}

func (d *differ) report(rendered, what string) {
	d.n++
	if len(d.paths) < maxPathsPerObject {
		d.paths = append(d.paths, rendered+": "+what)
	}
}

// summary is the differing paths, joined.
func (d *differ) summary() string {
	s := strings.Join(d.paths, ", ")
	if d.n > len(d.paths) {
		s += fmt.Sprintf(" and %d more", d.n-len(d.paths))
	}
	return s
}

func (d *differ) compare(path fieldPath, rendered string, nodes []*ignoreNode, a, b any) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			d.report(rendered, "differs")
			return
		}
		keys := slices.Sorted(maps.Keys(av))
		for k := range bv {
			if _, dup := av[k]; !dup {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			next, ignored := step(nodes, k)
			if ignored {
				continue
			}
			x, y := av[k], bv[k]
			sub := renderKey(rendered, k)
			// An absent map is an empty one: what is left out of the other side still is.
			if _, ok := y.(map[string]any); ok && isEmpty(x) {
				x = map[string]any{}
			} else if _, ok := x.(map[string]any); ok && isEmpty(y) {
				y = map[string]any{}
			}
			switch {
			case isEmpty(x) && isEmpty(y):
			case isEmpty(x) && !isMap(y):
				d.report(sub, "only in the restored object")
			case isEmpty(y) && !isMap(x):
				d.report(sub, "only in the backup")
			case d.secretData && len(path) == 0 && k == "data":
				d.compareDigests(sub, next, x, y)
			default:
				d.compare(append(path, k), sub, next, x, y)
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok {
			d.report(rendered, "differs")
			return
		}
		if d.listFilter != nil {
			av, bv = d.listFilter(path, av), d.listFilter(path, bv)
		}
		if len(av) != len(bv) {
			d.report(rendered, fmt.Sprintf("%d items in the backup, %d restored", len(av), len(bv)))
			return
		}
		for i := range av {
			k := strconv.Itoa(i)
			next, ignored := step(nodes, k)
			if ignored {
				continue
			}
			d.compare(append(path, k), rendered+"["+k+"]", next, av[i], bv[i])
		}
	default:
		if !scalarEqual(a, b) {
			d.report(rendered, "differs")
		}
	}
}

// compareDigests compares a Secret's data key by key by the SHA-256 of each decoded value.
func (d *differ) compareDigests(rendered string, nodes []*ignoreNode, a, b any) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		d.report(rendered, "differs")
		return
	}
	keys := slices.Sorted(maps.Keys(am))
	for k := range bm {
		if _, dup := am[k]; !dup {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if _, ignored := step(nodes, k); ignored {
			continue
		}
		x, xok := am[k]
		y, yok := bm[k]
		sub := renderKey(rendered, k)
		switch {
		case !xok:
			d.report(sub, "only in the restored object")
		case !yok:
			d.report(sub, "only in the backup")
		case secretDigest(x) != secretDigest(y):
			d.report(sub, "differs")
		}
	}
}

// secretDigest is the SHA-256 of a Secret value as the API writes it (base64).
func secretDigest(v any) [32]byte {
	s, _ := v.(string)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return sha256.Sum256(b)
	}
	return sha256.Sum256([]byte(s))
}

func isMap(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(v) == 0
	case []any:
		return len(v) == 0
	}
	return false
}

func scalarEqual(a, b any) bool {
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x == y
	}
	switch a.(type) {
	case string, bool, nil:
		return a == b
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil && !math.IsNaN(f)
	}
	return 0, false
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func renderKey(rendered, k string) string {
	switch {
	case !plainKey.MatchString(k):
		return rendered + "[" + k + "]"
	case rendered == "":
		return k
	}
	return rendered + "." + k
}

// What legitimately differs between a backed-up object and its restored copy, for every kind:
// the metadata the API server assigns (uid, resourceVersion, generation, creationTimestamp,
// deletion fields, managedFields, selfLink), generateName (Velero's resetMetadata drops it), the
// namespace (mapped), the uids of ownerReferences (the owners are new objects), labels and
// annotations under velero.io/ (velero.io/backup-name, velero.io/restore-name, ...) and status.
var commonIgnores = func() *ignoreNode {
	n := newIgnore(fieldPath{"status"}, fieldPath{"metadata", "ownerReferences", "*", "uid"})
	for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
		"deletionGracePeriodSeconds", "managedFields", "selfLink", "generateName", "namespace"} {
		n.add(fieldPath{"metadata", f})
	}
	n.addPrefix(fieldPath{"metadata", "labels"}, "velero.io/")
	n.addPrefix(fieldPath{"metadata", "annotations"}, "velero.io/")
	return n
}()

// kindIgnores is what Velero's restore item actions change (pkg/restore/actions in Velero):
//   - Service (service_action.go): the node ports (spec.ports[*].nodePort,
//     spec.healthCheckNodePort) are cleared and reassigned; the cluster IPs in conditionalIgnores;
//   - Job (job_action.go): the controller-uid labels of the selector and template, which the API
//     server sets again with the new uid (and on the Job itself);
//   - Pod (pod_action.go): spec.nodeName and spec.priority;
//   - PersistentVolumeClaim (pvc_action.go, restore.go resetVolumeBindingInfo): the binding
//     annotations and spec.volumeName, since the claim binds to a volume of the target.
var kindIgnores = map[schema.GroupKind]func(n *ignoreNode){
	{Kind: "Service"}: func(n *ignoreNode) {
		n.add(fieldPath{"spec", "ports", "*", "nodePort"})
		n.add(fieldPath{"spec", "healthCheckNodePort"})
	},
	{Group: "batch", Kind: "Job"}: func(n *ignoreNode) {
		for _, l := range []string{"controller-uid", "batch.kubernetes.io/controller-uid"} {
			n.add(fieldPath{"metadata", "labels", l})
			n.add(fieldPath{"spec", "selector", "matchLabels", l})
			n.add(fieldPath{"spec", "template", "metadata", "labels", l})
		}
	},
	{Kind: "Pod"}: func(n *ignoreNode) {
		n.add(fieldPath{"spec", "nodeName"})
		n.add(fieldPath{"spec", "priority"})
	},
	{Kind: "PersistentVolumeClaim"}: func(n *ignoreNode) {
		for _, a := range []string{"pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
			"volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/storage-provisioner",
			"volume.kubernetes.io/selected-node"} {
			n.add(fieldPath{"metadata", "annotations", a})
		}
		n.add(fieldPath{"spec", "volumeName"})
	},
}

// staticIgnores is the tree of one kind: common, the kind's, and the scenario's ignoreFields.
func staticIgnores(gk schema.GroupKind, user []fieldPath) *ignoreNode {
	n := newIgnore(user...)
	if f := kindIgnores[gk]; f != nil {
		f(n)
	}
	return n
}

// conditionalIgnores is what legitimately differs depending on the pair of objects:
//   - ownerReferences altogether when the restored object has none (Velero's resetMetadata drops
//     them; only controllers that adopt the object set them again);
//   - a Service's spec.clusterIP and spec.clusterIPs unless headless ("None", which Velero keeps);
//   - the isolation's changes: a NodePort or LoadBalancer Service restored as ClusterIP (spec.type
//     and the fields only external Services have), a CronJob restored suspended (spec.suspend);
//   - a service-account-token Secret's token, ca.crt and namespace (secret_action.go clears them,
//     the token controller fills them for the target) and its kubernetes.io/service-account.uid.
func conditionalIgnores(gk schema.GroupKind, a, b map[string]any) *ignoreNode {
	n := &ignoreNode{}
	if refs, _ := nestedField(b, "metadata", "ownerReferences").([]any); len(refs) == 0 {
		n.add(fieldPath{"metadata", "ownerReferences"})
	}
	switch gk {
	case schema.GroupKind{Kind: "Service"}:
		if ip, _ := nestedString(a, "spec", "clusterIP"); ip != "None" {
			n.add(fieldPath{"spec", "clusterIP"})
			n.add(fieldPath{"spec", "clusterIPs"})
		}
		from, _ := nestedString(a, "spec", "type")
		to, _ := nestedString(b, "spec", "type")
		if (from == "NodePort" || from == "LoadBalancer") && (to == "ClusterIP" || to == "") {
			for _, f := range []string{"type", "externalTrafficPolicy", "allocateLoadBalancerNodePorts",
				"loadBalancerClass", "loadBalancerIP", "loadBalancerSourceRanges"} {
				n.add(fieldPath{"spec", f})
			}
		}
	case schema.GroupKind{Group: "batch", Kind: "CronJob"}:
		if s, _ := nestedField(b, "spec", "suspend").(bool); s {
			n.add(fieldPath{"spec", "suspend"})
		}
	case schema.GroupKind{Kind: "Secret"}:
		if typ, _ := nestedString(a, "type"); typ == "kubernetes.io/service-account-token" {
			for _, k := range []string{"token", "ca.crt", "namespace"} {
				n.add(fieldPath{"data", k})
			}
			n.add(fieldPath{"metadata", "annotations", "kubernetes.io/service-account.uid"})
		}
	}
	return n
}

// listFilterFor drops list entries that legitimately differ: a Pod's service account token
// volumes and their mounts (pod_action.go drops "<sa>-token-" volumes; the API adds
// "kube-api-access-" ones), and a ServiceAccount's "<sa>-token-" secrets
// (service_account_action.go).
func listFilterFor(gk schema.GroupKind, a map[string]any) func(fieldPath, []any) []any {
	switch gk {
	case schema.GroupKind{Kind: "Pod"}:
		sa, _ := nestedString(a, "spec", "serviceAccountName")
		prefixes := []string{"kube-api-access-"}
		if sa != "" {
			prefixes = append(prefixes, sa+"-token-")
		}
		return func(p fieldPath, l []any) []any {
			if !pathIs(p, "spec", "volumes") && !pathIs(p, "spec", "containers", "*", "volumeMounts") &&
				!pathIs(p, "spec", "initContainers", "*", "volumeMounts") {
				return l
			}
			return dropNamed(l, prefixes)
		}
	case schema.GroupKind{Kind: "ServiceAccount"}:
		name, _ := nestedString(a, "metadata", "name")
		return func(p fieldPath, l []any) []any {
			if !pathIs(p, "secrets") {
				return l
			}
			return dropNamed(l, []string{name + "-token-"})
		}
	}
	return nil
}

func pathIs(p fieldPath, pattern ...string) bool {
	if len(p) != len(pattern) {
		return false
	}
	for i := range p {
		if pattern[i] != "*" && pattern[i] != p[i] {
			return false
		}
	}
	return true
}

func dropNamed(l []any, prefixes []string) []any {
	var out []any
	for _, e := range l {
		m, _ := e.(map[string]any)
		name, _ := m["name"].(string)
		if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func nestedField(o map[string]any, fields ...string) any {
	var v any = o
	for _, f := range fields {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[f]
	}
	return v
}

// diffObjects compares a backed-up object with its restored copy; it returns how many paths
// differ and the first of them ("data.currency: differs"), never a value.
func diffObjects(gk schema.GroupKind, static *ignoreNode, a, b map[string]any) (int, string) {
	d := &differ{secretData: gk == schema.GroupKind{Kind: "Secret"}, listFilter: listFilterFor(gk, a)}
	d.compare(nil, "", []*ignoreNode{commonIgnores, static, conditionalIgnores(gk, a, b)}, a, b)
	return d.n, d.summary()
}
