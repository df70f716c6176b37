package main

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/service"
)

// serveOptions are the flags of `firedrill serve`; most go straight into the service's Config.
type serveOptions struct {
	drill                        drillFlags
	cfg                          service.Config
	lease                        service.LeaderElection
	leaderElect                  bool
	history, tokenFile, spoolDir string
	readTokenFile                string
	scenariosFrom                string
	scenariosNamespace           string
	drillRunHistoryLimit         int
	logFormat, logLevel          string
	coverage                     coverageFlags
	jobs                         jobFlags
}

func (a *app) serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve --scenarios DIR | --scenarios-from cluster",
		Short: "Run scheduled drills as a service, with an HTTP API, a dashboard, /metrics and the janitor",
		Long: `Loads every scenario in --scenarios DIR and runs those with spec.schedule on their cron
schedule (spec.timeZone; a run never overlaps the previous one of its scenario; at most
--max-concurrent drills at once, the rest queue). Scenario files are reloaded when they change and
on SIGHUP; a file that no longer validates keeps its last good version scheduled, and the error
shows in the API, the dashboard, the log and firedrill_scenario_errors.

With --scenarios-from cluster (or files,cluster), the Scenario resources of the cluster
(firedrill.dev/v1alpha1, the same spec as a file) are scheduled too: watched, validated on every
change, and their status (Valid, Ready, LastRunPassed, last and next run) written by the
leader, so that 'kubectl get scenarios' shows them. A Scenario's name is its metadata.name; one
that a file or an older Scenario has is not scheduled (its Ready condition says so). Creating a
DrillRun runs a Scenario of its namespace (or a scenario file) now, and its status follows the
run until its record is sealed; scheduled runs of Scenarios get DrillRuns too, the newest
--drillrun-history-limit kept per Scenario.

After downtime, a run missed within --starting-deadline is started once; older ones are recorded
as missed. Runs left running by a crashed firedrill are marked aborted at start-up.

The HTTP server on --listen serves the dashboard at /, the JSON API under /api/v1/, /metrics,
/healthz and /readyz, over TLS with --tls-cert-file/--tls-key-file. Writes (POST
/api/v1/scenarios/NAME/runs) need the bearer token of --token-file or FIREDRILL_TOKEN; without
one they are disabled. With --read-token-file, reads need that token (or the write token) too,
or a login on the dashboard.

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

  # reads behind a token (the dashboard asks for it), HTTPS, failures routed per team
  firedrill serve --scenarios /scenarios --listen :8443 --token-file /run/secrets/token \
    --read-token-file /run/secrets/read-token --tls-cert-file /tls/tls.crt --tls-key-file /tls/tls.key \
    --notify-config /etc/firedrill/notifications.yaml

  # in a cluster: the Scenario resources of every namespace besides the mounted files
  firedrill serve --scenarios /scenarios --scenarios-from files,cluster --listen :8080

  # trigger a drill through the API
  curl -X POST -H "Authorization: Bearer $FIREDRILL_TOKEN" \
    http://127.0.0.1:8080/api/v1/scenarios/control-plane-etcd/runs`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd, o)
		},
	}
	o.register(cmd)
	return cmd
}

// check validates the flags that do not need any I/O and fills defaults from the environment.
func (o *serveOptions) check(getenv func(string) string) error {
	files, cluster, fromErr := scenarioSources(cmp.Or(o.scenariosFrom, "files"))
	if files {
		o.drill.scenariosDir = cmp.Or(o.drill.scenariosDir, getenv("FIREDRILL_SCENARIOS"))
	}
	_, levelErr := parseLevel(o.logLevel)
	_, _, listenErr := net.SplitHostPort(o.cfg.Listen)
	c, l := o.cfg, o.lease
	for _, p := range []struct {
		bad bool
		msg string
	}{ // the first problem is reported, in this order
		{fromErr != nil, fmt.Sprint(fromErr)},
		{files && o.drill.scenariosDir == "", "serve needs --scenarios DIR (or FIREDRILL_SCENARIOS): the directory of scenario files to schedule"},
		{!cluster && o.scenariosNamespace != "", "--scenarios-namespace needs --scenarios-from cluster (or files,cluster)"},
		{!files && o.drill.scenariosDir != "", "--scenarios DIR with --scenarios-from " + o.scenariosFrom + ": use --scenarios-from files,cluster to schedule both"},
		{o.logFormat != "text" && o.logFormat != "json", fmt.Sprintf("--log-format %q: use text or json", o.logFormat)},
		{levelErr != nil, fmt.Sprintf("--log-level: %v", levelErr)},
		{c.MaxConcurrent < 1, fmt.Sprintf("--max-concurrent must be at least 1, got %d", c.MaxConcurrent)},
		{c.StartingDeadline < 0, fmt.Sprintf("--starting-deadline must not be negative, got %s", c.StartingDeadline)},
		{c.ShutdownGrace < 0, fmt.Sprintf("--shutdown-grace must not be negative, got %s", c.ShutdownGrace)},
		{c.JanitorInterval < 0, fmt.Sprintf("--janitor-interval must not be negative, got %s", c.JanitorInterval)},
		{c.CoverageInterval < 0, fmt.Sprintf("--coverage-interval must not be negative, got %s", c.CoverageInterval)},
		{o.drillRunHistoryLimit < 0, fmt.Sprintf("--drillrun-history-limit must not be negative, got %d", o.drillRunHistoryLimit)},
		{c.SpoolFlushInterval <= 0, fmt.Sprintf("--spool-flush-interval must be positive, got %s", c.SpoolFlushInterval)},
		{o.leaderElect && !(l.LeaseDuration > l.RenewDeadline && l.RenewDeadline > l.RetryPeriod && l.RetryPeriod > 0), fmt.Sprintf(
			"lease timings must satisfy --lease-duration (%s) > --renew-deadline (%s) > --retry-period (%s) > 0", l.LeaseDuration, l.RenewDeadline, l.RetryPeriod)},
		{listenErr != nil, fmt.Sprintf("--listen %q: %v: write HOST:PORT, e.g. 127.0.0.1:8080", c.Listen, listenErr)},
	} {
		if p.bad {
			return usagef("Run 'firedrill serve --help' for usage.", "%s", p.msg)
		}
	}
	if cluster {
		o.cfg.ClusterScenarios = &service.ClusterScenarios{Namespace: o.scenariosNamespace, DrillRunHistoryLimit: o.drillRunHistoryLimit}
	}
	for _, u := range strings.Split(getenv("FIREDRILL_SLACK_WEBHOOK"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.cfg.SlackWebhooks = append(o.cfg.SlackWebhooks, u)
		}
	}
	return nil
}

