package verify

import (
	"github.com/firedrill-dev/firedrill/internal/probe"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// VeleroTarget is everything the Velero checks look at: the backup's items and the cluster and
// namespaces they were restored into.
type VeleroTarget struct {
	Scenario string
	RunID    string
	// Cluster is the cluster the backup was restored into (the source cluster for scratch
	// namespaces, or the second cluster); nil when the restore did not happen.
	Cluster *Cluster
	// NamespaceMapping maps each backed-up namespace to the namespace it was restored into.
	NamespaceMapping map[string]string
	// Reachable maps more backed-up namespaces to their scratch copies: those a check may name
	// although they are not its own (a later restore group's check of an earlier group's Service).
	Reachable map[string]string
	// Items are the backup's contents.
	Items []velero.Item
	// ExcludedResources are resources the restore left out on purpose (isolation, or Velero's own
	// exclusions): their items are not missing.
	ExcludedResources []string
	// Canaries maps each backed-up namespace to the nonce firedrill wrote into its
	// "firedrill-canary" ConfigMap before the backup; nil when no canary was written.
	Canaries map[string]string
	// BackupName and RestoreName are the Velero objects of this run.
	BackupName, RestoreName string
	// Backup is the backup as Velero describes it: when it started and what its spec selected, to
	// compare it with the live source. Nil when unknown.
	Backup *velero.BackupInfo
	// Source reaches the backed-up cluster (for scratch namespaces the same as Cluster); nil when
	// it is not reachable.
	Source *Cluster
	// ProbeImage is the image of firedrill-probe, which the http, tcp, isolation and volumeData
	// checks run in short-lived pods.
	ProbeImage string
	// Volumes are the pod volumes of the backed-up namespaces: what firedrill saw of each just
	// before the backup, and how Velero's file-system backup and restore copied it.
	Volumes []PodVolume
}

// PodVolume is one volume of a backed-up pod.
type PodVolume struct {
	// Namespace is the backed-up namespace; Pod and Volume name the pod and its volume.
	Namespace, Pod, Volume string
	// Claim is the PersistentVolumeClaim behind the volume; empty for other kinds (emptyDir).
	Claim string
	// Manifest lists the volume's files as they were just before the backup; nil when firedrill
	// did not make the backup, or could not read the volume (ManifestError says why).
	Manifest      *probe.ManifestResult
	ManifestError string
	// Backup and Restore are Velero's file-system copies of it; nil when Velero made none.
	Backup, Restore *velero.VolumeCopy
}

// Key is "namespace/pod/volume".
func (v PodVolume) Key() string { return v.Namespace + "/" + v.Pod + "/" + v.Volume }

// VeleroCheck is one check of a restored Velero backup.
type VeleroCheck = Check[*VeleroTarget]
