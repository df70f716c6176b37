// Package service is `firedrill serve` as an object: New wires the history (with its spool),
// the scenario watcher and scheduler, the HTTP API and dashboard, metrics, notifications, the
// janitor and leader election together; Run runs them until its context ends or Shutdown is
// called, and then stops them in order, letting drills in flight finish within a grace period.
//
// The drivers are the caller's business (Config.Drivers): the service knows
// scenarios and records, not backup kinds. Its messages name the flags of `firedrill serve`,
// which set the Config fields of the same names.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/crd"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/jobexec"
	"github.com/firedrill-dev/firedrill/drill/leader"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/janitor"
	"github.com/firedrill-dev/firedrill/notify"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/server"
)

// Intervals of background loops that are not worth a setting.
const (
	scenarioMetricsEvery = 30 * time.Second // next-run and interval gauges drift with time
	reseedEvery          = time.Minute      // a follower's view of the leader's runs
	abandonedSweepEvery  = time.Minute      // runs of a crashed replica → aborted
	defaultSpoolFlush    = 15 * time.Second
)

// Timeouts of the shutdown steps after the drills' grace.
const (
	notifyDrainTimeout = 30 * time.Second
	spoolFlushTimeout  = 30 * time.Second
	httpDrainTimeout   = 10 * time.Second
)

// Service is a running `firedrill serve`. Run it once; Shutdown stops it.
type Service struct {
	cfg      Config
	log      *slog.Logger
	ln       net.Listener
	spool    *history.Spool
	watcher  *schedule.Watcher  // nil: no scenario files
	cluster  *crd.Source        // nil: no cluster scenarios
	status   *crd.StatusWriter  // with cluster
	runs     *crd.RunController // with cluster, when the DrillRun CRD is served
	updateMu sync.Mutex         // one scenario update at a time, files' or the cluster's
	sched    *schedule.Scheduler
	metrics  *server.Metrics
	notifier *notify.Notifier
	elector  *leader.Elector   // nil: this replica always schedules
	identity string            // this replica's: its Lease identity, else hostname_pid
	janitor  *janitor.Janitor  // nil: janitor off
	jobs     *jobexec.Executor // nil: drills run in this process
	http     *http.Server
	draining atomic.Bool // /readyz answers 503 from the start of shutdown
	reload   chan struct{}
	// measure asks the coverage loop for a measurement now (a drill finished).
	measure chan struct{}

	mu      sync.Mutex
	running bool // Run was called
	stopped bool // Shutdown was called before Run
	stop    chan context.Context
	done    chan struct{} // closed when Run has returned
	runErr  error
}

