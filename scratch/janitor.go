package scratch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultGrace is JanitorOptions.Grace when none is given.
const DefaultGrace = 24 * time.Hour

// Namespace is a scratch namespace as List reports it.
type Namespace struct {
	Name     string
	Run      string
	Scenario string
	Created  time.Time
	// Expires is when the janitor may delete the namespace; zero when the annotation is missing
	// or not RFC 3339.
	Expires     time.Time
	Terminating bool
	// Due says why Janitor deletes it (one of the Due… reasons); empty in List's results.
	Due string
}

// Why the janitor removes something of firedrill's (Judge.Due).
const (
	DueExpired    = "expired"
	DueRunnerGone = "runner gone"
	DueNoExpiry   = "no expiry, older than the grace"
)

// Judge decides when the janitor removes what firedrill made: scratch namespaces, and by the
// same rule everything else firedrill labels with its run and an expiry.
type Judge struct {
	// Now is the time expiries are judged at.
	Now time.Time
	// Grace is the age after which an object without a readable expiry is due; 0 means
	// DefaultGrace.
	Grace time.Duration
	// RunnerGone reports the runs whose runner is known to have ended without cleaning up (a
	// crash): their objects are due whatever their expiry. Nil: none is known.
	RunnerGone func(run string) bool
}

// Due says why an object of run, created at created, expiring at expires (zero: no readable
// expiry), is due at j.Now, or "" when it is not.
func (j Judge) Due(run string, created, expires time.Time) string {
	grace := j.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	switch {
	case run != "" && j.RunnerGone != nil && j.RunnerGone(run):
		return DueRunnerGone
	case !expires.IsZero():
		if !j.Now.Before(expires) {
			return DueExpired
		}
	case j.Now.Sub(created) >= grace:
		return DueNoExpiry
	}
	return ""
}

// ExpiryOf reads AnnotationExpires from annotations: zero when it is missing or not RFC 3339.
func ExpiryOf(annotations map[string]string) time.Time {
	t, err := time.Parse(time.RFC3339, annotations[AnnotationExpires])
	if err != nil {
		return time.Time{}
	}
	return t
}

