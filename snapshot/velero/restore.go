package velero

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// RestoreOptions say what to restore where.
type RestoreOptions struct {
	// Name of the Restore; default "firedrill-<run id>". The resource-modifier ConfigMap is named
	// "<name>-isolation".
	Name string
	// Backup to restore. Required; it must be Completed or PartiallyFailed, not expired, not being
	// deleted.
	Backup string
	// NamespaceMapping maps each backed-up namespace to restore onto its scratch namespace; only
	// these namespaces are restored. Every target must already exist carrying firedrill's labels
	// for this run (LabelManagedBy, LabelRun) — the scratch package creates them — or Restore
	// refuses before writing anything (safety rules 1 and 5). Required unless EphemeralCluster.
	NamespaceMapping map[string]string
	// Isolation: SuspendCronJobs and ExcludeResources are applied here; the NetworkPolicy and
	// ResourceQuota are the scratch namespaces' business. LoadBalancer and NodePort Services
	// always become ClusterIP, external IPs are always dropped, and ExcludedResources(Isolation)
	// are never restored.
	Isolation scenarios.Isolation
	// EphemeralCluster says the target cluster exists only for this run (kind): every namespace
	// there is scratch, so targets are not checked and NamespaceMapping may be empty (all
	// namespaces of the backup, as they were named).
	EphemeralCluster bool
	// IncludeClusterResources restores cluster-scoped resources too. Refused unless
	// EphemeralCluster: they are never restored into a cluster that holds anything else
	// (safety rule 3).
	IncludeClusterResources bool
	// Labels are added to the Restore and ConfigMap besides firedrill's.
	Labels map[string]string
}

// RestoreInfo describes a restore as it ended (or as far as it got).
type RestoreInfo struct {
	Namespace, Name, Backup string
	Phase                   string
	Started, Completed      time.Time
	ItemsRestored           int
	TotalItems              int
	// Errors and Warnings are Velero's counts; FirstErrors and FirstWarnings the first messages of
	// the restore's results (fetched when the counts are not zero).
	Errors, Warnings           int
	FirstErrors, FirstWarnings []string
	// ResultsErr says why the messages could not be fetched, when they could not.
	ResultsErr       error
	NamespaceMapping map[string]string
	// ExcludedResources as Velero completed them (its own non-restorable ones included): items of
	// these resources are absent on purpose.
	ExcludedResources       []string
	IncludeClusterResources bool
	// ModifierConfigMap holds the isolation rules Velero applied (in Velero's namespace).
	ModifierConfigMap string
}

func restoreInfo(r *velerov1.Restore) *RestoreInfo {
	info := &RestoreInfo{
		Namespace: r.Namespace, Name: r.Name, Backup: r.Spec.BackupName,
		Phase:                   string(r.Status.Phase),
		Errors:                  r.Status.Errors,
		Warnings:                r.Status.Warnings,
		NamespaceMapping:        maps.Clone(r.Spec.NamespaceMapping),
		ExcludedResources:       slices.Clone(r.Spec.ExcludedResources),
		IncludeClusterResources: ptr.Deref(r.Spec.IncludeClusterResources, false),
	}
	sort.Strings(info.ExcludedResources)
	if r.Spec.ResourceModifier != nil {
		info.ModifierConfigMap = r.Spec.ResourceModifier.Name
	}
	if t := r.Status.StartTimestamp; t != nil {
		info.Started = t.Time
	}
	if t := r.Status.CompletionTimestamp; t != nil {
		info.Completed = t.Time
	}
	if p := r.Status.Progress; p != nil {
		info.ItemsRestored, info.TotalItems = p.ItemsRestored, p.TotalItems
	}
	return info
}

