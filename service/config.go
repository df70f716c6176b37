package service

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/notify"
	"github.com/firedrill-dev/firedrill/server"
)

// Config is what a Service is made of. Store, Drivers, and ScenariosDir or ClusterScenarios
// are required.
type Config struct {
	// Listener serves the HTTP API, the dashboard and /metrics; the service closes it. When nil,
	// New listens on Listen (port 0 picks a free port; Addr says which).
	Listener net.Listener
	Listen   string

	// Store is the history, opened (and its signer set) by the caller, who closes it after Run
	// has returned.
	Store *history.Store
	// SpoolDir is where final records wait while Store is unreachable (history.Spool); records
	// an earlier process left there are written when Run starts. One directory per replica.
	SpoolDir string
	// SpoolFlushInterval is how often spooled records are retried; default 15s.
	SpoolFlushInterval time.Duration

	// ScenariosDir holds the scenario files to schedule; it is watched for changes (and read
	// again on Reload). "" with ClusterScenarios: no files.
	ScenariosDir string
	// ClusterScenarios, when set, schedules the Scenario resources of the cluster (Kube) too:
	// watched, validated on every change, their status written by the leader (drill/crd).
	ClusterScenarios *ClusterScenarios
	// Drivers drill the scenarios, one per backup kind. Each run gets its own state from its
	// driver, with the scenario version it started with; a scenario no driver can drill is
	// recorded as refused, with the reason.
	Drivers *drill.Registry
	// Jobs, when set, runs every drill as a Kubernetes Job in the cluster Kube reaches
	// (serve --executor job, package drill/jobexec) instead of in this process.
	Jobs *Jobs
	// MaxConcurrent and StartingDeadline are the scheduler's (schedule.Options; defaults 2 and 1h).
	MaxConcurrent    int
	StartingDeadline time.Duration
	// ShutdownGrace is how long drills in flight may go on once Run's context ends, before they
	// are aborted (their cleanup still runs); 0 aborts them at once.
	ShutdownGrace time.Duration

	// Token is the bearer token API writes need; "" disables writes.
	Token string
	// ReadToken, when set, is needed (or Token) to read the API, the dashboard and run evidence:
	// as a bearer header, or through the dashboard's login (server.Options.ReadToken). "": reads
	// are open.
	ReadToken string
	// TLSCertFile and TLSKeyFile, both or neither, make the server speak HTTPS with this key
	// pair, read again when the files change.
	TLSCertFile, TLSKeyFile string

	// Webhooks get a JSON notification on failure and on recovery, SlackWebhooks a Slack
	// message; HeartbeatURL is requested after each passed drill; DashboardURL, when set, links
	// notifications to the run's page. They hear about every scenario.
	Webhooks, SlackWebhooks    []string
	HeartbeatURL, DashboardURL string
	// NotifyFile names a notifications file (notify.LoadFile): receivers that hear about the
	// scenarios they match. Scenarios' own heartbeat URLs (spec.notify.heartbeatURL) are
	// requested besides.
	NotifyFile string

	// Kube returns the cluster of the janitor and of the Lease; nil, or an error, when there is
	// none: the janitor is then off (with a warning) and LeaderElection is refused.
	Kube func() (*rest.Config, error)
	// JanitorInterval is how often the janitor removes what drills left behind (package janitor:
	// in the cluster Kube reaches, and work directories in os.TempDir()), also once at start;
	// 0: never.
	JanitorInterval time.Duration
	// LeaderElection, when set, makes this replica schedule only while it holds a Lease; it
	// serves the API either way.
	LeaderElection *LeaderElection

	// CoverageInterval is how often coverage is measured for /metrics (what there is to drill,
	// discovered as CoverageDiscover says, joined with the history), also at start and after
	// each drill; 0: never, and no coverage metrics. CoverageWithin is the window of items that
	// name none (default coverage.DefaultWindow).
	CoverageInterval time.Duration
	CoverageWithin   time.Duration
	CoverageDiscover coverage.DiscoverOptions

	// Retain, when positive, prunes the runs that finished longer ago than this from the
	// history (history.Store.Prune, signed like every record) into archives in ArchiveDir
	// (created 0700 when missing), named by when their first and last run finished: at
	// start-up and every day, by the leader only with LeaderElection. 0 keeps every run.
	Retain     time.Duration
	ArchiveDir string

	// Runner identifies this process in the records it writes; its Version is shown on the
	// dashboard.
	Runner drill.RunnerInfo
	// Operator is who scheduled runs are attributed to (user@host).
	Operator string
	// Logger receives the service's log; nil discards it.
	Logger *slog.Logger
}

