// Package notify tells people about drill results: webhooks on failure and on recovery
// (generic JSON or a Slack-compatible body), retried with backoff, and a heartbeat URL pinged
// after each passed drill for dead-man's-switch services.
//
// What a final record calls for:
//
//	passed                 heartbeat (GET HeartbeatURL); a "recovery" webhook when the scenario's
//	                       previous result was failed, error or missed
//	failed, error, missed  a "failure" webhook, every time (a failing drill is news each time it runs)
//	skipped, aborted       nothing: a skipped run never started and an aborted one was interrupted
//	                       (shutdown, crash), which says nothing about the backup. Neither changes the
//	                       state a later recovery is judged against.
//
// The generic ("json") body is an Event:
//
//	{"event": "failure", "scenario": "shop-etcd", "runId": "20261127-0330-ab12", "result": "failed",
//	 "message": "check deployments present: 0 keys, want at least 1",
//	 "startedAt": "2026-11-27T03:30:00Z", "finishedAt": "2026-11-27T03:34:10Z",
//	 "rtoSeconds": null, "rpoSeconds": 3600,
//	 "objectives": [{"name": "rto", "target": 600, "actual": null, "met": false}],
//	 "url": "https://drills.example.com/runs/20261127-0330-ab12", "previousResult": "passed"}
//
// "url" is there when Options.DashboardURL is set, "previousResult" when a previous result is
// known, "labels" when the scenario has labels. The "slack" body is {"text": ..., "blocks": [...]}
// as Slack incoming webhooks (and Mattermost, Rocket.Chat) take it.
//
// Delivery happens in the background, one queue and one worker per receiver so that a slow
// receiver holds up no other and each receiver sees events in order. A delivery is retried on
// network errors, 429 (after Retry-After) and 5xx with exponential backoff and jitter, up to
// MaxAttempts; any other 4xx is final. Logs name a receiver by scheme and host only: webhook
// URLs carry secrets in their path and query.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// Webhook formats.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
)

// Defaults of Options.
const (
	DefaultMaxAttempts = 5
	DefaultBackoff     = time.Second
	DefaultTimeout     = 10 * time.Second
	DefaultQueueSize   = 100
	// MaxBackoff caps the doubling backoff.
	MaxBackoff = time.Minute
	// MaxRetryAfter caps how long a receiver's Retry-After can make a delivery wait; a
	// notification later than that is stale.
	MaxRetryAfter = 5 * time.Minute
)

// Webhook is one receiver.
type Webhook struct {
	URL string
	// Format is "json" (the generic body, also when empty) or "slack" (a Slack incoming-webhook body).
	Format string
}

// Options configure a Notifier.
type Options struct {
	Webhooks []Webhook
	// HeartbeatURL is requested (GET) after each passed drill; "" for none.
	HeartbeatURL string
	// Client sends the requests; nil means a client of its own. Each request is also bounded by
	// Timeout.
	Client *http.Client
	// MaxAttempts per delivery (default 5) and the first backoff (default 1s, doubling,
	// capped at 1m, with jitter).
	MaxAttempts int
	Backoff     time.Duration
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// QueueSize bounds the deliveries waiting per receiver (default 100); when full, the oldest
	// is dropped with a warning, since a receiver that far behind is better served by news.
	QueueSize int
	// DashboardURL, when set, links each notification to the run's page (DashboardURL/runs/<id>).
	DashboardURL string
	// Logger receives delivery problems; nil means slog.Default().
	Logger *slog.Logger
}

// Event is the generic webhook body.
type Event struct {
	// Event is "failure" or "recovery".
	Event      string                  `json:"event"`
	Scenario   string                  `json:"scenario"`
	Labels     map[string]string       `json:"labels,omitempty"`
	RunID      string                  `json:"runId"`
	Result     drill.Result            `json:"result"`
	Message    string                  `json:"message"`
	StartedAt  time.Time               `json:"startedAt"`
	FinishedAt *time.Time              `json:"finishedAt"`
	RTOSeconds *float64                `json:"rtoSeconds"`
	RPOSeconds *float64                `json:"rpoSeconds"`
	Objectives []drill.ObjectiveRecord `json:"objectives"`
	// URL is the run's dashboard page, when a DashboardURL is configured.
	URL string `json:"url,omitempty"`
	// PreviousResult is the scenario's result before this one, when known: for a recovery, the
	// failure it recovers from.
	PreviousResult drill.Result `json:"previousResult,omitempty"`
}