// Restore restores opts.Backup with firedrill's isolation and waits until Velero is done,
// calling progress (if not nil) with items restored and the total as they change.
//
// The isolation rules go into a ConfigMap in Velero's namespace that the Restore names as its
// resourceModifier; Velero applies them to each object before creating it. Completed returns the
// info, with the first warnings. PartiallyFailed, Failed and FailedValidation return the info and
// a *RestoreError (ErrRestoreFailed); a Velero server that stops answering, *NotProcessingError;
// the end of ctx, *NotFinishedError with how far it got. Whenever the Restore was created the
// info names it, for DeleteRestore.
func (c *Client) Restore(ctx context.Context, opts RestoreOptions, progress func(done, total int)) (*RestoreInfo, error) {
	labels, err := c.labels(opts.Labels)
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "firedrill-" + c.runID
	}
	if err := c.checkRestoreOptions(ctx, &opts); err != nil {
		return nil, err
	}
	backup, err := c.GetBackup(ctx, opts.Backup)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if p := velerov1.BackupPhase(backup.Phase); p != velerov1.BackupPhaseCompleted && p != velerov1.BackupPhasePartiallyFailed {
		return nil, fmt.Errorf("%w: restore: backup %s/%s is %s: only Completed or PartiallyFailed backups can be restored",
			ErrUsage, c.namespace, opts.Backup, phaseOrNew(backup.Phase))
	}

	rules, err := yaml.Marshal(isolationRules(opts.Isolation))
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, Name: opts.Name + "-isolation", Labels: labels, Annotations: c.annotations()},
		// Velero wants exactly one key; its name does not matter.
		Data: map[string]string{"isolation.yaml": string(rules)},
	}
	if err := c.kube.Create(ctx, cm); err != nil {
		return nil, fmt.Errorf("restore: create resource-modifier ConfigMap %s/%s: %w", c.namespace, cm.Name, err)
	}
	r := &velerov1.Restore{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, Name: opts.Name, Labels: labels, Annotations: c.annotations()},
		Spec: velerov1.RestoreSpec{
			BackupName:              opts.Backup,
			NamespaceMapping:        maps.Clone(opts.NamespaceMapping),
			IncludeClusterResources: ptr.To(opts.IncludeClusterResources),
			ExcludedResources:       ExcludedResources(opts.Isolation),
			ResourceModifier:        &corev1.TypedLocalObjectReference{Kind: "configmap", Name: cm.Name},
			// Explicit nodePorts would collide with the source's; Velero drops the others anyway.
			PreserveNodePorts: ptr.To(false),
		},
	}
	// Velero filters on the backed-up namespaces' names, so the sources are the ones included.
	for src := range opts.NamespaceMapping {
		r.Spec.IncludedNamespaces = append(r.Spec.IncludedNamespaces, src)
	}
	sort.Strings(r.Spec.IncludedNamespaces)
	if err := c.kube.Create(ctx, r); err != nil {
		c.deleteObject(ctx, cm)
		return nil, fmt.Errorf("restore: create restore %s/%s: %w", c.namespace, opts.Name, err)
	}

	_, err = c.waitFor(ctx, "restore", opts.Name, "restores", opts.Backup, func(ctx context.Context) (status, error) {
		if err := c.kube.Get(ctx, client.ObjectKeyFromObject(r), r); err != nil {
			if isGone(err) {
				return status{}, fmt.Errorf("restore %s/%s disappeared while waiting for it", c.namespace, opts.Name)
			}
			return status{}, err
		}
		st := status{phase: string(r.Status.Phase), terminal: restoreTerminal(r.Status.Phase)}
		if p := r.Status.Progress; p != nil {
			st.done, st.total = p.ItemsRestored, p.TotalItems
		}
		return st, nil
	}, progress)
	info := restoreInfo(r)
	if err != nil {
		return info, fmt.Errorf("restore: %w", err)
	}
	if r.Status.Errors > 0 || r.Status.Warnings > 0 || r.Status.Phase == velerov1.RestorePhasePartiallyFailed || r.Status.Phase == velerov1.RestorePhaseFailed {
		if res, err := c.RestoreResults(ctx, opts.Name); err != nil {
			info.ResultsErr = err
		} else {
			info.FirstErrors, info.FirstWarnings = res.Errors.First(maxMessages), res.Warnings.First(maxMessages)
		}
	}
	if r.Status.Phase == velerov1.RestorePhaseCompleted {
		return info, nil
	}
	return info, &RestoreError{Namespace: c.namespace, Restore: opts.Name, Backup: opts.Backup, Phase: string(r.Status.Phase),
		ItemsRestored: info.ItemsRestored, TotalItems: info.TotalItems, Errors: info.Errors, Warnings: info.Warnings,
		FirstErrors: info.FirstErrors, FirstWarnings: info.FirstWarnings, FailureReason: r.Status.FailureReason,
		ValidationErrors: r.Status.ValidationErrors, ResultsErr: info.ResultsErr}
}

func restoreTerminal(p velerov1.RestorePhase) bool {
	switch p {
	case velerov1.RestorePhaseCompleted, velerov1.RestorePhasePartiallyFailed, velerov1.RestorePhaseFailed, velerov1.RestorePhaseFailedValidation:
		return true
	}
	return false
}

