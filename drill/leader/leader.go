// Package leader elects one `firedrill serve` replica to schedule drills, with a Kubernetes
// Lease (client-go leaderelection); the others serve the API and dashboard only.
//
// The identity needs get, create and update on leases (API group coordination.k8s.io) in the
// Lease's namespace; Run stops with an *AccessError that says so when the API server refuses.
//
// CONTRACT (issue 5): the service package is written against the exported names below.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// Defaults of Options, as client-go's components use them.
const (
	DefaultName          = "firedrill"
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Options configure an Elector.
type Options struct {
	Namespace, Name string // the Lease; Name default "firedrill"
	Identity        string // default hostname_pid
	// LeaseDuration (default 15s), RenewDeadline (10s) and RetryPeriod (2s) as in client-go:
	// a leader that cannot renew for RenewDeadline stops leading; a replica takes over a Lease
	// not renewed for LeaseDuration. LeaseDuration is stored in whole seconds, so at least 1s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Logger receives elections, losses and client-go's own messages; nil means slog.Default().
	Logger *slog.Logger
}

// Elector campaigns for the Lease.
type Elector struct {
	leases coordinationv1.LeasesGetter
	opts   Options
	log    *slog.Logger

	leading atomic.Bool
}

// New checks the options and returns an Elector; it does not contact the API server.
func New(cfg *rest.Config, opts Options) (*Elector, error) {
	if cfg == nil {
		return nil, errors.New("no API server configuration (rest.Config)")
	}
	if opts.Namespace == "" {
		return nil, errors.New("the Lease's namespace is required (the namespace firedrill runs in)")
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if errs := validation.IsDNS1123Label(opts.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("Lease namespace %q is not a valid namespace name: %s", opts.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(opts.Name); len(errs) > 0 {
		return nil, fmt.Errorf("Lease name %q is not a valid object name: %s", opts.Name, strings.Join(errs, "; "))
	}
	if opts.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("no identity given and no hostname to make one: %w", err)
		}
		opts.Identity = fmt.Sprintf("%s_%d", host, os.Getpid())
	}
	opts.LeaseDuration = orDefault(opts.LeaseDuration, DefaultLeaseDuration)
	opts.RenewDeadline = orDefault(opts.RenewDeadline, DefaultRenewDeadline)
	opts.RetryPeriod = orDefault(opts.RetryPeriod, DefaultRetryPeriod)
	switch {
	case opts.LeaseDuration < time.Second:
		return nil, fmt.Errorf("lease duration %v is under 1s (a Lease holds whole seconds)", opts.LeaseDuration)
	case opts.RenewDeadline <= 0 || opts.RetryPeriod <= 0:
		return nil, fmt.Errorf("renew deadline %v and retry period %v must be positive", opts.RenewDeadline, opts.RetryPeriod)
	case opts.LeaseDuration <= opts.RenewDeadline:
		return nil, fmt.Errorf("lease duration %v must be longer than the renew deadline %v, or two replicas could lead at once", opts.LeaseDuration, opts.RenewDeadline)
	case float64(opts.RenewDeadline) <= leaderelection.JitterFactor*float64(opts.RetryPeriod):
		return nil, fmt.Errorf("renew deadline %v must be longer than %v times the retry period %v", opts.RenewDeadline, leaderelection.JitterFactor, opts.RetryPeriod)
	}

	cfg = rest.AddUserAgent(rest.CopyConfig(cfg), "firedrill-leader-election")
	if cfg.Timeout == 0 {
		// A request hanging past the renew deadline would keep a lost leader believing it leads.
		cfg.Timeout = opts.RenewDeadline / 2
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("lease", opts.Namespace+"/"+opts.Name, "identity", opts.Identity)
	return &Elector{leases: cs.CoordinationV1(), opts: opts, log: log}, nil
}

// Run campaigns until ctx is done. Each time this replica becomes leader, lead is called with
// a context that is cancelled when leadership is lost (or ctx is done); when lead returns
// after a loss, Run campaigns again. On ctx done the Lease is released so that another
// replica takes over at once. Run returns nil after ctx is done and lead has returned.
//
// The Lease is renewed until lead has returned, also after ctx is done, so that no other
// replica leads while this one still works; lead should therefore return soon after its ctx
// is done. If lead returns early, the Lease is released and Run campaigns again.
// Run returns an error, without waiting for ctx, when retrying cannot help and an operator
// must act: an *AccessError when the API server refuses access to the Lease (401, 403), or
// when the Lease's namespace does not exist. Run must not be called again while it runs.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) error {
	// client-go logs through the context's logger: route it to ours rather than klog's stderr.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(quietCancel{e.log.Handler()}))
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := e.term(ctx, lead); err != nil {
			return err
		}
		// After a loss, give the new leader a retry period before campaigning again.
		select {
		case <-ctx.Done():
		case <-time.After(e.opts.RetryPeriod):
		}
	}
}

// term campaigns once: it returns when ctx is done before this replica leads, or after it led
// and lead has returned.
func (e *Elector) term(ctx context.Context, lead func(ctx context.Context)) error {
	// The elector's context is cut off from ctx: it must keep renewing while lead winds down
	// after ctx is done, and is stopped (which releases the Lease) only once lead has returned.
	electCtx, stopElect := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElect()

	var (
		mu       sync.Mutex
		stopping bool          // no new call of lead
		leadDone chan struct{} // closed when lead returns; nil until it is called
		fatal    error
	)
	stopWith := func(err error) {
		mu.Lock()
		if fatal == nil {
			fatal = err
		}
		mu.Unlock()
		stopElect()
	}
	unwatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if leadDone == nil { // campaigning: stop now; leading: lead's return stops the elector
			stopping = true
			stopElect()
		}
	})
	defer unwatch()

	lock := &guardedLock{
		Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: e.opts.Namespace, Name: e.opts.Name},
			Client:     e.leases,
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.opts.Identity},
		},
		namespace: e.opts.Namespace, name: e.opts.Name, fail: stopWith,
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            e.opts.Namespace + "/" + e.opts.Name,
		LeaseDuration:   e.opts.LeaseDuration,
		RenewDeadline:   e.opts.RenewDeadline,
		RetryPeriod:     e.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			// leaseCtx is cancelled when a renewal fails (or the elector is stopped).
			OnStartedLeading: func(leaseCtx context.Context) {
				mu.Lock()
				if stopping || fatal != nil {
					mu.Unlock()
					return
				}
				done := make(chan struct{})
				leadDone = done
				mu.Unlock()
				defer close(done)

				e.leading.Store(true)
				e.log.Info("leading: this replica schedules drills")
				leadCtx, cancelLead := context.WithCancel(leaseCtx)
				defer cancelLead()
				stopDone := context.AfterFunc(ctx, cancelLead)
				defer stopDone()
				go e.watch(leadCtx, cancelLead, lock)

				lead(leadCtx)
				if leadCtx.Err() == nil {
					e.log.Warn("lead returned while still leading: releasing the Lease")
				}
				stopElect() // now that lead is done, the Lease may be released
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				if id != e.opts.Identity {
					e.log.Info("following: another replica leads", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("create the elector: %w", err)
	}
	le.Run(electCtx)

	// le.Run returns once it stopped renewing; lead may still be winding down after a loss.
	mu.Lock()
	stopping = true
	done := leadDone
	mu.Unlock()
	if done != nil {
		<-done
	}
	e.leading.Store(false)
	if done != nil && ctx.Err() != nil {
		e.ensureReleased(lock.Interface)
	}
	mu.Lock()
	defer mu.Unlock()
	switch {
	case fatal != nil:
		return fatal
	case done != nil && ctx.Err() == nil:
		e.log.Warn("lost leadership: stopped scheduling, campaigning again")
	case done != nil:
		e.log.Info("stopped leading: Lease released")
	}
	return nil
}

// ensureReleased releases the Lease if this replica still holds it. client-go releases it once,
// and that fails with a conflict when a renewal cancelled on the way was still applied by the
// API server; the other replicas would then wait a whole LeaseDuration.
func (e *Elector) ensureReleased(lock resourcelock.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.RenewDeadline)
	defer cancel()
	for range 3 {
		rec, _, err := lock.Get(ctx)
		if err != nil || rec.HolderIdentity != e.opts.Identity {
			return // released, taken over, gone, or unreachable: nothing more to do here
		}
		now := metav1.NewTime(time.Now())
		err = lock.Update(ctx, resourcelock.LeaderElectionRecord{LeaderTransitions: rec.LeaderTransitions, LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			e.log.Warn("could not release the Lease; another replica takes over when it expires", "err", err, "leaseDuration", e.opts.LeaseDuration)
			return
		}
	}
}

// watch ends a term whose Lease has not been renewed for RenewDeadline. client-go cancels the
// leader's context only after its attempt to release the Lease, which can take another request
// timeout against an unreachable API server; by then another replica may lead. Measured from
// the start of the last successful renewal, this fires before the Lease can expire elsewhere.
func (e *Elector) watch(ctx context.Context, cancel context.CancelFunc, lock *guardedLock) {
	tick := time.NewTicker(min(e.opts.RetryPeriod, (e.opts.LeaseDuration-e.opts.RenewDeadline)/4))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			e.leading.Store(false)
			return
		case <-tick.C:
			if since := time.Since(lock.lastRenewal()); since > e.opts.RenewDeadline {
				e.leading.Store(false)
				e.log.Warn("lease not renewed within the renew deadline: stopping leading", "sinceRenewal", since.Round(time.Millisecond), "renewDeadline", e.opts.RenewDeadline)
				cancel()
				return
			}
		}
	}
}

