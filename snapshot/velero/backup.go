package velero

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/label"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// BackupInfo describes one Velero backup.
type BackupInfo struct {
	Namespace, Name string
	Phase           string
	StorageLocation string
	// Started is when Velero began the backup: the age of the data (RPO) counts from it.
	Started, Completed time.Time
	// Expiration is when Velero's garbage collection may delete the backup; zero if never.
	Expiration         time.Time
	ItemsBackedUp      int
	TotalItems         int
	Errors, Warnings   int
	IncludedNamespaces []string
	ExcludedNamespaces []string
	// What the backup's spec selects, for comparing it with the live source.
	IncludedResources, ExcludedResources []string
	// The newer filters for namespaced resources (Velero uses one kind or the other).
	IncludedNamespaceScopedResources, ExcludedNamespaceScopedResources []string
	LabelSelector                                                      *metav1.LabelSelector
	OrLabelSelectors                                                   []*metav1.LabelSelector
	// Schedule is the Schedule that made the backup (label velero.io/schedule-name), if any.
	Schedule string
	// Unusable says why a drill cannot restore the backup (ListBackups): not Completed, expired,
	// or being deleted; empty when it can.
	Unusable string
}

// Age is how old the backed-up data is at now: the RPO of a drill of this backup.
func (b *BackupInfo) Age(now time.Time) time.Duration {
	if b.Started.IsZero() {
		return 0
	}
	return now.Sub(b.Started)
}

func backupInfo(b *velerov1.Backup) *BackupInfo {
	info := &BackupInfo{
		Namespace:                        b.Namespace,
		Name:                             b.Name,
		Phase:                            string(b.Status.Phase),
		StorageLocation:                  b.Spec.StorageLocation,
		Errors:                           b.Status.Errors,
		Warnings:                         b.Status.Warnings,
		IncludedNamespaces:               slices.Clone(b.Spec.IncludedNamespaces),
		ExcludedNamespaces:               slices.Clone(b.Spec.ExcludedNamespaces),
		IncludedResources:                slices.Clone(b.Spec.IncludedResources),
		ExcludedResources:                slices.Clone(b.Spec.ExcludedResources),
		IncludedNamespaceScopedResources: slices.Clone(b.Spec.IncludedNamespaceScopedResources),
		ExcludedNamespaceScopedResources: slices.Clone(b.Spec.ExcludedNamespaceScopedResources),
		LabelSelector:                    b.Spec.LabelSelector,
		OrLabelSelectors:                 b.Spec.OrLabelSelectors,
		Schedule:                         b.Labels[velerov1.ScheduleNameLabel],
	}
	if t := b.Status.StartTimestamp; t != nil {
		info.Started = t.Time
	}
	if t := b.Status.CompletionTimestamp; t != nil {
		info.Completed = t.Time
	}
	if t := b.Status.Expiration; t != nil {
		info.Expiration = t.Time
	}
	if p := b.Status.Progress; p != nil {
		info.ItemsBackedUp, info.TotalItems = p.ItemsBackedUp, p.TotalItems
	}
	return info
}

// GetBackup returns the named backup, refusing one that is expired or being deleted. It does not
// look at the phase: a drill of a named backup decides what to accept.
func (c *Client) GetBackup(ctx context.Context, name string) (*BackupInfo, error) {
	var b velerov1.Backup
	if err := c.get(ctx, name, &b); err != nil {
		if isGone(err) {
			return nil, fmt.Errorf("%w: %s/%s (velero backup get)", ErrBackupNotFound, c.namespace, name)
		}
		return nil, fmt.Errorf("get backup %s/%s: %w", c.namespace, name, err)
	}
	pending, err := c.pendingDeletions(ctx)
	if err != nil {
		return nil, err
	}
	info := backupInfo(&b)
	if err := c.usable(&b, pending, time.Now()); err != nil {
		return info, err
	}
	return info, nil
}

