// Package leader elects one `firedrill serve` replica to schedule drills, with a Kubernetes
// Lease (client-go leaderelection); the others serve the API and dashboard only.
//
// CONTRACT (issue 5): cmd/firedrill/serve.go is written against the exported names below.
package leader

import (
	"context"
	"log/slog"
	"time"

	"k8s.io/client-go/rest"
)

// Options configure an Elector.
type Options struct {
	Namespace, Name string // the Lease; Name default "firedrill"
	Identity        string // default hostname_pid
	// LeaseDuration (default 15s), RenewDeadline (10s) and RetryPeriod (2s) as in client-go.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Logger                                    *slog.Logger
}

// Elector campaigns for the Lease.
type Elector struct{}

// New checks the options and returns an Elector; it does not contact the API server.
func New(cfg *rest.Config, opts Options) (*Elector, error) { panic("not implemented") }

// Run campaigns until ctx is done. Each time this replica becomes leader, lead is called with
// a context that is cancelled when leadership is lost (or ctx is done); when lead returns
// after a loss, Run campaigns again. On ctx done the Lease is released so that another
// replica takes over at once. Run returns nil after ctx is done and lead has returned.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) error {
	panic("not implemented")
}

// Leading reports whether this replica holds the Lease now.
func (e *Elector) Leading() bool { panic("not implemented") }

// Identity is this replica's identity in the Lease.
func (e *Elector) Identity() string { panic("not implemented") }
