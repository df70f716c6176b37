package leader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// Short durations, so that expiry-based takeovers happen within seconds.
const (
	leaseDuration = 3 * time.Second
	renewDeadline = 2 * time.Second
	retryPeriod   = 500 * time.Millisecond
	// patience bounds every wait: generous, since the machine is shared and slow.
	patience = 90 * time.Second
)

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	buf := &testkit.Buffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("LEADER_TEST_LOGS") != "" {
			t.Logf("elector logs:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, nil))
}

// cluster returns the shared sandbox's admin config, a clientset and a fresh namespace.
func cluster(t *testing.T) (*rest.Config, kubernetes.Interface, string) {
	t.Helper()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	cfg := sb.RESTConfig()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Unique per run: a namespace of an earlier run (-count) may still be terminating.
	base := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	ns := fmt.Sprintf("leader-%.45s-%04x", base, rand.N(1<<16))
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return cfg, cs, ns
}

// candidate is one elector campaigning in the background, with what its lead calls saw.
type candidate struct {
	t       *testing.T
	e       *Elector
	cancel  context.CancelFunc
	done    chan error // Run's result
	started chan time.Time
	ended   chan time.Time // when a lead call saw its ctx cancelled, just before it returned
}

func newElector(t *testing.T, cfg *rest.Config, ns, id string, lease time.Duration) *Elector {
	t.Helper()
	e, err := New(cfg, Options{Namespace: ns, Identity: id, LeaseDuration: lease, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod, Logger: testLogger(t).With("elector", id)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func campaign(t *testing.T, e *Elector) *candidate {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{t: t, e: e, cancel: cancel, done: make(chan error, 1), started: make(chan time.Time, 10), ended: make(chan time.Time, 10)}
	go func() {
		c.done <- e.Run(ctx, func(ctx context.Context) {
			c.started <- time.Now()
			<-ctx.Done()
			c.ended <- time.Now()
		})
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

// stop cancels Run and waits for it; it returns Run's error.
func (c *candidate) stop() error {
	c.t.Helper()
	c.cancel()
	select {
	case err := <-c.done:
		c.done <- err // a later stop sees it too
		return err
	case <-time.After(patience):
		c.t.Fatalf("%s: Run did not return within %v of its ctx being cancelled", c.e.Identity(), patience)
		return nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", patience, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func receive(t *testing.T, ch chan time.Time, what string) time.Time {
	t.Helper()
	select {
	case at := <-ch:
		return at
	case <-time.After(patience):
		t.Fatalf("gave up after %v waiting for %s", patience, what)
		return time.Time{}
	}
}

func holder(t *testing.T, cs kubernetes.Interface, ns string) string {
	t.Helper()
	lease, err := cs.CoordinationV1().Leases(ns).Get(context.Background(), DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Lease: %v", err)
	}
	return holderOf(lease)
}

func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func TestOneLeadsAndCancelHandsOver(t *testing.T) {
	cfg, cs, ns := cluster(t)
	// A long lease: the other replica can take over within the test's patience only if the
	// cancelled leader releases the Lease; expiry would take a minute.
	const long = time.Minute
	a := campaign(t, newElector(t, cfg, ns, "replica-a", long))
	b := campaign(t, newElector(t, cfg, ns, "replica-b", long))

	waitFor(t, "one of two electors to lead", func() bool { return a.e.Leading() || b.e.Leading() })
	leader, follower := a, b
	if b.e.Leading() {
		leader, follower = b, a
	}
	receive(t, leader.started, "lead to be called on the leader")
	// Both keep campaigning for several retry periods; never do both lead.
	for end := time.Now().Add(6 * retryPeriod); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if a.e.Leading() && b.e.Leading() {
			t.Fatal("both electors lead")
		}
	}
	if !leader.e.Leading() || follower.e.Leading() {
		t.Fatalf("leadership moved without a reason: %s leading %v, %s leading %v", leader.e.Identity(), leader.e.Leading(), follower.e.Identity(), follower.e.Leading())
	}
	if got := holder(t, cs, ns); got != leader.e.Identity() {
		t.Fatalf("Lease holder %q, want the leading elector %q", got, leader.e.Identity())
	}
	select {
	case <-follower.started:
		t.Fatal("lead was called on the follower")
	default:
	}

	if err := leader.stop(); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	// Run returned after lead did.
	select {
	case <-leader.ended:
	default:
		t.Fatal("Run returned before lead saw its ctx cancelled")
	}
	if leader.e.Leading() {
		t.Error("Leading() is true after Run returned")
	}
	receive(t, follower.started, "the other elector to lead after the leader released the Lease")
	if got := holder(t, cs, ns); got != follower.e.Identity() {
		t.Errorf("Lease holder %q, want %q", got, follower.e.Identity())
	}
}

// proxy forwards TCP to the API server until cut, so that an elector can lose its API access
// while the API server stays up for the others.
type proxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) listen(addr string) {
	p.t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; give the kernel a little while to let go of it.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection: requests through the proxy fail at once.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestLeaderCutOffLosesLeadershipAndCampaignsAgain(t *testing.T) {
	cfg, cs, ns := cluster(t)
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	viaProxy := rest.CopyConfig(cfg)
	viaProxy.Host = "https://" + px.addr // the serving certificate is for 127.0.0.1, any port

	a := campaign(t, newElector(t, viaProxy, ns, "replica-a", leaseDuration))
	receive(t, a.started, "replica-a to lead")
	b := campaign(t, newElector(t, cfg, ns, "replica-b", leaseDuration))
	waitFor(t, "replica-b to see replica-a's Lease", func() bool { return holder(t, cs, ns) == "replica-a" })

	px.cut()
	lostAt := receive(t, a.ended, "replica-a's lead ctx to be cancelled after its API access was cut")
	if a.e.Leading() {
		t.Error("replica-a still reports Leading() after its lead ctx was cancelled")
	}
	tookOverAt := receive(t, b.started, "replica-b to take over the expired Lease")
	// The point of a lease: the cut-off leader stops before anyone else can start.
	if !lostAt.Before(tookOverAt) {
		t.Errorf("replica-b led from %v, before replica-a stopped at %v", tookOverAt.Format(time.StampMilli), lostAt.Format(time.StampMilli))
	}
	t.Logf("replica-a stopped leading %v before replica-b started", tookOverAt.Sub(lostAt).Round(time.Millisecond))
	select {
	case err := <-a.done:
		t.Fatalf("replica-a's Run returned after a loss (%v); it should campaign again", err)
	default:
	}

	// Access back, and the leader gone: replica-a leads again.
	px.listen(px.addr)
	if err := b.stop(); err != nil {
		t.Fatalf("replica-b Run: %v", err)
	}
	receive(t, a.started, "replica-a to lead again once it can reach the API server")
	if got := holder(t, cs, ns); got != "replica-a" {
		t.Errorf("Lease holder %q, want replica-a", got)
	}
}

// A 401 says the API server does not know who we are (bad or expired token); a 403 that it knows
// and RBAC says no. Both need an operator, so Run stops and the error says what to fix.
func TestAccessErrors(t *testing.T) {
	cfg, cs, ns := cluster(t)

	t.Run("unauthorized", func(t *testing.T) {
		bad := rest.AnonymousClientConfig(cfg) // keeps the CA, drops the client certificate
		bad.BearerToken = "not-a-token-this-cluster-knows"
		err := runUntilError(t, newElector(t, bad, ns, "replica-bad-token", leaseDuration))
		var ae *AccessError
		t.Log(err)
		if !errors.As(err, &ae) || !ae.Unauthorized || ae.Verb != "get" {
			t.Fatalf("Run with a bad token: %v, want an *AccessError for get, unauthorized", err)
		}
		for _, want := range []string{"401 Unauthorized", "credentials", "get, create and update on leases (API group coordination.k8s.io) in namespace \"" + ns + "\""} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		// Impersonating a service account without RBAC: a real 403 from the RBAC authorizer.
		user := "system:serviceaccount:" + ns + ":firedrill"
		sa := rest.CopyConfig(cfg)
		sa.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}}
		err := runUntilError(t, newElector(t, sa, ns, "replica-no-rbac", leaseDuration))
		var ae *AccessError
		t.Log(err)
		if !errors.As(err, &ae) || ae.Unauthorized || ae.Verb != "get" {
			t.Fatalf("Run without RBAC: %v, want an *AccessError for get, forbidden", err)
		}
		for _, want := range []string{"403 Forbidden", "get, create and update on leases (API group coordination.k8s.io) in namespace \"" + ns + "\"",
			"kubectl -n " + ns + " create role", user} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}

		// Granting exactly what the error asks for is enough to lead.
		ctx := context.Background()
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "firedrill-leader-election", Namespace: ns}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		}}
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "firedrill-leader-election", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}}}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The authorizer's cache catches up with the new binding after a moment.
		deadline := time.Now().Add(patience)
		for {
			c := campaign(t, newElector(t, sa, ns, "replica-with-rbac", leaseDuration))
			select {
			case <-c.started:
				if err := c.stop(); err != nil {
					t.Fatalf("Run with RBAC, after leading: %v", err)
				}
				if got := holder(t, cs, ns); got != "" {
					t.Errorf("Lease held by %q after Run returned, want released", got)
				}
				return
			case err := <-c.done:
				// Put it back: this candidate's cleanup (stop) waits for Run's result.
				c.done <- err
				if !errors.As(err, &ae) || time.Now().After(deadline) {
					t.Fatalf("Run with the Role the error asked for: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			case <-time.After(patience):
				t.Fatal("did not lead with the Role the error asked for")
			}
		}
	})
}