// checkRestoreOptions refuses, before anything is written, what the safety rules forbid.
func (c *Client) checkRestoreOptions(ctx context.Context, opts *RestoreOptions) error {
	if opts.Backup == "" {
		return fmt.Errorf("%w: restore: no backup named", ErrUsage)
	}
	if errs := validation.IsDNS1123Subdomain(opts.Name + "-isolation"); len(errs) > 0 {
		return fmt.Errorf("%w: restore name %q: %v", ErrUsage, opts.Name, errs)
	}
	if opts.IncludeClusterResources && !opts.EphemeralCluster {
		return fmt.Errorf("%w: restore: cluster-scoped resources are only restored into an ephemeral cluster made for the run, never into one that holds anything else", ErrUsage)
	}
	if opts.EphemeralCluster {
		return nil
	}
	if len(opts.NamespaceMapping) == 0 {
		return fmt.Errorf("%w: restore: no namespace mapping: each backed-up namespace needs a scratch namespace to go to", ErrUsage)
	}
	targets := map[string]string{}
	var errs []error
	for _, src := range slices.Sorted(maps.Keys(opts.NamespaceMapping)) {
		dst := opts.NamespaceMapping[src]
		if prev, dup := targets[dst]; dup {
			errs = append(errs, fmt.Errorf("%w: namespaces %s and %s both map to %s", ErrUsage, prev, src, dst))
			continue
		}
		targets[dst] = src
		if dst == src {
			errs = append(errs, fmt.Errorf("%w: namespace %s maps onto itself", ErrNotScratch, src))
			continue
		}
		var ns corev1.Namespace
		if err := c.kube.Get(ctx, client.ObjectKey{Name: dst}, &ns); err != nil {
			if isGone(err) {
				errs = append(errs, fmt.Errorf("%w: namespace %s (for %s) does not exist: create the scratch namespaces first", ErrNotScratch, dst, src))
				continue
			}
			return fmt.Errorf("restore: check target namespace %s: %w", dst, err)
		}
		switch {
		case ns.Labels[LabelManagedBy] != ManagedBy || ns.Labels[LabelRun] != c.runID:
			errs = append(errs, fmt.Errorf("%w: namespace %s (for %s) lacks the labels %s=%s and %s=%s: firedrill restores only into namespaces it created for the run",
				ErrNotScratch, dst, src, LabelManagedBy, ManagedBy, LabelRun, c.runID))
		case ns.DeletionTimestamp != nil:
			errs = append(errs, fmt.Errorf("%w: namespace %s (for %s) is being deleted", ErrNotScratch, dst, src))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore refused: %w", err)
	}
	return nil
}

// DeleteRestore deletes a Restore firedrill created and the resource-modifier ConfigMap it
// names when that one carries firedrill's labels for the same run, then waits until Velero has
// removed the Restore (its finalizer deletes the restore's files in object storage). Restored
// objects are not touched: they go with their scratch namespaces.
func (c *Client) DeleteRestore(ctx context.Context, name string) error {
	var r velerov1.Restore
	if err := c.get(ctx, name, &r); err != nil {
		if isGone(err) {
			return nil
		}
		return fmt.Errorf("delete restore: get %s/%s: %w", c.namespace, name, err)
	}
	if !ours(&r) {
		return fmt.Errorf("%w: refusing to delete restore %s/%s: it has no label %s=%s", ErrNotOurs, c.namespace, name, LabelManagedBy, ManagedBy)
	}
	if ref := r.Spec.ResourceModifier; ref != nil {
		var cm corev1.ConfigMap
		err := c.get(ctx, ref.Name, &cm)
		switch {
		case isGone(err):
		case err != nil:
			return fmt.Errorf("delete restore: get ConfigMap %s/%s: %w", c.namespace, ref.Name, err)
		case ours(&cm) && cm.Labels[LabelRun] == r.Labels[LabelRun]:
			if err := client.IgnoreNotFound(c.kube.Delete(ctx, &cm)); err != nil {
				return fmt.Errorf("delete restore: delete ConfigMap %s/%s: %w", c.namespace, ref.Name, err)
			}
		}
	}
	if err := client.IgnoreNotFound(c.kube.Delete(ctx, &r)); err != nil {
		return fmt.Errorf("delete restore %s/%s: %w", c.namespace, name, err)
	}
	_, err := c.waitFor(ctx, "deletion of restore", name, "restore deletions", r.Spec.BackupName, func(ctx context.Context) (status, error) {
		var cur velerov1.Restore
		if err := c.get(ctx, name, &cur); isGone(err) {
			return status{phase: "Deleted", terminal: true}, nil
		} else if err != nil {
			return status{}, err
		}
		return status{phase: "Deleting"}, nil
	}, nil)
	if err != nil {
		return fmt.Errorf("delete restore (Velero's finalizer %s must remove its files first): %w", "restores.velero.io/external-resources-finalizer", err)
	}
	return nil
}
