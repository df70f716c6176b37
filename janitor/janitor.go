// Package janitor removes what drills left behind — after a crash, a kill, or once what a
// cleanup policy kept has had its time: scratch namespaces, Velero Restores and their
// resource-modifier ConfigMaps, canary ConfigMaps, probe pods, Backups made with deleteAfter,
// DownloadRequests, kind clusters, and runs' work directories on this machine.
//
// It recognises each by what firedrill put on it, never by a name alone: in a cluster both labels
// app.kubernetes.io/managed-by=firedrill and firedrill.dev/run=<run id>, with the expiry
// annotation firedrill.dev/expires; on disk the owner file (drill.OwnerFile) naming the process
// that ran the drill. Something is due once its expiry has passed, or — without a readable
// expiry — once older than the grace, or at once when its run's work directory here shows the
// runner gone without cleaning up (scratch.Judge). Each removal reads the object again first
// and leaves it if it changed meanwhile.
package janitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// What the janitor removes: Item.Kind.
const (
	KindNamespace       = "Namespace"
	KindRestore         = velero.KindRestore
	KindBackup          = velero.KindBackup
	KindDownloadRequest = velero.KindDownloadRequest
	KindConfigMap       = "ConfigMap"
	KindPod             = "Pod"
	KindKindCluster     = "KindCluster"
	KindWorkDir         = "WorkDir"
)

// Config is what a Janitor looks at.
type Config struct {
	// Kube is the cluster whose leftovers it removes; nil: none (work directories, kind clusters).
	Kube *rest.Config
	// WorkRoot is where runs make their work directories (drill.Runner.WorkRoot); "" is
	// os.TempDir(), the engine's default.
	WorkRoot string
	// Alive reports whether a runner process still runs (history.ProcessAlive). Required.
	Alive func(drill.RunnerInfo) bool
	// Kind reaches this machine's kind clusters; nil: they are not looked at.
	Kind KindClusters
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Janitor finds and removes what firedrill left behind.
type Janitor struct {
	cfg    Config
	kube   kubernetes.Interface
	velero *velero.Client
	ns     *scratch.Manager

	mu sync.Mutex
	// gone are the runs handed over by RunnerGone: their runner died elsewhere (a Job's pod),
	// where no work directory of this machine can show it.
	gone map[string]drill.RunnerInfo
	wake chan struct{}
}

// New returns a Janitor for cfg. It contacts nothing.
func New(cfg Config) (*Janitor, error) {
	if cfg.Alive == nil {
		return nil, errors.New("janitor: Config.Alive is required (history.ProcessAlive)")
	}
	if cfg.WorkRoot == "" {
		cfg.WorkRoot = os.TempDir()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	j := &Janitor{cfg: cfg, gone: map[string]drill.RunnerInfo{}, wake: make(chan struct{}, 1)}
	if cfg.Kube != nil {
		var err error
		if j.kube, err = kubernetes.NewForConfig(cfg.Kube); err != nil {
			return nil, fmt.Errorf("janitor: %w", err)
		}
		if j.velero, err = velero.New(cfg.Kube, ""); err != nil {
			return nil, fmt.Errorf("janitor: %w", err)
		}
		j.ns = scratch.New(j.kube)
	}
	return j, nil
}

// Options tune one pass.
type Options struct {
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// Grace is the age after which something of firedrill's without a readable expiry is due;
	// 0 means scratch.DefaultGrace.
	Grace time.Duration
	// AsOf, when set, is the time expiries are judged at instead of now: with DryRun, what a
	// later pass would remove; without, it also removes what a drill still running uses.
	AsOf time.Time
	// WaitInFlight waits for Velero to end a due backup or restore it is still working on, then
	// removes it; otherwise such an object is left for a later pass (Report.Left).
	WaitInFlight bool
}

// Item is one thing the janitor removed (or would remove, or left), and why.
type Item struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	// Name is the object's name; a work directory's path.
	Name string `json:"name"`
	Run  string `json:"run"`
	// Reason is why it is due: scratch.DueExpired, DueRunnerGone or DueNoExpiry.
	Reason string `json:"reason"`
	// ExpiredAt is the expiry that passed (reason "expired").
	ExpiredAt *time.Time `json:"expiredAt,omitempty"`
	// Runner is the runner that is gone (reason "runner gone"), as its owner file names it.
	Runner *drill.RunnerInfo `json:"runner,omitempty"`
	// Note says why a due item was left, or what went with it.
	Note string `json:"note,omitempty"`
}

// Report is what a pass did.
type Report struct {
	DryRun bool      `json:"dryRun"`
	AsOf   time.Time `json:"asOf"`
	// Items were removed (with DryRun: would be), in the order of removal.
	Items []Item `json:"items"`
	// Left are due but were not removed in this pass; Note says why (Velero still working on
	// it), and a later pass takes them.
	Left []Item `json:"left,omitempty"`
	// Errors are the removals that failed; a later pass tries again.
	Errors []string `json:"errors,omitempty"`
}

// pass is the state of one Sweep.
type pass struct {
	opts  Options
	judge scratch.Judge
	gone  map[string]*drill.RunnerInfo // runs whose runner is gone, from their work directories
	rep   *Report
	errs  []error
	// failed are runs something of which could not be removed: their work directories stay, so
	// that the next pass still knows their runner is gone.
	failed map[string]bool
}

// Sweep makes one pass: it removes every due thing of firedrill's it can reach, in an order that
// keeps a restore's isolation until the restore is gone (Restores, probe pods and ConfigMaps,
// DownloadRequests, scratch namespaces, Backups, kind clusters, and work directories last). A
// failure with one thing does not stop the pass; the error joins them all.
func (j *Janitor) Sweep(ctx context.Context, opts Options) (*Report, error) {
	asOf := opts.AsOf
	if asOf.IsZero() {
		asOf = j.cfg.Now()
	}
	p := &pass{opts: opts, gone: map[string]*drill.RunnerInfo{}, failed: map[string]bool{},
		rep: &Report{DryRun: opts.DryRun, AsOf: asOf.UTC(), Items: []Item{}}}
	dirs, err := j.workDirs(asOf)
	if err != nil {
		p.errs = append(p.errs, err)
	}
	for _, d := range dirs {
		if d.reason == scratch.DueRunnerGone {
			p.gone[d.owner.Run] = &d.owner.Runner
		}
	}
	handed := j.handedOver()
	for run, ri := range handed {
		if p.gone[run] == nil {
			p.gone[run] = &ri
		}
	}
	p.judge = scratch.Judge{Now: asOf, Grace: opts.Grace, RunnerGone: func(run string) bool { return p.gone[run] != nil }}

	if j.kube != nil {
		j.sweepCluster(ctx, p)
	}
	if j.cfg.Kind != nil {
		j.sweepKind(ctx, p)
	}
	j.sweepWorkDirs(p, dirs)
	if !opts.DryRun {
		j.forget(handed, p.failed)
	}
	if len(p.errs) > 0 {
		return p.rep, fmt.Errorf("janitor: %w", errors.Join(p.errs...))
	}
	return p.rep, nil
}

// RunnerGone tells the janitor that run's runner ended without its cleanup, somewhere no work
// directory of this machine shows it (a drill's Job whose pod died): what the run made is due at
// once, whatever its expiry. The run is forgotten after a pass that removed all of it. Wake
// makes that pass start now.
func (j *Janitor) RunnerGone(run string, runner drill.RunnerInfo) {
	j.mu.Lock()
	j.gone[run] = runner
	j.mu.Unlock()
}

// Wake starts a pass of Run now rather than at its next interval.
func (j *Janitor) Wake() {
	select {
	case j.wake <- struct{}{}:
	default: // a pass is due already
	}
}

func (j *Janitor) handedOver() map[string]drill.RunnerInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	m := make(map[string]drill.RunnerInfo, len(j.gone))
	for k, v := range j.gone {
		m[k] = v
	}
	return m
}

