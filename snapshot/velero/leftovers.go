package velero

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Kinds of Leftover.
const (
	KindRestore         = "Restore"
	KindBackup          = "Backup"
	KindDownloadRequest = "DownloadRequest"
)

// Leftover is an object firedrill made through Velero, as the janitor finds it: a Restore (with
// its resource-modifier ConfigMap), a Backup made with deleteAfter, or a DownloadRequest.
type Leftover struct {
	Kind                 string
	Namespace, Name, Run string
	Created              time.Time
	// Expires is its AnnotationExpires; zero when missing or not RFC 3339.
	Expires time.Time
	Phase   string
	// InFlight says Velero is still working on it (a backup or restore that has not ended, a
	// backup being deleted): Velero must finish before it can be removed (WaitEnded).
	InFlight bool
	// Modifier is a Restore's resource-modifier ConfigMap, in its namespace; Reap deletes it too.
	Modifier string
	uid      string
}

// ErrInFlight: Reap was asked to remove a backup or restore Velero is still working on.
var ErrInFlight = errors.New("velero is still working on it")

// ErrNotDue: Reap found the object changed since it was listed so that it is no longer due (or
// no longer firedrill's, or another object of the same name); it was left alone.
var ErrNotDue = errors.New("no longer due")

// Leftovers lists, in every namespace (Velero may run in any, and each scenario names its own),
// the Restores and DownloadRequests carrying both of firedrill's labels and the Backups that
// also carry LabelDeleteAfter. Copies Velero restored (label velero.io/restore-name) are the
// restore's, not firedrill's. A cluster without Velero's custom resources has none.
func (c *Client) Leftovers(ctx context.Context) ([]Leftover, error) {
	var out []Leftover
	var restores velerov1.RestoreList
	if err := c.listOurs(ctx, &restores); err != nil {
		return nil, err
	}
	for i := range restores.Items {
		r := &restores.Items[i]
		l := leftover(KindRestore, r, string(r.Status.Phase), !restoreEnded(r.Status.Phase))
		if m := r.Spec.ResourceModifier; m != nil {
			l.Modifier = m.Name
		}
		out = append(out, l)
	}
	var backups velerov1.BackupList
	if err := c.listOurs(ctx, &backups, LabelDeleteAfter+"=true"); err != nil {
		return nil, err
	}
	for i := range backups.Items {
		b := &backups.Items[i]
		inFlight := !backupTerminal(b.Status.Phase) || b.Status.Phase == velerov1.BackupPhaseDeleting || b.DeletionTimestamp != nil
		out = append(out, leftover(KindBackup, b, string(b.Status.Phase), inFlight))
	}
	var drs velerov1.DownloadRequestList
	if err := c.listOurs(ctx, &drs); err != nil {
		return nil, err
	}
	for i := range drs.Items {
		out = append(out, leftover(KindDownloadRequest, &drs.Items[i], string(drs.Items[i].Status.Phase), false))
	}
	return out, nil
}

// ourSelector selects objects with both of firedrill's labels that Velero did not restore.
func ourSelector(extra ...string) (labels.Selector, error) {
	sel, err := labels.Parse(strings.Join(append([]string{LabelManagedBy + "=" + ManagedBy, LabelRun}, extra...), ","))
	if err != nil {
		return nil, err
	}
	notRestored, err := labels.NewRequirement(velerov1.RestoreNameLabel, selection.DoesNotExist, nil)
	if err != nil {
		return nil, err
	}
	return sel.Add(*notRestored), nil
}

func (c *Client) listOurs(ctx context.Context, list client.ObjectList, extra ...string) error {
	sel, err := ourSelector(extra...)
	if err != nil {
		return err
	}
	err = c.kube.List(ctx, list, client.MatchingLabelsSelector{Selector: sel})
	switch {
	case apimeta.IsNoMatchError(err):
		return nil // no Velero in this cluster: nothing of firedrill's made through it
	case err != nil:
		return fmt.Errorf("list firedrill's %T in all namespaces: %w", list, err)
	}
	return nil
}

func leftover(kind string, o metav1.Object, phase string, inFlight bool) Leftover {
	l := Leftover{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName(), Run: o.GetLabels()[LabelRun],
		Created: o.GetCreationTimestamp().Time, Phase: phase, InFlight: inFlight, uid: string(o.GetUID())}
	if t, err := time.Parse(time.RFC3339, o.GetAnnotations()[AnnotationExpires]); err == nil {
		l.Expires = t
	}
	return l
}

func restoreEnded(p velerov1.RestorePhase) bool {
	// A restore Velero has not picked up yet has no phase, and is not ended either.
	return restoreTerminal(p)
}

// in returns a client for l's namespace that labels what it creates with l's run.
func (c *Client) in(l Leftover) *Client {
	cp := *c
	cp.namespace, cp.runID, cp.expires = l.Namespace, l.Run, time.Time{}
	return &cp
}

