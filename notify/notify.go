// Package notify tells people about drill results: webhooks on failure and on recovery
// (generic JSON or a Slack-compatible body), retried with backoff, and a heartbeat URL pinged
// after each passed drill for dead-man's-switch services.
//
// CONTRACT (issue 5): cmd/firedrill/serve.go is written against the exported names below.
package notify

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// Webhook is one receiver.
type Webhook struct {
	URL string
	// Format is "json" (the generic body) or "slack" (a Slack incoming-webhook body).
	Format string
}

// Options configure a Notifier.
type Options struct {
	Webhooks []Webhook
	// HeartbeatURL is requested (GET) after each passed drill; "" for none.
	HeartbeatURL string
	Client       *http.Client
	// MaxAttempts per delivery (default 5) and the first backoff (default 1s, doubling,
	// capped at 1m, with jitter).
	MaxAttempts int
	Backoff     time.Duration
	// DashboardURL, when set, links each notification to the run's page.
	DashboardURL string
	Logger       *slog.Logger
}

// Notifier delivers notifications in the background. Safe for concurrent use.
type Notifier struct{}

// New returns a Notifier; it fails on a webhook URL or format that can't be used.
func New(opts Options) (*Notifier, error) { panic("not implemented") }

// Seed gives the last known result per scenario (from the history at start-up), so that the
// first pass after a restart is still recognised as a recovery.
func (n *Notifier) Seed(last map[string]drill.Result) { panic("not implemented") }

// Observe queues what a final record calls for: a failure notification when it failed, was an
// error or was missed; a recovery notification when it passed after one of those; a heartbeat
// when it passed. Skipped runs notify nothing. It never blocks on the network.
func (n *Notifier) Observe(r *drill.Record) { panic("not implemented") }

// Close waits until queued deliveries are done or ctx is done.
func (n *Notifier) Close(ctx context.Context) error { panic("not implemented") }
