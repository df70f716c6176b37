package scratch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Labels and annotations of a scratch namespace (docs/architecture.md, safety rule 1). Only a
// namespace with both labels is ever deleted.
const (
	LabelRun           = "firedrill.dev/run"            // the run id
	LabelManagedBy     = "app.kubernetes.io/managed-by" // ManagedBy
	ManagedBy          = "firedrill"
	AnnotationScenario = "firedrill.dev/scenario"
	AnnotationExpires  = "firedrill.dev/expires" // RFC 3339; the janitor deletes the namespace after it
)

// Names of the isolation objects Prepare creates in each scratch namespace.
const (
	NetworkPolicyName = "firedrill-deny-all"
	ResourceQuotaName = "firedrill-quota"
	LimitRangeName    = "firedrill-defaults"
)

const (
	pollInterval = 250 * time.Millisecond
	// rollbackTimeout bounds the removal of a half-prepared run, which runs even when the
	// caller's ctx has ended (Ctrl-C during Prepare must not leave namespaces behind).
	rollbackTimeout = 2 * time.Minute
)

// Isolation is what Prepare puts into every scratch namespace before anything is restored.
type Isolation struct {
	// DenyNetwork creates NetworkPolicy firedrill-deny-all: every pod selected, ingress and
	// egress denied except between the run's own scratch namespaces. False leaves the
	// namespace's network open; only an explicit `denyNetwork: false` in the scenario should get
	// here.
	DenyNetwork bool
	// AllowDNS adds an egress rule to the deny policy: UDP and TCP port 53 to any
	// destination (cluster DNS is not always in kube-system, e.g. node-local caches). Ignored
	// without DenyNetwork.
	AllowDNS bool
	// Quota is spec.hard of ResourceQuota firedrill-quota. Required: Prepare refuses to create a
	// scratch namespace without a quota.
	Quota corev1.ResourceList
	// DefaultRequest, when set, creates LimitRange firedrill-defaults giving these requests to
	// containers that set none. A quota on cpu or memory makes the apiserver refuse pods without
	// such requests, and restored workloads often have none.
	DefaultRequest corev1.ResourceList
}

// Manager creates, confirms and deletes scratch namespaces in one cluster.
type Manager struct {
	client kubernetes.Interface
	now    func() time.Time
	// beforeCreate runs before each namespace is created; tests use it to provoke failures half
	// way through Prepare.
	beforeCreate func(name string)
}

// New returns a Manager working through c.
func New(c kubernetes.Interface) *Manager {
	return &Manager{client: c, now: time.Now}
}

// Prepare creates the named namespaces for a run of scenario: labelled as firedrill's, annotated
// with the scenario and the expiry after which the janitor deletes them, and isolated as iso
// says. It returns once every namespace is Active, its quota is in force (the apiserver refuses
// pods in a namespace whose quota has no status yet) and its default ServiceAccount exists.
//
// It writes nothing when a name is invalid or exists (ErrInvalidName, ErrExists). When creating
// fails half way, or ctx ends, it deletes the namespaces it created and waits until they are gone.
func (m *Manager) Prepare(ctx context.Context, runID, scenario string, names []string, iso Isolation, expires time.Time) (err error) {
	if err := m.checkPrepare(runID, names, iso, expires); err != nil {
		return fmt.Errorf("prepare scratch namespaces: %w", err)
	}
	var exist []error
	for _, name := range names {
		_, err := m.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			exist = append(exist, existsError(name, "exists"))
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("prepare scratch namespaces: look up namespace %s: %w", name, err)
		}
	}
	if len(exist) > 0 {
		return fmt.Errorf("prepare scratch namespaces: %w", errors.Join(exist...))
	}

	var created []*corev1.Namespace
	defer func() {
		if err != nil && len(created) > 0 {
			if rerr := m.rollback(ctx, created); rerr != nil {
				err = fmt.Errorf("%w; removing the namespaces created so far failed: %v", err, rerr)
			}
		}
	}()
	for _, name := range names {
		ns, err := m.create(ctx, runID, scenario, name, iso, expires)
		if ns != nil {
			created = append(created, ns)
		}
		if err != nil {
			return fmt.Errorf("prepare scratch namespace %s: %w", name, err)
		}
	}
	if err := m.waitReady(ctx, names, iso); err != nil {
		return fmt.Errorf("prepare scratch namespaces: %w", err)
	}
	return nil
}