// ListBackups lists the backups made by schedule (label velero.io/schedule-name) or, when
// schedule is empty, those carrying the labels of selector, in name order. Each says in Unusable
// why a drill cannot restore it: not Completed, expired, or being deleted. A schedule that does
// not exist is ErrBackupNotFound; one that made no backup yet lists none.
func (c *Client) ListBackups(ctx context.Context, schedule string, selector *scenarios.LabelSelector) ([]*BackupInfo, error) {
	var (
		list  velerov1.BackupList
		match client.ListOption
		what  = "backups of schedule " + schedule
	)
	if schedule != "" {
		match = client.MatchingLabels{velerov1.ScheduleNameLabel: label.GetValidName(schedule)}
	} else {
		ls, err := asSelector(selector)
		if err != nil {
			return nil, fmt.Errorf("%w: list backups: %w", ErrUsage, err)
		}
		match, what = client.MatchingLabelsSelector{Selector: ls}, "backups labelled "+ls.String()
	}
	if err := c.kube.List(ctx, &list, client.InNamespace(c.namespace), match); err != nil {
		return nil, fmt.Errorf("list %s in namespace %s: %w", what, c.namespace, err)
	}
	if len(list.Items) == 0 && schedule != "" {
		var s velerov1.Schedule
		if err := c.get(ctx, schedule, &s); isGone(err) {
			return nil, fmt.Errorf("%w: no backups of schedule %s in namespace %s and no Schedule %s exists there", ErrBackupNotFound, schedule, c.namespace, schedule)
		}
	}
	pending, err := c.pendingDeletions(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]*BackupInfo, 0, len(list.Items))
	for i := range list.Items {
		b := &list.Items[i]
		info := backupInfo(b)
		info.Started = startOf(b) // one not started yet is placed by its creation
		if b.Status.Phase != velerov1.BackupPhaseCompleted {
			info.Unusable = phaseOrNew(string(b.Status.Phase))
		} else if err := c.usable(b, pending, now); err != nil {
			info.Unusable = err.Error()
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// startOf is when the backup started, or was created if it has not.
func startOf(b *velerov1.Backup) time.Time {
	if t := b.Status.StartTimestamp; t != nil {
		return t.Time
	}
	return b.CreationTimestamp.Time
}

// usable refuses a backup that is expired or being deleted.
func (c *Client) usable(b *velerov1.Backup, pendingDeletion map[string]bool, now time.Time) error {
	if b.DeletionTimestamp != nil || b.Status.Phase == velerov1.BackupPhaseDeleting || pendingDeletion[b.Name] {
		return fmt.Errorf("%w: backup %s/%s is being deleted: pick another", ErrBackupDeleting, b.Namespace, b.Name)
	}
	if exp := b.Status.Expiration; exp != nil && exp.Time.Before(now) {
		return fmt.Errorf("%w: backup %s/%s expired at %s (%s ago) and Velero's garbage collection may delete it any time: pick a newer backup, or give the schedule a longer TTL",
			ErrBackupExpired, b.Namespace, b.Name, exp.UTC().Format(time.RFC3339), now.Sub(exp.Time).Round(time.Second))
	}
	return nil
}

// pendingDeletions returns the backups with a DeleteBackupRequest Velero has not finished.
func (c *Client) pendingDeletions(ctx context.Context) (map[string]bool, error) {
	var dbrs velerov1.DeleteBackupRequestList
	if err := c.kube.List(ctx, &dbrs, client.InNamespace(c.namespace)); err != nil {
		return nil, fmt.Errorf("list DeleteBackupRequests in namespace %s: %w", c.namespace, err)
	}
	pending := map[string]bool{}
	for _, d := range dbrs.Items {
		if d.Status.Phase != velerov1.DeleteBackupRequestPhaseProcessed {
			pending[d.Spec.BackupName] = true
		}
	}
	return pending, nil
}

// CreateBackup creates a Backup named name (default "firedrill-<run id>") with the settings of
// opts (TTL default 24h, volume snapshots off unless asked) and labels plus firedrill's. With
// opts.DeleteAfter it also carries LabelDeleteAfter, so that the janitor deletes it once expired
// when the drill could not. It returns at once; WaitBackup waits for it.
func (c *Client) CreateBackup(ctx context.Context, name string, opts scenarios.VeleroCreate, labels map[string]string) (*BackupInfo, error) {
	l, err := c.labels(labels)
	if err != nil {
		return nil, err
	}
	if opts.DeleteAfter {
		l[LabelDeleteAfter] = "true"
	}
	if name == "" {
		name = "firedrill-" + c.runID
	}
	if len(opts.IncludedNamespaces) == 0 {
		return nil, fmt.Errorf("%w: create backup %s: no includedNamespaces: a drill backs up named namespaces", ErrUsage, name)
	}
	ttl := opts.TTL.Duration
	if ttl == 0 {
		ttl = scenarios.DefaultBackupTTL
	}
	sel, err := labelSelector(opts.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("%w: create backup %s: %v", ErrUsage, name, err)
	}
	b := &velerov1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, Name: name, Labels: l, Annotations: c.annotations()},
		Spec: velerov1.BackupSpec{
			IncludedNamespaces:       slices.Clone(opts.IncludedNamespaces),
			ExcludedNamespaces:       slices.Clone(opts.ExcludedNamespaces),
			IncludedResources:        slices.Clone(opts.IncludedResources),
			ExcludedResources:        slices.Clone(opts.ExcludedResources),
			LabelSelector:            sel,
			StorageLocation:          opts.StorageLocation,
			TTL:                      metav1.Duration{Duration: ttl},
			SnapshotVolumes:          ptr.To(opts.SnapshotVolumes != nil && *opts.SnapshotVolumes),
			DefaultVolumesToFsBackup: ptr.To(opts.DefaultVolumesToFsBackup),
		},
	}
	if err := c.kube.Create(ctx, b); err != nil {
		return nil, fmt.Errorf("create backup %s/%s: %w", c.namespace, name, err)
	}
	return backupInfo(b), nil
}

