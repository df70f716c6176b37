package verify

import "k8s.io/apimachinery/pkg/runtime/schema"

// What objectsServed does not compare, and why. The rule, exactly:
//
//  1. Keys in internalDirs (/registry/masterleases/, /registry/peerserverleases/,
//     /registry/ranges/) are never looked for: kube-apiserver keeps them for itself and serves
//     none of them.
//  2. Events (v1 Event and events.k8s.io Event, one storage) are not compared either way: they
//     expire an hour after they were written, and every apiserver writes new ones.
//  3. Leases (coordination.k8s.io) in kube-system are not compared either way: the scratch
//     apiserver creates its own identity lease (apiserver-…) and garbage-collects the expired
//     identity leases of the source cluster's apiservers; leader-election leases belong to
//     components that are not running.
//  4. ComponentStatuses are not compared either way: the API computes them on request and never
//     stores them.
//  5. Served but not in the snapshot, and so not reported as extra: the Service, Endpoints and
//     EndpointSlice named kubernetes in default, which a starting kube-apiserver (re)creates for
//     itself.
//
// Everything else the snapshot holds must be served, and everything else served that the snapshot
// does not hold is reported (not failed).

// ignoredBothWays says whether an object is never compared (rules 2 to 4).
func ignoredBothWays(gk schema.GroupKind, namespace string) bool {
	switch {
	case gk == schema.GroupKind{Kind: "ComponentStatus"}:
		return true
	case gk.Kind == "Event" && (gk.Group == "" || gk.Group == "events.k8s.io"):
		return true
	case gk.Group == "coordination.k8s.io" && gk.Kind == "Lease" && namespace == "kube-system":
		return true
	}
	return false
}

// ignoredExtra says whether an object the API serves may be missing from the snapshot (rule 5).
func ignoredExtra(gk schema.GroupKind, namespace, name string) bool {
	if namespace != "default" || name != "kubernetes" {
		return false
	}
	switch gk {
	case schema.GroupKind{Kind: "Service"}, schema.GroupKind{Kind: "Endpoints"},
		schema.GroupKind{Group: "discovery.k8s.io", Kind: "EndpointSlice"}:
		return true
	}
	return false
}