// Leading reports whether this replica holds the Lease now.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Identity is this replica's identity in the Lease.
func (e *Elector) Identity() string { return e.opts.Identity }

// AccessError says the API server refused this replica access to its Lease: an operator must
// fix credentials or RBAC.
type AccessError struct {
	Verb            string // get, create, update
	Namespace, Name string // the Lease
	// Unauthorized: the credentials were rejected (401); else the identity lacks permission (403).
	Unauthorized bool
	Err          error
}

func (e *AccessError) Error() string {
	need := fmt.Sprintf("get, create and update on leases (API group coordination.k8s.io) in namespace %q", e.Namespace)
	if e.Unauthorized {
		return fmt.Sprintf("the API server rejected this replica's credentials (401 Unauthorized) "+
			"when it tried to %s Lease %s/%s: check that the kubeconfig's token or client certificate, or the "+
			"service account token, is valid and not expired; the identity then needs %s: %v", e.Verb, e.Namespace, e.Name, need, e.Err)
	}
	return fmt.Sprintf("not allowed to %s Lease %s/%s (403 Forbidden): grant the identity %s, "+
		"e.g. `kubectl -n %s create role firedrill-leader-election --verb=get,create,update --resource=leases.coordination.k8s.io` "+
		"and a RoleBinding to it: %v", e.Verb, e.Namespace, e.Name, need, e.Namespace, e.Err)
}