func asSelector(s *scenarios.LabelSelector) (labels.Selector, error) {
	sel, err := labelSelector(s)
	if err != nil || sel == nil {
		return labels.Everything(), err
	}
	return metav1.LabelSelectorAsSelector(sel)
}

// SelectorString writes s as kubectl's -l does: team=shop,tier in (gold,silver).
func SelectorString(s *scenarios.LabelSelector) string {
	ls, err := asSelector(s)
	if err != nil {
		return fmt.Sprintf("%v (invalid: %v)", *s, err)
	}
	return ls.String()
}

func labelSelector(s *scenarios.LabelSelector) (*metav1.LabelSelector, error) {
	if s == nil {
		return nil, nil
	}
	out := &metav1.LabelSelector{MatchLabels: s.MatchLabels}
	for _, e := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: e.Key, Operator: metav1.LabelSelectorOperator(e.Operator), Values: e.Values})
	}
	if _, err := metav1.LabelSelectorAsSelector(out); err != nil {
		return nil, fmt.Errorf("label selector: %w", err)
	}
	return out, nil
}

func backupTerminal(p velerov1.BackupPhase) bool {
	switch p {
	case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed, velerov1.BackupPhaseFailed,
		velerov1.BackupPhaseFailedValidation, velerov1.BackupPhaseDeleting:
		return true
	}
	return false
}

// WaitBackup waits until the backup ends, calling progress (if not nil) with items backed up and
// the total whenever they change. Completed returns its info. Failed, PartiallyFailed and
// FailedValidation return a *BackupError (ErrBackupFailed) with the first messages of its
// results; a Velero server that stops answering, a *NotProcessingError; the end of ctx, a
// *NotFinishedError.
func (c *Client) WaitBackup(ctx context.Context, name string, progress func(done, total int)) (*BackupInfo, error) {
	var b velerov1.Backup
	_, err := c.waitFor(ctx, "backup", name, "backups", name, func(ctx context.Context) (status, error) {
		if err := c.get(ctx, name, &b); err != nil {
			if isGone(err) {
				return status{}, fmt.Errorf("%w: backup %s/%s disappeared while waiting for it", ErrBackupNotFound, c.namespace, name)
			}
			return status{}, err
		}
		st := status{phase: string(b.Status.Phase), terminal: backupTerminal(b.Status.Phase)}
		if p := b.Status.Progress; p != nil {
			st.done, st.total = p.ItemsBackedUp, p.TotalItems
		}
		return st, nil
	}, progress)
	if err != nil {
		return nil, err
	}
	info := backupInfo(&b)
	switch b.Status.Phase {
	case velerov1.BackupPhaseCompleted:
		return info, nil
	case velerov1.BackupPhaseDeleting:
		return info, fmt.Errorf("%w: backup %s/%s is being deleted", ErrBackupDeleting, c.namespace, name)
	}
	e := &BackupError{Namespace: c.namespace, Backup: name, Phase: string(b.Status.Phase), ItemsBackedUp: info.ItemsBackedUp,
		TotalItems: info.TotalItems, Errors: b.Status.Errors, Warnings: b.Status.Warnings,
		FailureReason: b.Status.FailureReason, ValidationErrors: b.Status.ValidationErrors}
	if b.Status.Phase != velerov1.BackupPhaseFailedValidation {
		// A backup that ran has results in storage; one refused at validation never ran.
		if r, err := c.BackupResults(ctx, name); err != nil {
			e.ResultsErr = err
		} else {
			e.FirstErrors, e.FirstWarnings = r.Errors.First(maxMessages), r.Warnings.First(maxMessages)
		}
	}
	return info, e
}