// Event kinds.
const (
	EventFailure  = "failure"
	EventRecovery = "recovery"
)

// Notifier delivers notifications in the background. Safe for concurrent use.
type Notifier struct {
	log          *slog.Logger
	client       *http.Client
	maxAttempts  int
	backoff      time.Duration
	timeout      time.Duration
	queueSize    int
	dashboardURL string

	webhooks  []*receiver
	heartbeat *receiver // nil without a HeartbeatURL

	// abort stops retries and requests in flight when Close's ctx ends before the queues drain.
	abort     context.Context
	cancelAll context.CancelFunc
	workers   sync.WaitGroup

	mu      sync.Mutex
	last    map[string]drill.Result // per scenario: the last passed or failure-class result
	closing bool
}

// New returns a Notifier; it fails on a webhook URL or format that can't be used.
func New(opts Options) (*Notifier, error) {
	var problems []string
	if opts.MaxAttempts < 0 {
		problems = append(problems, fmt.Sprintf("MaxAttempts %d is negative", opts.MaxAttempts))
	}
	if opts.Backoff < 0 || opts.Timeout < 0 || opts.QueueSize < 0 {
		problems = append(problems, "Backoff, Timeout and QueueSize must not be negative")
	}
	n := &Notifier{
		log:         opts.Logger,
		client:      opts.Client,
		maxAttempts: orDefault(opts.MaxAttempts, DefaultMaxAttempts),
		backoff:     orDefault(opts.Backoff, DefaultBackoff),
		timeout:     orDefault(opts.Timeout, DefaultTimeout),
		queueSize:   orDefault(opts.QueueSize, DefaultQueueSize),
		last:        map[string]drill.Result{},
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.client == nil {
		n.client = &http.Client{}
	}
	for i, w := range opts.Webhooks {
		format := w.Format
		if format == "" {
			format = FormatJSON
		}
		u, err := checkURL(w.URL)
		if err != nil {
			problems = append(problems, fmt.Sprintf("webhook %d: %v", i+1, err))
			continue
		}
		if format != FormatJSON && format != FormatSlack {
			problems = append(problems, fmt.Sprintf("webhook %d (%s): format %q is unknown: use %q or %q", i+1, redact(u), w.Format, FormatJSON, FormatSlack))
			continue
		}
		n.webhooks = append(n.webhooks, &receiver{kind: "webhook", format: format, url: w.URL, name: redact(u)})
	}
	if opts.HeartbeatURL != "" {
		u, err := checkURL(opts.HeartbeatURL)
		if err != nil {
			problems = append(problems, fmt.Sprintf("heartbeat URL: %v", err))
		} else {
			n.heartbeat = &receiver{kind: "heartbeat", url: opts.HeartbeatURL, name: redact(u)}
		}
	}
	if opts.DashboardURL != "" {
		if _, err := checkURL(opts.DashboardURL); err != nil {
			problems = append(problems, fmt.Sprintf("dashboard URL: %v", err))
		}
		n.dashboardURL = strings.TrimRight(opts.DashboardURL, "/")
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}

	n.abort, n.cancelAll = context.WithCancel(context.Background())
	for _, r := range n.receivers() {
		r.n = n
		r.wake = make(chan struct{}, 1)
		n.workers.Add(1)
		go r.work()
	}
	return n, nil
}

// checkURL accepts absolute http and https URLs. Its errors never quote the URL: a webhook's
// path is a secret.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return nil, fmt.Errorf("not a valid URL (%v): want http(s)://host/path", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not supported: want an http:// or https:// URL", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("URL has no host: want http(s)://host/path")
	}
	return u, nil
}