// FormatExpiry is how AnnotationExpires is written.
func FormatExpiry(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// selector finds namespaces with both labels; list still checks each with notScratch, since an
// empty run label matches it.
func selector() string { return LabelManagedBy + "=" + ManagedBy + "," + LabelRun }

// List returns every scratch namespace in the cluster, of any run, sorted by name.
func (m *Manager) List(ctx context.Context) ([]Namespace, error) {
	nss, err := m.list(ctx)
	if err != nil {
		return nil, err
	}
	return describeAll(nss), nil
}

func (m *Manager) list(ctx context.Context) ([]*corev1.Namespace, error) {
	var out []*corev1.Namespace
	opts := metav1.ListOptions{LabelSelector: selector(), Limit: 500}
	for {
		l, err := m.client.CoreV1().Namespaces().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list scratch namespaces: %w", err)
		}
		for i := range l.Items {
			if notScratch(&l.Items[i], "") == "" {
				out = append(out, &l.Items[i])
			}
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	slices.SortFunc(out, func(a, b *corev1.Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func describe(ns *corev1.Namespace) Namespace {
	d := Namespace{
		Name:        ns.Name,
		Run:         ns.Labels[LabelRun],
		Scenario:    ns.Annotations[AnnotationScenario],
		Created:     ns.CreationTimestamp.Time,
		Terminating: ns.DeletionTimestamp != nil,
		Expires:     ExpiryOf(ns.Annotations),
	}
	return d
}

func (j Judge) namespace(n Namespace) string { return j.Due(n.Run, n.Created, n.Expires) }

// Extend sets the expiry of the named scratch namespaces of runID to until: a run whose cleanup
// policy keeps them sets now+keepFor; a time in the past hands them to the janitor's next pass.
// It changes nothing unless every name is a scratch namespace of runID (ErrNotScratch).
func (m *Manager) Extend(ctx context.Context, runID string, names []string, until time.Time) error {
	if runID == "" {
		return errors.New("extend scratch namespaces: no run id given")
	}
	if until.IsZero() {
		return errors.New("extend scratch namespaces: no expiry given")
	}
	check := func(ns *corev1.Namespace) error {
		if reason := notScratch(ns, runID); reason != "" {
			return &NamespaceError{Namespace: ns.Name, Err: ErrNotScratch, Reason: reason,
				Hint: "firedrill changes only the namespaces it created for the run; nothing was changed"}
		}
		return nil
	}
	var found []*corev1.Namespace
	var refused []error
	for _, name := range dedupe(names) {
		ns, err := m.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			refused = append(refused, &NamespaceError{Namespace: name, Err: ErrNotScratch, Reason: "does not exist",
				Hint: "nothing was changed"})
			continue
		}
		if err != nil {
			return fmt.Errorf("extend scratch namespaces: look up namespace %s: %w", name, err)
		}
		if err := check(ns); err != nil {
			refused = append(refused, err)
			continue
		}
		found = append(found, ns)
	}
	if len(refused) > 0 {
		return fmt.Errorf("extend scratch namespaces: %w", errors.Join(refused...))
	}
	for _, ns := range found {
		if err := m.setExpiry(ctx, ns, until, check); err != nil {
			return fmt.Errorf("extend scratch namespaces: %w", err)
		}
	}
	return nil
}

// setExpiry updates ns's expiry annotation; the update carries ns's resourceVersion, so a
// namespace changed since it was checked is read and checked again.
func (m *Manager) setExpiry(ctx context.Context, ns *corev1.Namespace, until time.Time, check func(*corev1.Namespace) error) error {
	for range maxConflicts {
		ns = ns.DeepCopy()
		if ns.Annotations == nil {
			ns.Annotations = map[string]string{}
		}
		ns.Annotations[AnnotationExpires] = FormatExpiry(until)
		_, err := m.client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) {
			return fmt.Errorf("set expiry of namespace %s: %w", ns.Name, err)
		}
		fresh, err := m.client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("set expiry of namespace %s: %w", ns.Name, err)
		}
		if fresh.UID != ns.UID {
			return fmt.Errorf("set expiry of namespace %s: it was deleted and made again meanwhile", ns.Name)
		}
		if err := check(fresh); err != nil {
			return err
		}
		ns = fresh
	}
	return fmt.Errorf("set expiry of namespace %s: it changed %d times meanwhile; try again", ns.Name, maxConflicts)
}

// JanitorOptions tune a janitor pass.
type JanitorOptions struct {
	// Grace is the age after which a scratch namespace without a readable expiry is deleted.
	// Prepare always sets one, so only a namespace made by hand or by an older firedrill lacks
	// it. 0 means DefaultGrace.
	Grace time.Duration
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// Now, when set, is the time expiries are judged at instead of the clock's (Judge.Now).
	Now time.Time
	// RunnerGone is Judge.RunnerGone: namespaces of these runs are deleted whatever their expiry.
	RunnerGone func(run string) bool
}

func (m *Manager) judge(opts JanitorOptions) Judge {
	j := Judge{Now: opts.Now, Grace: opts.Grace, RunnerGone: opts.RunnerGone}
	if j.Now.IsZero() {
		j.Now = m.now()
	}
	return j
}

// Janitor deletes every scratch namespace (both labels, any run) that is due (Judge.Due): its
// expiry has passed, or it has none and is older than the grace, or its run's runner is known
// to be gone. It waits until they are gone and never deletes a namespace without both labels.
// It returns the namespaces it deleted (with DryRun: would delete), each saying why; a namespace
// extended between listing and deleting is left alone and not returned.
func (m *Manager) Janitor(ctx context.Context, opts JanitorOptions) ([]Namespace, error) {
	j := m.judge(opts)
	check := janitorCheck(j)

	all, err := m.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("janitor: %w", err)
	}
	var candidates []*corev1.Namespace
	for _, ns := range all {
		if j.namespace(describe(ns)) != "" {
			candidates = append(candidates, ns)
		}
	}
	if opts.DryRun {
		return j.describeDue(candidates), nil
	}

	var deleted []*corev1.Namespace
	var errs []error
	for _, ns := range candidates {
		err := m.deleteOne(ctx, ns, check)
		switch {
		case errors.Is(err, errNotDue):
		case err != nil:
			errs = append(errs, err)
		default:
			deleted = append(deleted, ns)
		}
	}
	if err := m.waitGone(ctx, deleted); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return j.describeDue(deleted), fmt.Errorf("janitor: %w", errors.Join(errs...))
	}
	return j.describeDue(deleted), nil
}

func (j Judge) describeDue(nss []*corev1.Namespace) []Namespace {
	out := describeAll(nss)
	for i := range out {
		out[i].Due = j.namespace(out[i])
	}
	return out
}

// errNotDue: a namespace was extended between the janitor's listing and its delete.
var errNotDue = errors.New("no longer due")

// janitorCheck is what a namespace must still be when the janitor deletes it: firedrill's, and
// due. It runs again whenever the namespace changed since it was listed.
func janitorCheck(j Judge) func(*corev1.Namespace) error {
	return func(ns *corev1.Namespace) error {
		if reason := notScratch(ns, ""); reason != "" {
			return &NamespaceError{Namespace: ns.Name, Err: ErrNotScratch, Reason: reason + " (changed since listed)",
				Hint: "the janitor deletes only firedrill's scratch namespaces; not deleted"}
		}
		if j.namespace(describe(ns)) == "" {
			return errNotDue
		}
		return nil
	}
}

func describeAll(nss []*corev1.Namespace) []Namespace {
	out := make([]Namespace, 0, len(nss))
	for _, ns := range nss {
		out = append(out, describe(ns))
	}
	return out
}
