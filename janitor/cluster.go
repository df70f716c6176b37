package janitor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/internal/probepod"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// ourSelector selects what carries both of firedrill's labels and was not restored by Velero
// (a restored copy of a canary is the restore's, and goes with its scratch namespace).
func ourSelector(extra ...string) string {
	return strings.Join(append([]string{scratch.LabelManagedBy + "=" + scratch.ManagedBy, scratch.LabelRun, "!" + velerov1.RestoreNameLabel}, extra...), ",")
}

// sweepCluster removes what is due in the cluster, Restores first: Velero must be done with a
// scratch namespace before it goes, and a modifier ConfigMap goes with its Restore.
func (j *Janitor) sweepCluster(ctx context.Context, p *pass) {
	leftovers, err := j.velero.Leftovers(ctx)
	if err != nil {
		p.errs = append(p.errs, err)
	}
	// A modifier ConfigMap goes with its Restore, and stays while the Restore does: Velero reads
	// it while it restores. Only one whose Restore is gone, or was never made, goes by itself.
	withRestore := map[string]bool{}
	var backups []velero.Leftover
	for _, l := range leftovers {
		switch l.Kind {
		case velero.KindBackup:
			backups = append(backups, l)
		case velero.KindRestore:
			j.reapVelero(ctx, p, l)
			if l.Modifier != "" {
				withRestore[l.Namespace+"/"+l.Modifier] = true
			}
		}
	}
	j.sweepPods(ctx, p)
	j.sweepConfigMaps(ctx, p, withRestore)
	for _, l := range leftovers {
		if l.Kind == velero.KindDownloadRequest {
			j.reapVelero(ctx, p, l)
		}
	}
	j.sweepNamespaces(ctx, p)
	for _, l := range backups {
		j.reapVelero(ctx, p, l)
	}
}

// reapVelero removes l when it is due.
func (j *Janitor) reapVelero(ctx context.Context, p *pass, l velero.Leftover) {
	it, ok := p.due(l.Kind, l.Namespace, l.Name, l.Run, l.Created, l.Expires)
	if !ok {
		return
	}
	if l.Kind == velero.KindRestore && l.Modifier != "" {
		it.Note = "with its resource-modifier ConfigMap " + l.Modifier
	}
	if l.Kind == velero.KindBackup {
		it.Note = "made with deleteAfter; deleted with its data in object storage through a DeleteBackupRequest"
	}
	if p.opts.DryRun {
		if l.InFlight {
			it.Note = joinNote(it.Note, "once Velero has finished it ("+phase(l.Phase)+")")
		}
		p.removed(it)
		return
	}
	if l.InFlight {
		if !p.opts.WaitInFlight {
			p.left(it, "Velero is still working on it ("+phase(l.Phase)+")")
			return
		}
		if err := j.velero.WaitEnded(ctx, l); err != nil {
			p.fail(it, fmt.Errorf("wait for Velero to finish %s %s/%s: %w", l.Kind, l.Namespace, l.Name, err))
			return
		}
	}
	err := j.velero.Reap(ctx, l, func(fresh velero.Leftover) bool {
		return p.judge.Due(fresh.Run, fresh.Created, fresh.Expires) != ""
	})
	switch {
	case errors.Is(err, velero.ErrNotDue):
		return
	case errors.Is(err, velero.ErrInFlight):
		p.left(it, err.Error())
		return
	case err != nil:
		p.fail(it, fmt.Errorf("remove %s %s/%s: %w", l.Kind, l.Namespace, l.Name, err))
		return
	}
	p.removed(it)
	return
}

func phase(p string) string {
	if p == "" {
		return "New"
	}
	return p
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// sweepPods removes due probe pods (internal/probepod), in scratch namespaces and — volumeData's
// manifest probes — in the backed-up ones.
func (j *Janitor) sweepPods(ctx context.Context, p *pass) {
	pods := j.kube.CoreV1().Pods(metav1.NamespaceAll)
	l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: ourSelector(probepod.LabelProbe)})
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("list firedrill's probe pods: %w", err))
		return
	}
	for i := range l.Items {
		pod := &l.Items[i]
		j.removeObject(ctx, p, KindPod, pod, func(ctx context.Context) (metav1.Object, error) {
			return j.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		}, func(ctx context.Context, o metav1.DeleteOptions) error {
			o.GracePeriodSeconds = new(int64)
			return j.kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, o)
		})
	}
}