// redact names a receiver without the secret parts of its URL: scheme and host only.
func redact(u *url.URL) string { return u.Scheme + "://" + u.Host }

func (n *Notifier) receivers() []*receiver {
	rs := append([]*receiver(nil), n.webhooks...)
	if n.heartbeat != nil {
		rs = append(rs, n.heartbeat)
	}
	return rs
}

// Seed gives the last known result per scenario (from the history at start-up), so that the
// first pass after a restart is still recognised as a recovery. Only passed, failed, error and
// missed count; other results (running, skipped, aborted) are ignored, so give the last of the
// counting ones where the history has it.
func (n *Notifier) Seed(last map[string]drill.Result) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sc, res := range last {
		if res == drill.Passed || failureClass(res) {
			n.last[sc] = res
		}
	}
}

// failureClass results are the ones a person must hear about and whose end is a recovery.
func failureClass(r drill.Result) bool {
	return r == drill.Failed || r == drill.Error || r == drill.Missed
}

// Observe queues what a final record calls for: a failure notification when it failed, was an
// error or was missed; a recovery notification when it passed after one of those; a heartbeat
// when it passed. Skipped runs notify nothing. It never blocks on the network.
func (n *Notifier) Observe(r *drill.Record) {
	if r == nil || (r.Result != drill.Passed && !failureClass(r.Result)) {
		return // skipped, aborted, running: see the package doc
	}
	// Queued under n.mu, so that Close cannot slip between the check and the enqueue and leave
	// a delivery behind its workers.
	n.mu.Lock()
	defer n.mu.Unlock()
	prev := n.last[r.Scenario]
	n.last[r.Scenario] = r.Result
	if n.closing {
		n.log.Warn("notification after shutdown began: not sent", "scenario", r.Scenario, "run", r.ID, "result", r.Result)
		return
	}

	kind := ""
	switch {
	case failureClass(r.Result):
		kind = EventFailure
	case failureClass(prev):
		kind = EventRecovery
	}
	if kind != "" {
		ev := n.event(kind, r, prev)
		for _, w := range n.webhooks {
			body, err := w.body(ev)
			if err != nil { // only a bug makes an Event unencodable; say so rather than stay silent
				n.log.Error("notification not sent: encode body", "receiver", w.name, "scenario", r.Scenario, "err", err)
				continue
			}
			w.enqueue(&delivery{event: kind, scenario: r.Scenario, run: r.ID, body: body})
		}
	}
	if r.Result == drill.Passed && n.heartbeat != nil {
		n.heartbeat.enqueue(&delivery{event: "heartbeat", scenario: r.Scenario, run: r.ID})
	}
}

func (n *Notifier) event(kind string, r *drill.Record, prev drill.Result) *Event {
	ev := &Event{
		Event: kind, Scenario: r.Scenario, Labels: r.Labels, RunID: r.ID, Result: r.Result, Message: r.Message,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, RTOSeconds: r.RTOSeconds, RPOSeconds: r.RPOSeconds,
		Objectives: r.Objectives, PreviousResult: prev,
	}
	if ev.Objectives == nil {
		ev.Objectives = []drill.ObjectiveRecord{}
	}
	if n.dashboardURL != "" {
		ev.URL = n.dashboardURL + "/runs/" + url.PathEscape(r.ID)
	}
	return ev
}

// Close waits until queued deliveries are done or ctx is done. Then it stops retries and
// requests still in flight and says how many notifications were not delivered. Observe after
// Close sends nothing.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	for _, r := range n.receivers() {
		r.signal()
	}
	done := make(chan struct{})
	go func() {
		n.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		n.cancelAll()
		return nil
	case <-ctx.Done():
	}
	n.cancelAll()
	<-done // workers return promptly once their requests and waits are cancelled
	lost := 0
	for _, r := range n.receivers() {
		lost += r.undelivered()
	}
	if lost == 0 {
		return nil
	}
	return fmt.Errorf("%d notifications not delivered before shutdown: %w", lost, ctx.Err())
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
