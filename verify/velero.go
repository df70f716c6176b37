package verify

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
)

// BackupItem is one object of a Velero backup, as its contents hold it.
type BackupItem struct {
	// Resource as Velero names it: plural and group, "deployments.apps", "configmaps".
	Resource  string
	Namespace string // empty for cluster-scoped items
	Name      string
	Object    *unstructured.Unstructured
}

// VeleroTarget is everything the Velero checks look at: the backup's items and the cluster and
// namespaces they were restored into.
type VeleroTarget struct {
	Scenario string
	RunID    string
	// Config reaches the cluster the backup was restored into (the source cluster for scratch
	// namespaces, or the second cluster).
	Config *rest.Config
	// NamespaceMapping maps each backed-up namespace to the namespace it was restored into.
	NamespaceMapping map[string]string
	// Items are the backup's contents.
	Items []BackupItem
	// ExcludedResources are resources the restore left out on purpose (isolation, or Velero's own
	// exclusions): their items are not missing.
	ExcludedResources []string
	// Canaries maps each backed-up namespace to the nonce firedrill wrote into its
	// "firedrill-canary" ConfigMap before the backup; nil when no canary was written.
	Canaries map[string]string
	// BackupName and RestoreName are the Velero objects of this run.
	BackupName, RestoreName string
}

// VeleroCheck is one check of a restored Velero backup.
type VeleroCheck interface {
	Name() string
	Type() string
	Run(ctx context.Context, t *VeleroTarget) Outcome
}