// New checks cfg, binds the listener, opens the spool and reads the scenario directory. It
// starts nothing: Run does. A *ConfigError is a setting to fix; other errors are outages.
func New(cfg Config) (_ *Service, err error) {
	if cfg.SpoolFlushInterval <= 0 {
		cfg.SpoolFlushInterval = defaultSpoolFlush
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log, ln: cfg.Listener, reload: make(chan struct{}, 1), measure: make(chan struct{}, 1), stop: make(chan context.Context, 1), done: make(chan struct{})}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	if cfg.Store == nil || (cfg.ScenariosDir == "" && cfg.ClusterScenarios == nil) || cfg.Drivers == nil {
		return nil, errors.New("service: Config needs Store, Drivers, and ScenariosDir or ClusterScenarios")
	}

	// The settings that can be wrong, before anything is bound or written.
	if s.notifier, err = newNotifier(cfg, log); err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("notifications: %w", err)}
	}
	cert, err := loadCertificate(cfg, log)
	if err != nil {
		return nil, err
	}
	var restCfg *rest.Config
	kubeErr := errors.New("no Kubernetes configuration given")
	if cfg.Kube != nil {
		restCfg, kubeErr = cfg.Kube()
	}
	if le := cfg.LeaderElection; le != nil {
		if kubeErr != nil {
			return nil, &ConfigError{Err: fmt.Errorf("--leader-elect: %w", kubeErr),
				Hint: "--leader-elect needs a Kubernetes API server for its Lease: run in a cluster, or set --kubeconfig/--context."}
		}
		ns := le.Namespace
		if ns == "" {
			ns = podNamespace()
		}
		s.elector, err = leader.New(restCfg, leader.Options{Namespace: ns, Name: le.Name, Identity: le.Identity, LeaseDuration: le.LeaseDuration,
			RenewDeadline: le.RenewDeadline, RetryPeriod: le.RetryPeriod, Logger: log.With("component", "leader")})
		if err != nil {
			return nil, &ConfigError{Err: fmt.Errorf("--leader-elect: %w", err)}
		}
		s.identity = s.elector.Identity()
		if !cfg.Store.Location().Postgres {
			log.Warn("--leader-elect with a history file: replicas on other machines do not share it, so a new leader does not see what the old one ran; use a postgres:// --history")
		}
	}

	if s.identity == "" {
		host, _ := os.Hostname()
		s.identity = fmt.Sprintf("%s_%d", host, os.Getpid())
	}
	if s.ln == nil {
		if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen on %s: %w; choose another address with --listen", cfg.Listen, err)
		}
	}
	if err := checkRetain(cfg); err != nil {
		return nil, err
	}
	if s.spool, err = history.NewSpool(cfg.Store, cfg.SpoolDir, log.With("component", "spool")); err != nil {
		return nil, fmt.Errorf("spool: %w; choose a writable --spool-dir", err)
	}
	if cfg.ScenariosDir != "" {
		if s.watcher, err = schedule.NewWatcher(cfg.ScenariosDir, log.With("component", "scenarios")); err != nil {
			return nil, &ConfigError{Err: fmt.Errorf("scenarios: %w", err), Hint: "Point --scenarios at a readable directory of scenario files."}
		}
	}
	var dyn dynamic.Interface
	if cc := cfg.ClusterScenarios; cc != nil {
		if s.cluster, dyn, err = loadClusterScenarios(restCfg, kubeErr, cc.Namespace, log); err != nil {
			return nil, err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = server.NewMetrics(reg)
	s.sched = schedule.New(schedule.Options{
		Run:              s.run,
		History:          spooledHistory{s.spool, cfg.Store},
		MaxConcurrent:    cfg.MaxConcurrent,
		StartingDeadline: cfg.StartingDeadline,
		OnFinish:         s.observe,
		OnStart:          s.runStarted,
		Logger:           log.With("component", "scheduler"),
		Runner:           cfg.Runner,
	})
	var leading func() bool
	if s.elector != nil {
		leading = s.elector.Leading
	}
	if s.cluster != nil {
		s.status = crd.NewStatusWriter(s.cluster, crd.StatusOptions{Scheduled: s.sched.Scenarios, Runs: cfg.Store, Leading: leading,
			Every: cfg.ClusterScenarios.StatusInterval, FieldManager: crd.FieldManager(s.identity), Logger: log.With("component", "scenario-status")})
		s.runs = drillRuns(dyn, cfg, s, leading, log)
	}
	entries := s.updateScenarios()
	log.Info("scenarios loaded", "dir", cfg.ScenariosDir, "cluster", s.cluster != nil, "scenarios", len(entries), "scheduled", countScheduled(entries), "invalid", countInvalid(entries))

	if cfg.JanitorInterval == 0 {
		log.Info("janitor disabled (--janitor-interval 0)")
	} else {
		jcfg := janitor.Config{Alive: history.ProcessAlive}
		if kubeErr != nil {
			log.Warn("janitor: no Kubernetes configuration; only the work directories of crashed drills are reaped, not what Velero drills leave in a cluster", "err", kubeErr)
		} else {
			jcfg.Kube = restCfg
		}
		if s.janitor, err = janitor.New(jcfg); err != nil {
			return nil, fmt.Errorf("janitor: %w", err)
		}
	}

	if jc := cfg.Jobs; jc != nil {
		if s.jobs, err = newJobs(jc, restCfg, kubeErr, s, log); err != nil {
			return nil, err
		}
	}

	if cfg.Token == "" {
		log.Info("API writes disabled: no token; set --token-file or FIREDRILL_TOKEN to allow triggering runs")
	}
	if cfg.ReadToken == "" && !isLoopback(s.ln.Addr().String()) {
		log.Warn("listening beyond loopback without a read token: anyone who reaches the address can read the scenarios and run history; set --read-token-file", "listen", s.ln.Addr().String())
	}
	httpLog := log.With("component", "http")
	s.http = &http.Server{
		Handler: server.New(server.Options{
			Runs: cfg.Store, Scheduler: s.sched, Token: cfg.Token, ReadToken: cfg.ReadToken, Gatherer: reg, Leader: leading,
			Logger: httpLog, Version: cfg.Runner.Version, Ready: s.ready,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(httpLog.Handler(), slog.LevelWarn),
	}
	if cert != nil {
		s.http.TLSConfig = cert.TLSConfig()
	}
	return s, nil
}

// Addr is the address the HTTP server listens on.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// Reload makes the scenario directory be read again (as on SIGHUP): for changes the watch
// does not see, such as a symlink's target replaced outside the directory.
func (s *Service) Reload() {
	select {
	case s.reload <- struct{}{}:
	default: // one is pending already
	}
}

// Run writes the records an earlier process spooled, marks runs whose runner died as aborted,
// seeds metrics and notifications from the history, and then schedules and serves until ctx
// ends, Shutdown is called or a part fails (its error is returned). Then it stops in order:
// /readyz says so, scheduling stops, drills in flight get Config.ShutdownGrace (Shutdown's
// ctx instead, when it was called) before they are aborted with their cleanup, notifications
// are delivered, the spool is flushed once more, the HTTP server drains and the Lease is
// released.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running || s.stopped {
		s.mu.Unlock()
		return errors.New("service: Run called twice, or after Shutdown")
	}
	s.running = true
	s.mu.Unlock()
	defer close(s.done)

	s.replaySpool(ctx)
	s.markAbandoned(ctx)
	s.metrics.SetSpooled(s.spool.Pending())
	newest, last := server.SeedFromHistory(ctx, s.cfg.Store, scenarioNames(s.entries()), s.log)
	s.metrics.Seed(newest)
	s.notifier.Seed(last)

	// Background loops stop with ctx, at the start of shutdown; wg lets shutdown wait for them.
	ctx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	var wg sync.WaitGroup
	s.startLoops(ctx, &wg)

	fatal := make(chan error, 2)
	scheme := "http"
	if s.http.TLSConfig != nil {
		scheme = "https"
	}
	go func() {
		var err error
		if scheme == "https" {
			err = s.http.ServeTLS(s.ln, "", "") // the certificate comes from TLSConfig.GetCertificate
		} else {
			err = s.http.Serve(s.ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			fatal <- fmt.Errorf("HTTP server: %w", err)
		}
	}()
	addr := s.ln.Addr().String()
	s.log.Info("serving HTTP", "addr", addr, "url", scheme+"://"+addr+"/", "writes", s.cfg.Token != "", "readsNeedToken", s.cfg.ReadToken != "")

	// schedCtx stops scheduling at shutdown, before the Lease is released, so that no other
	// replica starts while drills of ours still run.
	schedCtx, stopScheduling := context.WithCancel(context.WithoutCancel(ctx))
	defer stopScheduling()
	electCtx, release := context.WithCancel(context.WithoutCancel(ctx))
	defer release()
	electDone := s.schedule(schedCtx, electCtx, fatal)

	var runErr error
	var grace context.Context
	select {
	case <-ctx.Done():
		s.log.Info("shutting down: scheduling stopped; drills in flight may finish", "grace", s.cfg.ShutdownGrace.String())
	case grace = <-s.stop:
		s.log.Info("shutting down: scheduling stopped; drills in flight may finish")
	case runErr = <-fatal:
		s.log.Error("shutting down", "err", runErr)
	}
	stopLoops()
	s.draining.Store(true)
	stopScheduling()
	if grace == nil {
		var cancel context.CancelFunc
		grace, cancel = context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
		defer cancel()
	}
	if err := s.sched.Shutdown(grace); err != nil {
		s.log.Error("drills did not shut down cleanly", "err", err)
	}
	s.closeNotifier()
	fctx, cancel := context.WithTimeout(context.Background(), spoolFlushTimeout)
	s.metrics.SetSpooled(s.spool.Retry(fctx))
	cancel()
	if n := s.spool.Pending(); n > 0 {
		s.log.Warn("records stay spooled; the next start writes them to the history", "records", n, "dir", s.cfg.SpoolDir)
	}
	hctx, cancel := context.WithTimeout(context.Background(), httpDrainTimeout)
	if err := s.http.Shutdown(hctx); err != nil {
		s.http.Close()
	}
	cancel()
	release()
	select {
	case <-electDone:
	case <-time.After(s.renewDeadline() + 5*time.Second):
		s.log.Warn("the Lease was not released in time; another replica takes over when it expires")
	}
	wg.Wait()
	s.log.Info("stopped")
	s.runErr = runErr
	return runErr
}

// Shutdown stops a running service as the end of Run's context does, except that drills in
// flight may go on until ctx is done (rather than for Config.ShutdownGrace); it returns what
// Run returned, once Run has returned. Before Run it releases what New took.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.running {
		first := !s.stopped
		s.stopped = true
		s.mu.Unlock()
		if first {
			s.release()
		}
		return nil
	}
	s.mu.Unlock()
	select {
	case s.stop <- ctx:
	default: // another Shutdown got there first
	}
	<-s.done
	return s.runErr
}