// current reads l again as it is now: ErrNotDue when it is another object, no longer carries
// firedrill's labels of l.Run, or due says it is not due any more.
func (c *Client) current(ctx context.Context, l Leftover, obj client.Object, due func(Leftover) bool) (Leftover, error) {
	if err := c.kube.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: l.Name}, obj); err != nil {
		return l, err
	}
	fresh := leftover(l.Kind, obj, l.Phase, l.InFlight)
	switch {
	case fresh.uid != l.uid:
		return fresh, fmt.Errorf("%w: %s %s/%s was deleted and made again since listed", ErrNotDue, l.Kind, l.Namespace, l.Name)
	case !ours(obj) || fresh.Run != l.Run:
		return fresh, fmt.Errorf("%w: %s %s/%s no longer carries firedrill's labels of run %s", ErrNotDue, l.Kind, l.Namespace, l.Name, l.Run)
	case due != nil && !due(fresh):
		return fresh, fmt.Errorf("%w: %s %s/%s", ErrNotDue, l.Kind, l.Namespace, l.Name)
	}
	return fresh, nil
}

// Reap removes l once it has read it again and found it the same object, still firedrill's
// and, as due says of it as it is now, still due: a Restore with DeleteRestore (with its
// resource-modifier ConfigMap, waiting for Velero's finalizer), a Backup through a
// DeleteBackupRequest as DeleteBackup does (its data in object storage goes too), a
// DownloadRequest at once. An object already gone is taken as removed; one Velero is still
// working on is refused with ErrInFlight (WaitEnded first).
func (c *Client) Reap(ctx context.Context, l Leftover, due func(Leftover) bool) error {
	var obj client.Object
	switch l.Kind {
	case KindRestore:
		obj = &velerov1.Restore{}
	case KindBackup:
		obj = &velerov1.Backup{}
	case KindDownloadRequest:
		obj = &velerov1.DownloadRequest{}
	default:
		return fmt.Errorf("%w: reap: unknown kind %q", ErrUsage, l.Kind)
	}
	fresh, err := c.current(ctx, l, obj, due)
	switch {
	case isGone(err):
		return nil
	case err != nil:
		return err
	}
	cc := c.in(l)
	switch o := obj.(type) {
	case *velerov1.Restore:
		if !restoreEnded(o.Status.Phase) {
			return fmt.Errorf("%w: restore %s/%s is %s", ErrInFlight, l.Namespace, l.Name, phaseOrNew(string(o.Status.Phase)))
		}
		return cc.DeleteRestore(ctx, l.Name)
	case *velerov1.Backup:
		if !backupTerminal(o.Status.Phase) || o.Status.Phase == velerov1.BackupPhaseDeleting || o.DeletionTimestamp != nil {
			return fmt.Errorf("%w: backup %s/%s is %s", ErrInFlight, l.Namespace, l.Name, phaseOrNew(string(o.Status.Phase)))
		}
		return cc.DeleteBackup(ctx, l.Name)
	default:
		uid := types.UID(fresh.uid)
		err := c.kube.Delete(ctx, obj, client.Preconditions{UID: &uid})
		if err != nil && !isGone(err) {
			return fmt.Errorf("delete %s %s/%s: %w", l.Kind, l.Namespace, l.Name, err)
		}
		return nil
	}
}

// WaitEnded waits until Velero has ended the backup or restore l (whatever the outcome) or, for
// a backup being deleted, until it is gone. A Velero that stops answering ends the wait with a
// *NotProcessingError, as the drills' waits do.
func (c *Client) WaitEnded(ctx context.Context, l Leftover) error {
	cc := c.in(l)
	var get func(ctx context.Context) (status, error)
	switch l.Kind {
	case KindRestore:
		get = func(ctx context.Context) (status, error) {
			var r velerov1.Restore
			if err := cc.get(ctx, l.Name, &r); isGone(err) {
				return status{phase: "Deleted", terminal: true}, nil
			} else if err != nil {
				return status{}, err
			}
			return status{phase: string(r.Status.Phase), terminal: restoreEnded(r.Status.Phase)}, nil
		}
	case KindBackup:
		get = func(ctx context.Context) (status, error) {
			var b velerov1.Backup
			if err := cc.get(ctx, l.Name, &b); isGone(err) {
				return status{phase: "Deleted", terminal: true}, nil
			} else if err != nil {
				return status{}, err
			}
			deleting := b.Status.Phase == velerov1.BackupPhaseDeleting || b.DeletionTimestamp != nil
			return status{phase: string(b.Status.Phase), terminal: backupTerminal(b.Status.Phase) && !deleting}, nil
		}
	default:
		return nil
	}
	probe := l.Name
	if l.Kind == KindRestore {
		probe = "firedrill-ping"
	}
	_, err := cc.waitFor(ctx, strings.ToLower(l.Kind), l.Name, strings.ToLower(l.Kind)+"s", probe, get, nil)
	return err
}

// Describe names l for people: kind, namespace/name and phase.
func (l Leftover) Describe() string {
	s := fmt.Sprintf("%s %s/%s", l.Kind, l.Namespace, l.Name)
	if l.Phase != "" && slices.Contains([]string{KindRestore, KindBackup}, l.Kind) {
		s += " (" + l.Phase + ")"
	}
	return s
}