// scenarioSources reads --scenarios-from: files, cluster, or both, comma-separated.
func scenarioSources(flag string) (files, cluster bool, err error) {
	for _, f := range strings.Split(flag, ",") {
		switch strings.TrimSpace(f) {
		case "files":
			files = true
		case "cluster":
			cluster = true
		default:
			return false, false, fmt.Errorf("--scenarios-from %q: use files, cluster or files,cluster", flag)
		}
	}
	return files, cluster, nil
}

// serve runs the service until ctx is done (SIGTERM, Ctrl-C); the service then shuts down in
// order. Start-up failures exit 2 when a flag can fix them, else 3 (see docs/serve.md).
func (a *app) serve(cmd *cobra.Command, o serveOptions) error {
	ctx := cmd.Context()
	if err := o.check(a.getenv); err != nil {
		return err
	}
	log := newLogger(a.err, o.logFormat, o.logLevel)
	// SIGHUP reloads the scenarios; registered first so that an early one does not kill us.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() { signal.Stop(hup); close(hup) }()

	cfg := o.cfg
	loc, err := a.historyLocation(o.history)
	if err != nil {
		return err
	}
	if cfg.Token, err = loadToken(o.tokenFile, "--token-file", a.getenv("FIREDRILL_TOKEN")); err != nil {
		return err // "": writes disabled
	}
	if cfg.ReadToken, err = loadToken(o.readTokenFile, "--read-token-file", a.getenv("FIREDRILL_READ_TOKEN")); err != nil {
		return err // "": reads open
	}
	if o.leaderElect {
		cfg.LeaderElection = &o.lease
	}
	cfg.ScenariosDir, cfg.SpoolDir = o.drill.scenariosDir, cmp.Or(o.spoolDir, history.DefaultSpoolDir(loc, a.getenv))
	cfg.Kube, cfg.Logger, cfg.Runner, cfg.Operator = a.restConfig, log, runnerInfo(), operator()
	cfg.Drivers = a.drivers(o.drill)
	if err := o.jobs.resolve(&cfg, a.getenv, cmp.Or(o.drill.probeImage, a.getenv("FIREDRILL_PROBE_IMAGE")), a.ownImage); err != nil {
		return err
	}
	if cfg.CoverageWithin, err = o.coverage.window(); err != nil {
		return usagef("Run 'firedrill serve --help' for usage.", "--coverage-within %q: give a duration longer than zero, e.g. 30d", o.coverage.within)
	}
	cfg.CoverageDiscover = a.discovery(o.coverage)

	// Listen before anything is started, so that a taken port fails at once.
	if cfg.Listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("listen on %s: %w; choose another address with --listen", cfg.Listen, err)
	}
	defer cfg.Listener.Close()
	// Unreachable at start-up, exit 3: the scheduler needs to know what ran; a supervisor retries.
	if cfg.Store, err = a.openStore(ctx, loc, "serve needs its history at start-up; check that it is reachable, or point --history elsewhere"); err != nil {
		return err
	}
	defer cfg.Store.Close()
	svc, err := service.New(cfg)
	var ce *service.ConfigError
	if errors.As(err, &ce) {
		return usagef(ce.Hint, "%v", ce)
	} else if err != nil {
		return err
	}
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading scenarios")
			svc.Reload()
		}
	}()
	if err := svc.Run(ctx); err != nil {
		return &codedError{code: exitError, err: err}
	}
	return nil
}