func (m *Manager) checkPrepare(runID string, names []string, iso Isolation, expires time.Time) error {
	var errs []error
	if runID == "" {
		errs = append(errs, errors.New("no run id given"))
	} else if msgs := validation.IsValidLabelValue(runID); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("run id %q is not a label value (%s): use the engine's run id", runID, strings.Join(msgs, "; ")))
	}
	if len(names) == 0 {
		errs = append(errs, errors.New("no namespaces named: give at least one"))
	}
	seen := map[string]bool{}
	for _, name := range names {
		if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
			errs = append(errs, &NamespaceError{Namespace: name, Err: ErrInvalidName,
				Reason: "is not a valid name (" + strings.Join(msgs, "; ") + ")",
				Hint:   "namespace names are DNS labels: at most 63 lowercase letters, digits and '-'; fix namespaceMapping"})
		}
		if seen[name] {
			errs = append(errs, &NamespaceError{Namespace: name, Err: ErrInvalidName,
				Reason: "is named twice", Hint: "map each backed-up namespace to a namespace of its own"})
		}
		seen[name] = true
	}
	if len(iso.Quota) == 0 {
		errs = append(errs, errors.New("isolation has no quota: a scratch namespace always gets a ResourceQuota; give at least pods"))
	}
	if expires.IsZero() {
		errs = append(errs, errors.New("no expiry given: the janitor needs it to remove namespaces a crashed run leaves"))
	} else if !expires.After(m.now()) {
		errs = append(errs, fmt.Errorf("expiry %s is not in the future: the janitor would delete the namespaces during the drill", expires.Format(time.RFC3339)))
	}
	return errors.Join(errs...)
}

func existsError(name, reason string) error {
	return &NamespaceError{Namespace: name, Err: ErrExists, Reason: reason,
		Hint: "a drill only restores into namespaces it creates; choose another namespaceMapping"}
}

// create makes one namespace and its isolation objects. It returns the namespace once created,
// also with an error about what followed, so that the caller can remove it.
func (m *Manager) create(ctx context.Context, runID, scenario, name string, iso Isolation, expires time.Time) (*corev1.Namespace, error) {
	if m.beforeCreate != nil {
		m.beforeCreate(name)
	}
	ns, err := m.client.CoreV1().Namespaces().Create(ctx, namespaceObject(name, runID, scenario, expires), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Someone created it since the check: it is not ours, and must not be rolled back.
		return nil, existsError(name, "was created by someone else during prepare")
	}
	if err != nil {
		return nil, fmt.Errorf("create namespace: %w", err)
	}
	if iso.DenyNetwork {
		if _, err := m.client.NetworkingV1().NetworkPolicies(name).Create(ctx, networkPolicy(name, runID, iso.AllowDNS), metav1.CreateOptions{}); err != nil {
			return ns, fmt.Errorf("create NetworkPolicy %s: %w", NetworkPolicyName, err)
		}
	}
	if _, err := m.client.CoreV1().ResourceQuotas(name).Create(ctx, resourceQuota(name, runID, iso.Quota), metav1.CreateOptions{}); err != nil {
		return ns, fmt.Errorf("create ResourceQuota %s: %w", ResourceQuotaName, err)
	}
	if len(iso.DefaultRequest) > 0 {
		if _, err := m.client.CoreV1().LimitRanges(name).Create(ctx, limitRange(name, runID, iso.DefaultRequest), metav1.CreateOptions{}); err != nil {
			return ns, fmt.Errorf("create LimitRange %s: %w", LimitRangeName, err)
		}
	}
	return ns, nil
}

// waitReady waits until each namespace is Active, its quota has a status and its default
// ServiceAccount exists: until then the apiserver's admission refuses restored pods.
func (m *Manager) waitReady(ctx context.Context, names []string, iso Isolation) error {
	var pending []string
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		pending = pending[:0]
		for _, name := range names {
			ns, err := m.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				pending = append(pending, fmt.Sprintf("namespace %s: %v", name, err))
				continue
			}
			if ns.DeletionTimestamp != nil {
				return false, fmt.Errorf("namespace %s is being deleted by someone else", name)
			}
			if ns.Status.Phase != corev1.NamespaceActive {
				pending = append(pending, fmt.Sprintf("namespace %s is %s", name, ns.Status.Phase))
				continue
			}
			q, err := m.client.CoreV1().ResourceQuotas(name).Get(ctx, ResourceQuotaName, metav1.GetOptions{})
			if err != nil {
				pending = append(pending, fmt.Sprintf("ResourceQuota %s/%s: %v", name, ResourceQuotaName, err))
				continue
			}
			if !quotaInForce(q) {
				pending = append(pending, fmt.Sprintf("ResourceQuota %s/%s has no status (filled by kube-controller-manager's resourcequota controller)", name, ResourceQuotaName))
				continue
			}
			if _, err := m.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); err != nil {
				pending = append(pending, fmt.Sprintf("ServiceAccount %s/default: %v (made by kube-controller-manager's serviceaccount controller)", name, err))
			}
		}
		return len(pending) == 0, nil
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && len(pending) > 0:
		return fmt.Errorf("wait for scratch namespaces: not ready: %s: %w", strings.Join(pending, "; "), err)
	}
	return fmt.Errorf("wait for scratch namespaces: %w", err)
}

