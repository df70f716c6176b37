package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/leader"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/notify"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/server"
)

// serveOptions are the flags of `firedrill serve`; every field is one flag.
type serveOptions struct {
	drill            drillFlags
	listen           string
	history          string
	tokenFile        string
	maxConcurrent    int
	startingDeadline time.Duration
	shutdownGrace    time.Duration
	janitorInterval  time.Duration
	spoolDir         string
	spoolFlush       time.Duration
	webhooks         []string
	slackWebhooks    []string
	heartbeatURL     string
	dashboardURL     string
	leaderElect      bool
	leaseNamespace   string
	leaseName        string
	leaseDuration    time.Duration
	renewDeadline    time.Duration
	retryPeriod      time.Duration
	logFormat        string
	logLevel         string
}

// serviceAccountNamespace is where a pod finds its own namespace, the default for the Lease.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Intervals of serve's background loops that are not worth a flag.
const (
	scenarioMetricsEvery = 30 * time.Second // next-run and interval gauges drift with time
	reseedEvery          = time.Minute      // a follower's view of the leader's runs
	abandonedSweepEvery  = time.Minute      // runs of a crashed replica → aborted
)

func (a *app) serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve --scenarios DIR",
		Short: "Run scheduled drills as a service, with an HTTP API, a dashboard, /metrics and the janitor",
		Long: `Loads every scenario in --scenarios DIR and runs those with spec.schedule on their cron
schedule (spec.timeZone; a run never overlaps the previous one of its scenario; at most
--max-concurrent drills at once, the rest queue). Scenario files are reloaded when they change and
on SIGHUP; a file that no longer validates keeps its last good version scheduled, and the error
shows in the API, the dashboard, the log and firedrill_scenario_errors.

After downtime, a run missed within --starting-deadline is started once; older ones are recorded
as missed. Runs left running by a crashed firedrill are marked aborted at start-up.

The HTTP server on --listen serves the dashboard at /, the JSON API under /api/v1/, /metrics,
/healthz and /readyz. Writes (POST /api/v1/scenarios/NAME/runs) need the bearer token of
--token-file or FIREDRILL_TOKEN; without one they are disabled.

With --leader-elect, replicas share a Kubernetes Lease and only the leader schedules; all of them
serve the API (use a postgres:// --history so that they share the history).

A final record that cannot be written because the history is unreachable is spooled to
--spool-dir and written when the history is back.

SIGTERM or Ctrl-C stops scheduling, lets drills in flight finish for --shutdown-grace, then
aborts them (cleanup still runs), writes their records and exits 0. A second signal exits at once.
See docs/serve.md.`,
		Example: `  # schedule the scenarios of a directory, API and dashboard on http://127.0.0.1:8080/
  firedrill serve --scenarios /etc/firedrill/scenarios

  # writes enabled, failures posted to Slack, a dead-man's-switch pinged after each pass
  FIREDRILL_TOKEN=$(cat /run/secrets/token) FIREDRILL_SLACK_WEBHOOK=https://hooks.slack.com/... \
    firedrill serve --scenarios ./drills --heartbeat-url https://hc-ping.com/UUID

  # two or more replicas in a cluster, sharing PostgreSQL, one of them scheduling
  firedrill serve --scenarios /scenarios --listen :8080 --token-file /run/secrets/token \
    --history postgres://firedrill@db/firedrill --leader-elect --log-format json

  # trigger a drill through the API
  curl -X POST -H "Authorization: Bearer $FIREDRILL_TOKEN" \
    http://127.0.0.1:8080/api/v1/scenarios/control-plane-etcd/runs`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd, o)
		},
	}
	o.drill.register(cmd)
	fl := cmd.Flags()
	fl.Lookup("scenarios").Usage = "directory of scenario files to schedule (required; default: $FIREDRILL_SCENARIOS)"
	fl.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address of the HTTP API, dashboard and /metrics (port 0 picks a free port, logged)")
	fl.StringVar(&o.history, "history", "", "history database: a path, sqlite:///path or postgres://... (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	fl.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token API writes need (default: $FIREDRILL_TOKEN; neither: writes disabled)")
	fl.IntVar(&o.maxConcurrent, "max-concurrent", 2, "drills running at once across all scenarios; the rest queue")
	fl.DurationVar(&o.startingDeadline, "starting-deadline", time.Hour, "a run missed while serve was down starts once if due at most this long ago, else it is recorded as missed")
	fl.DurationVar(&o.shutdownGrace, "shutdown-grace", 5*time.Minute, "on SIGTERM, how long drills in flight may go on before they are aborted (cleanup still runs)")
	fl.DurationVar(&o.janitorInterval, "janitor-interval", 10*time.Minute, "delete expired scratch namespaces at start-up and this often (0: never; needs a kubeconfig or in-cluster config)")
	fl.StringVar(&o.spoolDir, "spool-dir", "", "where final records wait while the history is unreachable; one per replica (default: 'spool' next to a history file, else $XDG_STATE_HOME/firedrill/spool)")
	fl.DurationVar(&o.spoolFlush, "spool-flush-interval", 15*time.Second, "how often spooled records are retried")
	fl.StringArrayVar(&o.webhooks, "webhook", nil, "URL to POST a JSON notification to on failure and on recovery (repeatable)")
	fl.StringArrayVar(&o.slackWebhooks, "slack-webhook", nil, "Slack incoming-webhook URL, notified on failure and recovery (repeatable; also $FIREDRILL_SLACK_WEBHOOK, comma-separated)")
	fl.StringVar(&o.heartbeatURL, "heartbeat-url", "", "URL requested (GET) after each passed drill, for a dead-man's-switch service")
	fl.StringVar(&o.dashboardURL, "dashboard-url", "", "external URL of the dashboard, for links in notifications")
	fl.BoolVar(&o.leaderElect, "leader-elect", false, "schedule only while holding a Kubernetes Lease (for several replicas)")
	fl.StringVar(&o.leaseNamespace, "lease-namespace", "", "namespace of the Lease (default: the pod's namespace, else default)")
	fl.StringVar(&o.leaseName, "lease-name", "firedrill", "name of the Lease")
	fl.DurationVar(&o.leaseDuration, "lease-duration", 15*time.Second, "how long others wait before taking over a Lease that is not renewed")
	fl.DurationVar(&o.renewDeadline, "renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it stops scheduling")
	fl.DurationVar(&o.retryPeriod, "retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
	fl.StringVar(&o.logFormat, "log-format", "text", "log format on stderr: text or json")
	fl.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// check validates the flags that do not need any I/O and fills defaults from the environment.
func (o *serveOptions) check(getenv func(string) string) error {
	hint := "Run 'firedrill serve --help' for usage."
	if o.drill.scenariosDir == "" {
		o.drill.scenariosDir = getenv("FIREDRILL_SCENARIOS")
	}
	if o.drill.scenariosDir == "" {
		return usagef(hint, "serve needs --scenarios DIR (or FIREDRILL_SCENARIOS): the directory of scenario files to schedule")
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return usagef(hint, "--log-format %q: use text or json", o.logFormat)
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return usagef(hint, "--log-level: %v", err)
	}
	if o.maxConcurrent < 1 {
		return usagef(hint, "--max-concurrent must be at least 1, got %d", o.maxConcurrent)
	}
	for name, d := range map[string]time.Duration{"--starting-deadline": o.startingDeadline, "--shutdown-grace": o.shutdownGrace, "--janitor-interval": o.janitorInterval} {
		if d < 0 {
			return usagef(hint, "%s must not be negative, got %s", name, d)
		}
	}
	if o.spoolFlush <= 0 {
		return usagef(hint, "--spool-flush-interval must be positive, got %s", o.spoolFlush)
	}
	if o.leaderElect && !(o.leaseDuration > o.renewDeadline && o.renewDeadline > o.retryPeriod && o.retryPeriod > 0) {
		return usagef(hint, "lease timings must satisfy --lease-duration (%s) > --renew-deadline (%s) > --retry-period (%s) > 0",
			o.leaseDuration, o.renewDeadline, o.retryPeriod)
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return usagef(hint, "--listen %q: %v: write HOST:PORT, e.g. 127.0.0.1:8080", o.listen, err)
	}
	if v := getenv("FIREDRILL_SLACK_WEBHOOK"); v != "" {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				o.slackWebhooks = append(o.slackWebhooks, u)
			}
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	l, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// readToken returns the API's bearer token: the file's content, else $FIREDRILL_TOKEN; "" when
// neither is set (writes disabled).
func readToken(file string, getenv func(string) string) (string, error) {
	if file == "" {
		return strings.TrimSpace(getenv("FIREDRILL_TOKEN")), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usagef("", "--token-file: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usagef("", "--token-file %s is empty: put the bearer token in it, or drop the flag to disable writes", file)
	}
	return tok, nil
}

// isLoopback reports whether a listen address only accepts local connections.
func isLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// defaultSpoolDir is "spool" next to a history file, else the XDG state directory (a
// PostgreSQL history has no local directory of its own).
func defaultSpoolDir(dsn string, getenv func(string) string) string {
	scheme, rest, isURL := strings.Cut(dsn, "://")
	path := dsn
	if isURL && !strings.ContainsAny(scheme, `/\.`) {
		switch strings.ToLower(scheme) {
		case "sqlite", "sqlite3", "file":
			path = rest
		default:
			path = ""
		}
	}
	if path != "" {
		return filepath.Join(filepath.Dir(path), "spool")
	}
	if v := getenv("XDG_STATE_HOME"); v != "" && filepath.IsAbs(v) {
		return filepath.Join(v, "firedrill", "spool")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "state", "firedrill", "spool")
	}
	return filepath.Join(os.TempDir(), "firedrill-spool")
}

func isPostgres(flag string, getenv func(string) string) bool {
	dsn := flag
	if dsn == "" {
		dsn = history.DefaultPath(getenv)
	}
	scheme, _, _ := strings.Cut(dsn, "://")
	return strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql")
}

// leaseNamespace is the pod's own namespace when in a cluster, else "default".
func leaseNamespace() string {
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// serve runs the service until ctx is done (SIGTERM, Ctrl-C) and then shuts down in order.
func (a *app) serve(cmd *cobra.Command, o serveOptions) error {
	ctx := cmd.Context()
	if err := o.check(a.getenv); err != nil {
		return err
	}
	log := newLogger(a.err, o.logFormat, o.logLevel)

	// SIGHUP reloads the scenarios; registered first so that an early one does not kill us.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	token, err := readToken(o.tokenFile, a.getenv)
	if err != nil {
		return err
	}
	notifier, err := newNotifier(o, log)
	if err != nil {
		return usagef("", "notifications: %v", err)
	}
	var elector *leader.Elector
	restCfg, restCfgErr := a.restConfig()
	if o.leaderElect {
		if restCfgErr != nil {
			return usagef("--leader-elect needs a Kubernetes API server for its Lease: run in a cluster, or set --kubeconfig/--context.", "--leader-elect: %v", restCfgErr)
		}
		ns := o.leaseNamespace
		if ns == "" {
			ns = leaseNamespace()
		}
		elector, err = leader.New(restCfg, leader.Options{Namespace: ns, Name: o.leaseName, LeaseDuration: o.leaseDuration,
			RenewDeadline: o.renewDeadline, RetryPeriod: o.retryPeriod, Logger: log.With("component", "leader")})
		if err != nil {
			return usagef("", "--leader-elect: %v", err)
		}
	}

	if o.leaderElect && !isPostgres(o.history, a.getenv) {
		log.Warn("--leader-elect with a history file: replicas on other machines do not share it, so a new leader does not see what the old one ran; use a postgres:// --history")
	}

	// Listen before anything is started, so that a taken port fails at once.
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; choose another address with --listen", o.listen, err)
	}
	defer ln.Close()

	store, spool, err := a.openServeHistory(ctx, o, log)
	if err != nil {
		return err
	}
	defer store.Close()

	watcher, err := schedule.NewWatcher(o.drill.scenariosDir, log.With("component", "scenarios"))
	if err != nil {
		return usagef("Point --scenarios at a readable directory of scenario files.", "scenarios: %v", err)
	}
	entries := watcher.Entries()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := server.NewMetrics(reg)
	metrics.SetSpooled(spool.Pending())
	newest, last := seedFromHistory(ctx, store, entries, log)
	metrics.Seed(newest)
	if notifier != nil {
		notifier.Seed(last)
	}

	ri := runnerInfo()
	onFinish := func(r *drill.Record) {
		if r == nil || r.Result == drill.Running {
			return
		}
		// The scheduler has logged it.
		metrics.Observe(r)
		if notifier != nil {
			notifier.Observe(r)
		}
	}
	sched := schedule.New(schedule.Options{
		Run:              a.runFunc(o.drill, spool, ri, log),
		History:          spooledHistory{spool, store},
		MaxConcurrent:    o.maxConcurrent,
		StartingDeadline: o.startingDeadline,
		OnFinish:         onFinish,
		Logger:           log.With("component", "scheduler"),
		Runner:           ri,
	})
	sched.Update(entries)
	metrics.SetScenarios(sched.Scenarios())
	log.Info("scenarios loaded", "dir", o.drill.scenariosDir, "files", len(entries), "scheduled", countScheduled(entries), "invalid", countInvalid(entries))

	var kube kubernetes.Interface
	if restCfgErr == nil && o.janitorInterval > 0 {
		if kube, err = kubernetes.NewForConfig(restCfg); err != nil {
			return fmt.Errorf("janitor: %w", err)
		}
	}

	// Background loops stop with ctx; wg lets shutdown wait for them.
	var wg sync.WaitGroup
	goLoop := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	reload := make(chan struct{}, 1)
	goLoop(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading scenarios")
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	})
	goLoop(func() {
		err := watcher.Run(ctx, reload, func(e []schedule.Entry) {
			sched.Update(e)
			metrics.SetScenarios(sched.Scenarios())
		})
		if err != nil && ctx.Err() == nil {
			log.Error("watching scenarios stopped; changes are no longer picked up", "err", err)
		}
	})
	goLoop(func() { every(ctx, scenarioMetricsEvery, func() { metrics.SetScenarios(sched.Scenarios()) }) })
	if elector != nil {
		// A follower's last-run gauges would otherwise stay as they were at its start-up, and
		// an alert that takes the worst value across replicas (objective met) would keep
		// firing on a stale follower after the leader's next pass. Seed keeps only newer facts.
		goLoop(func() {
			every(ctx, reseedEvery, func() {
				if elector.Leading() || store.Ping(ctx) != nil {
					return
				}
				newest, _ := seedFromHistory(ctx, store, watcher.Entries(), log)
				metrics.Seed(newest)
			})
		})
	}
	goLoop(func() {
		every(ctx, o.spoolFlush, func() { flushSpool(ctx, spool, metrics, log) })
	})
	goLoop(func() { every(ctx, abandonedSweepEvery, func() { markAbandoned(ctx, store, log) }) })
	switch {
	case o.janitorInterval == 0:
		log.Info("janitor disabled (--janitor-interval 0)")
	case restCfgErr != nil:
		log.Warn("janitor disabled: no Kubernetes configuration; scratch namespaces of Velero drills are not reaped", "err", restCfgErr)
	default:
		mgr := scratch.New(kube)
		goLoop(func() {
			janitor(ctx, mgr, metrics, log)
			every(ctx, o.janitorInterval, func() { janitor(ctx, mgr, metrics, log) })
		})
	}

	// The HTTP server.
	var draining atomic.Bool
	if token == "" {
		log.Info("API writes disabled: no token; set --token-file or FIREDRILL_TOKEN to allow triggering runs")
		if !isLoopback(o.listen) {
			log.Warn("listening beyond loopback without a token: anyone who reaches the address can read the scenarios and run history", "listen", o.listen)
		}
	}
	var leading func() bool
	if elector != nil {
		leading = elector.Leading
	}
	httpSrv := &http.Server{
		Handler: server.New(server.Options{
			Runs: store, Scheduler: sched, Token: token, Gatherer: reg, Leader: leading,
			Logger: log.With("component", "http"), Version: version,
			Ready: func(ctx context.Context) error {
				if draining.Load() {
					return errors.New("shutting down")
				}
				return store.Ping(ctx)
			},
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
	fatal := make(chan error, 2)
	go func() {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fatal <- fmt.Errorf("HTTP server: %w", err)
		}
	}()
	log.Info("serving HTTP", "addr", ln.Addr().String(), "url", "http://"+ln.Addr().String()+"/", "writes", token != "")

	// Scheduling: always here, or while leading. schedCtx stops scheduling at shutdown, before
	// the Lease is released, so that no other replica starts while our drills still run.
	schedCtx, stopScheduling := context.WithCancel(context.WithoutCancel(ctx))
	defer stopScheduling()
	electCtx, release := context.WithCancel(context.WithoutCancel(ctx))
	defer release()
	electDone := make(chan struct{})
	if elector == nil {
		log.Info("scheduling (no --leader-elect: this replica always schedules)")
		go func() {
			defer close(electDone)
			if err := sched.Run(schedCtx); err != nil {
				fatal <- fmt.Errorf("scheduler: %w", err)
			}
		}()
	} else {
		log.Info("campaigning for the Lease; scheduling only while leader", "identity", elector.Identity())
		go func() {
			defer close(electDone)
			err := elector.Run(electCtx, func(lctx context.Context) {
				log.Info("became leader: scheduling")
				markAbandoned(lctx, store, log) // the previous leader's runs, if it died
				lead, cancel := context.WithCancel(lctx)
				stop := context.AfterFunc(schedCtx, cancel)
				defer stop()
				defer cancel()
				if err := sched.Run(lead); err != nil {
					log.Error("scheduler stopped", "err", err)
				}
				// Keep the Lease until it is lost or released: returning would mean giving it up
				// while drills of ours may still run.
				<-lctx.Done()
				log.Info("leadership ended: not scheduling")
			})
			if err != nil && electCtx.Err() == nil {
				fatal <- fmt.Errorf("leader election: %w", err)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: scheduling stopped; drills in flight may finish", "grace", o.shutdownGrace.String())
	case runErr = <-fatal:
		log.Error("shutting down", "err", runErr)
	}
	draining.Store(true)
	stopScheduling()
	graceCtx, cancelGrace := context.WithTimeout(context.Background(), o.shutdownGrace)
	if err := sched.Shutdown(graceCtx); err != nil {
		log.Error("drills did not shut down cleanly", "err", err)
	}
	cancelGrace()
	if notifier != nil {
		nctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := notifier.Close(nctx); err != nil {
			log.Warn("notifications not delivered before exit", "err", err)
		}
		cancel()
	}
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	flushSpool(fctx, spool, metrics, log)
	cancel()
	if n := spool.Pending(); n > 0 {
		log.Warn("records stay spooled; the next start writes them to the history", "records", n, "dir", spoolDirOf(o, a.getenv))
	}
	hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := httpSrv.Shutdown(hctx); err != nil {
		httpSrv.Close()
	}
	cancel()
	release()
	select {
	case <-electDone:
	case <-time.After(o.renewDeadline + 5*time.Second):
		log.Warn("the Lease was not released in time; another replica takes over when it expires")
	}
	wg.Wait()
	log.Info("stopped")
	if runErr != nil {
		return &codedError{code: exitError, err: runErr}
	}
	return nil
}

func spoolDirOf(o serveOptions, getenv func(string) string) string {
	if o.spoolDir != "" {
		return o.spoolDir
	}
	dsn := o.history
	if dsn == "" {
		dsn = history.DefaultPath(getenv)
	}
	return defaultSpoolDir(dsn, getenv)
}

// openServeHistory opens the history and the spool in front of it. Records spooled by an
// earlier process are written before runs left running are marked aborted: a spooled final
// record is the truth about its run, and MarkAbandoned would otherwise finish it first.
// An unreachable history at start-up is an error (exit 3): the scheduler needs it to know what
// already ran, and a supervisor restarts serve until it is back.
func (a *app) openServeHistory(ctx context.Context, o serveOptions, log *slog.Logger) (*history.Store, *history.Spool, error) {
	dsn := o.history
	if dsn == "" {
		dsn = history.DefaultPath(a.getenv)
	}
	if dsn == "" {
		return nil, nil, usagef("", "no history location: set --history, FIREDRILL_HISTORY or HOME")
	}
	store, err := history.Open(ctx, dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("%w\nserve needs its history at start-up; check that it is reachable, or point --history elsewhere", err)
	}
	// Before anything is finished here: spooled records, abandoned runs, every drill.
	if err := a.applySigner(store); err != nil {
		store.Close()
		return nil, nil, err
	}
	dir := spoolDirOf(o, a.getenv)
	spool, err := history.NewSpool(store, dir, log.With("component", "spool"))
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("spool: %w; choose a writable --spool-dir", err)
	}
	if n := spool.Pending(); n > 0 {
		written, err := spool.Flush(ctx)
		log.Info("replayed spooled records", "written", written, "left", spool.Pending(), "dir", dir)
		if err != nil {
			log.Warn("some spooled records could not be written yet", "err", err)
		}
	}
	markAbandoned(ctx, store, log)
	return store, spool, nil
}

// markAbandoned finishes as aborted the runs whose runner died (this host: its pid is gone;
// another host: no heartbeat for staleRunAfter).
func markAbandoned(ctx context.Context, store *history.Store, log *slog.Logger) {
	ids, err := store.MarkAbandoned(ctx, history.ProcessAlive, staleRunAfter)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Warn("could not look for abandoned runs", "err", err)
	case len(ids) > 0:
		log.Warn("marked runs aborted whose runner is gone", "runs", strings.Join(ids, ","))
	}
}

// runFunc is how the scheduler runs one drill: a fresh drill.Runner and driver per run, so that
// a run keeps the scenario version it started with.
func (a *app) runFunc(f drillFlags, rec drill.Recorder, ri drill.RunnerInfo, log *slog.Logger) schedule.RunFunc {
	return func(ctx context.Context, sc *scenarios.Scenario, t schedule.Trigger) (*drill.Record, error) {
		rlog := log.With("component", "drill", "scenario", sc.Metadata.Name, "id", t.ID)
		op := t.Operator
		if op == "" {
			op = operator()
		}
		guard := &beginGuard{Recorder: rec}
		runner := &drill.Runner{Recorder: guard, Progress: logProgress{rlog}, Trigger: t.Kind, ID: t.ID, Operator: op, Runner: ri}
		if !t.ScheduledFor.IsZero() {
			sf := t.ScheduledFor.UTC()
			runner.ScheduledFor = &sf
		}
		d, err := a.newDriver(sc, f)
		if err != nil {
			d = brokenDriver{err: err}
		}
		out, err := runner.Run(ctx, sc, d)
		if guard.err != nil && errors.Is(guard.err, history.ErrDuplicateSchedule) {
			// Another replica has this scheduled run: nothing ran here, nothing to report.
			return out, guard.err
		}
		return out, err
	}
}

// spooledHistory is the scheduler's view of the history: its skipped and missed records go
// through the spool like every other final record.
type spooledHistory struct {
	spool *history.Spool
	store *history.Store
}

func (h spooledHistory) Finish(ctx context.Context, r *drill.Record) error {
	return h.spool.Finish(ctx, r)
}
func (h spooledHistory) LastScheduled(ctx context.Context, scenario string) (time.Time, error) {
	return h.store.LastScheduled(ctx, scenario)
}

var _ schedule.History = spooledHistory{}

// beginGuard keeps the error of Begin, which drill.Runner reports only as text, so that the
// scheduler can tell a scheduled run another replica already has (ErrDuplicateSchedule).
type beginGuard struct {
	drill.Recorder
	err error
}

func (g *beginGuard) Begin(ctx context.Context, r *drill.Record) error {
	g.err = g.Recorder.Begin(ctx, r)
	return g.err
}

// brokenDriver stands in for a driver that could not be built, so that the run is still
// recorded, as an error, with the reason.
type brokenDriver struct{ err error }

func (b brokenDriver) Preflight(context.Context, *drill.RunContext) error { return b.err }
func (b brokenDriver) Backup(context.Context, *drill.RunContext) (drill.BackupRecord, error) {
	return drill.BackupRecord{}, b.err
}
func (b brokenDriver) Restore(context.Context, *drill.RunContext) error              { return b.err }
func (b brokenDriver) Verify(context.Context, *drill.RunContext) []drill.CheckRecord { return nil }
func (b brokenDriver) NotVerified(string) []drill.CheckRecord                        { return []drill.CheckRecord{} }
func (b brokenDriver) Cleanup(context.Context, *drill.RunContext, bool) error        { return nil }
func (b brokenDriver) Plan() drill.Plan                                              { return drill.Plan{} }

var _ drill.Driver = brokenDriver{}

// logProgress writes a drill's steps and notes to the log.
type logProgress struct{ log *slog.Logger }

func (p logProgress) Step(name string)   { p.log.Info("drill step", "step", name) }
func (p logProgress) Bytes(int64, int64) {}
func (p logProgress) Note(msg string)    { p.log.Info("drill note", "note", msg) }

func newNotifier(o serveOptions, log *slog.Logger) (*notify.Notifier, error) {
	var hooks []notify.Webhook
	for _, u := range o.webhooks {
		hooks = append(hooks, notify.Webhook{URL: u, Format: "json"})
	}
	for _, u := range o.slackWebhooks {
		hooks = append(hooks, notify.Webhook{URL: u, Format: "slack"})
	}
	if len(hooks) == 0 && o.heartbeatURL == "" {
		log.Info("notifications off: no --webhook, --slack-webhook or --heartbeat-url")
		return nil, nil
	}
	return notify.New(notify.Options{Webhooks: hooks, HeartbeatURL: o.heartbeatURL, DashboardURL: o.dashboardURL,
		Client: &http.Client{Timeout: 30 * time.Second}, Logger: log.With("component", "notify")})
}

// seedFromHistory returns, per scenario, the newest record of each result among its latest
// runs, and the newest passed one even when older, for the metrics; and the last result that
// says something (not skipped) for the notifier.
func seedFromHistory(ctx context.Context, store *history.Store, entries []schedule.Entry, log *slog.Logger) ([]drill.Record, map[string]drill.Result) {
	const window = 10
	var recs []drill.Record
	last := map[string]drill.Result{}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Scenario == nil || seen[e.Scenario.Metadata.Name] {
			continue
		}
		name := e.Scenario.Metadata.Name
		seen[name] = true
		runs, err := store.List(ctx, history.Filter{Scenario: name, Limit: window})
		if err != nil {
			log.Warn("could not read the history to seed metrics; last-run gauges start empty", "scenario", name, "err", err)
			continue
		}
		newest := map[drill.Result]bool{}
		for _, r := range runs {
			if r.Result == drill.Running || newest[r.Result] {
				continue
			}
			newest[r.Result] = true
			recs = append(recs, r)
			// Notifications judge a recovery against the last result that says something
			// about the backup: skipped and aborted runs say nothing.
			if _, ok := last[name]; !ok && r.Result != drill.Skipped && r.Result != drill.Aborted {
				last[name] = r.Result
			}
		}
		if len(runs) < window {
			continue
		}
		// The window held only some results (a long run of skipped ones, say): look further
		// back for the last pass, and for the last meaningful result when none was seen.
		_, known := last[name]
		var older drill.Record
		for _, res := range []drill.Result{drill.Passed, drill.Failed, drill.Error, drill.Aborted, drill.Missed} {
			if newest[res] || (known && res != drill.Passed) {
				continue
			}
			p, err := store.List(ctx, history.Filter{Scenario: name, Result: res, Limit: 1})
			if err != nil || len(p) == 0 {
				continue
			}
			recs = append(recs, p[0])
			if res == drill.Aborted {
				continue
			}
			if older.ID == "" || p[0].StartedAt.After(older.StartedAt) {
				older = p[0]
			}
		}
		if !known && older.ID != "" {
			last[name] = older.Result
		}
	}
	return recs, last
}

func janitor(ctx context.Context, mgr *scratch.Manager, metrics *server.Metrics, log *slog.Logger) {
	done, err := mgr.Janitor(ctx, scratch.JanitorOptions{})
	if ctx.Err() != nil {
		return
	}
	for _, n := range done {
		log.Info("janitor deleted an expired scratch namespace", "namespace", n.Name, "run", n.Run, "scenario", n.Scenario)
	}
	if err != nil {
		log.Warn("janitor", "err", err)
	}
	nss, err := mgr.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("janitor: count scratch namespaces", "err", err)
		}
		return
	}
	metrics.SetScratchNamespaces(len(nss))
}

func flushSpool(ctx context.Context, spool *history.Spool, metrics *server.Metrics, log *slog.Logger) {
	if spool.Pending() > 0 {
		n, err := spool.Flush(ctx)
		if n > 0 {
			log.Info("wrote spooled records to the history", "records", n)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("history still unreachable; records stay spooled", "records", spool.Pending(), "err", err)
		}
	}
	metrics.SetSpooled(spool.Pending())
}

// every calls f every d until ctx is done.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func countScheduled(entries []schedule.Entry) int {
	n := 0
	for _, e := range entries {
		if e.Scenario != nil && e.Scenario.Spec.Schedule != "" {
			n++
		}
	}
	return n
}

func countInvalid(entries []schedule.Entry) int {
	n := 0
	for _, e := range entries {
		if e.Err != nil {
			n++
		}
	}
	return n
}
