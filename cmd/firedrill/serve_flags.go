package main

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/server"
)

// register adds serve's flags to cmd.
func (o *serveOptions) register(cmd *cobra.Command) {
	o.drill.register(cmd)
	fl := cmd.Flags()
	fl.Lookup("scenarios").Usage = "directory of scenario files to schedule (required with --scenarios-from files, the default; default: $FIREDRILL_SCENARIOS)"
	fl.StringVar(&o.scenariosFrom, "scenarios-from", "files", "where scenarios come from: files (--scenarios), cluster (Scenario resources; needs the CRD from deploy/) or files,cluster")
	fl.StringVar(&o.scenariosNamespace, "scenarios-namespace", "", "with --scenarios-from cluster: the namespace whose Scenarios are scheduled and DrillRuns run (default: every namespace)")
	fl.IntVar(&o.drillRunHistoryLimit, "drillrun-history-limit", 10, "with --scenarios-from cluster: DrillRuns of scheduled runs kept per Scenario, the oldest deleted first (0: scheduled runs get none; DrillRuns people create are never deleted)")
	fl.StringVar(&o.cfg.Listen, "listen", "127.0.0.1:8080", "address of the HTTP API, dashboard and /metrics (port 0 picks a free port, logged)")
	fl.StringVar(&o.history, "history", "", "history database: a path, sqlite:///path or postgres://... (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	fl.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token API writes need (default: $FIREDRILL_TOKEN; neither: writes disabled)")
	fl.StringVar(&o.readTokenFile, "read-token-file", "", "file holding the token reads need: API, dashboard (login form), run evidence; the write token reads too (default: $FIREDRILL_READ_TOKEN; neither: reads open)")
	fl.StringVar(&o.cfg.TLSCertFile, "tls-cert-file", "", "PEM certificate (chain) to serve HTTPS with, read again when it changes (with --tls-key-file)")
	fl.StringVar(&o.cfg.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fl.IntVar(&o.cfg.MaxConcurrent, "max-concurrent", 2, "drills running at once across all scenarios; the rest queue")
	fl.DurationVar(&o.cfg.StartingDeadline, "starting-deadline", time.Hour, "a run missed while serve was down starts once if due at most this long ago, else it is recorded as missed")
	fl.DurationVar(&o.cfg.ShutdownGrace, "shutdown-grace", 5*time.Minute, "on SIGTERM, how long drills in flight may go on before they are aborted (cleanup still runs)")
	o.jobs.register(fl)
	registerRetainFlags(fl, &o.cfg)
	fl.DurationVar(&o.cfg.JanitorInterval, "janitor-interval", 10*time.Minute, "remove what drills left behind, as firedrill janitor does, at start-up and this often (0: never; the cluster's part needs a kubeconfig or in-cluster config)")
	fl.DurationVar(&o.cfg.CoverageInterval, "coverage-interval", 15*time.Minute, "measure coverage for /metrics at start-up, after each drill and this often (0: never; see 'firedrill coverage')")
	fl.StringVar(&o.coverage.within, "coverage-within", "30d", "how recent a passed drill must be for an item without its own window to count as covered")
	fl.StringVar(&o.coverage.veleroNamespace, "coverage-velero-namespace", "velero", "namespace Velero runs in, in the --kubeconfig/--context cluster, for coverage")
	fl.StringVar(&o.spoolDir, "spool-dir", "", "where final records wait while the history is unreachable; one per replica (default: 'spool' next to a history file, else $XDG_STATE_HOME/firedrill/spool)")
	fl.DurationVar(&o.cfg.SpoolFlushInterval, "spool-flush-interval", 15*time.Second, "how often spooled records are retried")
	fl.StringArrayVar(&o.cfg.Webhooks, "webhook", nil, "URL to POST a JSON notification to on failure and on recovery (repeatable)")
	fl.StringArrayVar(&o.cfg.SlackWebhooks, "slack-webhook", nil, "Slack incoming-webhook URL, notified on failure and recovery (repeatable; also $FIREDRILL_SLACK_WEBHOOK, comma-separated)")
	fl.StringVar(&o.cfg.HeartbeatURL, "heartbeat-url", "", "URL requested (GET) after each passed drill, for a dead-man's-switch service")
	fl.StringVar(&o.cfg.NotifyFile, "notify-config", "", "notifications file: webhooks, Slack webhooks and heartbeat URLs that hear about the scenarios they match (see docs/notifications.md)")
	fl.StringVar(&o.cfg.DashboardURL, "dashboard-url", "", "external URL of the dashboard, for links in notifications")
	fl.BoolVar(&o.leaderElect, "leader-elect", false, "schedule only while holding a Kubernetes Lease (for several replicas)")
	fl.StringVar(&o.lease.Namespace, "lease-namespace", "", "namespace of the Lease (default: the pod's namespace, else default)")
	fl.StringVar(&o.lease.Name, "lease-name", "firedrill", "name of the Lease")
	fl.DurationVar(&o.lease.LeaseDuration, "lease-duration", 15*time.Second, "how long others wait before taking over a Lease that is not renewed")
	fl.DurationVar(&o.lease.RenewDeadline, "renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it stops scheduling")
	fl.DurationVar(&o.lease.RetryPeriod, "retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
	fl.StringVar(&o.logFormat, "log-format", "text", "log format on stderr: text or json")
	fl.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// loadToken reads a bearer token from file, else takes env's; "" when neither is set.
func loadToken(file, flag, env string) (string, error) {
	if file == "" {
		return strings.TrimSpace(env), nil
	}
	tok, err := server.LoadToken(file)
	if err != nil {
		return "", usagef("", "%s: %v", flag, err)
	}
	return tok, nil
}