// LeaderElection are the settings of the Lease replicas campaign for (leader.Options).
type LeaderElection struct {
	// Namespace of the Lease; "" means the pod's own namespace, else "default".
	Namespace string
	// Name of the Lease; default leader.DefaultName.
	Name string
	// LeaseDuration > RenewDeadline > RetryPeriod, as in client-go (defaults 15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Identity of this replica in the Lease; default hostname_pid. Replicas in one process (tests)
	// need their own.
	Identity string
}

// Jobs are the settings of `serve --executor job`.
type Jobs struct {
	// Namespace of the Jobs; "" means the pod's own namespace, else "default".
	Namespace string
	// Image is firedrill's image the Jobs run. Required.
	Image string
	// ServiceAccount the Jobs' pods run as, unless a scenario names its own
	// (spec.runner.serviceAccountName); "" is the namespace's default.
	ServiceAccount string
	// Env is added to every Job's container (FIREDRILL_PROBE_IMAGE, ...).
	Env []corev1.EnvVar
}

// ClusterScenarios are the settings of `serve --scenarios-from cluster`.
type ClusterScenarios struct {
	// Namespace whose Scenarios are scheduled; "" for every namespace.
	Namespace string
	// StatusInterval is how often every Scenario's status is compared with what it should be,
	// besides after each change and each run; default 30s.
	StatusInterval time.Duration
	// DrillRunHistoryLimit is how many DrillRuns of scheduled runs serve keeps per Scenario (it
	// creates one for each scheduled run of a Scenario resource), deleting the oldest; 0: it
	// creates none. DrillRuns people create are never deleted. DrillRuns are served when their
	// CRD is installed and RBAC allows them; else serve warns and goes on without.
	DrillRunHistoryLimit int
}

// ConfigError is a setting the service can't use, as opposed to an outage: a mistake in how
// it was called, which Hint (may be "") says how to fix.
type ConfigError struct {
	Err  error
	Hint string
}

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// newNotifier builds the notifier of the flags' receivers and the notifications file. There is
// always one, even without receivers: a scenario may name its own heartbeat URL at any reload.
func newNotifier(cfg Config, log *slog.Logger) (*notify.Notifier, error) {
	var hooks []notify.Webhook
	for _, u := range cfg.Webhooks {
		hooks = append(hooks, notify.Webhook{URL: u, Format: notify.FormatJSON})
	}
	for _, u := range cfg.SlackWebhooks {
		hooks = append(hooks, notify.Webhook{URL: u, Format: notify.FormatSlack})
	}
	var beats []notify.Heartbeat
	if cfg.NotifyFile != "" {
		rs, err := notify.LoadFile(cfg.NotifyFile)
		if err != nil {
			return nil, fmt.Errorf("--notify-config %w", err)
		}
		hooks, beats = append(hooks, rs.Webhooks...), rs.Heartbeats
	}
	if len(hooks) == 0 && len(beats) == 0 && cfg.HeartbeatURL == "" {
		log.Info("no notification receivers (--webhook, --slack-webhook, --heartbeat-url, --notify-config): only scenarios' own heartbeat URLs are requested")
	}
	return notify.New(notify.Options{Webhooks: hooks, HeartbeatURL: cfg.HeartbeatURL, Heartbeats: beats, DashboardURL: cfg.DashboardURL,
		Client: &http.Client{Timeout: 30 * time.Second}, Logger: log.With("component", "notify")})
}

// loadCertificate reads the TLS key pair of cfg; nil without one.
func loadCertificate(cfg Config, log *slog.Logger) (*server.Certificate, error) {
	if cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" {
		return nil, nil
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return nil, &ConfigError{Err: errors.New("--tls-cert-file and --tls-key-file go together"), Hint: "Give both files of the key pair, or neither to serve plain HTTP."}
	}
	cert, err := server.LoadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile, log.With("component", "tls"))
	if err != nil {
		return nil, &ConfigError{Err: err, Hint: "--tls-cert-file takes a PEM certificate (chain), --tls-key-file its PEM private key."}
	}
	return cert, nil
}

// serviceAccountNamespace is where a pod finds its own namespace, the default for the Lease.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// podNamespace is the pod's own namespace when in a cluster, else "default".
func podNamespace() string {
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
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