// sweepConfigMaps removes due ConfigMaps of firedrill's: canaries in backed-up namespaces, and
// resource-modifier ConfigMaps whose Restore is gone or was never made.
func (j *Janitor) sweepConfigMaps(ctx context.Context, p *pass, withRestore map[string]bool) {
	l, err := j.kube.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: ourSelector()})
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("list firedrill's ConfigMaps: %w", err))
		return
	}
	for i := range l.Items {
		cm := &l.Items[i]
		if withRestore[cm.Namespace+"/"+cm.Name] {
			continue
		}
		j.removeObject(ctx, p, KindConfigMap, cm, func(ctx context.Context) (metav1.Object, error) {
			return j.kube.CoreV1().ConfigMaps(cm.Namespace).Get(ctx, cm.Name, metav1.GetOptions{})
		}, func(ctx context.Context, o metav1.DeleteOptions) error {
			return j.kube.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, o)
		})
	}
}

// maxConflicts bounds the re-reads when an object changes between check and delete.
const maxConflicts = 5

// removeObject deletes obj when it is due and unchanged since judged: the delete carries its UID
// and resourceVersion, and on a conflict it is read and judged again.
func (j *Janitor) removeObject(ctx context.Context, p *pass, kind string, obj metav1.Object,
	get func(context.Context) (metav1.Object, error), del func(context.Context, metav1.DeleteOptions) error) {
	run := obj.GetLabels()[scratch.LabelRun]
	it, ok := p.due(kind, obj.GetNamespace(), obj.GetName(), run, obj.GetCreationTimestamp().Time, scratch.ExpiryOf(obj.GetAnnotations()))
	if !ok {
		return
	}
	if p.opts.DryRun {
		p.removed(it)
		return
	}
	for range maxConflicts {
		if obj.GetDeletionTimestamp() != nil {
			p.removed(it) // being deleted already: Kubernetes finishes it
			return
		}
		uid, rv := obj.GetUID(), obj.GetResourceVersion()
		err := del(ctx, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			p.removed(it)
			return
		case !apierrors.IsConflict(err):
			p.fail(it, fmt.Errorf("delete %s %s: %w", kind, it.Where(), err))
			return
		}
		fresh, err := get(ctx)
		switch {
		case apierrors.IsNotFound(err):
			p.removed(it)
			return
		case err != nil:
			p.fail(it, fmt.Errorf("delete %s %s: %w", kind, it.Where(), err))
			return
		case fresh.GetUID() != uid || !ours(fresh.GetLabels(), run) ||
			p.judge.Due(run, fresh.GetCreationTimestamp().Time, scratch.ExpiryOf(fresh.GetAnnotations())) == "":
			return // replaced, relabelled or extended since it was listed: not the janitor's now
		}
		obj = fresh
	}
	p.fail(it, fmt.Errorf("delete %s %s: it changed %d times while being deleted; try again", kind, it.Where(), maxConflicts))
}

func ours(labels map[string]string, run string) bool {
	return labels[scratch.LabelManagedBy] == scratch.ManagedBy && labels[scratch.LabelRun] == run && run != "" &&
		labels[velerov1.RestoreNameLabel] == ""
}

// sweepNamespaces deletes due scratch namespaces through scratch, which checks each again as it
// deletes it and waits until they are gone.
func (j *Janitor) sweepNamespaces(ctx context.Context, p *pass) {
	opts := scratch.JanitorOptions{Grace: p.opts.Grace, DryRun: true, Now: p.judge.Now, RunnerGone: p.judge.RunnerGone}
	due, err := j.ns.Janitor(ctx, opts)
	if err != nil {
		p.errs = append(p.errs, err)
		return
	}
	done := due
	if !p.opts.DryRun {
		opts.DryRun = false
		done, err = j.ns.Janitor(ctx, opts)
	}
	for _, n := range done {
		it, _ := p.due(KindNamespace, "", n.Name, n.Run, n.Created, n.Expires)
		p.removed(it)
	}
	if err != nil {
		p.errs = append(p.errs, err)
		p.rep.Errors = append(p.rep.Errors, err.Error())
		// Which namespace failed is in the error; their runs keep their work directories.
		for _, n := range due {
			p.failed[n.Run] = true
		}
	}
}
