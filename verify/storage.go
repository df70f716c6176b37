package verify

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// How kube-apiserver lays out etcd: /registry/<resource>/[<namespace>/]<name>, with the group in
// front of the resource for CRDs, APIServices and custom resources
// (/registry/<group>/<resource>/...), and a few historic names below.

// storageRoot is kube-apiserver's default --etcd-prefix.
const storageRoot = "/registry/"

// Keys under the checked prefix that hold no Kubernetes object, by design:
//   - compact_rev_key: kube-apiserver's compaction bookkeeping (the last compacted revision as
//     decimal text), at the root of the keyspace, outside /registry.
//   - /firedrill/…: firedrill's own keys, such as the default canary /firedrill/canary/<scenario>.
//
// Every key kube-apiserver v1.36 writes under /registry holds an object, including the internal
// ones that are never served (see internalDirs), so any other value that does not decode is damage.
func isNotObjectKey(key string) bool {
	return key == "compact_rev_key" || strings.HasPrefix(key, "/firedrill/")
}

// internalDirs hold objects kube-apiserver keeps for itself and never serves under their own
// name: the API server endpoint leases (v1 Endpoints without a name, one per apiserver IP, and
// one per peer for mixed-version proxying) and the service IP and node port allocation bitmaps
// (v1 RangeAllocation). They decode like any object; objectsServed does not look for them.
var internalDirs = map[string]bool{"masterleases": true, "peerserverleases": true, "ranges": true}

// storagePath splits a key below the storage root into its parts; keys under another
// --etcd-prefix lose their first segment instead.
func storagePath(key string) []string {
	rest, ok := strings.CutPrefix(key, storageRoot)
	if !ok {
		rest = strings.TrimPrefix(key, "/")
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[i+1:]
		}
	}
	return strings.Split(rest, "/")
}

// storageDir names the directory of a key as etcdctl shows it: "configmaps", "services/specs",
// "apiextensions.k8s.io/customresourcedefinitions", "example.com/widgets". It is a substring of
// key, as storagePath would split it, so that counting millions of keys allocates nothing.
func storageDir(key string) string {
	rest, ok := strings.CutPrefix(key, storageRoot)
	if !ok {
		rest = strings.TrimPrefix(key, "/")
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[i+1:]
		}
	}
	first, after, ok := strings.Cut(rest, "/")
	if !ok || (first != "services" && !strings.Contains(first, ".")) {
		return first
	}
	second, _, ok := strings.Cut(after, "/")
	if !ok { // fewer than three segments
		return first
	}
	return rest[:len(first)+1+len(second)]
}

// objectPath is the namespace and name a key stores an object under, given whether its
// resource is namespaced.
func objectPath(key string, namespaced bool) (namespace, name string) {
	p := storagePath(key)
	name = p[len(p)-1]
	if namespaced && len(p) >= 3 {
		namespace = p[len(p)-2]
	}
	return namespace, name
}

// storageDirResources are directories whose name is not their resource's.
var storageDirResources = map[string]schema.GroupResource{
	"minions":            {Resource: "nodes"},
	"services/specs":     {Resource: "services"},
	"services/endpoints": {Resource: "endpoints"},
	"controllers":        {Resource: "replicationcontrollers"},
	"ingress":            {Group: "networking.k8s.io", Resource: "ingresses"},
	"masterleases":       {Resource: "endpoints"},
	"peerserverleases":   {Resource: "endpoints"},
	"podsecuritypolicy":  {Group: "policy", Resource: "podsecuritypolicies"},
}

// storageResource is the group and resource a key belongs to, as an EncryptionConfiguration names
// it ("secrets", "deployments.apps", "widgets.example.com"). groups maps built-in resources to
// their group, since built-in keys carry no group.
func storageResource(key string, groups map[string]string) schema.GroupResource {
	dir := storageDir(key)
	if gr, ok := storageDirResources[dir]; ok {
		return gr
	}
	if g, r, ok := strings.Cut(dir, "/"); ok {
		return schema.GroupResource{Group: g, Resource: r}
	}
	return schema.GroupResource{Group: groups[dir], Resource: dir}
}

// resourceGroups maps each built-in resource name to its group, preferring the core group and
// current groups over "extensions" where a name exists in several (events, ingresses): those are
// stored once, under the preferred one.
func resourceGroups(s *runtime.Scheme) map[string]string {
	out := map[string]string{}
	for gvk := range s.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal || strings.HasSuffix(gvk.Kind, "List") {
			continue
		}
		r, _ := meta.UnsafeGuessKindToResource(gvk)
		if prev, seen := out[r.Resource]; !seen || preferGroup(gvk.Group, prev) {
			out[r.Resource] = gvk.Group
		}
	}
	return out
}

func preferGroup(g, than string) bool {
	rank := func(g string) int {
		switch g {
		case "":
			return 0
		case "extensions":
			return 2
		}
		return 1
	}
	if rank(g) != rank(than) {
		return rank(g) < rank(than)
	}
	return g < than
}