// maxMessages is how many errors and warnings are kept of a backup or restore.
const maxMessages = 10

// WaitForBackup waits until the named backup appears in Velero's namespace: in a second cluster
// whose Velero reads the same storage location, Velero's backup sync brings it in (every
// --backup-sync-period, one minute by default).
func (c *Client) WaitForBackup(ctx context.Context, name string) (*BackupInfo, error) {
	start := time.Now()
	for {
		info, err := c.GetBackup(ctx, name)
		if err == nil || !errors.Is(err, ErrBackupNotFound) {
			return info, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: backup %s has not appeared in namespace %s after %s: is this cluster's Velero running, "+
				"and does a BackupStorageLocation here point at the bucket and prefix the backup was written to? (%v)",
				ErrBackupNotFound, name, c.namespace, time.Since(start).Round(time.Second), ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// DeleteBackup deletes a backup firedrill created, with its data in object storage, through a
// DeleteBackupRequest, and waits until the Backup is gone. It refuses backups without firedrill's
// label: a drill never deletes a team's own backups.
func (c *Client) DeleteBackup(ctx context.Context, name string) error {
	var b velerov1.Backup
	if err := c.get(ctx, name, &b); err != nil {
		if isGone(err) {
			return nil
		}
		return fmt.Errorf("get backup %s/%s: %w", c.namespace, name, err)
	}
	if !ours(&b) {
		return fmt.Errorf("%w: refusing to delete backup %s/%s: it has no label %s=%s", ErrNotOurs, c.namespace, name, LabelManagedBy, ManagedBy)
	}
	if b.Status.Phase == velerov1.BackupPhaseFailedValidation {
		// Velero refused it before writing anything, and a DeleteBackupRequest for it fails when
		// its location does not exist: the object is all there is.
		if err := client.IgnoreNotFound(c.kube.Delete(ctx, &b)); err != nil {
			return fmt.Errorf("delete backup %s/%s: %w", c.namespace, name, err)
		}
		return nil
	}
	l, err := c.labels(map[string]string{velerov1.BackupNameLabel: label.GetValidName(name)})
	if err != nil {
		return err
	}
	dbr := &velerov1.DeleteBackupRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, GenerateName: "firedrill-delete-" + shorten(name, 40) + "-", Labels: l},
		Spec:       velerov1.DeleteBackupRequestSpec{BackupName: name},
	}
	if err := c.kube.Create(ctx, dbr); err != nil {
		return fmt.Errorf("create DeleteBackupRequest for backup %s/%s: %w", c.namespace, name, err)
	}
	var failure error
	_, err = c.waitFor(ctx, "deletion of backup", name, "deletions", name, func(ctx context.Context) (status, error) {
		if err := c.get(ctx, name, &velerov1.Backup{}); isGone(err) {
			return status{phase: "Deleted", terminal: true}, nil
		} else if err != nil {
			return status{}, err
		}
		if err := c.kube.Get(ctx, client.ObjectKeyFromObject(dbr), dbr); err != nil && !isGone(err) {
			return status{}, err
		}
		if dbr.Status.Phase == velerov1.DeleteBackupRequestPhaseProcessed && len(dbr.Status.Errors) > 0 {
			failure = fmt.Errorf("delete backup %s/%s: Velero reported: %s", c.namespace, name, strings.Join(dbr.Status.Errors, "; "))
			return status{phase: string(dbr.Status.Phase), terminal: true}, nil
		}
		return status{phase: string(dbr.Status.Phase)}, nil
	}, nil)
	// Velero removes its requests after a successful deletion only, and a moment after the
	// Backup is gone; ours goes either way, now, so that no request outlives the call.
	c.deleteObject(ctx, dbr)
	if err != nil {
		return fmt.Errorf("delete backup: %w", err)
	}
	return failure
}

func (c *Client) deleteObject(ctx context.Context, o client.Object) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	_ = client.IgnoreNotFound(c.kube.Delete(cctx, o))
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimRight(s[:n], "-.")
}