func (e *AccessError) Unwrap() error { return e.Err }

// guardedLock stops the election on errors that retrying cannot fix, which client-go would only
// log and retry for ever.
type guardedLock struct {
	resourcelock.Interface
	namespace, name string
	fail            func(error)

	mu      sync.Mutex
	renewed time.Time // start of the last successful Create or Update: the Lease is ours from then
}

func (l *guardedLock) lastRenewal() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed
}

func (l *guardedLock) wrote(start time.Time, err error) {
	if err == nil {
		l.mu.Lock()
		l.renewed = start
		l.mu.Unlock()
	}
}

func (l *guardedLock) check(verb string, err error) error {
	if apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) {
		l.fail(&AccessError{Verb: verb, Namespace: l.namespace, Name: l.name, Unauthorized: apierrors.IsUnauthorized(err), Err: err})
	}
	return err
}

func (l *guardedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.Interface.Get(ctx)
	return rec, raw, l.check("get", err)
}

func (l *guardedLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	err := l.Interface.Create(ctx, ler)
	l.wrote(start, err)
	if apierrors.IsNotFound(err) { // the Lease was not found just before: its namespace is missing
		l.fail(fmt.Errorf("create Lease %s/%s: namespace %q does not exist: create it, or choose the namespace firedrill runs in: %w", l.namespace, l.name, l.namespace, err))
		return err
	}
	return l.check("create", err)
}

func (l *guardedLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	err := l.Interface.Update(ctx, ler)
	if ler.HolderIdentity != "" { // a release (empty holder) renews nothing
		l.wrote(start, err)
	}
	return l.check("update", err)
}

func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