// quotaInForce reports whether the quota controller has computed usage for every limited resource.
func quotaInForce(q *corev1.ResourceQuota) bool {
	for r := range q.Spec.Hard {
		if _, ok := q.Status.Hard[r]; !ok {
			return false
		}
		if _, ok := q.Status.Used[r]; !ok {
			return false
		}
	}
	return true
}

// rollback deletes the namespaces Prepare created, by UID so that a namespace someone else made
// under the same name is never touched, and waits until they are gone.
func (m *Manager) rollback(ctx context.Context, created []*corev1.Namespace) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var errs []error
	for _, ns := range created {
		uid := ns.UID
		err := m.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", ns.Name, err))
		}
	}
	if err := m.waitGone(ctx, created); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Confirm checks that every name is a scratch namespace of runID that is not being deleted: the
// check of safety rule 5 that a restore makes before writing anything. A failure wraps
// ErrNotScratch for each namespace that is missing or not the run's.
func (m *Manager) Confirm(ctx context.Context, runID string, names []string) error {
	if runID == "" {
		return errors.New("confirm scratch namespaces: no run id given")
	}
	var errs []error
	for _, name := range names {
		ns, err := m.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			errs = append(errs, &NamespaceError{Namespace: name, Err: ErrNotScratch, Reason: "does not exist",
				Hint: "a restore writes only into namespaces prepared for its run"})
			continue
		case err != nil:
			return fmt.Errorf("confirm scratch namespace %s: %w", name, err)
		}
		if reason := notScratch(ns, runID); reason != "" {
			errs = append(errs, &NamespaceError{Namespace: name, Err: ErrNotScratch, Reason: reason,
				Hint: "a restore writes only into namespaces prepared for its run"})
			continue
		}
		if ns.DeletionTimestamp != nil {
			errs = append(errs, fmt.Errorf("namespace %s is being deleted: prepare the run's namespaces again", name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("confirm scratch namespaces: %w", errors.Join(errs...))
	}
	return nil
}

// notScratch says why ns is not a scratch namespace of run runID ("": of any run), or "" if it is.
func notScratch(ns *corev1.Namespace, runID string) string {
	managed, hasManaged := ns.Labels[LabelManagedBy]
	run := ns.Labels[LabelRun]
	switch {
	case !hasManaged && run == "":
		return fmt.Sprintf("has neither label %s=%s nor %s", LabelManagedBy, ManagedBy, LabelRun)
	case !hasManaged:
		return fmt.Sprintf("has no label %s=%s", LabelManagedBy, ManagedBy)
	case managed != ManagedBy:
		return fmt.Sprintf("is managed by %q (label %s), not %s", managed, LabelManagedBy, ManagedBy)
	case run == "":
		return fmt.Sprintf("has no label %s", LabelRun)
	case runID != "" && run != runID:
		return fmt.Sprintf("belongs to run %s, not %s", run, runID)
	}
	return ""
}

func objectMeta(name, namespace, runID string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace,
		Labels: map[string]string{LabelRun: runID, LabelManagedBy: ManagedBy}}
}

func namespaceObject(name, runID, scenario string, expires time.Time) *corev1.Namespace {
	meta := objectMeta(name, "", runID)
	meta.Annotations = map[string]string{
		AnnotationScenario: scenario,
		AnnotationExpires:  FormatExpiry(expires),
	}
	return &corev1.Namespace{ObjectMeta: meta}
}

// networkPolicy selects every pod and denies all ingress and egress, except DNS when allowDNS.
// networkPolicy denies every connection into and out of the namespace except between pods of
// the same run's scratch namespaces (the restored app must reach its restored database, and
// nothing else), plus DNS egress when asked.
func networkPolicy(namespace, runID string, allowDNS bool) *networkingv1.NetworkPolicy {
	sameRun := []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelRun: runID, LabelManagedBy: ManagedBy}},
	}}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: objectMeta(NetworkPolicyName, namespace, runID),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: sameRun}},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: sameRun}},
		},
	}
	if allowDNS {
		udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
		dns := intstr.FromInt32(53)
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
		})
	}
	return np
}

func resourceQuota(namespace, runID string, hard corev1.ResourceList) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{
		ObjectMeta: objectMeta(ResourceQuotaName, namespace, runID),
		Spec:       corev1.ResourceQuotaSpec{Hard: hard.DeepCopy()},
	}
}

func limitRange(namespace, runID string, defaultRequest corev1.ResourceList) *corev1.LimitRange {
	return &corev1.LimitRange{
		ObjectMeta: objectMeta(LimitRangeName, namespace, runID),
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:           corev1.LimitTypeContainer,
			DefaultRequest: defaultRequest.DeepCopy(),
		}}},
	}
}
