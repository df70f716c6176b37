package velero

import (
	"context"
	"fmt"
	"slices"
	"strings"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/label"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// VolumeCopy is Velero's file-system backup or restore of one pod volume: a PodVolumeBackup or a
// PodVolumeRestore.
type VolumeCopy struct {
	// Name of the PodVolumeBackup or PodVolumeRestore.
	Name string `json:"name"`
	// Namespace and Pod are the pod whose volume it copied (the source pod for a backup, the
	// restored pod for a restore); Volume is the volume's name in the pod spec.
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Volume    string `json:"volume"`
	Phase     string `json:"phase"`
	// Bytes is what Velero's uploader counted: the volume's file bytes.
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds,omitempty"`
	Uploader   string  `json:"uploader,omitempty"`
	SnapshotID string  `json:"snapshotID,omitempty"`
	Message    string  `json:"message,omitempty"`
}

// Key is "namespace/pod/volume".
func (v VolumeCopy) Key() string { return v.Namespace + "/" + v.Pod + "/" + v.Volume }

// PodVolumeBackups lists the pod volumes Velero backed up with its file-system backup for backup,
// sorted by namespace, pod and volume.
func (c *Client) PodVolumeBackups(ctx context.Context, backup string) ([]VolumeCopy, error) {
	var l velerov1.PodVolumeBackupList
	if err := c.kube.List(ctx, &l, client.InNamespace(c.namespace), client.MatchingLabels{velerov1.BackupNameLabel: label.GetValidName(backup)}); err != nil {
		return nil, fmt.Errorf("list PodVolumeBackups of backup %s: %w", backup, err)
	}
	out := make([]VolumeCopy, 0, len(l.Items))
	for _, p := range l.Items {
		v := VolumeCopy{Name: p.Name, Namespace: p.Spec.Pod.Namespace, Pod: p.Spec.Pod.Name, Volume: p.Spec.Volume,
			Phase: string(p.Status.Phase), Bytes: p.Status.Progress.TotalBytes, Uploader: p.Spec.UploaderType,
			SnapshotID: p.Status.SnapshotID, Message: p.Status.Message}
		v.Seconds = took(p.Status.StartTimestamp, p.Status.CompletionTimestamp)
		out = append(out, v)
	}
	sortCopies(out)
	return out, nil
}

// PodVolumeRestores lists the pod volumes Velero restored from its file-system backup for restore.
func (c *Client) PodVolumeRestores(ctx context.Context, restore string) ([]VolumeCopy, error) {
	var l velerov1.PodVolumeRestoreList
	if err := c.kube.List(ctx, &l, client.InNamespace(c.namespace), client.MatchingLabels{velerov1.RestoreNameLabel: label.GetValidName(restore)}); err != nil {
		return nil, fmt.Errorf("list PodVolumeRestores of restore %s: %w", restore, err)
	}
	out := make([]VolumeCopy, 0, len(l.Items))
	for _, p := range l.Items {
		v := VolumeCopy{Name: p.Name, Namespace: p.Spec.Pod.Namespace, Pod: p.Spec.Pod.Name, Volume: p.Spec.Volume,
			Phase: string(p.Status.Phase), Bytes: p.Status.Progress.TotalBytes, Uploader: p.Spec.UploaderType,
			SnapshotID: p.Spec.SnapshotID, Message: p.Status.Message}
		v.Seconds = took(p.Status.StartTimestamp, p.Status.CompletionTimestamp)
		out = append(out, v)
	}
	sortCopies(out)
	return out, nil
}

// took is how long Velero's copy ran; 0 until it ended.
func took(start, end *metav1.Time) float64 {
	if start == nil || end == nil {
		return 0
	}
	return end.Sub(start.Time).Seconds()
}

func sortCopies(v []VolumeCopy) {
	slices.SortFunc(v, func(a, b VolumeCopy) int { return strings.Compare(a.Key(), b.Key()) })
}
