package scratch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/utils/ptr"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// maxConflicts bounds the re-reads when a namespace changes between check and write.
const maxConflicts = 5

// Delete deletes the named scratch namespaces of runID and waits, bounded by ctx, until
// Kubernetes has finished deleting them. Names that do not exist are taken as deleted.
//
// It first checks every name and, if any is not a scratch namespace of runID (both labels, the
// run's id), deletes nothing and returns an error wrapping ErrNotScratch that names it. Cleanup
// after Ctrl-C needs a ctx that has not ended: context.WithoutCancel with a timeout.
func (m *Manager) Delete(ctx context.Context, runID string, names []string) error {
	if runID == "" {
		return errors.New("delete scratch namespaces: no run id given: Delete only deletes a run's own namespaces")
	}
	check := deletableBy(runID)
	var found []*corev1.Namespace
	var refused []error
	for _, name := range dedupe(names) {
		ns, err := m.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete scratch namespaces: look up namespace %s: %w", name, err)
		}
		if err := check(ns); err != nil {
			refused = append(refused, err)
			continue
		}
		found = append(found, ns)
	}
	if len(refused) > 0 {
		return fmt.Errorf("delete scratch namespaces: refused, nothing deleted: %w", errors.Join(refused...))
	}

	var errs []error
	var deleting []*corev1.Namespace
	for _, ns := range found {
		if err := m.deleteOne(ctx, ns, check); err != nil {
			errs = append(errs, err)
			continue
		}
		deleting = append(deleting, ns)
	}
	if err := m.waitGone(ctx, deleting); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete scratch namespaces: %w", errors.Join(errs...))
	}
	return nil
}

// deletableBy is what a namespace must be for Delete of runID: a scratch namespace of that run.
func deletableBy(runID string) func(*corev1.Namespace) error {
	return func(ns *corev1.Namespace) error {
		if reason := notScratch(ns, runID); reason != "" {
			return &NamespaceError{Namespace: ns.Name, Err: ErrNotScratch, Reason: reason,
				Hint: "firedrill deletes only the namespaces it created for the run"}
		}
		return nil
	}
}

// deleteOne deletes ns if it is unchanged since it passed check: the UID and resourceVersion
// preconditions make the apiserver refuse the delete otherwise, and then ns is read and checked
// again. A namespace already being deleted is left to finish.
func (m *Manager) deleteOne(ctx context.Context, ns *corev1.Namespace, check func(*corev1.Namespace) error) error {
	for range maxConflicts {
		if ns.DeletionTimestamp != nil {
			return nil
		}
		uid, rv := ns.UID, ns.ResourceVersion
		err := m.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv},
		})
		switch {
		case err == nil:
			m.hurryPods(ctx, ns.Name)
			return nil
		case apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("delete namespace %s: %w", ns.Name, err)
		}
		fresh, err := m.client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete namespace %s: %w", ns.Name, err)
		}
		if fresh.UID != ns.UID {
			// Deleted and made again by someone else: not the namespace that was checked.
			return nil
		}
		if err := check(fresh); err != nil {
			return err
		}
		ns = fresh
	}
	return fmt.Errorf("delete namespace %s: it changed %d times while being deleted; try again", ns.Name, maxConflicts)
}

// hurryPods deletes the pods of a scratch namespace being deleted with a grace period of one
// second. The namespace controller otherwise waits out the longest grace period its pods ask for
// (30s by default, restored from production) before it looks again, and a drill's cleanup with it.
// The namespace is terminating, so no new pod can appear; a pod that cannot be deleted now is
// left to the namespace controller.
func (m *Manager) hurryPods(ctx context.Context, ns string) {
	pods, err := m.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		_ = m.client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1),
			Preconditions: &metav1.Preconditions{UID: &p.UID}})
	}
}

// waitGone waits until none of namespaces exists any more (a namespace of the same name and
// another UID is a new one). When ctx ends first it names what is still terminating and why.
func (m *Manager) waitGone(ctx context.Context, namespaces []*corev1.Namespace) error {
	pending := map[string]*corev1.Namespace{}
	for _, ns := range namespaces {
		pending[ns.Name] = ns
	}
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		for name, old := range pending {
			ns, err := m.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				delete(pending, name)
			case err != nil:
				lastErr = err // keep polling: the apiserver may come back before ctx ends
			case ns.UID != old.UID:
				delete(pending, name)
			default:
				pending[name] = ns
			}
		}
		return len(pending) == 0, nil
	})
	if err == nil {
		return nil
	}
	var still []string
	for _, name := range slices.Sorted(maps.Keys(pending)) {
		still = append(still, name+terminatingWhy(pending[name]))
	}
	msg := fmt.Sprintf("namespaces still terminating: %s", strings.Join(still, "; "))
	if lastErr != nil {
		msg += fmt.Sprintf(" (last error: %v)", lastErr)
	}
	return fmt.Errorf("%s: %w; Kubernetes goes on deleting them (kubectl get namespace NAME -o yaml shows what blocks)", msg, err)
}

// terminatingWhy quotes the namespace controller's conditions that hold up a deletion.
func terminatingWhy(ns *corev1.Namespace) string {
	var why []string
	for _, c := range ns.Status.Conditions {
		if c.Status == corev1.ConditionTrue && c.Message != "" {
			why = append(why, c.Message)
		}
	}
	if len(why) == 0 {
		return ""
	}
	return " (" + strings.Join(why, "; ") + ")"
}

func dedupe(names []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
