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
// known, "labels" when the scenario has labels.
//
// Every receiver hears about the scenarios its Match selects (all of them by default: the global
// form); a scenario may also name a heartbeat URL of its own (SetScenarioHeartbeats). LoadFile
// reads receivers with their matchers from a file. The "slack" body is {"text": ..., "blocks": [...]}
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
	"path"
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

// Webhook is one receiver of failures and recoveries.
type Webhook struct {
	URL string
	// Format is "json" (the generic body, also when empty) or "slack" (a Slack incoming-webhook body).
	Format string
	// Match selects the scenarios it hears about; the zero Match selects all.
	Match Match
	// Name, when set, names it in logs next to its scheme and host (its URL never is logged).
	Name string
}

// Heartbeat is a URL requested (GET) after each passed drill of the scenarios Match selects.
type Heartbeat struct {
	URL   string
	Match Match
	Name  string
}

// Match selects scenarios, like an Alertmanager route's matchers without the tree: by name and
// by labels, both of which must hold. The zero Match selects every scenario.
type Match struct {
	// Scenarios are globs on the scenario's name (path.Match: *, ?, [a-z]), one of which must
	// match; empty: any name.
	Scenarios []string
	// Labels must all be on the scenario with these values; empty: any labels.
	Labels map[string]string
}

// Selects reports whether the scenario named scenario, labelled labels, is one m selects.
func (m Match) Selects(scenario string, labels map[string]string) bool {
	for k, v := range m.Labels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	if len(m.Scenarios) == 0 {
		return true
	}
	for _, g := range m.Scenarios {
		if ok, _ := path.Match(g, scenario); ok {
			return true
		}
	}
	return false
}

// check refuses globs path.Match cannot use and empty label keys.
func (m Match) check() error {
	for i, g := range m.Scenarios {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return fmt.Errorf("scenario glob %d %q is not a glob: use e.g. shop-* or *-etcd", i+1, g)
		}
	}
	for k := range m.Labels {
		if k == "" {
			return errors.New("a label to match has an empty key")
		}
	}
	return nil
}

// Options configure a Notifier.
type Options struct {
	Webhooks []Webhook
	// HeartbeatURL is requested (GET) after each passed drill; "" for none.
	HeartbeatURL string
	// Heartbeats are requested after each passed drill of the scenarios they match.
	Heartbeats []Heartbeat
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

	webhooks   []*receiver
	heartbeats []*receiver // HeartbeatURL first, matching everything, then Heartbeats

	// Heartbeats of single scenarios (SetScenarioHeartbeats): by scenario the URL, by URL its
	// receiver, made when first needed and kept until Close.
	ownBeat      map[string]string
	ownReceivers map[string]*receiver

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
		log:          opts.Logger,
		client:       opts.Client,
		maxAttempts:  orDefault(opts.MaxAttempts, DefaultMaxAttempts),
		backoff:      orDefault(opts.Backoff, DefaultBackoff),
		timeout:      orDefault(opts.Timeout, DefaultTimeout),
		queueSize:    orDefault(opts.QueueSize, DefaultQueueSize),
		last:         map[string]drill.Result{},
		ownBeat:      map[string]string{},
		ownReceivers: map[string]*receiver{},
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
		if err := w.Match.check(); err != nil {
			problems = append(problems, fmt.Sprintf("webhook %d (%s): %v", i+1, redact(u), err))
			continue
		}
		n.webhooks = append(n.webhooks, &receiver{kind: "webhook", format: format, url: w.URL, name: receiverName(w.Name, u), match: w.Match})
	}
	if opts.HeartbeatURL != "" {
		u, err := checkURL(opts.HeartbeatURL)
		if err != nil {
			problems = append(problems, fmt.Sprintf("heartbeat URL: %v", err))
		} else {
			n.heartbeats = append(n.heartbeats, &receiver{kind: "heartbeat", url: opts.HeartbeatURL, name: redact(u)})
		}
	}
	for i, h := range opts.Heartbeats {
		u, err := checkURL(h.URL)
		if err == nil {
			err = h.Match.check()
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("heartbeat %d: %v", i+1, err))
			continue
		}
		n.heartbeats = append(n.heartbeats, &receiver{kind: "heartbeat", url: h.URL, name: receiverName(h.Name, u), match: h.Match})
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
		n.start(r)
	}
	return n, nil
}

// start runs r's worker; Close waits for it.
func (n *Notifier) start(r *receiver) {
	r.n = n
	r.wake = make(chan struct{}, 1)
	n.workers.Add(1)
	go r.work()
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

// receiverName is what logs call a receiver: its name, if it has one, and scheme and host.
func receiverName(name string, u *url.URL) string {
	if name == "" {
		return redact(u)
	}
	return name + " (" + redact(u) + ")"
}

func (n *Notifier) receivers() []*receiver {
	rs := append(append([]*receiver(nil), n.webhooks...), n.heartbeats...)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.ownReceivers {
		rs = append(rs, r)
	}
	return rs
}

// SetScenarioHeartbeats gives the scenarios' own heartbeat URLs (spec.notify.heartbeatURL) by
// scenario name, replacing what was given before: `serve` calls it whenever it reads the
// scenarios. Each is requested after each pass of its scenario, besides the Heartbeats that
// match. A URL that can't be used is logged, by scheme and host only, and left out.
func (n *Notifier) SetScenarioHeartbeats(urls map[string]string) {
	own := make(map[string]string, len(urls))
	for sc, raw := range urls {
		if raw == "" {
			continue
		}
		if _, err := checkURL(raw); err != nil {
			n.log.Warn("the scenario's heartbeat URL is not used", "scenario", sc, "err", err)
			continue
		}
		own[sc] = raw
	}
	n.mu.Lock()
	n.ownBeat = own
	n.mu.Unlock()
}

// ownReceiver returns the receiver of a scenario's own heartbeat URL, starting it when it is
// the first use of the URL. n.mu is held and n is not closing, so that Close waits for it.
func (n *Notifier) ownReceiver(raw string) *receiver {
	if r, ok := n.ownReceivers[raw]; ok {
		return r
	}
	u, _ := url.Parse(raw) // SetScenarioHeartbeats checked it
	r := &receiver{kind: "heartbeat", url: raw, name: redact(u)}
	n.ownReceivers[raw] = r
	n.start(r)
	return r
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
			if !w.match.Selects(r.Scenario, r.Labels) {
				continue
			}
			body, err := w.body(ev)
			if err != nil { // only a bug makes an Event unencodable; say so rather than stay silent
				n.log.Error("notification not sent: encode body", "receiver", w.name, "scenario", r.Scenario, "err", err)
				continue
			}
			w.enqueue(&delivery{event: kind, scenario: r.Scenario, run: r.ID, body: body})
		}
	}
	if r.Result == drill.Passed {
		n.beat(r)
	}
}

// beat queues a heartbeat for each heartbeat URL that hears about r's scenario, once per URL.
// n.mu is held.
func (n *Notifier) beat(r *drill.Record) {
	var due []*receiver
	for _, h := range n.heartbeats {
		if h.match.Selects(r.Scenario, r.Labels) {
			due = append(due, h)
		}
	}
	if own := n.ownBeat[r.Scenario]; own != "" {
		due = append(due, n.ownReceiver(own))
	}
	pinged := map[string]bool{}
	for _, h := range due {
		if !pinged[h.url] {
			pinged[h.url] = true
			h.enqueue(&delivery{event: "heartbeat", scenario: r.Scenario, run: r.ID})
		}
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
