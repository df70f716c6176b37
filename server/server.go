// Package server is `firedrill serve`'s HTTP side: the JSON API, the dashboard, /metrics,
// /healthz and /readyz.
//
// CONTRACT (issue 5): cmd/firedrill/serve.go is written against the exported names below; the
// helper implementing the package may add to them but not change them.
package server

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
)

// Runs is what the server reads from the history (drill/history.Store, or the Spool's store).
type Runs interface {
	List(ctx context.Context, f history.Filter) ([]drill.Record, error)
	Get(ctx context.Context, idOrPrefix string) (*drill.Record, error)
}

// Scheduler is what the server needs from drill/schedule.
type Scheduler interface {
	Scenarios() []schedule.Status
	Trigger(ctx context.Context, name, operator string) (string, error)
}

// Options configure the handler.
type Options struct {
	Runs      Runs
	Scheduler Scheduler
	// Token is the bearer token writes need; "" disables writes (they answer 403 and say how
	// to enable them).
	Token string
	// Gatherer serves /metrics (the registry Metrics registered with).
	Gatherer prometheus.Gatherer
	// Ready reports whether the process can serve (history reachable, scenarios loaded); nil
	// means always ready. /readyz answers 503 with its error.
	Ready func(ctx context.Context) error
	// Leader reports whether this replica schedules (shown on the dashboard); nil means true.
	Leader func() bool
	Logger *slog.Logger
	// Version is shown in the dashboard footer.
	Version string
}

// New returns the handler for every route.
func New(opts Options) http.Handler { panic("not implemented") }

// Metrics are firedrill's Prometheus metrics:
//
//	firedrill_runs_total{scenario,result}                       counter
//	firedrill_last_run_timestamp_seconds{scenario,result}       gauge
//	firedrill_last_success_timestamp_seconds{scenario}          gauge
//	firedrill_run_duration_seconds{scenario}                    histogram
//	firedrill_rto_seconds{scenario}                             gauge (last measured)
//	firedrill_rpo_seconds{scenario}                             gauge (last measured)
//	firedrill_objective_met{scenario,objective}                 gauge 1/0
//	firedrill_scenario_errors{scenario}                         gauge 1 while the file is invalid
//	firedrill_scenario_interval_seconds{scenario}               gauge (for the dead-man's switch)
//	firedrill_scratch_namespaces                                gauge
//	firedrill_history_spooled_records                           gauge
type Metrics struct{}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics { panic("not implemented") }

// Observe accounts one final record (called from the scheduler's OnFinish).
func (m *Metrics) Observe(r *drill.Record) { panic("not implemented") }

// Seed sets the last-run gauges from the history at start-up, so that a restart does not look
// like "never passed" to the dead-man's-switch alert. recs are the newest records per scenario.
func (m *Metrics) Seed(recs []drill.Record) { panic("not implemented") }

// SetScenarios updates the per-scenario gauges (errors, interval) from the scheduler's view.
func (m *Metrics) SetScenarios(st []schedule.Status) { panic("not implemented") }

// SetScratchNamespaces sets the number of scratch namespaces the janitor saw.
func (m *Metrics) SetScratchNamespaces(n int) { panic("not implemented") }

// SetSpooled sets the number of records waiting in the spool.
func (m *Metrics) SetSpooled(n int) { panic("not implemented") }