// forget drops the handed-over runs a pass removed everything of.
func (j *Janitor) forget(handed map[string]drill.RunnerInfo, failed map[string]bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for run := range handed {
		if !failed[run] {
			delete(j.gone, run)
		}
	}
}

// due returns the item for something of run, or false when it is not due.
func (p *pass) due(kind, namespace, name, run string, created, expires time.Time) (Item, bool) {
	why := p.judge.Due(run, created, expires)
	if why == "" {
		return Item{}, false
	}
	it := Item{Kind: kind, Namespace: namespace, Name: name, Run: run, Reason: why}
	switch why {
	case scratch.DueExpired:
		e := expires.UTC()
		it.ExpiredAt = &e
	case scratch.DueRunnerGone:
		it.Runner = p.gone[run]
	}
	return it, true
}

func (p *pass) removed(it Item) { p.rep.Items = append(p.rep.Items, it) }

func (p *pass) left(it Item, why string) {
	it.Note = why
	p.rep.Left = append(p.rep.Left, it)
	p.failed[it.Run] = true
}

func (p *pass) fail(it Item, err error) {
	p.errs = append(p.errs, err)
	p.rep.Errors = append(p.rep.Errors, err.Error())
	p.failed[it.Run] = true
}

// Run makes a pass at once, every interval and when woken (Wake) until ctx is done, logging
// what it removed and what went wrong: the janitor of `firedrill serve`. A failed pass is tried again at the next;
// what Velero is still working on is left for a later pass rather than waited for. remaining,
// when not nil, is told after each pass how many scratch namespaces are left (a gauge).
func (j *Janitor) Run(ctx context.Context, every time.Duration, log *slog.Logger, remaining func(int)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		j.logPass(ctx, log, remaining)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-j.wake:
		}
	}
}

func (j *Janitor) logPass(ctx context.Context, log *slog.Logger, remaining func(int)) {
	rep, err := j.Sweep(ctx, Options{})
	if ctx.Err() != nil {
		return
	}
	for _, it := range rep.Items {
		log.Info("janitor removed a leftover of firedrill", "kind", it.Kind, "name", it.Where(), "run", it.Run, "reason", it.Reason)
	}
	for _, it := range rep.Left {
		log.Info("janitor left a leftover for a later pass", "kind", it.Kind, "name", it.Where(), "run", it.Run, "why", it.Note)
	}
	if err != nil {
		log.Warn("janitor", "err", err)
	}
	if j.ns == nil || remaining == nil {
		return
	}
	nss, err := j.ns.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("janitor: count scratch namespaces", "err", err)
		}
		return
	}
	remaining(len(nss))
}

// Where is namespace/name, or the name alone.
func (it Item) Where() string {
	if it.Namespace == "" {
		return it.Name
	}
	return it.Namespace + "/" + it.Name
}

// Why says in words why it is due.
func (it Item) Why() string {
	switch {
	case it.Reason == scratch.DueExpired && it.ExpiredAt != nil:
		return "expired " + it.ExpiredAt.Local().Format("2006-01-02 15:04")
	case it.Reason == scratch.DueRunnerGone && it.Runner != nil:
		return fmt.Sprintf("runner gone (pid %d on %s)", it.Runner.PID, it.Runner.Host)
	}
	return it.Reason
}