// release frees what New took, for a service that never ran.
func (s *Service) release() {
	s.closeNotifier()
	if s.ln != nil {
		s.ln.Close()
	}
}

func (s *Service) closeNotifier() {
	if s.notifier == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyDrainTimeout)
	defer cancel()
	if err := s.notifier.Close(ctx); err != nil {
		s.log.Warn("notifications not delivered before exit", "err", err)
	}
}

// ready is /readyz: the history answers and the service is not shutting down.
func (s *Service) ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	return s.cfg.Store.Ping(ctx)
}

// observe is the scheduler's OnFinish: every final record goes to the metrics and the notifier
// (the scheduler has logged it).
func (s *Service) observe(r *drill.Record) {
	if r == nil || r.Result == drill.Running {
		return
	}
	s.metrics.Observe(r)
	s.notifier.Observe(r)
	select {
	case s.measure <- struct{}{}:
	default: // a measurement is due already
	}
	if s.status != nil {
		s.status.RunFinished(r.Scenario)
	}
	if s.runs != nil {
		s.runs.RunFinished(r)
	}
}

// runStarted is the scheduler's OnStart: a scheduled run of a Scenario resource gets a DrillRun.
func (s *Service) runStarted(sc *scenarios.Scenario, t schedule.Trigger) {
	if s.runs != nil {
		s.runs.ScheduledRunStarted(sc, t)
	}
}