func TestMissingNamespaceIsAnError(t *testing.T) {
	cfg, _, _ := cluster(t)
	err := runUntilError(t, newElector(t, cfg, "leader-no-such-namespace", "replica-a", leaseDuration))
	if want := `namespace "leader-no-such-namespace" does not exist`; !strings.Contains(err.Error(), want) {
		t.Errorf("Run in a missing namespace: %v, want it to say %q", err, want)
	}
}

// runUntilError runs e, which must return an error on its own (its ctx is never cancelled).
func runUntilError(t *testing.T, e *Elector) error {
	t.Helper()
	c := campaign(t, e)
	select {
	case err := <-c.done:
		c.done <- err
		select {
		case <-c.started:
			t.Error("lead was called although the API server refused access")
		default:
		}
		if err == nil {
			t.Fatal("Run returned nil without its ctx being done")
		}
		return err
	case <-time.After(patience):
		t.Fatal("Run kept campaigning although the API server refused access; want an error")
		return nil
	}
}

func TestNewChecksOptions(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:6443"}
	e, err := New(cfg, Options{Namespace: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if want := host + "_" + strconv.Itoa(os.Getpid()); e.Identity() != want {
		t.Errorf("default identity %q, want %q", e.Identity(), want)
	}
	if e.opts.Name != "firedrill" || e.opts.LeaseDuration != 15*time.Second || e.opts.RenewDeadline != 10*time.Second || e.opts.RetryPeriod != 2*time.Second {
		t.Errorf("defaults: %+v", e.opts)
	}
	if e.Leading() {
		t.Error("Leading() before Run")
	}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "namespace is required"},
		{Options{Namespace: "ops", LeaseDuration: 500 * time.Millisecond, RenewDeadline: 200 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}, "under 1s"},
		{Options{Namespace: "ops", LeaseDuration: 10 * time.Second, RenewDeadline: 10 * time.Second}, "must be longer than the renew deadline"},
		{Options{Namespace: "ops", RenewDeadline: 2 * time.Second, RetryPeriod: 2 * time.Second}, "times the retry period"},
		{Options{Namespace: "ops", RetryPeriod: -time.Second}, "must be positive"},
		{Options{Namespace: "Ops"}, `Lease namespace "Ops" is not a valid namespace name`},
		{Options{Namespace: "ops", Name: "fire_drill"}, `Lease name "fire_drill" is not a valid object name`},
	} {
		if _, err := New(cfg, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
	if _, err := New(nil, Options{Namespace: "ops"}); err == nil {
		t.Error("New(nil config): no error")
	}
}
