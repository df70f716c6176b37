package verify

import (
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// What a Velero restore leaves out by design, and so what objectsRestored does not call missing.
// The rules, exactly, with where Velero (v1.18) decides them:
//
//  1. clusterScoped: items without a namespace, except namespaces themselves. firedrill restores
//     into scratch namespaces with cluster-scoped resources excluded (docs/architecture.md,
//     safety rule 3). A backed-up Namespace counts as restored when its mapped namespace exists.
//  2. excluded: items of VeleroTarget.ExcludedResources (the isolation's exclusions), matched as
//     Velero names them and as the resource the name resolves to; "*" excludes everything.
//  3. neverRestored: Velero's nonRestorableResources, added to every restore's excluded resources
//     (pkg/controller/restore_controller.go, nonRestorableResources): nodes, events,
//     events.events.k8s.io, backups.velero.io, restores.velero.io, resticrepositories.velero.io,
//     backuprepositories.velero.io, csinodes.storage.k8s.io, volumeattachments.storage.k8s.io.
//  4. completed: Pods in phase Succeeded or Failed and Jobs with status.completionTime
//     (pkg/restore/restore.go, isCompleted, called from restoreItem: "is complete - skipping").
//  5. mirrorPod: Pods annotated kubernetes.io/config.mirror (pkg/restore/restore.go, restoreItem:
//     "Not restoring pod because it's a mirror pod").
//  6. serviceAccountToken: Secrets of type kubernetes.io/service-account-token named
//     "<service account>-token-…" (pkg/restore/actions/secret_action.go: Velero skips them when the
//     service account exists in the target; the token controller makes new ones). The service
//     account is taken from the Secret's kubernetes.io/service-account.name annotation.
//
// Velero does restore Pods owned by ReplicaSets, StatefulSets and Jobs (pod_action.go only clears
// spec.nodeName and spec.priority), without their ownerReferences (restore.go, resetMetadata); the
// controllers adopt them again. So one more rule applies to items that are not in the target:
//
//  7. replaced: an item whose backed-up ownerReferences name a controller that exists in the target
//     namespace was restored and then replaced by that controller (EndpointSlices of Services are
//     always replaced by the endpointslice controller under new names; Pods may be replaced by
//     their ReplicaSet). It is counted as replaced, not missing.
//
// Objects in a target namespace that the backup does not hold are "extra" and listed, except what
// the control plane and firedrill create there (ignoredExtra):
//
//   - events and events.events.k8s.io, which controllers write all the time (never listed);
//   - the ConfigMap kube-root-ca.crt and the ServiceAccount default, which kube-controller-manager
//     creates in every namespace;
//   - Endpoints named like a Service of the namespace and EndpointSlices labelled
//     kubernetes.io/service-name with one;
//   - objects whose controller (ownerReferences, controller: true) is an object of the namespace:
//     ReplicaSets of Deployments, Pods of ReplicaSets, StatefulSets, DaemonSets and Jobs,
//     ControllerRevisions, and so on down the chain;
//   - objects labelled app.kubernetes.io/managed-by=firedrill: the isolation's NetworkPolicy and
//     ResourceQuota, and the job check's Job and Pods.

// Reasons an item of the backup is not expected in the target (keys of evidence "notRestored").
const (
	skipClusterScoped       = "clusterScoped"
	skipExcluded            = "excluded"
	skipNeverRestored       = "neverRestored"
	skipCompleted           = "completed"
	skipMirrorPod           = "mirrorPod"
	skipServiceAccountToken = "serviceAccountToken"
)

// veleroNonRestorable is Velero's nonRestorableResources (rule 3).
var veleroNonRestorable = map[schema.GroupResource]bool{
	{Resource: "nodes"}:                                      true,
	{Resource: "events"}:                                     true,
	{Group: "events.k8s.io", Resource: "events"}:             true,
	{Group: "velero.io", Resource: "backups"}:                true,
	{Group: "velero.io", Resource: "restores"}:               true,
	{Group: "velero.io", Resource: "resticrepositories"}:     true,
	{Group: "velero.io", Resource: "backuprepositories"}:     true,
	{Group: "storage.k8s.io", Resource: "csinodes"}:          true,
	{Group: "storage.k8s.io", Resource: "volumeattachments"}: true,
}

var (
	grNamespaces  = schema.GroupResource{Resource: "namespaces"}
	grPods        = schema.GroupResource{Resource: "pods"}
	grJobs        = schema.GroupResource{Group: "batch", Resource: "jobs"}
	grSecrets     = schema.GroupResource{Resource: "secrets"}
	grConfigMaps  = schema.GroupResource{Resource: "configmaps"}
	gkService     = schema.GroupKind{Kind: "Service"}
	gkEndpoints   = schema.GroupKind{Kind: "Endpoints"}
	gkEndpointSl  = schema.GroupKind{Group: "discovery.k8s.io", Kind: "EndpointSlice"}
	gkConfigMap   = schema.GroupKind{Kind: "ConfigMap"}
	gkServiceAcct = schema.GroupKind{Kind: "ServiceAccount"}
)

const (
	managedByLabel  = "app.kubernetes.io/managed-by"
	managedByValue  = "firedrill"
	runLabel        = "firedrill.dev/run"
	rootCAConfigMap = "kube-root-ca.crt"
)

// notRestoredReason says why Velero did not restore a backed-up item (rules 1 to 6), or "" when
// it should be in the target.
func notRestoredReason(it velero.Item, gr schema.GroupResource, excluded excludedSet) string {
	switch {
	case veleroNonRestorable[gr]:
		return skipNeverRestored
	case excluded.has(gr):
		return skipExcluded
	case it.Namespace == "" && gr != grNamespaces:
		return skipClusterScoped
	}
	if it.Object == nil {
		return ""
	}
	o := it.Object.Object
	switch gr {
	case grPods:
		if it.Object.GetAnnotations()["kubernetes.io/config.mirror"] != "" {
			return skipMirrorPod
		}
		if phase, _ := nestedString(o, "status", "phase"); phase == "Succeeded" || phase == "Failed" {
			return skipCompleted
		}
	case grJobs:
		if ct, _ := nestedString(o, "status", "completionTime"); ct != "" {
			return skipCompleted
		}
	case grSecrets:
		if typ, _ := nestedString(o, "type"); typ == "kubernetes.io/service-account-token" {
			sa := it.Object.GetAnnotations()["kubernetes.io/service-account.name"]
			if sa != "" && strings.HasPrefix(it.Name, sa+"-token-") {
				return skipServiceAccountToken
			}
		}
	}
	return ""
}

// nestedString reads a string field of an unstructured object; ok is false when the field is
// missing or not a string.
func nestedString(o map[string]any, fields ...string) (string, bool) {
	var v any = o
	for _, f := range fields {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		v = m[f]
	}
	s, ok := v.(string)
	return s, ok
}