// drillRuns is the controller of DrillRun resources, or nil, with a warning, when the cluster
// does not serve them to this replica: a cluster upgraded without the new CRD (Helm never
// upgrades CRDs) keeps its Scenarios working.
func drillRuns(dyn dynamic.Interface, cfg Config, s *Service, leading func() bool, log *slog.Logger) *crd.RunController {
	cc := cfg.ClusterScenarios
	c := crd.NewRunController(dyn, crd.RunsOptions{Namespace: cc.Namespace, Entries: s.entries, Source: s.cluster, Scheduled: s.sched.Scenarios,
		Start: s.sched.Start, Records: cfg.Store, Leading: leading, HistoryLimit: cc.DrillRunHistoryLimit, FieldManager: crd.FieldManager(s.identity),
		Logger: log.With("component", "drillruns")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Check(ctx); err != nil {
		log.Warn("DrillRuns are off: serve cannot read them", "err", err)
		return nil
	}
	return c
}

// newJobs builds the Job executor of `serve --executor job`.
func newJobs(jc *Jobs, restCfg *rest.Config, kubeErr error, s *Service, log *slog.Logger) (*jobexec.Executor, error) {
	if kubeErr != nil {
		return nil, &ConfigError{Err: fmt.Errorf("--executor job: %w", kubeErr), Hint: "Drills run as Jobs need a cluster: run in one, or set --kubeconfig/--context."}
	}
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("--executor job: %w", err)
	}
	ns := jc.Namespace
	if ns == "" {
		ns = podNamespace()
	}
	var jan jobexec.Janitor
	if s.janitor != nil {
		jan = s.janitor
	}
	ex, err := jobexec.New(jobexec.Options{Kube: kube, Namespace: ns, Image: jc.Image, ServiceAccount: jc.ServiceAccount, Env: jc.Env,
		Recorder: s.spool, Runner: s.cfg.Runner, Identity: s.identity, FieldManager: crd.FieldManager(s.identity), Operator: s.cfg.Operator, Janitor: jan, Logger: log})
	if err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("--executor job: %w", err)}
	}
	log.Info("drills run as Kubernetes Jobs", "namespace", ns, "image", jc.Image, "serviceAccount", jc.ServiceAccount)
	return ex, nil
}

// loadClusterScenarios lists the cluster's Scenarios once: New fails, with what to do, when
// they cannot be read.
func loadClusterScenarios(restCfg *rest.Config, kubeErr error, namespace string, log *slog.Logger) (*crd.Source, dynamic.Interface, error) {
	const hint = "--scenarios-from cluster needs the Scenario CRD installed (deploy/) and RBAC to list and watch Scenarios."
	if kubeErr != nil {
		return nil, nil, &ConfigError{Err: fmt.Errorf("--scenarios-from cluster: %w", kubeErr), Hint: "Run in a cluster, or set --kubeconfig/--context."}
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--scenarios-from cluster: %w", err)
	}
	src := crd.NewSource(dyn, namespace, log.With("component", "cluster-scenarios"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.Load(ctx); err != nil {
		return nil, nil, &ConfigError{Err: fmt.Errorf("--scenarios-from cluster: %w", err), Hint: hint}
	}
	return src, dyn, nil
}

// entries are the scenario files' entries, then the cluster's.
func (s *Service) entries() []schedule.Entry {
	var files []schedule.Entry
	if s.watcher != nil {
		files = s.watcher.Entries()
	}
	if s.cluster != nil {
		return s.cluster.Merge(files)
	}
	return files
}

// updateScenarios hands the current scenarios to the scheduler, the notifier and the metrics,
// and asks for the Scenarios' statuses to be written; it returns what it handed over.
func (s *Service) updateScenarios() []schedule.Entry {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	e := s.entries()
	s.sched.Update(e)
	s.notifier.SetScenarioHeartbeats(scenarioHeartbeats(e))
	s.metrics.SetScenarios(s.sched.Scenarios())
	if s.status != nil {
		s.status.Poke()
	}
	return e
}

func (s *Service) renewDeadline() time.Duration {
	if le := s.cfg.LeaderElection; le != nil && le.RenewDeadline > 0 {
		return le.RenewDeadline
	}
	return leader.DefaultRenewDeadline
}
